"""Ctrl-C and SIGTERM for training processes: stop between steps, together, with the last
checkpoint intact, and say in one line where a rerun resumes.

    with StopRequest() as stop:
        for step in ...:
            train one step
            if stop.agreed(env):          # every rank answers the same, at the same step
                raise Interrupted(step + 1, last_checkpoint_step)

A signal only sets a flag: a rank inside a collective finishes it (its peers are still running), and
the ranks then agree at the next step boundary, so nobody waits for a peer that already left. A second
Ctrl-C stops at once (KeyboardInterrupt). Under torchrun the launcher also forwards SIGTERM; workers
also die with their launcher (`die_with_parent`) if it is killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any, ClassVar

from mathforge.training.distributed import DistEnv, all_reduce_sum

PR_SET_PDEATHSIG = 1


class Interrupted(Exception):
    """Training stopped on a signal after `step` steps; `resume_step` is the newest checkpoint's."""

    def __init__(self, step: int, resume_step: int, signum: int):
        self.step, self.resume_step, self.signum = step, resume_step, signum
        where = f"resume from step {resume_step}" if resume_step else "start again (no checkpoint yet)"
        super().__init__(f"interrupted at step {step}; rerun the same command to {where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Stopped(BaseException):
    """A signal arrived inside `stop_at_once()`. A BaseException, as KeyboardInterrupt is, so that the
    `except Exception` of a health probe or a retry loop inside the wait does not swallow it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by signal {signum}")


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag for the duration of a `with` block (main thread only)."""

    active: ClassVar[StopRequest | None] = None  # the one in force, for stop_at_once()

    def __init__(self) -> None:
        self.signum = 0
        self.at_once = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
            StopRequest.active = self
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._previous:
            StopRequest.active = None
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait for the step
        self.signum = self.signum or signum
        if self.at_once:
            raise Stopped(signum)

    def agreed(self, env: DistEnv) -> bool:
        """True on every rank when any rank was signalled (a collective when distributed)."""
        if not env.distributed:
            return bool(self.signum)
        wanted = all_reduce_sum(float(self.signum), env.device)
        if wanted and not self.signum:
            self.signum = signal.SIGTERM  # a peer was signalled: stop with it
        return bool(wanted)


@contextlib.contextmanager
def stop_at_once() -> Iterator[None]:
    """Inside, a signal raises Stopped at once instead of waiting for the next step boundary: for a
    wait on something outside the job (GRPO waiting for its services, up to services.ready_timeout_s)
    where nothing is half-done and no peer waits in a collective. Outside a StopRequest: no change."""
    request = StopRequest.active
    if request is None:
        yield
        return
    if request.signum:  # signalled just before the wait
        raise Stopped(request.signum)
    request.at_once = True
    try:
        yield
    finally:
        request.at_once = False


def exit_now(code: int) -> None:
    """Ends a training process at once: streams flushed and logging shut down, but no interpreter
    teardown. That teardown collects the run's data (seconds for a large corpus in memory) and
    destroys native objects in no fixed order: a DeepSpeed ZeRO-3 worker on gloo has aborted there
    ("terminate called without an active exception", exit 134) after a run that had finished and
    saved everything. Only for after the process group is left and every file is closed
    (checkpoints are written atomically); the stages' `python -m` entries end through it."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def die_with_parent() -> None:
    """Asks Linux to SIGKILL this process when its parent (torchrun) dies, so no worker outlives a
    killed launcher. Checkpoints are written atomically, so a kill never leaves a half-written one."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the call: nothing would signal us
        os.kill(os.getpid(), signal.SIGKILL)

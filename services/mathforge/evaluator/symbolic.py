"""Symbolic equivalence with a hard time limit that works in any thread (and inside grpc.aio):
math-verify runs in a small pool of worker processes; a comparison over its limit gets its worker
killed (and replaced in the background) and is answered "timed out". Results are cached.

    outcome = default_pool().compare("\\frac{\\sqrt{2}}{2}", "\\sin(\\pi/4)", timeout_s=2.0)
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

WORKER_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SymbolicOutcome:
    """equal: True/False when decided, None when math-verify could not parse or decide."""

    equal: bool | None
    timed_out: bool = False
    detail: str = ""


class _Worker:
    """One worker process and a line reader over its stdout."""

    def __init__(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mathforge.evaluator.symbolic_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self._buffer = b""
        self.next_id = 0
        if self.read_line(WORKER_START_TIMEOUT_S) is None:
            self.kill()
            raise RuntimeError("symbolic worker did not start")

    def alive(self) -> bool:
        return self.process.poll() is None

    def read_line(self, timeout_s: float) -> dict | None:
        deadline = time.monotonic() + timeout_s
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            return None
        return reply if isinstance(reply, dict) else None

    def ask(self, gold: str, pred: str, timeout_s: float) -> dict | None:
        assert self.process.stdin is not None
        self.next_id += 1
        try:
            self.process.stdin.write(
                (json.dumps({"id": self.next_id, "gold": gold, "pred": pred}) + "\n").encode()
            )
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        return self.read_line(timeout_s)

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


class SymbolicPool:
    """`size` math-verify worker processes shared by every thread of this process."""

    def __init__(self, size: int = 2, acquire_timeout_s: float = 120.0):
        self.size = size
        self.acquire_timeout_s = acquire_timeout_s
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        self._closed = False
        self.timeouts = 0
        self.restarts = 0
        for _ in range(size):
            self._idle.put(None)

    def warm(self) -> None:
        """Starts every worker now (each takes about a second to import sympy and math-verify)."""
        workers = []
        for _ in range(self.size):
            workers.append(self._idle.get())
        for i, worker in enumerate(workers):
            if worker is None or not worker.alive():
                try:
                    workers[i] = _Worker()
                except (RuntimeError, OSError) as exc:
                    log.warning("symbolic worker failed to start: %s", exc)
                    workers[i] = None
        for worker in workers:
            self._idle.put(worker)

    def _replace_later(self) -> None:
        def start() -> None:
            try:
                worker: _Worker | None = _Worker()
            except (RuntimeError, OSError) as exc:
                log.warning("symbolic worker failed to restart: %s", exc)
                worker = None
            self._idle.put(worker)

        threading.Thread(target=start, name="symbolic-worker-start", daemon=True).start()

    def compare(self, gold: str, pred: str, timeout_s: float) -> SymbolicOutcome:
        """math-verify's verdict on (gold, pred) within `timeout_s` of compute. Never raises."""
        if self._closed:
            return SymbolicOutcome(None, detail="symbolic pool closed")
        try:
            worker = self._idle.get(timeout=self.acquire_timeout_s)
        except queue.Empty:
            return SymbolicOutcome(None, timed_out=True, detail="no symbolic worker free")
        try:
            if worker is None or not worker.alive():
                worker = _Worker()
        except (RuntimeError, OSError) as exc:
            self._idle.put(None)
            return SymbolicOutcome(None, detail=f"symbolic worker unavailable: {exc}")
        reply = worker.ask(gold, pred, timeout_s)
        if reply is None:
            worker.kill()
            self.timeouts += 1
            self.restarts += 1
            self._replace_later()
            return SymbolicOutcome(None, timed_out=True, detail=f"symbolic check over {timeout_s:g}s")
        self._idle.put(worker)
        equal = reply.get("equal")
        return SymbolicOutcome(equal if isinstance(equal, bool) else None, detail=str(reply.get("error", "")))

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            if worker is not None:
                worker.kill()


_POOL: SymbolicPool | None = None
_POOL_LOCK = threading.Lock()


def default_pool() -> SymbolicPool:
    """The process-wide pool (size from MATHFORGE_SYMBOLIC_WORKERS, default 2), created on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = SymbolicPool(size=max(1, int(os.environ.get("MATHFORGE_SYMBOLIC_WORKERS", "2"))))
            atexit.register(_POOL.close)
        return _POOL


@functools.lru_cache(maxsize=65536)
def symbolic_equal(gold: str, pred: str, timeout_s: float) -> SymbolicOutcome:
    """Cached `default_pool().compare`: GRPO grades the same answers over and over."""
    return default_pool().compare(gold, pred, timeout_s)

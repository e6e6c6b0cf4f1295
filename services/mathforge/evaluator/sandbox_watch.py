"""The parent's side of a sandboxed run: reads stdout and stderr under the output cap, the
launcher's layer report (written and closed before the program starts, read under its own cap),
watches the working directory's size and the wall clock, kills the run at the first limit, and
reaps it with wait4 for the exit status, CPU time and peak memory the verdict is decided from.

    watch = collect(child, report_fd, workdir, limits, started)    # sandbox.run_program's helper
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_CAP = 4096  # the launcher writes one short line per layer
DISK_CHECK_S = 0.05


@dataclass
class Watch:
    """What the parent saw of one run."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    status: int = 0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0
    baseline_memory_bytes: int = 0  # the peak inherited from before the launcher's exec
    killed_for: str = ""
    layers: tuple[str, ...] = ()
    unavailable: dict[str, str] = field(default_factory=dict)
    refused: str | None = None


def directory_usage(root: Path, max_entries: int) -> tuple[int, int]:
    """(bytes on disk, entries) beneath `root`, counting stops past `max_entries`. A directory the
    program made unreadable is opened up first: the parent owns the run's tree."""
    used, entries, pending = 0, 0, [root]
    while pending and entries <= max_entries:
        current = pending.pop()
        try:
            listing = list(os.scandir(current))
        except PermissionError:
            try:
                os.chmod(current, 0o700)
                listing = list(os.scandir(current))
            except OSError:
                continue
        except OSError:
            continue
        for entry in listing:
            entries += 1
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            used += info.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
    return used, entries


def _parse_report(text: str, watch: Watch) -> None:
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "layers":
            watch.layers = tuple(layer for layer in rest.split(",") if layer)
        elif kind == "unavailable":
            name, _, reason = rest.partition("\t")
            watch.unavailable[name] = reason
        elif kind == "refused":
            watch.refused = rest
        elif kind == "baseline_kib" and rest.isdigit():
            watch.baseline_memory_bytes = int(rest) * 1024


def _kill(child: subprocess.Popen[bytes], pidfd: int) -> None:
    """SIGKILL to the run's process group and, through its pidfd, to the process itself (which
    cannot be a recycled pid: it is not reaped yet)."""
    for send in (
        lambda: os.killpg(child.pid, signal.SIGKILL),
        lambda: signal.pidfd_send_signal(pidfd, signal.SIGKILL),
    ):
        try:
            send()
        except (ProcessLookupError, PermissionError):
            pass


def collect(
    child: subprocess.Popen[bytes], report_fd: int, workdir: Path, limits: Any, started: float
) -> Watch:
    """Runs the watch loop until the program exited and its pipes closed, or a limit is hit."""
    assert child.stdout is not None and child.stderr is not None
    watch = Watch()
    out_fd, err_fd = child.stdout.fileno(), child.stderr.fileno()
    report = bytearray()
    pidfd = os.pidfd_open(child.pid)
    selector = selectors.DefaultSelector()
    for fd in (out_fd, err_fd, report_fd, pidfd):
        selector.register(fd, selectors.EVENT_READ)
    pipes, exited = {out_fd, err_fd, report_fd}, False
    deadline, next_disk_check = started + limits.wall_time_s, started + DISK_CHECK_S
    try:
        while pipes or not exited:
            now = time.monotonic()
            if now >= deadline:
                watch.killed_for = "wall"
                break
            for key, _ in selector.select(timeout=min(deadline - now, DISK_CHECK_S)):
                if key.fd == pidfd:
                    exited = True
                    selector.unregister(pidfd)
                    continue
                chunk = os.read(key.fd, 65536)
                if key.fd == report_fd and chunk and len(report) < REPORT_CAP:
                    report += chunk[: REPORT_CAP - len(report)]
                elif key.fd in (out_fd, err_fd) and chunk:
                    (watch.stdout if key.fd == out_fd else watch.stderr).extend(chunk)
                else:  # end of file, or a report over its cap: stop reading it
                    selector.unregister(key.fd)
                    pipes.discard(key.fd)
            if len(watch.stdout) + len(watch.stderr) > limits.output_bytes:
                watch.killed_for = "output"
                break
            if time.monotonic() >= next_disk_check:
                next_disk_check = time.monotonic() + DISK_CHECK_S
                used, entries = directory_usage(workdir, limits.files)
                if used > limits.disk_bytes or entries > limits.files:
                    watch.killed_for = "disk"
                    break
    finally:
        if watch.killed_for or not exited:
            _kill(child, pidfd)
        _, status, usage = os.wait4(child.pid, 0)
        selector.close()
        os.close(pidfd)
        child.stdout.close()
        child.stderr.close()
    child.returncode = os.waitstatus_to_exitcode(status)
    watch.status, watch.elapsed = status, time.monotonic() - started
    watch.cpu_seconds = usage.ru_utime + usage.ru_stime
    watch.peak_memory_bytes = usage.ru_maxrss * 1024
    _parse_report(report.decode("utf-8", "replace"), watch)
    return watch

"""Runs untrusted Python (program-of-thought answers, tool calls) in a separate process with CPU
time, wall time, memory, process-count, file-size and open-file limits, no network, a throwaway
working directory, an empty environment and an output cap. Every run ends in a clear verdict; the
caller's process is never at risk.

    result = run_program("print(2 + 2)", SandboxLimits(wall_time_s=5))
    result.verdict, result.stdout        # "ok", "4\\n"

Isolation (see docs/evaluator.md): as root, the child enters a new network namespace with no
interfaces and drops to uid `nobody`; always, a Python audit hook forbids process creation,
sockets, ctypes and writes outside the working directory, and the whole process group is killed
at the wall-time limit or the output cap.
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
NOBODY_UID = 65534
VERDICTS = ("ok", "error", "timeout", "memory", "output_limit", "forbidden")
# Thread-count variables keep numeric libraries from starting thread pools the NPROC limit forbids.
CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits. Defaults suit a PoT answer (a few seconds of sympy)."""

    wall_time_s: float = 10.0
    cpu_time_s: float = 5.0
    memory_bytes: int = 1 << 30
    output_bytes: int = 64 * 1024
    file_bytes: int = 1 << 20
    open_files: int = 64
    processes: int = 16
    stdin_bytes: int = 1 << 20
    isolate_network: bool = True


@dataclass
class ProgramResult:
    """verdict: one of VERDICTS; detail names the limit or the forbidden action for non-ok runs."""

    verdict: str
    exit_code: int
    stdout: str
    stderr: str
    wall_seconds: float
    detail: str = ""
    network: str = ""
    uid: int = -1
    violations: list[str] = field(default_factory=list)


def _world_readable(path: Path) -> bool:
    """True when every directory up to `path` is traversable and `path` readable by other users."""
    try:
        for part in [path, *path.parents]:
            mode = part.stat().st_mode
            if (not mode & 0o001 and part != path) or not mode & 0o004:
                return False
    except OSError:
        return False
    return True


@functools.cache
def sandbox_uid() -> int:
    """The uid the child drops to: `nobody` when we are root and the interpreter is readable by it
    (a Python under /root is not), else -1 (keep ours; the audit hook and rlimits still apply)."""
    if os.getuid() != 0:
        return -1
    roots = {Path(sys.base_prefix), Path(sys.prefix), Path(os.__file__).parent, Path(json.__file__).parent}
    return NOBODY_UID if all(_world_readable(root) for root in roots) else -1


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _prepare_workdir(code: str) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="mathforge-sandbox-"))
    (workdir / "main.py").write_text(code, encoding="utf-8")
    if sandbox_uid() > 0:
        os.chown(workdir, NOBODY_UID, NOBODY_UID)
        os.chown(workdir / "main.py", NOBODY_UID, NOBODY_UID)
    workdir.chmod(0o700)
    return workdir


def _feed_stdin(process: subprocess.Popen[bytes], data: bytes) -> None:
    try:
        assert process.stdin is not None
        if data:
            process.stdin.write(data)
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def run_program(code: str, limits: SandboxLimits | None = None, stdin: str = "") -> ProgramResult:
    """Runs `code` as a Python program in the sandbox and returns its verdict and output."""
    limits = limits or SandboxLimits()
    started = time.monotonic()
    workdir = _prepare_workdir(code)
    report_read, report_write = os.pipe()
    config = {
        "cpu_s": max(1, int(limits.cpu_time_s + 0.999)),
        "memory_bytes": limits.memory_bytes,
        "file_bytes": limits.file_bytes,
        "open_files": limits.open_files,
        "processes": limits.processes,
        "isolate_network": limits.isolate_network,
        "uid": sandbox_uid(),
        "report_fd": report_write,
    }
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", str(LAUNCHER), json.dumps(config)],
            cwd=workdir,
            env=dict(CHILD_ENV),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(report_write,),
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        os.close(report_read)
        os.close(report_write)
        shutil.rmtree(workdir, ignore_errors=True)
        return ProgramResult("error", -1, "", "", 0.0, detail=f"could not start the sandbox: {exc}")
    os.close(report_write)
    feeder = threading.Thread(
        target=_feed_stdin, args=(process, stdin.encode()[: limits.stdin_bytes]), daemon=True
    )
    feeder.start()
    try:
        outcome = _collect(process, report_read, limits, started)
    finally:
        _kill_group(process)
        process.wait()
        os.close(report_read)
        shutil.rmtree(workdir, ignore_errors=True)
    return outcome


def _collect(
    process: subprocess.Popen[bytes], report_fd: int, limits: SandboxLimits, started: float
) -> ProgramResult:
    """Reads output under the cap until exit or the wall-time limit, then decides the verdict."""
    assert process.stdout is not None and process.stderr is not None
    buffers: dict[int, bytearray] = {
        process.stdout.fileno(): bytearray(),
        process.stderr.fileno(): bytearray(),
        report_fd: bytearray(),
    }
    selector = selectors.DefaultSelector()
    for fd in buffers:
        selector.register(fd, selectors.EVENT_READ)
    deadline = started + limits.wall_time_s
    killed_for = ""
    open_fds = set(buffers)
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            killed_for = "wall"
            break
        for key, _ in selector.select(timeout=min(remaining, 0.5)):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fd)
                open_fds.discard(key.fd)
                continue
            buffers[key.fd] += chunk
        output = len(buffers[process.stdout.fileno()]) + len(buffers[process.stderr.fileno()])
        if output > limits.output_bytes:
            killed_for = "output"
            break
    selector.close()
    if killed_for:
        _kill_group(process)
    try:
        exit_code = process.wait(timeout=max(0.1, deadline - time.monotonic()) if not killed_for else 5)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        exit_code = process.wait()
        killed_for = killed_for or "wall"
    elapsed = time.monotonic() - started
    cap = limits.output_bytes
    stdout = bytes(buffers[process.stdout.fileno()][:cap]).decode("utf-8", "replace")
    stderr = bytes(buffers[process.stderr.fileno()][:cap]).decode("utf-8", "replace")
    report = bytes(buffers[report_fd]).decode("utf-8", "replace").splitlines()
    return _verdict(exit_code, stdout, stderr, elapsed, report, killed_for, limits)


def _verdict(
    exit_code: int,
    stdout: str,
    stderr: str,
    elapsed: float,
    report: list[str],
    killed_for: str,
    limits: SandboxLimits,
) -> ProgramResult:
    fields = [line.split("\t") for line in report]
    network = next((f[1] for f in fields if f[0] == "network" and len(f) > 1), "")
    violations = [f"{f[1]}: {f[2]}" for f in fields if f[0] == "forbidden" and len(f) > 2]
    result = ProgramResult(
        "ok", exit_code, stdout, stderr, elapsed, network=network, uid=sandbox_uid(), violations=violations
    )
    if killed_for == "output":
        result.verdict, result.detail = "output_limit", f"output over the {limits.output_bytes}-byte cap"
    elif killed_for == "wall":
        result.verdict, result.detail = "timeout", f"over the {limits.wall_time_s:g} s wall-time limit"
    elif violations:
        result.verdict, result.detail = "forbidden", violations[0]
    elif any(f[0] == "memory" for f in fields) or "MemoryError" in stderr[-2000:]:
        result.verdict, result.detail = "memory", f"over the {limits.memory_bytes}-byte memory limit"
    elif exit_code in (-signal.SIGXCPU, -signal.SIGKILL):
        result.verdict, result.detail = "timeout", f"over the {limits.cpu_time_s:g} s CPU-time limit"
    elif exit_code == -signal.SIGXFSZ or "[Errno 27] File too large" in stderr[-2000:]:
        result.verdict, result.detail = "output_limit", f"a file over the {limits.file_bytes}-byte limit"
    elif exit_code != 0:
        result.verdict = "error"
        result.detail = f"exit status {exit_code}" if exit_code > 0 else f"killed by signal {-exit_code}"
    return result

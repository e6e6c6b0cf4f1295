"""Runs untrusted Python (program-of-thought answers, tool calls) in a fresh process the kernel
confines before the program's first byte runs: Landlock (read only the interpreter and the
libraries it may import, write only its own directory), a seccomp filter (no new processes,
execs, sockets, ptrace, signals to others, namespaces, devices...), no capabilities, NO_NEW_PRIVS,
an empty environment, caps on CPU, memory, wall time, files and output. Every run ends in a verdict
the parent decides from what it measured itself; the caller's process is never at risk.

    result = run_program("print(2 + 2)", SandboxLimits(wall_time_s=5))
    result.verdict, result.stdout, result.layers   # "ok", "4\\n", ("rlimits", ..., "seccomp=...")

The steps are listed, in order, in sandbox_launcher.py; docs/security.md says what each stops.
"""

from __future__ import annotations

import functools
import marshal
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mathforge
from mathforge.evaluator.confine import EXIT_MEMORY, LAYERS, REQUIRED_LAYERS, process
from mathforge.evaluator.sandbox_watch import Watch, collect

LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
SERVICES_ROOT = str(Path(mathforge.__file__).resolve().parent.parent)
NOBODY_UID = 65534
VERDICTS = ("ok", "error", "timeout", "memory", "output_limit", "forbidden")
# Thread-count variables keep numeric libraries from starting thread pools; nothing else is passed.
CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LANG": "C.UTF-8"}
# Shared libraries C extensions load (libffi, libcrypto, libgmp...) and the loader's cache.
SYSTEM_READ_ROOTS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache",
                     "/dev/urandom")  # fmt: skip


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits. Defaults suit a PoT answer (a few seconds of sympy)."""

    wall_time_s: float = 10.0
    cpu_time_s: float = 5.0
    memory_bytes: int = 1 << 30
    output_bytes: int = 64 * 1024
    file_bytes: int = 1 << 20
    disk_bytes: int = 16 << 20
    files: int = 256
    open_files: int = 64
    processes: int = 16
    stdin_bytes: int = 1 << 20
    isolate_network: bool = True


@dataclass(frozen=True)
class SandboxSettings:
    """Where programs run and what they may import; which layers must hold or no program runs."""

    required_layers: tuple[str, ...] = REQUIRED_LAYERS
    library_paths: tuple[str, ...] = ()
    work_root: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.required_layers) - set(LAYERS))
        if unknown:
            raise ValueError(f"unknown sandbox layers {unknown}; known: {', '.join(LAYERS)}")
        for path in self.library_paths:
            if not os.path.isabs(path):
                raise ValueError(f"sandbox library path {path!r} must be absolute")


@dataclass
class ProgramResult:
    """verdict: one of VERDICTS; detail names the limit or the cause for non-ok runs (written by the
    parent, never taken from the program's output). layers: the isolation that held, in order."""

    verdict: str
    exit_code: int
    stdout: str
    stderr: str
    wall_seconds: float
    detail: str = ""
    layers: tuple[str, ...] = ()
    unavailable: dict[str, str] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0
    workdir: str = ""

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.split("=", 1)[0] for layer in self.layers)


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
def import_paths(library_paths: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The directories a program may import from: this interpreter's standard library and
    site-packages, and the configured extras; never the project's sources or the working tree."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    candidates = [*sys.path, *site.getsitepackages()]
    found = [
        os.path.realpath(p)
        for p in candidates
        if p and os.path.isdir(p) and any(os.path.realpath(p).startswith(pre + os.sep) for pre in prefixes)
    ]
    found += [os.path.realpath(p) for p in library_paths if os.path.isdir(p)]
    return tuple(dict.fromkeys(found))


@functools.cache
def sandbox_uid(library_paths: tuple[str, ...] = ()) -> int:
    """The uid the child drops to: `nobody` when we are root and the interpreter and libraries are
    readable by it (a Python under /root is not), else -1 (keep ours, without capabilities)."""
    if os.getuid() != 0:
        return -1
    roots = [Path(sys.executable).resolve(), *map(Path, import_paths(library_paths))]
    return NOBODY_UID if all(_world_readable(root) for root in roots) else -1


@functools.cache
def _undumpable() -> None:
    """Once per process: what the evaluator holds (tokens in its environment, gold answers in its
    memory) stays unreadable through /proc even to a process of its own uid."""
    process.set_undumpable()


def _prepare_workdir(code: str, settings: SandboxSettings, uid: int) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="mathforge-sandbox-", dir=settings.work_root or None)).resolve()
    (workdir / "main.py").write_text(code, encoding="utf-8")
    if uid > 0:
        os.chown(workdir, uid, uid)
        os.chown(workdir / "main.py", uid, uid)
    return workdir


def _feed_stdin(process_: subprocess.Popen[bytes], data: bytes) -> None:
    try:
        assert process_.stdin is not None
        if data:
            process_.stdin.write(data)
        process_.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def _launch_config(
    workdir: Path, limits: SandboxLimits, settings: SandboxSettings, report_fd: int, uid: int
) -> dict[str, object]:
    paths = import_paths(settings.library_paths)
    return {
        "services_root": SERVICES_ROOT,
        "workdir": str(workdir),
        "import_paths": list(paths),
        "read_roots": [*paths, *SYSTEM_READ_ROOTS],
        "required_layers": list(settings.required_layers),
        "report_fd": report_fd,
        "uid": uid,
        "isolate_network": limits.isolate_network,
        "cpu_s": max(1, int(limits.cpu_time_s + 0.999)),
        "memory_bytes": limits.memory_bytes,
        "file_bytes": limits.file_bytes,
        "open_files": limits.open_files,
        "processes": limits.processes,
    }


def run_program(
    code: str, limits: SandboxLimits | None = None, stdin: str = "", settings: SandboxSettings | None = None
) -> ProgramResult:
    """Runs `code` as a Python program in the sandbox and returns its verdict and output."""
    limits = limits or SandboxLimits()
    settings = settings or SandboxSettings()
    _undumpable()
    started = time.monotonic()
    uid = sandbox_uid(settings.library_paths)
    workdir = _prepare_workdir(code, settings, uid)
    report_read, report_write = os.pipe()
    config = _launch_config(workdir, limits, settings, report_write, uid)
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", str(LAUNCHER), marshal.dumps(config).hex()],
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
        _remove(workdir)
        return ProgramResult("error", -1, "", "", 0.0, detail=f"could not start the sandbox: {exc}")
    os.close(report_write)
    feeder = threading.Thread(
        target=_feed_stdin, args=(child, stdin.encode()[: limits.stdin_bytes]), daemon=True
    )
    feeder.start()
    try:
        watch = collect(child, report_read, workdir, limits, started)
    finally:
        os.close(report_read)
        _remove(workdir)
    return decide(watch, limits, workdir)


def _remove(workdir: Path) -> None:
    """Deletes the run's tree, opening up directories the program made unreadable."""

    def open_up(_function: object, path: str, _error: object) -> None:
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
        except OSError:
            pass

    shutil.rmtree(workdir, onerror=open_up)


def decide(watch: Watch, limits: SandboxLimits, workdir: Path) -> ProgramResult:
    """The verdict, from the exit status, the resources the parent measured and why it stopped the
    run; the program's own output only travels back as stdout and stderr."""
    status, cap = watch.status, limits.output_bytes
    exit_code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    result = ProgramResult(
        "ok",
        exit_code,
        bytes(watch.stdout[:cap]).decode("utf-8", "replace"),
        bytes(watch.stderr[:cap]).decode("utf-8", "replace"),
        watch.elapsed,
        layers=watch.layers,
        unavailable=watch.unavailable,
        cpu_seconds=watch.cpu_seconds,
        peak_memory_bytes=watch.peak_memory_bytes,
        workdir=str(workdir),
    )
    signalled = -exit_code if exit_code < 0 else 0
    # Only growth past what the launcher inherited counts: a large evaluator process leaves its own
    # peak in the child's accounting.
    near_memory_limit = (
        watch.peak_memory_bytes > watch.baseline_memory_bytes
        and watch.peak_memory_bytes >= 0.9 * limits.memory_bytes
    )
    if watch.refused is not None:
        result.verdict, result.detail = "error", f"the sandbox refused to run the program: {watch.refused}"
    elif watch.killed_for == "output":
        result.verdict, result.detail = "output_limit", f"output over the {cap}-byte cap"
    elif watch.killed_for == "disk":
        result.verdict = "output_limit"
        result.detail = (
            f"files over the {limits.disk_bytes}-byte / {limits.files}-file cap of the working directory"
        )
    elif watch.killed_for == "wall":
        result.verdict, result.detail = "timeout", f"over the {limits.wall_time_s:g} s wall-time limit"
    elif not watch.layers:
        result.verdict = "error"
        result.detail = f"the sandbox launcher ended before the program started (exit status {exit_code})"
    elif signalled == signal.SIGSYS:
        result.verdict = "forbidden"
        result.detail = "stopped at a forbidden system call (process, exec, socket, signal, namespace...)"
    elif signalled == signal.SIGXCPU or (
        signalled == signal.SIGKILL and watch.cpu_seconds >= limits.cpu_time_s
    ):
        result.verdict, result.detail = "timeout", f"over the {limits.cpu_time_s:g} s CPU-time limit"
    elif signalled == signal.SIGXFSZ:
        result.verdict, result.detail = "output_limit", f"a file over the {limits.file_bytes}-byte limit"
    elif exit_code == EXIT_MEMORY or (exit_code != 0 and near_memory_limit):
        result.verdict, result.detail = "memory", f"over the {limits.memory_bytes}-byte memory limit"
    elif exit_code != 0:
        result.verdict = "error"
        result.detail = f"exit status {exit_code}" if exit_code > 0 else f"killed by signal {signalled}"
    return result


@functools.cache
def probe(settings: SandboxSettings = SandboxSettings()) -> ProgramResult:
    """One trivial run, every layer optional: which layers this machine gives and why the others
    are missing. The evaluator logs it at start and refuses programs when a required one is absent."""
    optional = SandboxSettings(
        required_layers=(), library_paths=settings.library_paths, work_root=settings.work_root
    )
    return run_program("pass", SandboxLimits(wall_time_s=30, cpu_time_s=10), settings=optional)


def missing_layers(settings: SandboxSettings) -> dict[str, str]:
    """Required layers this machine does not give, each with the reason (empty: all hold)."""
    result = probe(settings)
    if result.verdict != "ok":
        return {name: f"the probe run failed: {result.detail}" for name in settings.required_layers}
    held = set(result.layer_names)
    return {
        name: result.unavailable.get(name, "not applied")
        for name in settings.required_layers
        if name not in held
    }

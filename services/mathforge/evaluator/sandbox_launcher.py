"""Runs inside the sandbox's child process: applies the isolation steps, in the order of `STEPS`,
reports which layers hold on a pipe it then closes, and only then executes ./main.py. Nothing of
the program runs before the last step, and nothing it writes reaches the parent except stdout and
stderr; the parent decides the verdict from the exit status and the resources it measured.

Started by `sandbox.run_program` as `python -I -S sandbox_launcher.py CONFIG` (a marshalled dict, in
hex); never imported.
"""

from __future__ import annotations

import _signal  # signal's C core: the `signal` module would import enum, ~10 ms of every run
import marshal
import os
import resource
import sys

# The launcher's start-up is part of every run's latency: no typing, json, enum or dataclasses.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# Audit events the kernel refuses anyway; the hook only turns them into a readable message before
# the process ends the way the kernel would have ended it (SIGSYS).
_REFUSED_EVENTS = {
    "os.system": "starting a process",
    "os.fork": "starting a process",
    "os.forkpty": "starting a process",
    "os.exec": "executing a program",
    "os.spawn": "starting a process",
    "os.posix_spawn": "starting a process",
    "subprocess.Popen": "starting a process",
    "os.killpg": "signalling a process group",
    "resource.setrlimit": "changing resource limits",
    "resource.prlimit": "changing resource limits",
}


class Unavailable(Exception):
    """This step cannot hold here (the message says why); fatal only if the layer is required."""


def _refuse(event: str, what: str) -> None:
    message = f"sandbox: {event} is forbidden ({what}); the program is stopped\n"
    os.write(2, message.encode("utf-8", "replace")[:1000])
    try:
        _signal.signal(_signal.SIGSYS, _signal.SIG_DFL)
    except ValueError:
        pass  # not the main thread: a handler the program set may run, the PermissionError still follows
    _signal.raise_signal(_signal.SIGSYS)
    raise PermissionError(f"sandbox: {event} is forbidden ({what})")


def _audit_hook(workdir: str, own_pid: int) -> Callable[[str, tuple[Any, ...]], None]:
    """Readable errors for the common ways out; never the boundary (docs/security.md)."""
    busy = [False]

    def writes_outside(args: tuple[Any, ...]) -> bool:
        path, mode, flags = (*args, None, None, None)[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if not writing or not isinstance(path, str | bytes):
            return False
        real = os.path.realpath(os.fsdecode(path))
        return not (real == workdir or real.startswith(workdir + os.sep) or real == os.devnull)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if busy[0]:
            return
        busy[0] = True
        try:
            if event in _REFUSED_EVENTS:
                _refuse(event, _REFUSED_EVENTS[event])
            elif event == "os.kill" and args and args[0] != own_pid:
                _refuse(event, "signalling another process")
            elif event.startswith("socket.") and event != "socket.getaddrinfo":
                _refuse(event, "network access")
            elif event == "open" and writes_outside(args):
                _refuse(event, f"writing {args[0]!r} outside the working directory")
        finally:
            busy[0] = False

    return hook


def steps(config: dict[str, Any]) -> list[tuple[str, Callable[[], str]]]:
    """The isolation steps, in order: each returns a detail ("" or e.g. the Landlock ABI) or
    raises Unavailable. Later steps depend on earlier ones: limits before the seccomp filter that
    stops their change, NO_NEW_PRIVS before Landlock and seccomp, which require it."""
    from mathforge.evaluator.confine import landlock, process, seccomp

    root = os.geteuid() == 0
    workdir = config["workdir"]

    def netns() -> str:
        if not config["isolate_network"]:
            raise Unavailable("not requested (isolate_network off)")
        if not root:
            raise Unavailable("a network namespace needs root (CAP_SYS_ADMIN)")
        process.new_network_namespace()
        return ""

    def uid() -> str:
        if not root:
            return str(os.getuid())  # the service's own, unprivileged uid
        if config["uid"] <= 0:
            raise Unavailable("the interpreter is not readable by an unprivileged uid")
        process.drop_to_uid(config["uid"])
        return str(config["uid"])

    def rlimits() -> str:
        cpu = int(config["cpu_s"])
        for which, value in (
            (resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_AS, (config["memory_bytes"],) * 2),
            (resource.RLIMIT_FSIZE, (config["file_bytes"],) * 2),
            (resource.RLIMIT_NOFILE, (config["open_files"],) * 2),
            (resource.RLIMIT_NPROC, (config["processes"],) * 2),
            (resource.RLIMIT_CORE, (0, 0)),
        ):
            resource.setrlimit(which, value)
        # Python ignores SIGXFSZ; by default it ends the process, which the parent can see.
        _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
        return ""

    def capabilities() -> str:
        process.drop_capabilities()
        return ""

    def no_new_privs() -> str:
        seccomp.set_no_new_privs()
        return ""

    def landlock_step() -> str:
        try:
            abi = landlock.restrict(config["read_roots"], [workdir, os.devnull])
        except landlock.LandlockError as exc:
            raise Unavailable(str(exc)) from None
        return f"abi {abi}"

    def seccomp_step() -> str:
        try:
            return f"{seccomp.install(os.getpid())} instructions"
        except seccomp.SeccompError as exc:
            raise Unavailable(str(exc)) from None

    def audit_hook() -> str:
        sys.addaudithook(_audit_hook(workdir, os.getpid()))
        return ""

    return [
        ("netns", netns),
        ("uid", uid),
        ("rlimits", rlimits),
        ("capabilities", capabilities),
        ("no_new_privs", no_new_privs),
        ("landlock", landlock_step),
        ("seccomp", seccomp_step),
        ("audit_hook", audit_hook),
    ]


def confine(config: dict[str, Any], report_fd: int) -> None:
    """Applies every step; exits EXIT_REFUSED, before any program code, if a required one fails."""
    from mathforge.evaluator.confine import EXIT_REFUSED

    required = set(config["required_layers"])
    lines, held = [], []
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    if threads != 1:
        lines.append(f"refused\tthe launcher has {threads} threads; confinement binds only one\n")
    for name, step in steps(config) if threads == 1 else []:
        try:
            detail = step()
        except (Unavailable, OSError) as exc:
            if name in required:
                lines.append(f"refused\t{name}: {exc}\n")
                break
            lines.append(f"unavailable\t{name}\t{exc}\n")
            continue
        held.append(f"{name}={detail}" if detail else name)
    refused = any(line.startswith("refused") for line in lines)
    # The peak resident size the kernel will report for this process already holds what it had
    # before exec (the evaluator's own size, when it forked the launcher): the parent needs this
    # floor to tell the program's growth from that inheritance.
    lines.append(f"baseline_kib\t{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\n")
    if not refused:
        lines.append("layers\t" + ",".join(held) + "\n")
    os.write(report_fd, "".join(lines).encode("utf-8", "replace"))
    os.close(report_fd)
    if refused:
        os._exit(EXIT_REFUSED)


def main() -> None:
    config = marshal.loads(bytes.fromhex(sys.argv[1]))
    report_fd = int(config["report_fd"])
    sys.path[:0] = [config["services_root"]]
    from mathforge.evaluator.confine import EXIT_MEMORY

    os.closerange(3, report_fd)
    os.closerange(report_fd + 1, 1 << 16)
    confine(config, report_fd)
    # The program sees its directory and the libraries it may import, not this project.
    sys.path[:] = [config["workdir"], *config["import_paths"]]
    for name in [m for m in sys.modules if m == "mathforge" or m.startswith("mathforge.")]:
        del sys.modules[name]
    sys.argv = ["main.py"]
    with open("main.py", encoding="utf-8") as source:
        code = source.read()
    namespace = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
    try:
        exec(compile(code, "main.py", "exec"), namespace)
    except MemoryError:
        os.write(2, b"MemoryError: over the sandbox memory limit\n")
        os._exit(EXIT_MEMORY)
    except SystemExit:
        raise
    except BaseException as exc:  # the program's traceback, without the launcher's frame
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

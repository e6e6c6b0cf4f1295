"""Runs inside the sandbox's child process, before the user's program: isolates the network,
drops root, sets the resource limits, installs the audit hook that forbids process creation,
sockets, native code and writes outside the working directory, then executes ./main.py.

Started by `sandbox.run_program` as `python -I sandbox_launcher.py CONFIG_JSON`; never imported.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from typing import Any

CLONE_NEWNET = 0x40000000
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PROCESS_EVENTS = frozenset(
    {
        "os.system",
        "os.fork",
        "os.forkpty",
        "os.exec",
        "os.spawn",
        "os.posix_spawn",
        "subprocess.Popen",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "resource.setrlimit",
        "resource.prlimit",
    }
)
_PATH_EVENTS = frozenset(
    {
        "os.remove",
        "os.rename",
        "os.mkdir",
        "os.rmdir",
        "os.chmod",
        "os.chown",
        "os.symlink",
        "os.link",
        "os.truncate",
        "os.utime",
        "shutil.rmtree",
        "shutil.move",
        "shutil.copyfile",
    }
)


def _isolate_network() -> str:
    """A fresh network namespace (no interfaces up) when we may create one; else the audit hook alone."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) == 0:
            return "namespace"
    except (OSError, AttributeError):
        pass
    return "audit-hook"


def _drop_root(uid: int) -> None:
    if os.getuid() == 0 and uid > 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def _set_limits(config: dict[str, Any]) -> None:
    cpu = int(config["cpu_s"])
    limits = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_AS: (config["memory_bytes"],) * 2,
        resource.RLIMIT_FSIZE: (config["file_bytes"],) * 2,
        resource.RLIMIT_NOFILE: (config["open_files"],) * 2,
        resource.RLIMIT_NPROC: (config["processes"],) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, (soft, hard) in limits.items():
        resource.setrlimit(which, (soft, hard))


def _install_hook(report: Any, workdir: str) -> None:
    busy = [False]

    def inside(path: Any) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return real == workdir or real.startswith(workdir + os.sep) or real == "/dev/null"

    def forbid(event: str, detail: str) -> None:
        report.write(f"forbidden\t{event}\t{detail[:200]}\n")
        report.flush()
        raise PermissionError(f"sandbox: {event} is forbidden ({detail[:200]})")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if busy[0]:
            return
        busy[0] = True
        try:
            if event in _PROCESS_EVENTS:
                forbid(event, "process creation, signals and limits are not allowed")
            elif event.startswith("socket.") or event.startswith("ctypes."):
                forbid(event, "network and native code are not allowed")
            elif event == "open" and len(args) >= 3:
                path, mode, flags = args[0], args[1], args[2]
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & _WRITE_FLAGS
                )
                if writing and not inside(path):
                    forbid("open", f"writing {path!r} outside the working directory")
            elif event in _PATH_EVENTS:
                for path in args[:2]:
                    if isinstance(path, str | bytes) and not inside(path):
                        forbid(event, f"{path!r} is outside the working directory")
        finally:
            busy[0] = False

    sys.addaudithook(hook)


def main() -> None:
    config = json.loads(sys.argv[1])
    report = os.fdopen(int(config["report_fd"]), "w", buffering=1)
    network = _isolate_network() if config["isolate_network"] else "audit-hook"
    _drop_root(int(config["uid"]))
    _set_limits(config)
    workdir = os.path.realpath(os.getcwd())
    with open("main.py", encoding="utf-8") as source:
        code = source.read()
    report.write(f"network\t{network}\t\n")
    report.flush()
    _install_hook(report, workdir)
    sys.argv = ["main.py"]
    sys.path[0] = workdir
    namespace = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
    try:
        exec(compile(code, "main.py", "exec"), namespace)
    except MemoryError:
        report.write("memory\tMemoryError\t\n")
        report.flush()
        sys.stderr.write("MemoryError: over the sandbox memory limit\n")
        os._exit(1)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Escape classes for the program sandbox, and the driver that runs them in an evaluator-like
process (so /proc/<parent> is a process holding a secret, as the service would be).

Each case is a hostile program with the outcome it aims for; test_sandbox_escapes.py prepares
the targets (a secret file, a victim file, a decoy process, listening sockets...), runs every
case through this driver as root and as an unprivileged user, and checks the effect from outside.

    python tests/unit/sandbox_escape_cases.py SPEC.json > RESULTS.jsonl     # one line per case
"""

from __future__ import annotations

import json
import os
import resource
import string
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# Helpers every case program starts with. `raw_open` and `libc` go around Python's audit hook, so
# a case labelled landlock or seccomp shows that the kernel stops it, not the hook.
PRELUDE = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def raw_open(path, flags, mode=0o644):
    fd = libc.open(os.fsencode(path), flags, mode)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd
def attempt(fn):
    try:
        out = fn()
        print("GOT", out if isinstance(out, (str, bytes)) else repr(out)[:4000], flush=True)
    except OSError as exc:
        print("DENIED", exc.errno, flush=True)
"""


@dataclass(frozen=True)
class Escape:
    """name: the escape class. layer: the first layer that stops it (landlock, seccomp,
    audit_hook, rlimits, parent). effect: what the test checks from outside. code: the program
    after PRELUDE, a string.Template over the targets ($victim, $decoy, $nr_fork...)."""

    name: str
    layer: str
    effect: str
    code: str
    limits: dict[str, Any] = field(default_factory=dict)
    x86_64_only: bool = False


_AFTER = '\nprint("AFTER", flush=True)\n'


def _seccomp(name: str, effect: str, code: str, **kw: Any) -> Escape:
    return Escape(name, "seccomp", effect, code + _AFTER, **kw)


CASES: list[Escape] = [
    # ---- reads ---------------------------------------------------------------------------------
    Escape("read_etc_passwd", "landlock", "secret", "attempt(lambda: open('/etc/passwd').read())"),
    Escape("read_project_file", "landlock", "secret", "attempt(lambda: open('$secret_path').read())"),
    Escape("read_service_token", "landlock", "secret", "attempt(lambda: open('$token_path').read())"),
    Escape(
        "read_parent_environ",
        "landlock",
        "secret",
        "attempt(lambda: open('/proc/$parent/environ', 'rb').read())",
    ),
    Escape(
        "read_parent_mem",
        "landlock",
        "secret",
        "def mem():\n"
        "    maps = open('/proc/$parent/maps').read()\n"
        "    return maps\n"
        "attempt(mem)\n"
        "attempt(lambda: os.pread(raw_open('/proc/$parent/mem', os.O_RDONLY), 4096, 0x400000))",
    ),
    Escape(
        "read_by_dir_fd",
        "landlock",
        "secret",
        "dfd = os.open('.', os.O_RDONLY | os.O_DIRECTORY)\n"
        "rel = os.path.relpath('$secret_path', os.getcwd())\n"
        "attempt(lambda: os.read(os.open(rel, os.O_RDONLY, dir_fd=dfd), 4096))\n"
        "attempt(lambda: os.read(raw_open('$secret_dir', os.O_RDONLY | os.O_DIRECTORY), 10))",
    ),
    Escape(
        "read_through_symlink",
        "landlock",
        "secret",
        "os.symlink('$secret_path', 'link')\nattempt(lambda: open('link').read())",
    ),
    Escape(
        "read_through_hardlink",
        "landlock",
        "secret",
        "attempt(lambda: os.link('$secret_path', 'hard'))\nattempt(lambda: open('hard').read())",
    ),
    Escape(
        "read_another_run",
        "landlock",
        "secret",
        "attempt(lambda: os.listdir('$work_root'))\nattempt(lambda: open('$other_run_file').read())\n"
        "attempt(lambda: open('$other_run_main').read())",
    ),
    Escape("list_processes_in_proc", "landlock", "secret", "attempt(lambda: os.listdir('/proc'))"),
    Escape(
        "read_in_subinterpreter",
        "landlock",
        "secret",
        "import _xxsubinterpreters as interpreters\n"
        "interp = interpreters.create()\n"
        "interpreters.run_string(interp, 'import os\\n"
        'try:\\n    os.write(1, open("$secret_path", "rb").read())\\n'
        'except OSError as e:\\n    print("DENIED", e.errno)\')',
    ),
    # ---- writes, by every route ----------------------------------------------------------------
    Escape(
        "write_by_dir_fd",
        "landlock",
        "victim",
        "dfd = os.open('$victim_dir', os.O_PATH)\n"
        "attempt(lambda: os.write(os.open('$victim_name', os.O_WRONLY | os.O_TRUNC, dir_fd=dfd), b'pwned'))",
    ),
    Escape(
        "write_through_symlink",
        "landlock",
        "victim",
        "os.symlink('$victim', 'link')\n"
        "attempt(lambda: os.write(raw_open('link', os.O_WRONLY | os.O_TRUNC), b'pwned'))",
    ),
    Escape(
        "write_through_hardlink",
        "landlock",
        "victim",
        "attempt(lambda: os.link('$victim', 'hard'))\n"
        "attempt(lambda: os.write(raw_open('hard', os.O_WRONLY | os.O_TRUNC), b'pwned'))",
    ),
    Escape("rename_victim_away", "landlock", "victim", "attempt(lambda: os.rename('$victim', 'stolen'))"),
    Escape(
        "rename_over_victim",
        "landlock",
        "victim",
        "open('evil', 'w').write('pwned')\nattempt(lambda: os.rename('evil', '$victim'))",
    ),
    Escape("unlink_victim", "landlock", "victim", "attempt(lambda: os.unlink('$victim'))"),
    Escape("truncate_victim", "landlock", "victim", "attempt(lambda: os.truncate('$victim', 0))"),
    Escape(
        "create_beside_victim",
        "landlock",
        "victim",
        "attempt(lambda: raw_open('$victim_dir/planted', os.O_CREAT | os.O_WRONLY))\n"
        "attempt(lambda: os.mkdir('$victim_dir/planted-dir'))\n"
        "attempt(lambda: os.mkfifo('$victim_dir/fifo'))",
    ),
    Escape("chmod_victim", "seccomp_errno", "victim", "attempt(lambda: os.chmod('$victim', 0o777))"),
    Escape("utime_victim", "seccomp_errno", "victim", "attempt(lambda: os.utime('$victim', (0, 0)))"),
    Escape(
        "write_parent_proc_files",
        "landlock",
        "oom_score",
        "attempt(lambda: os.write(raw_open('/proc/$parent/oom_score_adj', os.O_WRONLY), b'1000'))",
    ),
    # ---- processes, by every route -------------------------------------------------------------
    Escape("os_fork", "audit_hook", "marker", "if os.fork() == 0:\n    open('$marker', 'w')" + _AFTER),
    Escape("os_system", "audit_hook", "marker", "os.system('touch $marker')" + _AFTER),
    Escape(
        "subprocess_run",
        "audit_hook",
        "marker",
        "import subprocess\nsubprocess.run(['touch', '$marker'])" + _AFTER,
    ),
    Escape(
        "multiprocessing_process",
        "audit_hook",
        "marker",
        "import multiprocessing\n"
        "p = multiprocessing.get_context('fork').Process(target=lambda: open('$marker', 'w'))\n"
        "p.start()\np.join()" + _AFTER,
    ),
    Escape(
        "posix_spawn",
        "audit_hook",
        "marker",
        "os.posix_spawn('/usr/bin/touch', ['touch', '$marker'], {})" + _AFTER,
    ),
    _seccomp(
        "posixsubprocess_fork_exec",
        "marker",
        "import _posixsubprocess, subprocess\n"
        "args = [b'/usr/bin/touch', b'$marker']\n"
        "_posixsubprocess.fork_exec(args, [args[0]], True, (), None, None, -1, -1, -1, -1, -1, -1,"
        " *os.pipe(), False, False, -1, None, None, None, -1, None, False)",  # CPython 3.11's signature
    ),
    _seccomp("native_fork", "marker", "if libc.fork() == 0:\n    open('$marker', 'w')"),
    _seccomp(
        "native_exec",
        "marker",
        "libc.execv(b'/usr/bin/touch', (ctypes.c_char_p * 3)(b'touch', b'$marker', None))",
    ),
    _seccomp(
        "raw_clone", "marker", "if libc.syscall($nr_clone, 17, 0, 0, 0, 0) == 0:\n    open('$marker', 'w')"
    ),
    Escape(
        "raw_clone3",
        "seccomp_errno",
        "marker",
        "args = (ctypes.c_uint64 * 11)(0, 0, 0, 0, 17)\n"
        "rc = libc.syscall($nr_clone3, ctypes.byref(args), ctypes.sizeof(args))\n"
        "if rc == 0:\n    open('$marker', 'w')\n"
        "print('DENIED', ctypes.get_errno()) if rc < 0 else None",
    ),
    _seccomp(
        "memfd_exec",
        "marker",
        "fd = os.memfd_create('x')\nos.write(fd, open('/usr/bin/touch', 'rb').read())\n"
        "os.execve(fd, ['touch', '$marker'], {})",
    ),
    _seccomp(
        "setsid_then_fork_outlives",
        "marker",
        "attempt(os.setsid)\n"
        "if libc.fork() == 0:\n    import time\n    time.sleep(3)\n    open('$marker', 'w')",
    ),
    _seccomp(
        "fork_from_a_thread",
        "marker",
        "import threading\n"
        "t = threading.Thread(target=lambda: libc.fork() == 0 and open('$marker', 'w'))\nt.start()\nt.join()",
    ),
    # ---- signals and other processes -----------------------------------------------------------
    Escape("kill_decoy", "audit_hook", "decoy", "os.kill($decoy, 9)" + _AFTER),
    _seccomp("native_kill_decoy", "decoy", "libc.kill($decoy, 9)"),
    _seccomp(
        "signal_every_process", "after", "libc.kill(-1, 0)"
    ),  # signal 0: a probe, harmless if let through
    _seccomp("tgkill_decoy", "decoy", "libc.syscall($nr_tgkill, $decoy, $decoy, 9)"),
    _seccomp(
        "pidfd_signal_decoy", "decoy", "import signal\nsignal.pidfd_send_signal(os.pidfd_open($decoy), 9)"
    ),
    _seccomp("ptrace_decoy", "decoy", "libc.ptrace(16, $decoy, 0, 0)"),
    _seccomp("signal_the_evaluator", "after", "libc.kill($parent, 15)"),
    _seccomp(
        "process_vm_readv_evaluator",
        "after",
        "buf = ctypes.create_string_buffer(64)\nlibc.syscall($nr_process_vm_readv, $parent, 0, 0, 0, 0, 0)",
    ),
    _seccomp("renice_the_evaluator", "after", "libc.setpriority(0, $parent, 19)"),
    # ---- namespaces, devices, kernel interfaces ------------------------------------------------
    _seccomp("unshare_user_namespace", "after", "libc.unshare(0x10000000 | 0x00020000)"),
    _seccomp(
        "setns_into_init",
        "after",
        "attempt(lambda: raw_open('/proc/1/ns/net', os.O_RDONLY))\nlibc.setns(0, 0)",
    ),
    _seccomp("mount_tmpfs", "after", "libc.mount(b'none', b'.', b'tmpfs', 0, None)"),
    _seccomp(
        "mknod_device", "after", "import stat\nos.mknod('null2', stat.S_IFCHR | 0o666, os.makedev(1, 3))"
    ),
    _seccomp("bpf_program", "after", "libc.syscall($nr_bpf, 5, 0, 0)"),
    _seccomp(
        "io_uring",
        "after",
        "params = ctypes.create_string_buffer(120)\nlibc.syscall($nr_io_uring_setup, 8, params)",
    ),
    _seccomp("keyctl_keyring", "after", "libc.syscall($nr_keyctl, 0, -3, 0)"),
    _seccomp(
        "perf_event_open",
        "after",
        "attr = ctypes.create_string_buffer(128)\nlibc.syscall($nr_perf_event_open, attr, 0, -1, -1, 0)",
    ),
    _seccomp(
        "raise_own_limits",
        "after",
        "import resource\nlibc.prlimit(0, resource.RLIMIT_AS, (ctypes.c_uint64 * 2)(2**62, 2**62), None)",
    ),
    _seccomp(
        "i386_system_call",
        "after",
        "import mmap\nm = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "m.write(bytes.fromhex('b802000000cd80c3'))  # mov eax, 2 (fork); int 0x80; ret\n"
        "fn = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))\nfn()",
        x86_64_only=True,
    ),
    _seccomp(
        "x32_system_call",
        "after",
        "import mmap\nm = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "m.write(bytes.fromhex('b839000040' + '0f05c3'))  # mov eax, x32 fork; syscall; ret\n"
        "fn = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))\nfn()",
        x86_64_only=True,
    ),
    # ---- shared memory and sockets -------------------------------------------------------------
    Escape(
        "dev_shm_file",
        "landlock",
        "shm",
        "attempt(lambda: raw_open('/dev/shm/$shm_name', os.O_CREAT | os.O_WRONLY))",
    ),
    Escape(
        "shm_open",
        "landlock",
        "shm",
        "from multiprocessing import shared_memory\n"
        "attempt(lambda: shared_memory.SharedMemory(name='$shm_name', create=True, size=4096))",
    ),
    _seccomp("sysv_shared_memory", "after", "libc.shmget(0, 4096, 0o1666)"),
    Escape(
        "tcp_connect",
        "audit_hook",
        "tcp",
        "import socket\nsocket.create_connection(('127.0.0.1', $tcp_port), timeout=2)" + _AFTER,
    ),
    _seccomp(
        "native_tcp_connect",
        "tcp",
        "fd = libc.socket(2, 1, 0)\n"
        "port = ($tcp_port).to_bytes(2, 'big')\n"
        "addr = (2).to_bytes(2, 'little') + port + bytes([127, 0, 0, 1]) + bytes(8)\n"
        "libc.connect(fd, addr, 16)",
    ),
    _seccomp(
        "unix_socket_connect",
        "unix",
        "path = b'$unix_path'\naddr = (1).to_bytes(2, 'little') + path + bytes(108 - len(path))\n"
        "fd = libc.socket(1, 1, 0)\nlibc.connect(fd, addr, len(addr))",
    ),
    _seccomp("netlink_socket", "after", "libc.socket(16, 3, 0)"),
    # ---- resource exhaustion of the whole run --------------------------------------------------
    Escape(
        "memory_in_threads",
        "rlimits",
        "memory",
        "import threading\nblocks = []\nthreading.stack_size(1 << 20)\n"
        "def grab():\n    for _ in range(8):\n        blocks.append(bytearray(32 << 20))\n"
        "threads = [threading.Thread(target=grab) for _ in range(4)]\n"
        "[t.start() for t in threads]\n[t.join() for t in threads]\nprint(len(blocks))",
        limits={"memory_bytes": 256 << 20},
    ),
    Escape(
        "cpu_in_threads",
        "rlimits",
        "cpu",
        "import threading\ndef spin():\n    while True:\n        pass\n"
        "for _ in range(3):\n    threading.Thread(target=spin, daemon=True).start()\nspin()",
        limits={"cpu_time_s": 1, "wall_time_s": 8},
    ),
    Escape(
        "thread_bomb",
        "rlimits",
        "bounded",
        "import threading, time\nn = 0\ntry:\n    while True:\n"
        "        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n        n += 1\n"
        "except (RuntimeError, MemoryError):\n    print('threads', n, flush=True)\nos._exit(0)",
        limits={"memory_bytes": 256 << 20, "wall_time_s": 8},
    ),
    Escape(
        "disk_many_files",
        "parent",
        "disk",
        "i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(bytes(512 << 10))\n    i += 1",
        limits={"disk_bytes": 8 << 20, "wall_time_s": 8},
    ),
    Escape(
        "disk_one_big_file",
        "rlimits",
        "disk",
        "open('big', 'wb').write(bytes(8 << 20))",
        limits={"file_bytes": 1 << 20},
    ),
    Escape("stdout_flood", "parent", "output", "while True:\n    sys.stdout.write('x' * 65536)"),
    Escape("stderr_flood", "parent", "output", "while True:\n    sys.stderr.write('y' * 65536)"),
    Escape(
        "report_pipe_flood",
        "launcher",
        "report",
        "chunk = b'layers\\tforged\\n' * 4096\nfor fd in range(3, 32):\n"
        "    try:\n        for _ in range(4096):\n            os.write(fd, chunk)\n"
        "    except OSError:\n        pass\n"
        "attempt(lambda: os.listdir('/proc/self/fd'))\nprint('done')",
    ),
    Escape("sleep_past_the_wall", "parent", "wall", "import time\ntime.sleep(60)", limits={"wall_time_s": 1}),
    # ---- tampering with the guard --------------------------------------------------------------
    _seccomp(
        "audit_hook_disabled_through_gc",
        "marker",
        "import gc\n"
        "for obj in gc.get_objects():\n"
        "    if getattr(obj, '__name__', '') == 'hook' and getattr(obj, '__closure__', None):\n"
        "        for cell in obj.__closure__:\n"
        "            if isinstance(cell.cell_contents, list):\n"
        "                cell.cell_contents[0] = True\n"
        "os.system('touch $marker')",
    ),
    _seccomp(
        "audit_hook_tables_emptied",
        "marker",
        "launcher = sys.modules['__main__']\nlauncher._REFUSED_EVENTS.clear()\n"
        "import subprocess\nsubprocess.run(['touch', '$marker'])",
    ),
    _seccomp(
        "fork_in_subinterpreter",
        "marker",
        "import _xxsubinterpreters as interpreters\n"
        "interpreters.run_string(interpreters.create(), 'import ctypes\\nif ctypes.CDLL(None).fork() == 0:\\n"
        '    open("$marker", "w")\')',
    ),
]
BY_NAME = {case.name: case for case in CASES}


def program(case: Escape, targets: dict[str, Any]) -> str:
    return PRELUDE + string.Template(case.code).substitute(targets)


def _other_run(settings: Any, secret: str) -> threading.Thread:
    """A concurrent run holding a secret in its own directory, as another request's program would."""
    from mathforge.evaluator.sandbox import SandboxLimits, run_program

    code = f"open('secret.txt', 'w').write({secret!r})\nimport time\ntime.sleep(4)"
    thread = threading.Thread(
        target=run_program,
        args=(code, SandboxLimits(wall_time_s=8)),
        kwargs={"settings": settings},
        daemon=True,
    )
    thread.start()
    return thread


def main() -> None:
    from dataclasses import asdict, replace

    from mathforge.evaluator.sandbox import SandboxLimits, SandboxSettings, run_program

    with open(sys.argv[1]) as spec_file:
        spec = json.load(spec_file)
    settings = SandboxSettings(work_root=spec["work_root"], library_paths=tuple(spec["library_paths"]))
    for name, targets in spec["cases"].items():
        case = BY_NAME[name]
        targets = dict(targets, parent=os.getpid())
        other = None
        if name == "read_another_run":
            other = _other_run(settings, spec["other_secret"])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                found = [
                    os.path.join(spec["work_root"], d, "secret.txt")
                    for d in os.listdir(spec["work_root"])
                    if os.path.exists(os.path.join(spec["work_root"], d, "secret.txt"))
                ]
                if found:
                    targets["other_run_file"] = found[0]
                    targets["other_run_main"] = os.path.join(os.path.dirname(found[0]), "main.py")
                    break
                time.sleep(0.02)
        limits = replace(SandboxLimits(wall_time_s=10, cpu_time_s=5, memory_bytes=512 << 20), **case.limits)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = run_program(program(case, targets), limits, settings=settings)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if other is not None:
            other.join()
        with open("/proc/self/oom_score_adj") as oom:
            oom_score_adj = oom.read().strip()
        record = dict(
            asdict(result), evaluator_rss_growth_kib=rss_after - rss_before, oom_score_adj=oom_score_adj
        )
        print(json.dumps({name: record}), flush=True)  # line by line: a case that kills us still names itself
    for name, code in spec.get("programs", {}).items():
        print(
            json.dumps({name: asdict(run_program(code, SandboxLimits(wall_time_s=30), settings=settings))}),
            flush=True,
        )


if __name__ == "__main__":
    main()

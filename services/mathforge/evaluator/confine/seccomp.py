"""A seccomp filter, assembled here as classic BPF and installed with prctl: the program may not
start processes or execute files, open sockets, trace or signal other processes, reach them
through pidfds or process_vm, create devices, mount, change namespaces, load BPF, use io_uring,
keys or perf, raise its own limits, use System V shared memory, or change metadata by path.
A refused call kills the whole process with SIGSYS (SECCOMP_RET_KILL_PROCESS), which the parent
reads from the exit status; nothing the program does can turn that into another verdict.

    seccomp.install(own_pid=os.getpid())     # after PR_SET_NO_NEW_PRIVS; raises SeccompError
"""

from __future__ import annotations

import ctypes
import errno as errnos
import os

from mathforge.evaluator.confine.syscalls import AUDIT_ARCH, TABLES, X32_SYSCALL_BIT, machine

_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_RET_KILL_PROCESS, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_NR, _ARCH = 0, 4
CLONE_THREAD = 0x00010000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
CLONE_NEW_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
CLONE_NEW_NAMESPACES |= 0x20000000 | 0x40000000 | 0x00000080

# Refused outright: each has no use in a program-of-thought answer and is how a program would
# leave its confinement or reach another process.
KILLED = (
    "fork", "vfork", "execve", "execveat",  # new processes and programs
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",  # other processes' memory
    "pidfd_open", "pidfd_send_signal", "pidfd_getfd", "tkill",  # signals outside the checks below
    "socket", "socketpair",  # no network, no UNIX or netlink sockets
    "mknod", "mknodat", "mount", "umount2", "pivot_root", "chroot", "setns", "unshare",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "bpf", "io_uring_setup", "io_uring_enter", "io_uring_register", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key",
    "setrlimit",  # prlimit64 below may only read
    "shmget", "shmat", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl",  # System V IPC
    "semget", "semop", "semtimedop", "semctl",
    "memfd_create", "memfd_secret",
    "open_by_handle_at", "name_to_handle_at",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "iopl", "ioperm", "uselib",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
    "vhangup", "lookup_dcookie", "fanotify_init", "move_pages", "migrate_pages",
    "process_madvise", "process_mrelease",
)  # fmt: skip
# Landlock does not cover metadata changes: by path they are refused with EPERM (a program that
# copies a file with shutil gets an ordinary PermissionError); by descriptor they touch only
# files Landlock let it open.
EPERM_CALLS = (
    "chmod", "fchmodat", "fchmodat2", "chown", "lchown", "fchownat", "utime", "utimes",
    "futimesat", "utimensat", "setxattr", "lsetxattr", "removexattr", "lremovexattr",
)  # fmt: skip
# Allowed only when the first argument is this process (or 0, "myself").
SELF_ONLY = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
SELF_OR_ZERO = ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr")
SECOND_ZERO = ("setpriority", "ioprio_set")  # (which, who = 0: the caller)


class SeccompError(OSError):
    """The filter could not be installed (no seccomp in this kernel, unknown architecture...)."""


def _insn(
    code: int, k: int = 0, jt: int | str = 0, jf: int | str = 0
) -> tuple[int, int, int | str, int | str]:
    """One BPF instruction; a jump target is an offset or the name of one of the final returns."""
    return (code, k, jt, jf)


def _arg(index: int, high: bool = False) -> int:
    """Offset of an argument's low (or high) 32 bits in struct seccomp_data (little endian)."""
    return 16 + 8 * index + (4 if high else 0)


def _program(arch: str, own_pid: int) -> list[tuple[int, int, int | str, int | str]]:
    table = TABLES[arch]
    code = [_insn(_LD_ABS, _ARCH), _insn(_JEQ, AUDIT_ARCH[arch], 0, "kill"), _insn(_LD_ABS, _NR)]
    if arch == "x86_64":
        code.append(_insn(_JGE, X32_SYSCALL_BIT, "kill", 0))
    code += [_insn(_JEQ, table[name], "kill", 0) for name in KILLED if name in table]
    code += [_insn(_JEQ, table[name], "eperm", 0) for name in EPERM_CALLS if name in table]
    # clone3 passes its flags in memory the filter cannot read: ENOSYS makes glibc start threads
    # with clone, whose flags it can.
    code.append(_insn(_JEQ, table["clone3"], "enosys", 0))

    def guarded(name: str, body: list[tuple[int, int, int | str, int | str]]) -> None:
        code.append(_insn(_JEQ, table[name], 0, len(body)))
        code.extend(body)

    # clone: only threads of this process, in its namespaces.
    guarded("clone", [_insn(_LD_ABS, _arg(0)), _insn(_JSET, CLONE_THREAD, 0, "kill"),
                      _insn(_JSET, CLONE_NEW_NAMESPACES, "kill", "allow")])  # fmt: skip
    for name in SELF_ONLY:
        guarded(name, [_insn(_LD_ABS, _arg(0)), _insn(_JEQ, own_pid, "allow", "kill")])
    for name in SELF_OR_ZERO:
        guarded(
            name, [_insn(_LD_ABS, _arg(0)), _insn(_JEQ, 0, "allow", 0), _insn(_JEQ, own_pid, "allow", "kill")]
        )
    for name in SECOND_ZERO:
        guarded(name, [_insn(_LD_ABS, _arg(1)), _insn(_JEQ, 0, "allow", "kill")])
    # prlimit64(pid, resource, new, old): reading is fine, setting is not.
    guarded("prlimit64", [_insn(_LD_ABS, _arg(2)), _insn(_JEQ, 0, 0, "kill"),
                          _insn(_LD_ABS, _arg(2, high=True)), _insn(_JEQ, 0, "allow", "kill")])  # fmt: skip
    labels = {"allow": _RET_ALLOW, "kill": _RET_KILL_PROCESS, "eperm": _RET_ERRNO | errnos.EPERM,
              "enosys": _RET_ERRNO | errnos.ENOSYS}  # fmt: skip
    return code + [_insn(_RET, value) for value in labels.values()]


def _assemble(code: list[tuple[int, int, int | str, int | str]]) -> bytes:
    labels = {name: len(code) - 4 + i for i, name in enumerate(("allow", "kill", "eperm", "enosys"))}
    out = bytearray()
    for at, (op, k, jt, jf) in enumerate(code):
        jumps = []
        for target in (jt, jf):
            offset = labels[target] - at - 1 if isinstance(target, str) else target
            if not 0 <= offset <= 255:
                raise SeccompError(0, f"seccomp filter jump of {offset} at instruction {at} does not fit")
            jumps.append(offset)
        out += op.to_bytes(2, "little") + bytes(jumps) + k.to_bytes(4, "little")
    return bytes(out)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _prctl(option: int, arg2: int, arg3: int, what: str) -> None:
    if _libc.prctl(option, arg2, arg3, 0, 0) != 0:
        err = ctypes.get_errno()
        raise SeccompError(err, f"{what}: {os.strerror(err)}")


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: no later exec can gain privileges (setuid files, file capabilities)."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, "prctl(PR_SET_NO_NEW_PRIVS)")


def install(own_pid: int) -> int:
    """Installs the filter on the calling thread (and threads it starts later); returns its length.
    Needs NO_NEW_PRIVS first. `own_pid` is the one process signals may go to."""
    arch = machine()
    if not arch:
        raise SeccompError(0, f"no system-call table for this architecture ({os.uname().machine})")
    program = _assemble(_program(arch, own_pid))
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_char_p))
    _prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), "prctl(PR_SET_SECCOMP)")
    return len(program) // 8

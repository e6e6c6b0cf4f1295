"""System-call numbers and audit architecture tokens for the architectures the seccomp filter
supports (from the kernel's uapi headers: asm/unistd_64.h for x86_64, asm-generic/unistd.h for
aarch64). Names missing on an architecture (aarch64 has no fork or chmod) are left out."""

from __future__ import annotations

import os

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# x86_64 also accepts x32 system calls (numbers with this bit set); the filter refuses them all.
X32_SYSCALL_BIT = 0x40000000

_X86_64 = {
    "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone": 56, "clone3": 435,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_open": 434,
    "pidfd_send_signal": 424, "pidfd_getfd": 438, "kcmp": 312, "mknod": 133, "mknodat": 259,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "setns": 308, "unshare": 272,
    "bpf": 321, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "keyctl": 250, "add_key": 248, "request_key": 249, "perf_event_open": 298, "socket": 41,
    "socketpair": 53, "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297, "setrlimit": 160, "prlimit64": 302, "shmget": 29, "shmat": 30,
    "shmctl": 31, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "semget": 64,
    "semop": 65, "semtimedop": 220, "semctl": 66, "memfd_create": 319, "memfd_secret": 447,
    "userfaultfd": 323, "open_by_handle_at": 304, "name_to_handle_at": 303, "kexec_load": 246,
    "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163, "quotactl": 179, "quotactl_fd": 443,
    "syslog": 103, "iopl": 172, "ioperm": 173, "settimeofday": 164, "clock_settime": 227,
    "clock_adjtime": 305, "adjtimex": 159, "sethostname": 170, "setdomainname": 171, "vhangup": 153,
    "lookup_dcookie": 212, "fanotify_init": 300, "move_pages": 279, "migrate_pages": 256,
    "process_madvise": 440, "process_mrelease": 448, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "move_mount": 429, "open_tree": 428, "mount_setattr": 442, "uselib": 134,
    "chmod": 90, "fchmodat": 268, "fchmodat2": 452, "chown": 92, "lchown": 94, "fchownat": 260,
    "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280, "setxattr": 188,
    "lsetxattr": 189, "removexattr": 197, "lremovexattr": 198, "sched_setaffinity": 203,
    "sched_setscheduler": 144, "sched_setparam": 142, "sched_setattr": 314, "setpriority": 141,
    "ioprio_set": 251,
}  # fmt: skip

_AARCH64 = {
    "execve": 221, "execveat": 281, "clone": 220, "clone3": 435, "ptrace": 117,
    "process_vm_readv": 270, "process_vm_writev": 271, "pidfd_open": 434, "pidfd_send_signal": 424,
    "pidfd_getfd": 438, "kcmp": 272, "mknodat": 33, "mount": 40, "umount2": 39, "pivot_root": 41,
    "chroot": 51, "setns": 268, "unshare": 97, "bpf": 280, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 219, "add_key": 217,
    "request_key": 218, "perf_event_open": 241, "socket": 198, "socketpair": 199, "kill": 129,
    "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "setrlimit": 164,
    "prlimit64": 261, "shmget": 194, "shmat": 196, "shmctl": 195, "msgget": 186, "msgsnd": 189,
    "msgrcv": 188, "msgctl": 187, "semget": 190, "semop": 193, "semtimedop": 192, "semctl": 191,
    "memfd_create": 279, "memfd_secret": 447, "userfaultfd": 282, "open_by_handle_at": 265,
    "name_to_handle_at": 264, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
    "finit_module": 273, "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225,
    "acct": 89, "quotactl": 60, "quotactl_fd": 443, "syslog": 116, "settimeofday": 170,
    "clock_settime": 112, "clock_adjtime": 266, "adjtimex": 171, "sethostname": 161,
    "setdomainname": 162, "vhangup": 58, "lookup_dcookie": 18, "fanotify_init": 262,
    "move_pages": 239, "migrate_pages": 238, "process_madvise": 440, "process_mrelease": 448,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429,
    "open_tree": 428, "mount_setattr": 442, "fchmodat": 53, "fchmodat2": 452, "fchownat": 54,
    "utimensat": 88, "setxattr": 5, "lsetxattr": 6, "removexattr": 14, "lremovexattr": 15,
    "sched_setaffinity": 122, "sched_setscheduler": 119, "sched_setparam": 118,
    "sched_setattr": 274, "setpriority": 140, "ioprio_set": 30,
}  # fmt: skip

TABLES = {"x86_64": _X86_64, "aarch64": _AARCH64}
# Landlock's calls have one number on every architecture.
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446


def machine() -> str:
    """This machine's architecture as the tables name it ("x86_64", "aarch64"), or "" if unknown."""
    name = os.uname().machine.lower()
    name = {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)
    return name if name in TABLES else ""

"""Process-level steps of confinement that are neither Landlock nor seccomp: a private network
namespace, dropping root's uid or its capabilities, and making a process non-dumpable.

    process.set_undumpable()      # the evaluator: same-uid processes cannot read its /proc files
"""

from __future__ import annotations

import ctypes
import os

_PR_SET_DUMPABLE, _PR_GET_DUMPABLE, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 4, 3, 47, 4
_CLONE_NEWNET = 0x40000000
_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def set_undumpable() -> None:
    """PR_SET_DUMPABLE 0: /proc/<pid>/environ, mem, maps and fd of this process become root's, so
    a process of the same uid (a program that got out of its sandbox) cannot read its secrets; no
    core dumps and no ptrace attach by that uid either."""
    _check(_libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE, 0)")


def is_dumpable() -> bool:
    return bool(_libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))


def new_network_namespace() -> None:
    """A network namespace of its own with no interface up (root only: CAP_SYS_ADMIN)."""
    _check(_libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")


def drop_to_uid(uid: int) -> None:
    """From root to `uid` (its own group, no supplementary groups); capabilities go with root."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities() -> None:
    """Empties this thread's effective, permitted, inheritable and ambient capability sets: uid 0
    stays uid 0 but can no longer override file permissions, kill other users' processes, raise
    hard limits or load modules. Threads started later inherit the empty sets."""
    _check(
        _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)"
    )
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset(empty)")

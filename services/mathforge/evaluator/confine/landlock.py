"""Landlock through its three system calls (ctypes): the calling process, and every thread it
starts later, may from now on read only beneath the given read roots and write only beneath the
given write roots; on ABI 4 and later it can neither bind nor connect TCP ports, and on ABI 6 and
later it can neither signal nor reach abstract UNIX sockets of processes outside its domain.

    abi = landlock.restrict(read=["/usr/lib"], write=["/tmp/run-1"])   # raises LandlockError

The rights handled grow with the kernel's ABI; a right the kernel does not know stays unhandled,
which is what `restrict` returns the ABI for (docs/security.md).
"""

from __future__ import annotations

import ctypes
import os
import stat

from mathforge.evaluator.confine.syscalls import (
    LANDLOCK_ADD_RULE,
    LANDLOCK_CREATE_RULESET,
    LANDLOCK_RESTRICT_SELF,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # the sandbox launcher imports this module on every run: no typing at run time
    from collections.abc import Iterable

_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

# File-system rights, by the ABI that introduced them.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1
# Rights that make sense on a file rather than a directory (the kernel refuses the others there).
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

READ_ONLY = READ_FILE | READ_DIR
# Everything a program needs inside its own directory; never devices, sockets or execution.
READ_WRITE = READ_ONLY | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_FIFO
READ_WRITE |= MAKE_SYM | REFER | TRUNCATE


class LandlockError(OSError):
    """Landlock is missing, disabled, or refused a rule; the message says which."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]  # fmt: skip


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(*args: object) -> int:
    result = _libc.syscall(*args)
    if result < 0:
        errno = ctypes.get_errno()
        raise LandlockError(errno, os.strerror(errno))
    return int(result)


def abi_version() -> int:
    """The kernel's Landlock ABI (0 when Landlock is not built in or not enabled at boot)."""
    try:
        return _syscall(ctypes.c_long(LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0),
                        ctypes.c_uint32(_CREATE_RULESET_VERSION))  # fmt: skip
    except LandlockError:
        return 0


def _handled(abi: int) -> _RulesetAttr:
    fs = _FS_BY_ABI.get(abi, _FS_BY_ABI[5])
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if abi >= 6 else 0
    return _RulesetAttr(fs, net, scoped)


def _add_path(ruleset_fd: int, path: str, rights: int, handled_fs: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # an optional root (/lib64 on aarch64) that this machine lacks
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(rights & handled_fs, fd)
        try:
            _syscall(ctypes.c_long(LANDLOCK_ADD_RULE), ctypes.c_int(ruleset_fd),
                     ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0))  # fmt: skip
        except LandlockError as exc:
            raise LandlockError(exc.errno, f"landlock_add_rule({path!r}): {exc.strerror}") from None
    finally:
        os.close(fd)


def restrict(read: Iterable[str], write: Iterable[str]) -> int:
    """Confines the calling thread (and threads it starts later) to these roots; returns the ABI.

    Call it while the process has one thread: Landlock binds only the caller and its future
    threads. Needs NO_NEW_PRIVS (or CAP_SYS_ADMIN) first, as the kernel requires."""
    abi = abi_version()
    if abi < 1:
        raise LandlockError(0, "Landlock is not available in this kernel (landlock_create_ruleset "
                               "reports no ABI); is 'landlock' in the lsm= boot parameter?")  # fmt: skip
    attr = _handled(abi)
    ruleset_fd = _syscall(ctypes.c_long(LANDLOCK_CREATE_RULESET), ctypes.byref(attr),
                          ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))  # fmt: skip
    try:
        for path in read:
            _add_path(ruleset_fd, path, READ_ONLY, attr.handled_access_fs)
        for path in write:
            _add_path(ruleset_fd, path, READ_WRITE, attr.handled_access_fs)
        _syscall(ctypes.c_long(LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset_fd), ctypes.c_uint32(0))
    finally:
        os.close(ruleset_fd)
    return abi

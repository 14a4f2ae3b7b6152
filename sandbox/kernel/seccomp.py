"""The only place sbx installs seccomp filters: prctl(2), seccomp(2) and /proc status.

Kept import-light (ctypes only) because it sits on the ``sbx run`` hot path.
"""
from __future__ import annotations

import ctypes
import os

PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_GET_SECCOMP = 21
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8

_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "i386": 354, "i686": 354}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int


class SeccompError(OSError):
    pass


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def native_arch() -> str:
    """The ABI of this process (the ``native`` arch of profiles)."""
    m = os.uname().machine
    return {"amd64": "x86_64", "arm64": "aarch64", "i686": "i386"}.get(m, m)


def _sys_seccomp() -> int:
    try:
        return _SYS_SECCOMP[os.uname().machine]
    except KeyError as err:
        raise SeccompError(0, f"seccomp(2) number unknown for {os.uname().machine}") from err


def set_no_new_privs() -> None:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise SeccompError(e, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(e)}")


class PreparedFilter:
    """A filter laid out in C memory ahead of time, so installing it in a
    freshly forked child needs no allocation: one prctl and one syscall."""

    def __init__(self, program: bytes, flags: int = 0):
        if not program or len(program) % 8 or len(program) // 8 > 4096:
            raise SeccompError(0, f"invalid filter of {len(program)} bytes")
        self._buf = ctypes.create_string_buffer(program, len(program))
        self._fprog = _Fprog(len(program) // 8, ctypes.addressof(self._buf))
        self._ptr = ctypes.byref(self._fprog)
        self.flags = flags
        self._nr = _sys_seccomp()

    def install(self) -> int:
        """no_new_privs, then seccomp(SET_MODE_FILTER). Returns the listener fd with
        NEW_LISTENER, else 0. Raises SeccompError."""
        set_no_new_privs()
        rc = _libc.syscall(self._nr, SECCOMP_SET_MODE_FILTER, self.flags, self._ptr)
        if rc < 0:
            e = ctypes.get_errno()
            raise SeccompError(e, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(e)}")
        return rc


def install_filter(program: bytes, flags: int = 0) -> int:
    return PreparedFilter(program, flags).install()


def action_available(action: int) -> bool:
    """SECCOMP_GET_ACTION_AVAIL for one return value."""
    val = ctypes.c_uint32(action)
    rc = _libc.syscall(_sys_seccomp(), SECCOMP_GET_ACTION_AVAIL, 0, ctypes.byref(val))
    return rc == 0


def proc_status(pid: int | str = "self", proc: str = "/proc") -> dict[str, str]:
    """Seccomp-related lines of /proc/PID/status (Seccomp, Seccomp_filters, NoNewPrivs)."""
    out = {}
    with open(f"{proc}/{pid}/status") as fh:
        for line in fh:
            key, _, val = line.partition(":")
            if key in ("Name", "Seccomp", "Seccomp_filters", "NoNewPrivs", "PPid"):
                out[key] = val.strip()
    return out


NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1


class _SockaddrNl(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("pad", ctypes.c_ushort),
                ("pid", ctypes.c_uint32), ("groups", ctypes.c_uint32)]


def open_audit_readlog() -> int:
    """A non-blocking netlink socket subscribed to the audit read-log group, or -1.

    Raw libc calls on purpose: the ``socket`` module's import costs more than
    the whole fast path of ``sbx run``.  ``sandbox.kernel.audit`` adopts the fd
    to parse records.  Needs CAP_AUDIT_READ; returns -1 without it.
    """
    fd = _libc.socket(16, 3 | 0o4000 | 0o2000000, NETLINK_AUDIT)   # AF_NETLINK, RAW|NONBLOCK|CLOEXEC
    if fd < 0:
        return -1
    size = ctypes.c_int(32 << 20)     # about 40,000 unread records
    if _libc.setsockopt(fd, 1, 33, ctypes.byref(size), 4) != 0:     # SO_RCVBUFFORCE
        _libc.setsockopt(fd, 1, 8, ctypes.byref(size), 4)           # SO_RCVBUF
    addr = _SockaddrNl(16, 0, 0, 1 << (AUDIT_NLGRP_READLOG - 1))
    if _libc.bind(fd, ctypes.byref(addr), ctypes.sizeof(addr)) != 0:
        os.close(fd)
        return -1
    return fd

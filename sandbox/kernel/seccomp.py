"""The only place sbx installs seccomp filters: prctl(2), seccomp(2) and /proc status.

It sits on the ``sbx run`` hot path, so it calls libc through the C module
``_ctypes`` directly: the ``ctypes`` package (plus struct, functools, enum via
signal/socket) costs more to import than the rest of a cached ``sbx run``.
"""
from __future__ import annotations

import _ctypes
import _socket
import _struct
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


class _Long(_ctypes._SimpleCData):
    _type_ = "l"


class _Char(_ctypes._SimpleCData):
    _type_ = "c"


class _Libc:
    _handle = _ctypes.dlopen(None, os.RTLD_NOW)


class _Func(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Long


_syscall = _Func(("syscall", _Libc))
_prctl = _Func(("prctl", _Libc))


def _call(fn, *args: int) -> int:
    """Call a libc function with every argument as a C long (pointers included)."""
    return fn(*[_Long(a) for a in args])


def _buffer(data: bytes):
    """A C copy of *data* that stays put; returns (owner, address)."""
    array = type("_Buf", (_ctypes.Array,), {"_type_": _Char, "_length_": max(1, len(data))})
    buf = array.from_buffer_copy(data.ljust(1, b"\0"))
    return buf, _ctypes.addressof(buf)


class SeccompError(OSError):
    pass


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
    if _call(_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        e = _ctypes.get_errno()
        raise SeccompError(e, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(e)}")


class PreparedFilter:
    """A filter laid out in C memory ahead of time, so installing it in a
    freshly forked child needs no allocation: one prctl and one syscall."""

    def __init__(self, program: bytes, flags: int = 0):
        if not program or len(program) % 8 or len(program) // 8 > 4096:
            raise SeccompError(0, f"invalid filter of {len(program)} bytes")
        self._buf, addr = _buffer(program)
        # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
        self._fprog, self._ptr = _buffer(_struct.pack("=H6xQ", len(program) // 8, addr))
        self.flags = flags
        self._nr = _sys_seccomp()

    def install(self) -> int:
        """no_new_privs, then seccomp(SET_MODE_FILTER). Returns the listener fd with
        NEW_LISTENER, else 0. Raises SeccompError."""
        set_no_new_privs()
        rc = _call(_syscall, self._nr, SECCOMP_SET_MODE_FILTER, self.flags, self._ptr)
        if rc < 0:
            e = _ctypes.get_errno()
            raise SeccompError(e, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(e)}")
        return rc


def install_filter(program: bytes, flags: int = 0) -> int:
    return PreparedFilter(program, flags).install()


def action_available(action: int) -> bool:
    """SECCOMP_GET_ACTION_AVAIL for one return value."""
    _owner, addr = _buffer(_struct.pack("=I", action))
    return _call(_syscall, _sys_seccomp(), SECCOMP_GET_ACTION_AVAIL, 0, addr) == 0


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


def open_audit_readlog() -> int:
    """A non-blocking netlink socket subscribed to the audit read-log group, or -1.

    The C module ``_socket`` on purpose: the ``socket`` module's import costs more than
    the whole fast path of ``sbx run``.  ``sandbox.kernel.audit`` adopts the fd
    to parse records.  Needs CAP_AUDIT_READ; returns -1 without it.
    """
    try:
        sock = _socket.socket(_socket.AF_NETLINK,
                              _socket.SOCK_RAW | _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC,
                              NETLINK_AUDIT)
    except OSError:
        return -1
    try:
        try:
            sock.setsockopt(_socket.SOL_SOCKET, 33, 32 << 20)   # SO_RCVBUFFORCE: ~40,000 records
        except OSError:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 32 << 20)
        sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
    except OSError:
        sock.close()
        return -1
    return sock.detach()

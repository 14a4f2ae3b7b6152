"""Read a notified task's path and socket-address arguments while it waits (files, ports).

A seccomp user notification holds the task inside its syscall until sbx
answers, so its memory, its working directory and its descriptors are those
the syscall will use.  ``FileWatcher`` reads, for each file syscall of
``bpf_filters.syscalls.arguments.PATH_ARGS`` and for bind/connect:
- the path strings, with process_vm_readv (one syscall; the same ptrace
  access check as /proc/PID/mem), up to PATH_MAX bytes;
- openat2's flags from its struct open_how;
- the directory a relative path starts from: /proc/TID/cwd, or
  /proc/TID/fd/N for a dirfd;
- for bind and connect, the address family and port, and whether the socket
  is a stream socket (a duplicate of it taken with pidfd_getfd).
Then it asks SECCOMP_IOCTL_NOTIF_ID_VALID: a notification that is no longer
valid means the task died meanwhile and its pid may already name another
process, so what was read is thrown away (seccomp_unotify(2)).

The notification comes before the syscall runs, so its result is unknown:
a call is recorded when it can succeed (the log's ``may_succeed``, from
``sandbox.trace.access``: the file exists, or its directory does for a
create), where the eBPF recorder sees the result itself.  The log is the
trace's; this module only reads the task.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

from bpf_filters import syscalls
from bpf_filters.syscalls.arguments import PATH_ARGS

from . import libc

# _IOW('!', 2, __u64)
SECCOMP_IOCTL_NOTIF_ID_VALID = 0x40000000 | (8 << 16) | (0x21 << 8) | 2
PATH_MAX = 4096
AT_FDCWD = -100
SUN_PATH = 108
_PAGE = 4096
_IOVEC = struct.Struct("=QQ")
_ID = struct.Struct("=Q")
_SOCKADDR_HEAD = struct.Struct("=H2s")       # family (host order), port (network order)


class _Buffers:
    """process_vm_readv's buffers, made once (the notify loop is single-threaded)."""
    data = local = remote = None


def read_memory(pid: int, addr: int, size: int) -> bytes:
    """Up to *size* (at most a page) bytes of *pid*'s memory at *addr*; fewer where
    it stops being mapped."""
    b = _Buffers
    if b.data is None:
        b.data = libc.Buffer(size=_PAGE)
        b.local, b.remote = libc.Buffer(size=_IOVEC.size), libc.Buffer(size=_IOVEC.size)
    size = min(size, _PAGE)
    b.local.write(_IOVEC.pack(b.data.addr, size))
    b.remote.write(_IOVEC.pack(addr, size))
    n = libc.call("process_vm_readv", pid, b.local.addr, 1, b.remote.addr, 1, 0)
    return b.data.read(n) if n > 0 else b""


def read_string(pid: int, addr: int, limit: int = PATH_MAX) -> bytes | None:
    """The NUL-terminated string at *addr*, None if unreadable or longer than *limit*."""
    if not addr:
        return None
    out = b""
    while len(out) < limit:
        chunk = min(_PAGE - (addr + len(out)) % _PAGE, limit - len(out))
        data = read_memory(pid, addr + len(out), chunk)
        end = data.find(b"\0")
        if end >= 0:
            return out + data[:end]
        if len(data) < chunk:
            return None
        out += data
    return None


def id_valid(listener: int, nid: int) -> bool:
    """Is notification *nid* still pending (its task alive and waiting)?"""
    try:
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, _ID.pack(nid))
    except OSError as err:
        if err.errno == errno.ENOENT:
            return False
        raise
    return True


def base_dir(tid: int, dirfd: int) -> bytes | None:
    """The directory a relative path of *tid* given with *dirfd* starts from."""
    link = f"/proc/{tid}/cwd" if dirfd == AT_FDCWD else f"/proc/{tid}/fd/{dirfd}"
    try:
        target = os.readlink(os.fsencode(link))
    except OSError:
        return None
    return target if target.startswith(b"/") else None


def _absolute(tid: int, dirfd: int | None, path: bytes | None) -> bytes | None:
    if path is None or path.startswith(b"/"):
        return path
    base = base_dir(tid, AT_FDCWD if dirfd is None else dirfd)
    if base is None:
        return None
    return base if not path else base.rstrip(b"/") + b"/" + path


def _signed32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >> 31 else value


class FileWatcher:
    """Hooks for ``notify.run_supervised(inspect=...)``: each reads one call's
    paths or address into *log* while the task waits."""

    def __init__(self, log, arch: str = "x86_64"):
        """*log*: a ``trace.access.FileLog`` (add, add_port, may_succeed, unreadable)."""
        self.log = log
        table, audit = syscalls.table(arch), syscalls.AUDIT_ARCH[arch]
        self.hooks = {}
        for name in PATH_ARGS:
            nr = table.nr(name)
            if nr is not None:
                self.hooks[(audit, nr)] = self._file_call(name)
        for name in ("bind", "connect"):
            self.hooks[(audit, table.nr(name))] = self._socket_call(name)

    def _file_call(self, name: str):
        d1, p1, d2, p2, flag_arg = PATH_ARGS[name]
        log = self.log

        def hook(listener: int, nid: int, tid: int, args: tuple[int, ...]) -> None:
            try:
                read(listener, nid, tid, args)
            except OSError:             # the task vanished under us, or /proc said no
                log.unreadable += 1

        def read(listener: int, nid: int, tid: int, args: tuple[int, ...]) -> None:
            raw1 = read_string(tid, args[p1])
            raw2 = read_string(tid, args[p2]) if p2 is not None else None
            if flag_arg == "how":
                head = read_memory(tid, args[2], 8)
                flags = _ID.unpack(head)[0] if len(head) == 8 else 0
            elif isinstance(flag_arg, tuple):
                flags = flag_arg[0]
            else:
                flags = 0 if flag_arg is None else args[flag_arg]
            path = _absolute(tid, None if d1 is None else _signed32(args[d1]), raw1)
            path2 = _absolute(tid, None if d2 is None else _signed32(args[d2]), raw2)
            if not id_valid(listener, nid):
                return
            if path is None or (p2 is not None and path2 is None):
                log.unreadable += 1
            elif log.may_succeed(name, flags, path, path2):
                log.add(name, flags, path, path2)
        return hook

    def _socket_call(self, name: str):
        log = self.log

        def hook(listener: int, nid: int, tid: int, args: tuple[int, ...]) -> None:
            try:
                read(listener, nid, tid, args)
            except OSError:
                log.unreadable += 1

        def read(listener: int, nid: int, tid: int, args: tuple[int, ...]) -> None:
            head = read_memory(tid, args[1], _SOCKADDR_HEAD.size)
            if len(head) < _SOCKADDR_HEAD.size:
                return
            family, port = _SOCKADDR_HEAD.unpack(head)
            if family == socket.AF_UNIX and name == "bind":
                raw = read_string(tid, args[1] + 2, SUN_PATH)
                if not raw:             # an abstract socket (or unreadable): no file
                    return
                path = _absolute(tid, None, raw)
                if id_valid(listener, nid) and path is not None and \
                        log.may_succeed("bind", 0, path):
                    log.add("bind", 0, path)
            elif family in (socket.AF_INET, socket.AF_INET6):
                stream = _is_stream(tid, _signed32(args[0]))
                if id_valid(listener, nid) and stream:
                    log.add_port(name, int.from_bytes(port, "big"))
        return hook


def _is_stream(tid: int, fd: int) -> bool:
    """Is descriptor *fd* of *tid* a stream socket?  Landlock's TCP rules apply to
    no other.  Asked of a duplicate of it (pidfd_getfd, the same access check as
    reading its memory)."""
    try:
        with open(f"/proc/{tid}/status", "rb") as fh:
            tgid = next(int(line.split()[1]) for line in fh if line.startswith(b"Tgid:"))
        pidfd = os.pidfd_open(tgid)
    except (OSError, StopIteration, ValueError):
        return False
    try:
        dup = libc.syscall("pidfd_getfd", pidfd, fd, 0)
    finally:
        os.close(pidfd)
    if dup < 0:
        return False
    try:
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return False
    with sock:
        return sock.type == socket.SOCK_STREAM


__all__ = ["FileWatcher", "base_dir", "id_valid", "read_memory", "read_string"]

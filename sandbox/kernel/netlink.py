"""Open the audit netlink socket that carries seccomp and Landlock denial records (the one opener).

Import-light (the C module ``_socket``): ``sbx run`` opens it before fork,
on its hot path, whenever it may have to explain a denial. ``sandbox.kernel.audit``
adopts the descriptor to parse records.
"""
from __future__ import annotations

import _socket
import _struct
import errno
import os

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
SO_RCVBUFFORCE = 33
# The receive buffer (the kernel doubles it; memory is charged only while
# records wait). One record costs ~830 bytes of it, so 8 MiB holds ~20,000
# records, ~75 ms of a 260,000/s flood; with a Python consumer parsing at the
# same time 5 of 10 floods of 100,000 lost records at 8 MiB, 0 of 10 at 32.
RCVBUF_BYTES = 32 << 20


# include/linux/proc_ns.h: the initial namespaces have fixed inode numbers
PROC_NET_INIT_INO = 0xEFFFFFF9


def in_initial_netns() -> bool:
    """The kernel multicasts audit records in the initial network namespace only."""
    try:
        return os.stat("/proc/self/ns/net").st_ino == PROC_NET_INIT_INO
    except OSError:
        return True  # cannot tell (no /proc): binding will show


def _audit_socket(flags: int = 0):
    """A close-on-exec NETLINK_AUDIT socket (every audit socket sbx opens is made here)."""
    try:
        return _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC | flags,
                              NETLINK_AUDIT)
    except OSError as err:
        raise OSError(err.errno, f"audit netlink socket: {os.strerror(err.errno or 0)}") from err


def open_audit_readlog(rcvbuf: int = RCVBUF_BYTES) -> int:
    """A non-blocking, close-on-exec netlink socket subscribed to the audit
    read-log group; returns its fd. Raises OSError whose message says why not
    (needs CAP_AUDIT_READ; the initial network namespace only)."""
    if not in_initial_netns():
        raise OSError(errno.ENOPROTOOPT, "audit records are multicast in the initial network "
                                         "namespace only, and sbx runs in another one")
    sock = _audit_socket(_socket.SOCK_NONBLOCK)
    try:
        try:
            sock.setsockopt(_socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:  # without CAP_NET_ADMIN: capped at net.core.rmem_max
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
    except OSError as err:
        sock.close()
        why = f"audit netlink: {os.strerror(err.errno or 0)}"
        if err.errno in (errno.EPERM, errno.EACCES):
            from .caps import why_lacking
            why = why_lacking(("AUDIT_READ",), "the audit socket") or \
                why + " (reading audit records needs CAP_AUDIT_READ)"
        raise OSError(err.errno, why) from err
    return sock.detach()


# the record types of a denial (include/uapi/linux/audit.h): AUDIT_SECCOMP,
# AUDIT_LANDLOCK_ACCESS, AUDIT_LANDLOCK_DOMAIN
DENIAL_TYPES = frozenset((1326, 1423, 1424))


def read_pending(fd: int, wait: float) -> tuple[bool, list[bytes]]:
    """(whether a denial record is among them, the datagrams) the read-log socket
    *fd* holds, after waiting up to *wait* seconds for one still on its way (the
    kernel's kauditd thread multicasts a record a moment after it is logged).

    The socket also carries every other audit record of the machine, its own
    subscription's to begin with (AUDIT_EVENT_LISTENER, with its SYSCALL and
    PROCTITLE): only the record types say whether anything was denied. A run
    that logged no denial then skips loading the audit reader (~35 ms); the
    datagrams read here go to it otherwise (``AuditReader(preread=...)``)."""
    import select                               # a C module, cheap
    sock = _socket.socket(fileno=fd)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    out, found = [], False
    try:
        for timeout_ms in (0, int(wait * 1000)) if wait > 0 else (0,):
            if not poller.poll(timeout_ms):
                continue
            while True:
                try:
                    data = sock.recv(1 << 16, _socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError as err:          # ENOBUFS: records were lost, some may be denials
                    if err.errno != errno.ENOBUFS:
                        raise
                    found = True
                    continue
                out.append(data)
                off = 0
                while off + 16 <= len(data):
                    length, mtype = _struct.unpack_from("=IH", data, off)
                    found = found or mtype in DENIAL_TYPES
                    if length < 16:
                        break
                    off += (length + 3) & ~3
    finally:
        sock.detach()
    return found, out


_NLMSGHDR = "=IHHII"
AUDIT_GET, AUDIT_SET = 1000, 1001
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
AUDIT_STATUS_ENABLED = 1
AUDIT_FAIL_PANIC = 2
# struct audit_status (include/uapi/linux/audit.h), 11 u32 since 5.x
STATUS_FIELDS = ("mask", "enabled", "failure", "pid", "rate_limit", "backlog_limit",
                 "lost", "backlog", "feature_bitmap", "backlog_wait_time",
                 "backlog_wait_time_actual")
_STATUS = "=11I"


def _audit_request(mtype: int, body: bytes = b"") -> bytes:
    """Send one audit control message; the reply's payload (AUDIT_GET) or b"" (an ack).
    Raises OSError (EPERM without CAP_AUDIT_CONTROL)."""
    hdr = _struct.calcsize(_NLMSGHDR)
    sock = _audit_socket()
    try:
        sock.settimeout(2.0)
        sock.bind((0, 0))
        sock.send(_struct.pack(_NLMSGHDR, hdr + len(body), mtype, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
                  + body)
        while True:
            data = sock.recv(1 << 16)
            length, rtype = _struct.unpack_from(_NLMSGHDR, data)[:2]
            if rtype == NLMSG_ERROR:
                code = -_struct.unpack_from("=i", data, hdr)[0]
                if code:
                    raise OSError(code, os.strerror(code))
                if mtype != AUDIT_GET:
                    return b""
                continue
            if rtype == mtype:
                return data[hdr:length]
    finally:
        sock.close()


def audit_status() -> dict[str, int]:
    """The kernel's audit status (AUDIT_GET; needs CAP_AUDIT_CONTROL): enabled,
    failure, pid (of auditd, 0 if none), backlog_limit, lost, backlog,
    backlog_wait_time (jiffies) ... Raises OSError."""
    size = _struct.calcsize(_STATUS)
    values = _struct.unpack(_STATUS, _audit_request(AUDIT_GET).ljust(size, b"\0")[:size])
    return dict(zip(STATUS_FIELDS, values))


def ensure_audit_enabled() -> bool:
    """Turn the kernel's audit on if it is off (needs CAP_AUDIT_CONTROL): Landlock
    logs its denials only then (seccomp logs either way). Returns True if it is on.
    Never on a kernel set to panic when audit records are lost (failure mode 2):
    that trade-off is the administrator's. Raises OSError when audit cannot be
    asked (no permission, another network namespace)."""
    status = audit_status()
    enabled, failure = status["enabled"], status["failure"]
    if enabled:
        return True
    if failure == AUDIT_FAIL_PANIC:
        return False
    _audit_request(AUDIT_SET, _struct.pack(_STATUS, AUDIT_STATUS_ENABLED, 1, *([0] * 9)))
    return True

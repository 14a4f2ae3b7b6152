"""Open the audit netlink socket that carries seccomp and Landlock denial records (the one opener).

Import-light (the C module ``_socket``): ``sbx run`` opens it before fork,
on its hot path, whenever it may have to explain a denial. ``sandbox.kernel.audit``
adopts the descriptor to parse records.
"""
from __future__ import annotations

import _socket
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


def open_audit_readlog(rcvbuf: int = RCVBUF_BYTES) -> int:
    """A non-blocking, close-on-exec netlink socket subscribed to the audit
    read-log group; returns its fd. Raises OSError whose message says why not
    (needs CAP_AUDIT_READ; the initial network namespace only)."""
    if not in_initial_netns():
        raise OSError(errno.ENOPROTOOPT, "audit records are multicast in the initial network "
                                         "namespace only, and sbx runs in another one")
    try:
        sock = _socket.socket(_socket.AF_NETLINK,
                              _socket.SOCK_RAW | _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC,
                              NETLINK_AUDIT)
    except OSError as err:
        raise OSError(err.errno, f"audit netlink socket: {os.strerror(err.errno or 0)}") from err
    try:
        try:
            sock.setsockopt(_socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:  # without CAP_NET_ADMIN: capped at net.core.rmem_max
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
    except OSError as err:
        sock.close()
        why = os.strerror(err.errno or 0)
        if err.errno in (errno.EPERM, errno.EACCES):
            why += " (reading audit records needs CAP_AUDIT_READ)"
        raise OSError(err.errno, f"audit netlink: {why}") from err
    return sock.detach()

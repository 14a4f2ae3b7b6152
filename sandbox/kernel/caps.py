"""Capabilities: their names, why this process lacks some, and the spawn step that drops all but the ones a profile keeps.

Kernel facts (include/uapi/linux/capability.h, kernel/capability.c, security/commoncap.c):
- The bounding set can only shrink (PR_CAPBSET_DROP) and only with CAP_SETPCAP
  in the effective set, so it is dropped first, while sbx still has it.
- On execve a root process gets permitted = bounding set (its "file" sets are
  full), so a reduced bounding set is what limits root after exec; for other
  users, no_new_privs already keeps execve from granting anything (setuid and
  file capabilities are ignored), so an unprivileged sbx, which cannot shrink
  its bounding set, loses nothing by leaving it.
- Ambient capabilities survive execve for non-root programs: cleared, then
  raised again only for kept capabilities the process holds.
"""
from __future__ import annotations

import _struct
import os

from . import libc

# index = capability number
NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
_NUMBER = {n: i for i, n in enumerate(NAMES)}

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_HEADER = "=Ii"           # struct __user_cap_header_struct { __u32 version; int pid; }
_DATA = "=6I"             # struct __user_cap_data_struct[2] { __u32 effective, permitted, inheritable; }


def number(name: str) -> int | None:
    """The number of capability *name* (``NET_RAW``, ``CAP_NET_RAW``, any case), or None."""
    key = name.strip().upper()
    key = key[4:] if key.startswith("CAP_") else key
    return _NUMBER.get(key)


def name(cap: int) -> str:
    return f"CAP_{NAMES[cap]}" if 0 <= cap < len(NAMES) else f"CAP_{cap}"


def last_cap() -> int:
    """The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return len(NAMES) - 1


def _get() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread, as 64-bit masks."""
    header = libc.Buffer(_struct.pack(_HEADER, _LINUX_CAPABILITY_VERSION_3, 0))
    data = libc.Buffer(size=_struct.calcsize(_DATA))
    libc.checked_syscall("capget", header.addr, data.addr)
    e0, p0, i0, e1, p1, i1 = _struct.unpack(_DATA, data.read())
    return e0 | e1 << 32, p0 | p1 << 32, i0 | i1 << 32


def current() -> dict[str, int]:
    """This process's capability sets as masks: effective, permitted, inheritable, bounding."""
    eff, perm, inh = _get()
    bnd = 0
    for cap in range(last_cap() + 1):
        if libc.prctl(PR_CAPBSET_READ, cap) == 1:
            bnd |= 1 << cap
    return {"effective": eff, "permitted": perm, "inheritable": inh, "bounding": bnd}


_IDENTITY_MAP = ["0", "0", "4294967295"]


def in_user_namespace(proc: str = "/proc") -> str | None:
    """The first line of this process's uid_map ("0 1000 1") if it runs in a
    user namespace other than the initial one (whose map is the identity over
    every uid), else None."""
    try:
        with open(f"{proc}/self/uid_map", encoding="ascii") as fh:
            first = fh.readline().split()
    except OSError:
        return None
    return None if first == _IDENTITY_MAP else " ".join(first)


def _under_seccomp(proc: str) -> bool:
    try:
        with open(f"{proc}/self/status", encoding="ascii") as fh:
            return any(line.split() == ["Seccomp:", "2"] for line in fh)
    except OSError:
        return False


def why_lacking(needed: tuple[str, ...], what: str, proc: str = "/proc") -> str | None:
    """None if this process holds every capability in *needed* (names as in
    NAMES) where the kernel checks them, the initial user namespace; else a
    sentence saying that *what* needs them and what keeps them from sbx:
    a user namespace (its capabilities stop at its border), a bounding set
    that lost them (sbx started inside another sandbox: they can never come
    back), or not being root."""
    caps = [number(n) for n in needed]
    names = " and ".join(name(c) for c in caps)
    them = "them" if len(caps) > 1 else "it"
    mapping = in_user_namespace(proc)
    if mapping is not None:
        return (f"{what} needs {names} in the initial user namespace; sbx runs in a user "
                f"namespace (uid_map {mapping}), which cannot grant {them} (run sbx outside it)")
    held = current()
    if all(held["effective"] >> c & 1 for c in caps):
        return None
    if os.geteuid() != 0:
        return f"{what} needs root ({names})"
    if not all(held["bounding"] >> c & 1 for c in caps):
        inside = "under a seccomp filter, " if _under_seccomp(proc) else ""
        return (f"{what} needs {names}; sbx runs as root, but {inside}with a capability bounding "
                f"set that lacks {them}: it was started inside a sandbox that dropped {them} (such "
                f"as another sbx run or a container), where {them} cannot be regained")
    return f"{what} needs {names}; sbx runs as root without {them} in its effective set"


class CapDrop:
    """The spawn step that leaves the command only the capabilities in *keep*.

    Prepared in the parent (the capget, the buffers); ``apply`` in the child
    drops the bounding set (when it can), clears ambient, sets effective,
    permitted and inheritable to what is kept, and raises the kept ones as
    ambient for a non-root command so that they survive execve.
    """

    stage = "capabilities"

    def __init__(self, keep: frozenset[int] = frozenset()):
        eff, perm, _inh = _get()
        self.keep = frozenset(keep)
        self.kept_mask = sum(1 << c for c in self.keep) & perm
        self._drop_bounding = bool(eff & (1 << _NUMBER["SETPCAP"]))
        self._last = last_cap()
        m = self.kept_mask
        self._header = libc.Buffer(_struct.pack(_HEADER, _LINUX_CAPABILITY_VERSION_3, 0))
        self._data = libc.Buffer(_struct.pack(_DATA, m & 0xFFFFFFFF, m & 0xFFFFFFFF, m & 0xFFFFFFFF,
                                              m >> 32, m >> 32, m >> 32))
        self._ambient = os.getuid() != 0
        self._drop = tuple(c for c in range(self._last + 1) if c not in self.keep) \
            if self._drop_bounding else ()

    def apply(self) -> None:
        prctl = libc.prctl
        for cap in self._drop:
            if prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise libc.fail(f"prctl(PR_CAPBSET_DROP, {name(cap)})")
        if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) != 0:
            raise libc.fail("prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
        libc.checked_syscall("capset", self._header.addr, self._data.addr)
        if self._ambient:
            for cap in range(self._last + 1):
                if self.kept_mask & (1 << cap) and libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE,
                                                               cap) != 0:
                    raise libc.fail(f"prctl(PR_CAP_AMBIENT_RAISE, {name(cap)})")


__all__ = ["CapDrop", "NAMES", "current", "last_cap", "name", "number"]

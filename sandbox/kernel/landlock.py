"""Landlock: build rulesets in the parent, restrict the child with them before exec.

Kernel facts (include/uapi/linux/landlock.h, security/landlock/, Linux 6.18):
- ABI versions add rights: 1 the file-system rights up to MAKE_SYM (5.13),
  2 REFER (5.19), 3 TRUNCATE (6.2), 4 TCP bind/connect (6.7), 5 IOCTL_DEV
  (6.10), 6 scopes for abstract Unix sockets and signals (6.12), 7 audit
  logging flags for landlock_restrict_self (6.15).
- Rules only allow: an access a ruleset handles is denied unless a rule on
  the path (or one of its parents) or the port grants it. A domain that
  handles any file-system access also forbids mount changes.
- REFER (moving or linking a file to another directory) is denied by every
  ruleset that handles file-system rights, handled or not, unless a rule
  grants it on both sides.
- Every domain, even one that handles nothing but scopes, forbids ptrace-mode
  access to processes outside it: ptrace, /proc/PID/mem, process_vm_*,
  pidfd_getfd, /proc/PID/environ ... of any process that is not in the same
  or a nested domain. This is the boundary that protects the launcher and
  every other process of the user.
- Domains stack: each landlock_restrict_self adds a layer, and an access is
  allowed only if every layer allows it (at most 16 layers).
- landlock_restrict_self needs no_new_privs (or CAP_SYS_ADMIN).
- A rule is tied to the inode its file descriptor was opened on, not to a
  path: whatever a path named when the rule was added is what it grants.
"""
from __future__ import annotations

import _struct
import os
from errno import EMFILE as _EMFILE

from . import libc

# file-system rights, and the ABI that introduced each
FS_RIGHTS = {
    "execute": (1 << 0, 1), "write_file": (1 << 1, 1), "read_file": (1 << 2, 1),
    "read_dir": (1 << 3, 1), "remove_dir": (1 << 4, 1), "remove_file": (1 << 5, 1),
    "make_char": (1 << 6, 1), "make_dir": (1 << 7, 1), "make_reg": (1 << 8, 1),
    "make_sock": (1 << 9, 1), "make_fifo": (1 << 10, 1), "make_block": (1 << 11, 1),
    "make_sym": (1 << 12, 1), "refer": (1 << 13, 2), "truncate": (1 << 14, 3),
    "ioctl_dev": (1 << 15, 5),
}
NET_RIGHTS = {"bind_tcp": (1 << 0, 4), "connect_tcp": (1 << 1, 4)}
SCOPES = {"abstract_unix_socket": (1 << 0, 6), "signal": (1 << 1, 6)}
# rights that apply to a file (the rest apply to directories only)
FILE_RIGHTS = sum(FS_RIGHTS[r][0] for r in ("execute", "write_file", "read_file", "truncate",
                                            "ioctl_dev"))
# every right that changes the file system (what the cache protection handles)
WRITE_RIGHTS = sum(FS_RIGHTS[r][0] for r in (
    "write_file", "remove_dir", "remove_file", "make_char", "make_dir", "make_reg", "make_sock",
    "make_fifo", "make_block", "make_sym", "refer", "truncate"))

CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
RULE_NET_PORT = 2
RESTRICT_SELF_LOG_SAME_EXEC_OFF = 1
RESTRICT_SELF_LOG_NEW_EXEC_ON = 2
_O_PATH = 0o10000000
_AT_FDCWD = -100


# Rule descriptors are closed in batches of up to this many: fds are handed out
# lowest first, so a batch is mostly one run of numbers, closed by one
# close_range(2) (os.closerange) instead of a close(2) each.
_HELD = 64


def _close_all(fds: list[int]) -> None:
    """Close *fds* (and only them), one closerange per run of consecutive numbers; empties it."""
    if not fds:
        return
    fds.sort()
    start = prev = fds[0]
    for fd in fds[1:]:
        if fd != prev + 1:
            os.closerange(start, prev + 1)
            start = fd
        prev = fd
    os.closerange(start, prev + 1)
    fds.clear()


class LandlockError(libc.KernelError):
    pass


_ABI: list[int] = []


def abi() -> int:
    """The Landlock ABI version of this kernel, 0 if Landlock is absent or disabled."""
    if not _ABI:
        try:
            v = libc.syscall("landlock_create_ruleset", 0, 0, CREATE_RULESET_VERSION)
        except libc.KernelError:           # no such syscall in the tables for this machine
            v = -1
        _ABI.append(max(v, 0))
    return _ABI[0]


def supported(mask: int, table: dict[str, tuple[int, int]], version: int) -> int:
    """The part of *mask* this ABI *version* knows."""
    return sum(bit for bit, since in table.values() if since <= version and mask & bit)


def names(mask: int, table: dict[str, tuple[int, int]]) -> list[str]:
    return [name for name, (bit, _since) in table.items() if mask & bit]


def needs(mask: int, table: dict[str, tuple[int, int]]) -> int:
    """The lowest ABI that knows every right in *mask*."""
    return max([since for bit, since in table.values() if mask & bit] or [0])


class Ruleset:
    """One Landlock ruleset under construction, then a layer for ``Restrict``.

    Rights the running kernel lacks must be taken out by the caller first
    (``supported``): creating a ruleset with an unknown right fails with EINVAL.
    """

    def __init__(self, fs: int = 0, net: int = 0, scoped: int = 0):
        self.fs, self.net, self.scoped = fs, net, scoped
        size = 24 if scoped else 16 if net else 8
        attr = libc.Buffer(_struct.pack("=QQQ", fs, net, scoped)[:size])
        fd = libc.syscall("landlock_create_ruleset", attr.addr, size, 0)
        if fd < 0:
            raise LandlockError(libc.errno(), "landlock_create_ruleset: "
                                f"{os.strerror(libc.errno())}")
        self.fd = fd
        self.rules = 0
        # one attribute buffer, rewritten for every rule: a ruleset may get hundreds
        self._attr = libc.Buffer(size=16)
        self._add = libc.sysno("landlock_add_rule")
        self._call = libc.long_function("syscall", 5)
        self._open_call = None           # openat2, made on first use (allow_paths)

    def allow_paths(self, rules) -> list[tuple[str, OSError]]:
        """Grant each (path, access, is_dir) of *rules*, in one loop: a default
        profile run as root adds some 250 rules, and each costs an openat2
        and a landlock_add_rule (the descriptors are closed in batches, and
        the paths encoded in one call: together 0.1 ms of 1.4 for 264 rules).

        The paths are real paths (symbolic links resolved when the rules were
        planned), so each is opened with openat2's RESOLVE_NO_SYMLINKS: a
        component turned into a symbolic link since (by another process of
        the user) makes that rule fail with ELOOP instead of landing on
        whatever the link points to. sbx decides from the planned paths
        whether one layer suffices to keep its cache unwritable
        (``confine._layers``); this keeps the inodes the rules land on the ones
        that decision saw. Returns the paths that could not be opened or
        ruled, with the error."""
        failed = []
        if self._open_call is None:
            self._open_call = (libc.long_function("syscall", 5, strings=(2,)), libc.sysno("openat2"),
                               libc.Buffer(_struct.pack("=QQQ", _O_PATH | os.O_CLOEXEC, 0,
                                                        libc.RESOLVE_NO_SYMLINKS)))
        openat2, nr_open, how = self._open_call
        attr = memoryview(self._attr.view()).cast("B")
        addr, call, add, fd_rs = self._attr.addr, self._call, self._add, self.fd
        pack_into, handled, on_file, errno = _struct.pack_into, self.fs, self.fs & FILE_RIGHTS, libc.errno
        how_addr = how.addr
        wanted = [(path, access & (handled if is_dir else on_file)) for path, access, is_dir in rules]
        wanted = [(path, access) for path, access in wanted if access]
        for path in [p for p, _ in wanted if "\0" in p]:   # C would read a shorter path
            failed.append((path, OSError(22, os.strerror(22), path)))
        wanted = [(path, access) for path, access in wanted if "\0" not in path]
        # one encoding for them all (none holds a NUL now)
        encoded = os.fsencode("\0".join(path for path, _ in wanted)).split(b"\0") if wanted else []
        held: list[int] = []
        try:
            for (path, access), bpath in zip(wanted, encoded):
                fd = openat2(nr_open, _AT_FDCWD, bpath, how_addr, 24)
                if fd < 0 and errno() == _EMFILE and held:
                    _close_all(held)               # a low RLIMIT_NOFILE: the batch makes room
                    fd = openat2(nr_open, _AT_FDCWD, bpath, how_addr, 24)
                if fd < 0:
                    err = errno()
                    failed.append((path, OSError(err, os.strerror(err), path)))
                    continue
                held.append(fd)
                pack_into("=Qi", attr, 0, access, fd)     # packed: 12 bytes are read
                if call(add, fd_rs, RULE_PATH_BENEATH, addr, 0) != 0:
                    err = errno()
                    failed.append((path, LandlockError(err, f"landlock_add_rule({path}): "
                                                            f"{os.strerror(err)}")))
                    continue
                self.rules += 1
                if len(held) == _HELD:
                    _close_all(held)
        finally:
            _close_all(held)
        return failed

    def allow_port(self, port: int, access: int) -> None:
        access &= self.net
        if not access:
            return
        self._attr.write(_struct.pack("=QQ", access, port))
        if self._call(self._add, self.fd, RULE_NET_PORT, self._attr.addr, 0) != 0:
            raise LandlockError(libc.errno(), f"landlock_add_rule(port {port}): "
                                f"{os.strerror(libc.errno())}")
        self.rules += 1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def protect_from_writes(ruleset: Ruleset, protected: str) -> None:
    """Grant the ruleset's write rights everywhere except at and below *protected*.

    Landlock rules only allow, and a right granted on a directory holds for
    everything beneath it, so "all but one directory" is spelled as: beneath
    every sibling of every ancestor of *protected*. The ancestors themselves get
    no rule, so nothing can be created, removed or renamed directly in them
    (which would let the protected directory be moved away and replaced) — the
    price is that a command cannot add entries directly in those few
    directories (for /var/cache/sbx: /, /var and /var/cache). Symbolic links are
    skipped: writes through them resolve to a path that is covered on its own.
    *protected* need not exist: then its nearest existing ancestor chain is used.
    """
    path = os.path.realpath(protected)
    parts = [p for p in path.split("/") if p]
    ancestor = "/"
    rules = []
    for part in parts:
        try:
            entries = list(os.scandir(ancestor))
        except OSError:
            break                        # cannot list it: nothing beneath gets a grant
        rules += [(entry.path, ruleset.fs, entry.is_dir(follow_symlinks=False)) for entry in entries
                  if entry.name != part and not entry.is_symlink()]
        ancestor = os.path.join(ancestor, part)
        if not os.path.isdir(ancestor) or os.path.islink(ancestor):
            break
    ruleset.allow_paths(rules)           # one vanished or unopenable simply gets no grant


class Restrict:
    """The spawn step that enforces prepared rulesets, one Landlock layer each."""

    stage = "landlock"

    def __init__(self, rulesets: list[Ruleset], flags: int = 0):
        self.rulesets, self.flags = rulesets, flags

    def apply(self) -> None:
        for rs in self.rulesets:
            if libc.syscall("landlock_restrict_self", rs.fd, self.flags) != 0:
                raise LandlockError(libc.errno(), "landlock_restrict_self: "
                                    f"{os.strerror(libc.errno())}")

    def close(self) -> None:
        for rs in self.rulesets:
            rs.close()


__all__ = ["FS_RIGHTS", "NET_RIGHTS", "SCOPES", "WRITE_RIGHTS", "LandlockError", "Restrict",
           "Ruleset", "abi", "names", "needs", "protect_from_writes", "supported"]

"""What a traced command's file syscalls touched, for Landlock: intents on paths, then rights.

Both recorders report each file syscall the same way: its name, its flags
argument and one or two absolute paths (the eBPF probe joins a relative path
to the directory it was relative to, read from the kernel's dentries; the
notify supervisor reads /proc/PID/cwd or /proc/PID/fd/N while the task
waits).  ``FileLog.add`` turns a call into intents on paths, the way
Landlock checks it:

  open, openat, openat2, creat   read (a directory opened with O_DIRECTORY: list),
                                 modify (write access or O_TRUNC), create-file
                                 (O_CREAT, whether or not the file existed: a later
                                 run may find it missing; but not where the path is
                                 a device, FIFO, socket or directory, which O_CREAT
                                 never makes: shells open /dev/null so), write-in
                                 (O_TMPFILE); O_PATH: nothing
  execve, execveat               exec (resolved to read and exec: the kernel opens the
                                 program for both, and so the ELF or #! interpreter
                                 it loads for it, which get them too)
  mkdir(at), symlink(at), bind   create (a Unix socket's file)
  mknod(at)                      create; device for char and block devices
  unlink(at), rmdir              remove
  rename(at,at2), link(at)       remove the old name (link: refer), create the new one
  truncate                       modify
  chdir                          list: Landlock does not check chdir, but a unit's
                                 mount namespace (sbx export --format systemd) hides
                                 what no grant reaches, and a hidden directory cannot
                                 be entered; listing the directory a program works
                                 in is the smallest grant that keeps it reachable

Reading a directory needs Landlock's read_dir at its open, so listing is
recorded at the open (getdents64 needs nothing more).  stat, access,
fchdir, chmod, chown, utimes and xattrs are not recorded: Landlock does not
check them.

``FileLog.resolve`` (after the run) maps intents to Landlock's words on real
paths (symbolic links resolved as the kernel would, except the last name of
a call that does not follow it) and adds the interpreters of exec'd files.
The result, ``Accesses``, is what ``sandbox.trace.files`` generalises.
"""
from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field

from bpf_filters.syscalls.arguments import PATH_ARGS

from ..policy.constants import CONSTANTS as C

SOCKET_CALLS = ("bind", "connect")                  # TCP ports; bind of a Unix socket: a file
PATH_LIMIT = 255            # bytes of a path the eBPF probe reads (SBX_PATH_LEN - 1)
RENAME_EXCHANGE = 2
_ACCMODE = 3
_PARENT = ("create", "create-file", "remove", "device", "refer")   # rights on the parent
_LEXICAL = ("/proc/", "/dev/fd/", "/dev/stdin", "/dev/stdout", "/dev/stderr")


def intents(name: str, flags: int, path: bytes, path2: bytes | None = None
            ) -> list[tuple[str, bytes]]:
    """The (intent, absolute path) pairs of one successful file syscall."""
    if name in ("open", "openat", "openat2", "creat"):
        return _open_intents(flags, path)
    if name in ("execve", "execveat"):
        return [("exec", path)]
    if name in ("mkdir", "mkdirat", "symlink", "symlinkat", "bind"):
        return [("create", path)]
    if name in ("mknod", "mknodat"):
        kind = flags & C["S_IFMT"]
        return [("device" if kind in (C["S_IFCHR"], C["S_IFBLK"]) else "create", path)]
    if name in ("unlink", "unlinkat", "rmdir"):
        return [("remove", path)]
    if name == "truncate":
        return [("modify", path)]
    if name == "chdir":
        return [("list", path)]
    if name in ("rename", "renameat", "renameat2") and path2 is not None:
        out = [("remove", path), ("create", path2)]
        if flags & RENAME_EXCHANGE:
            out += [("remove", path2), ("create", path)]
        return out
    if name in ("link", "linkat") and path2 is not None:
        return [("refer", path), ("create", path2)]
    return []


def _open_intents(flags: int, path: bytes) -> list[tuple[str, bytes]]:
    if flags & C["O_PATH"]:
        return []                    # O_PATH opens are not checked by Landlock
    if flags & C["O_TMPFILE"] == C["O_TMPFILE"]:
        return [("write-in", path)]  # an unnamed file in that directory
    out = []
    mode = flags & _ACCMODE
    if mode != C["O_WRONLY"]:
        out.append(("list" if flags & C["O_DIRECTORY"] else "read", path))
    if mode in (C["O_WRONLY"], C["O_RDWR"]) or flags & C["O_TRUNC"]:
        out.append(("modify", path))
    if flags & C["O_CREAT"]:
        out.append(("create-file", path))
    return out


def may_succeed(name: str, flags: int, path: bytes, path2: bytes | None = None) -> bool:
    """Can this call succeed, judged from the file system before it runs?  (The
    notify recorder does not see results: a file that is not there cannot be
    opened, removed or executed, a file cannot be made in a missing directory.)"""
    def is_dir_of(p: bytes) -> bool:
        return os.path.isdir(os.path.dirname(p) or b"/")
    if name in ("open", "openat", "openat2", "creat"):
        return is_dir_of(path) if flags & C["O_CREAT"] else os.path.exists(path)
    if name in ("execve", "execveat"):
        return os.path.exists(path)
    if name in ("mkdir", "mkdirat", "symlink", "symlinkat", "mknod", "mknodat", "bind"):
        return is_dir_of(path) and not os.path.lexists(path)
    if name in ("rename", "renameat", "renameat2", "link", "linkat"):
        return path2 is not None and os.path.lexists(path) and is_dir_of(path2)
    if name == "chdir":
        return os.path.isdir(path)
    return os.path.lexists(path)            # unlink, rmdir, truncate


# an intent on a path cut at PATH_LIMIT bytes: the deepest whole directory gets it
_CUT = {"read": "read-beneath", "list": "read-beneath", "exec": "exec-beneath"}


@dataclass
class Accesses:
    """A run's file accesses as Landlock words on real paths (``confine.RIGHT_WORDS``).

    ``words``: (word, real path) -> calls; ``created``: real paths the run
    created (or may have: O_CREAT); ``moves``: (from dir, to dir) of renames and
    links across directories (Landlock lets a file move only where it gains no
    right); ``ports``: ("bind"|"connect", TCP port) -> calls; ``notes``: what
    could not be recorded.
    """
    words: dict[tuple[str, str], int] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    moves: set[tuple[str, str]] = field(default_factory=set)
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class FileLog:
    """What one traced run's file syscalls did, as the recorders report it."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, bytes], int] = {}      # (intent, absolute path) -> calls
        self.moves: set[tuple[bytes, bytes]] = set()
        self.ports: dict[tuple[str, int], int] = {}
        self.cut = 0            # paths longer than the probe reads
        self.unreadable = 0     # paths that could not be read at all
        self.lost = 0           # calls the recorder could not keep

    def add(self, name: str, flags: int, path: bytes | None, path2: bytes | None = None,
            cut: tuple[bool, bool] = (False, False)) -> None:
        """One successful file syscall with absolute *path* (and *path2*)."""
        if path is None or (path2 is None and name in ("rename", "renameat", "renameat2",
                                                       "link", "linkat")):
            self.unreadable += 1
            return
        pairs = intents(name, flags, path, path2)
        for intent, p in pairs:
            if (p == path and cut[0]) or (p == path2 and cut[1]):
                self.cut += 1
                intent, p = _CUT.get(intent, "write-in"), os.path.dirname(p)
            key = (intent, p)
            self.calls[key] = self.calls.get(key, 0) + 1
        if path2 is not None and name not in ("symlink", "symlinkat") and pairs and \
                os.path.dirname(path) != os.path.dirname(path2):
            self.moves.add((os.path.dirname(path), os.path.dirname(path2)))
            if flags & RENAME_EXCHANGE and name.startswith("rename"):
                self.moves.add((os.path.dirname(path2), os.path.dirname(path)))

    def may_succeed(self, name: str, flags: int, path: bytes, path2: bytes | None = None) -> bool:
        """The notify recorder asks before it adds a call it cannot see the result of."""
        return may_succeed(name, flags, path, path2)

    def add_port(self, op: str, port: int, count: int = 1) -> None:
        self.ports[(op, port)] = self.ports.get((op, port), 0) + count

    def resolve(self) -> Accesses:
        """Landlock words on real paths (reads the file system: run it right after the run)."""
        out = Accesses(ports=dict(self.ports))
        real = _Resolver()
        for (intent, raw), n in sorted(self.calls.items()):
            path = os.fsdecode(raw)
            if intent in _PARENT:
                target = real.parent(path)
                if intent == "create-file" and real.full(path)[1] not in (None, stat.S_IFREG):
                    continue                    # a device, FIFO ...: O_CREAT made none of them
                word = {"create": "write", "create-file": "write", "remove": "write",
                        "device": "make-device", "refer": "refer"}[intent]
                _count(out.words, word, os.path.dirname(target) or "/", n)
                if intent in ("create", "create-file", "device"):
                    out.created.add(target)
                continue
            target, kind = real.full(path)
            if intent == "read" and kind == stat.S_IFDIR:
                intent = "list"
            word = {"read-beneath": "read", "exec-beneath": "exec", "write-in": "write"}.get(
                intent, intent)
            _count(out.words, word, target, n)
            if intent == "exec":                # Landlock checks an exec as an open for both
                for program in [target] + [real.full(i)[0] for i in interpreters(target)]:
                    _count(out.words, "read", program, n)
                    _count(out.words, "exec", program, n)
        for a, b in sorted(self.moves):
            out.moves.add((real.full(os.fsdecode(a))[0], real.full(os.fsdecode(b))[0]))
        if self.cut:
            out.notes.append(f"{self.cut} paths were longer than {PATH_LIMIT} bytes: their "
                             "rules are on the deepest directory of what was read")
        if self.unreadable or self.lost:
            out.notes.append(f"{self.unreadable + self.lost} file syscalls could not be recorded "
                             "(their paths were unreadable or the recorder fell behind): the "
                             "filesystem section may lack them")
        return out


def _count(words: dict, word: str, path: str, n: int) -> None:
    words[(word, path)] = words.get((word, path), 0) + n


class _Resolver:
    """realpath for many paths: one lstat per name not seen before, directories
    cached; /proc and /dev/fd stay as written (resolving them here would name
    sbx's own process, not the traced one)."""

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {"/": "/"}

    def directory(self, path: str) -> str:
        real = self._dirs.get(path)
        if real is None:
            head, tail = os.path.split(path)
            if tail in ("", ".", "..") or head == path:
                real = os.path.realpath(path)
            else:
                real = os.path.join(self.directory(head), tail)
                if os.path.islink(real):
                    real = os.path.realpath(real)
            self._dirs[path] = real
        return real

    def parent(self, path: str) -> str:
        """*path* with its directory resolved, its last name kept (not followed)."""
        if path.startswith(_LEXICAL):
            return os.path.normpath(path)
        head, tail = os.path.split(path)
        if tail in ("", ".", ".."):
            return self.directory(path)
        return os.path.join(self.directory(head), tail)

    def full(self, path: str) -> tuple[str, int | None]:
        """*path* resolved (its last name followed) and its file type, None if gone."""
        p = self.parent(path)
        try:
            mode = os.lstat(p).st_mode
            if stat.S_ISLNK(mode) and not path.startswith(_LEXICAL):
                p = os.path.realpath(p)
                mode = os.stat(p).st_mode
        except OSError:
            return p, None
        return p, stat.S_IFMT(mode)


_PT_INTERP = 3


def interpreters(path: str, depth: int = 3) -> list[str]:
    """The programs the kernel opens to run *path*: a script's ``#!`` interpreter
    (and its own), an ELF file's dynamic loader (PT_INTERP).  Landlock needs
    the exec right on each."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
            if head.startswith(b"#!"):
                line = head[2:].split(b"\n", 1)[0].strip().split()
                if not line or depth == 0:
                    return []
                interp = os.fsdecode(line[0])
                return [interp] + interpreters(interp, depth - 1)
            if head[:4] != b"\x7fELF" or head[4] != 2:           # 64-bit ELF only
                return []
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            for i in range(min(phnum, 64)):
                fh.seek(phoff + i * phentsize)
                ph = fh.read(56)
                if len(ph) < 56:
                    return []
                p_type, _flags, p_offset = struct.unpack_from("<IIQ", ph)
                if p_type == _PT_INTERP:
                    p_filesz, = struct.unpack_from("<Q", ph, 32)
                    fh.seek(p_offset)
                    return [os.fsdecode(fh.read(min(p_filesz, 4096)).split(b"\0", 1)[0])]
    except (OSError, struct.error, IndexError):
        pass
    return []


__all__ = ["Accesses", "FileLog", "PATH_ARGS", "PATH_LIMIT", "SOCKET_CALLS", "intents",
           "interpreters", "may_succeed"]

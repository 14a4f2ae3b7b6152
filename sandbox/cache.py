"""Compiled-filter cache: fast ``sbx run`` without trusting anything a confined command could write.

Lives on the ``sbx run`` hot path: no YAML, no JSON, no hashlib (its OpenSSL
import alone costs milliseconds) — a tiny text format and the builtin SHA-256.

Safety, in layers:
- **Where.** One fixed place per user, never taken from the environment (a
  confined command, or whoever set up the environment of a later run, could
  point it elsewhere): ``/var/cache/sbx`` for root, ``/run/user/UID/sbx`` (the
  user's runtime directory, a per-boot tmpfs) for everyone else. No usable
  place, no cache: the profile is compiled on every run.
- **Out of the command's reach.** Every run's Landlock domain denies the
  command any change at or below the cache directory, whatever its profile
  allows: a layer of sbx's own (``kernel.landlock.protect_from_writes``), or
  the profile's layer alone when none of its rules writes at, above or below
  the cache (``confine._layers``). Without Landlock the cache is not used at
  all, since nothing would stop a command from rewriting it.
- **Checked before use.** The directory must be a real directory owned by
  sbx's user and writable by nobody else, below parents owned by root or that
  user and writable by no one else; an entry must be a regular file (opened
  without following links and without blocking, so a FIFO cannot hang sbx),
  owned by that user, private, of bounded size, in the exact format below,
  with a matching digest of its own content. Anything else is a miss: the
  profile is compiled and the entry replaced.
- **Exact dependencies.** An entry records the SHA-256 of the bytes the
  compiler read (not of the files as they are after compiling, which an edit
  during compilation would make different) and is valid only while every file
  still has those bytes, the compiler is unchanged and the architecture is
  the same.
- **Written safely.** A new entry goes to a fresh file with a random name
  (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), then is renamed into place; a
  partial file (a full disk) is removed.

Entry format (every line required, in this order)::

    sbx-filter-cache 2
    fingerprint <compiler fingerprint>
    dep <sha256> <path>            (one or more; "-" x 64: the path must not exist)
    name <profile name>
    spec <confinement line>        (zero or more: capabilities, Landlock)
    fallback <arch> <nr>,<nr>...   (zero or more: the syscalls the filter answers
                                    errno(ENOSYS) whatever their arguments)
    filter <hex>
    digest <sha256 of every line above, each followed by a newline>
"""
from __future__ import annotations

import os
import stat

from .paths import unsafe_reason

try:                                   # the builtin (non-OpenSSL) SHA-256
    from _sha2 import sha256          # Python 3.12+
except ImportError:                    # pragma: no cover - version dependent
    try:
        from _sha256 import sha256    # Python <= 3.11
    except ImportError:
        from hashlib import sha256

FORMAT = "sbx-filter-cache 3"
# a dep with this digest is a file that must not exist: a profile looked for by name
# before the one found (a user profile created later would be found instead)
ABSENT = "-" * 64
MAX_ENTRY = 256 << 10                  # a 4096-instruction filter is 64 KiB of hex
# the code that decides what an entry holds: the compiler, the tables, the profile
# language, and the confinement spec's text form
_PKG_DIRS = ("bpf_filters", os.path.join("bpf_filters", "syscalls"), os.path.join("sandbox", "policy"))
_PKG_FILES = (os.path.join("sandbox", "confine.py"), os.path.join("sandbox", "kernel", "caps.py"))


class Entry:
    """What a cache entry holds: the filter and what else the profile asks of the kernel,
    and the syscalls the filter answers errno(ENOSYS) on purpose ({arch: numbers}: a
    caller falls back, so a report need not send anyone looking)."""

    __slots__ = ("program", "name", "spec", "fallbacks")

    def __init__(self, program: bytes, name: str, spec: list[str],
                 fallbacks: dict[str, frozenset[int]] | None = None):
        self.program, self.name, self.spec = program, name, spec
        self.fallbacks = fallbacks or {}


def location(uid: int | None = None) -> str:
    """Where the cache of *uid* (default: this process's effective uid) lives,
    whether or not it can be used. Fixed per user: see the module docstring."""
    uid = os.geteuid() if uid is None else uid
    return "/var/cache/sbx" if uid == 0 else f"/run/user/{uid}/sbx"


def usable_dir(create: bool = True) -> tuple[str | None, str | None]:
    """(directory, None) if the cache can be used, else (None, why not).

    Creates the directory (mode 0700) when *create* and its parent is sound.
    """
    uid = os.geteuid()
    path = location(uid)
    parent = os.path.dirname(path)
    # every ancestor: a directory (not a link) owned by root or the user, writable by no one else
    probe = "/"
    for part in [p for p in parent.split("/") if p]:
        probe = os.path.join(probe, part)
        try:
            st = os.lstat(probe)
        except OSError:
            return None, f"{probe} does not exist"
        if not stat.S_ISDIR(st.st_mode):
            return None, f"{probe} is not a directory"
        why = unsafe_reason(st, uid, probe)
        if why:
            return None, why
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return None, f"{path} does not exist"
        try:
            os.mkdir(path, 0o700)
            st = os.lstat(path)
        except OSError as err:
            return None, f"cannot create {path}: {err.strerror}"
    except OSError as err:
        return None, f"{path}: {err.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return None, f"{path} is not a directory"
    if st.st_uid != uid:
        return None, f"{path} is owned by uid {st.st_uid}, not {uid}"
    if st.st_mode & 0o077:
        return None, f"{path} is accessible to others (mode {stat.S_IMODE(st.st_mode):o})"
    return path, None


def file_hash(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return sha256(fh.read()).hexdigest()
    except OSError:
        return None


def fingerprint() -> str:
    """Identifies the compiler that produced an entry: sizes and mtimes of its sources."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = sha256()
    for d in _PKG_DIRS:
        try:
            entries = sorted(os.scandir(os.path.join(root, d)), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.name.endswith(".py"):
                st = e.stat()
                h.update(f"{d}/{e.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    for f in _PKG_FILES:
        try:
            st = os.stat(os.path.join(root, f))
        except OSError:
            continue
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:32]


def _entry_name(key: str) -> str:
    return sha256(key.encode()).hexdigest()[:40]


def _digest(lines: list[str]) -> str:
    return sha256("".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")).hexdigest()


def sealed(lines: list[str]) -> str:
    """*lines*, each followed by a newline, then ``digest <sha256 of them>``: the
    form of every file sbx keeps here (filter entries, ``plan_cache``'s plans)."""
    return "".join(line + "\n" for line in lines) + f"digest {_digest(lines)}\n"


def unsealed(text: str, head: list[str]) -> list[str] | None:
    """The lines of a ``sealed`` *text* between its first lines, which must be
    *head*, and its digest; None unless the text is whole and the digest matches."""
    if not text.endswith("\n"):
        return None
    cut = text.rfind("\n", 0, len(text) - 1) + 1     # the start of the last line
    tag, _, digest = text[cut:-1].partition(" ")
    body = text[:cut]
    if tag != "digest" or digest != sha256(body.encode("utf-8", "surrogateescape")).hexdigest():
        return None
    lines = body.split("\n")
    lines.pop()                                       # after the last newline: ""
    if len(lines) < len(head) or lines[:len(head)] != head:
        return None
    return lines[len(head):]


def read_private(directory: str, name: str) -> str | None:
    """The entry's text if it is a private regular file of ours of sane size, else None."""
    try:
        fd = os.open(os.path.join(directory, name),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077
                or st.st_size > MAX_ENTRY):
            return None
        data = os.read(fd, MAX_ENTRY + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_ENTRY:
        return None
    # paths as the file system spells them: UTF-8, and any other byte as
    # os.fsdecode keeps it (the digest is over the same text)
    return data.decode("utf-8", "surrogateescape")


def parse(text: str, fp: str) -> tuple[Entry, list[tuple[str, str]]] | None:
    """(entry, [(digest, path)]) if *text* is a well-formed entry of compiler *fp*, else None."""
    body = unsealed(text, [FORMAT, f"fingerprint {fp}"])
    if body is None:
        return None
    i, deps = 0, []
    while i < len(body) and body[i].startswith("dep "):
        h, _, path = body[i][4:].partition(" ")
        if len(h) != 64 or not path.startswith("/"):
            return None
        deps.append((h, path))
        i += 1
    if not deps or i >= len(body) or not body[i].startswith("name "):
        return None
    name = body[i][5:]
    i += 1
    spec = []
    while i < len(body) and body[i].startswith("spec "):
        spec.append(body[i][5:])
        i += 1
    fallbacks: dict[str, frozenset[int]] = {}
    while i < len(body) and body[i].startswith("fallback "):
        arch, _, nrs = body[i][9:].partition(" ")
        try:
            fallbacks[arch] = frozenset(int(n) for n in nrs.split(",") if n)
        except ValueError:
            return None
        i += 1
    if i != len(body) - 1 or not body[i].startswith("filter "):
        return None
    try:
        program = bytes.fromhex(body[i][7:])
    except ValueError:
        return None
    if not program or len(program) % 8 or len(program) > 4096 * 8:
        return None
    return Entry(program, name, spec, fallbacks), deps


def lookup(key: str, fp: str) -> Entry | None:
    """The cached entry for *key*, if the cache is usable, the entry sound and
    every file it was built from unchanged."""
    directory, _why = usable_dir(create=False)
    if directory is None:
        return None
    text = read_private(directory, _entry_name(key))
    if text is None:
        return None
    parsed = parse(text, fp)
    if parsed is None:
        return None
    entry, deps = parsed
    for digest, path in deps:
        if digest == ABSENT:
            if os.path.lexists(path):
                return None
        elif file_hash(path) != digest:
            return None
    return entry


def render(fp: str, deps: dict[str, str], entry: Entry) -> str:
    lines = [FORMAT, f"fingerprint {fp}"]
    lines += [f"dep {digest} {path}" for path, digest in deps.items()]
    lines.append(f"name {entry.name}")
    lines += [f"spec {s}" for s in entry.spec]
    lines += [f"fallback {arch} {','.join(map(str, sorted(nrs)))}"
              for arch, nrs in sorted(entry.fallbacks.items())]
    lines.append(f"filter {entry.program.hex()}")
    return sealed(lines)


def store(key: str, fp: str, deps: dict[str, str], entry: Entry) -> None:
    """Write an entry atomically. *deps* maps each file the profile was built
    from to the SHA-256 of the bytes the compiler read. A cache that cannot be
    written is simply skipped."""
    if not deps or any("\n" in p or not p.startswith("/") for p in deps) or "\n" in entry.name \
            or any("\n" in s for s in entry.spec):
        return
    directory, _why = usable_dir(create=True)
    if directory is None:
        return
    write_private(directory, _entry_name(key), render(fp, deps, entry).encode("utf-8", "surrogateescape"))


def write_private(directory: str, name: str, data: bytes) -> None:
    """Write *data* as *name* in the cache *directory*, atomically and privately:
    a fresh file with a random name (O_CREAT|O_EXCL|O_NOFOLLOW, 0600) renamed
    into place; a partial file (a full disk) is removed. Best effort."""
    tmp = os.path.join(directory, f".tmp-{os.urandom(8).hex()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except OSError:
        return
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(directory, name))
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass

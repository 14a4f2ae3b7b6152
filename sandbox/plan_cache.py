"""Landlock rule plans kept between runs: ``confine.fs_plan`` and ``fs_rules`` done once.

Planning a profile's ``filesystem:`` section reads some eighty paths and lists
every directory a deny splits (/etc for /etc/shadow, ~140 entries): about a
millisecond of every launch, in Python. The plan it makes is kept beside the
filter cache and reused while nothing it was made from has changed.

What a plan depends on, and how each is checked:
- **What was asked.** The key: this format, the code that plans (confine.py and
  kernel/landlock.py, by size and mtime), the user and groups (file
  permissions decide which denies need rules) and the user's own home and
  runtime directory (``confine.own_places``, for ``expand_deny``), the spec's lines, the paths sbx
  protects, the command and its real path ($EXEC_ROOT), the working
  directory ($CWD) and the terminals the command inherits ($TTY).
- **The environment.** Every variable the expansion read, with its value (or
  its absence), is stored and compared.
- **The file system.** Every directory a name was looked up in or that was
  listed (symbolic links' targets included: ``confine.real_path``), and every
  denied path, is stored with its device, inode and ctime, or its absence.
  Creating, removing, renaming or replacing a name changes its directory's
  ctime; chmod and chown change the file's; a mount changes the device and
  inode a path leads to; no one without CAP_SYS_TIME can set a ctime back.
  A denied path is recorded itself where its directory cannot tell: on /proc
  and /sys a name comes and goes without its directory's ctime changing
  (``confine.CTIME_TRACKED`` names the file systems that keep it), and for a
  user an existing one whose mode decides whether it takes rules. A directory
  listed on such a file system may gain entries unseen, which a kept plan then
  grants nothing (less than a fresh plan, never more). A plan that depends on anything else (a path
  realpath had to resolve) is not kept.
- **Coarse timestamps.** A ctime is a clock tick (a whole second, or two, on
  some file systems), so a change in the tick the plan read could keep it: a
  plan is kept only when every ctime it recorded is three seconds older than
  the planning.
- **Out of reach.** Plans live in the cache directory (``sandbox.cache``):
  private to the user, checked before use, and kept out of every confined
  command's reach by the run's Landlock domain. An entry that is malformed,
  too large, or whose digest does not match its lines is a miss.

Entry format (in this order)::

    sbx-plan 1
    key <the key: 40 hex digits of the profile's part, 64 of the run's>
    env <NAME>=<value>             (zero or more; "env NAME" alone: unset)
    seen <dev> <ino> <ctime_ns> <path>     (one or more; "- - -": it did not exist)
    rule <rights> <d|f> <path>     (zero or more)
    note <text>                    (zero or more)
    digest <sha256 of every line above, each followed by a newline>
"""
from __future__ import annotations

import os
import time

from . import cache, confine

FORMAT = "sbx-plan 1"
_CODE = ("confine.py", os.path.join("kernel", "landlock.py"))
_HERE = os.path.dirname(os.path.abspath(__file__))
# A file's times come from a coarse clock that may lag a tick behind, on file
# systems that keep whole seconds (ext4 with small inodes, ext3) or even two (FAT):
# a plan is kept only when all it recorded is older than this.
RACY_NS = 3_000_000_000


class _Reads(dict):
    """The environment, recording the names ``confine.expand`` reads."""

    def __init__(self, env: dict):
        super().__init__(env)
        self.read: set[str] = set()

    def get(self, name, default=None):
        self.read.add(name)
        return super().get(name, default)


def _key(spec, exe: str | None, protected: tuple[str, ...]) -> str | None:
    """The key: what was asked of the plan, hashed; None when no plan may be kept.
    Its first 40 hex digits hash the profile's part alone and the next one the
    run's (directory, command, terminals), so that the file name, ``plan-`` and those 41
    digits, keeps at most 16 plans per profile, whatever directories it is run in."""
    fixed = [FORMAT, str(os.geteuid()), str(os.getegid()), ",".join(map(str, sorted(os.getgroups())))]
    for name in _CODE:
        try:
            st = os.stat(os.path.join(_HERE, name))
        except OSError:
            return None
        fixed.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    fixed += [f"{name}={value}" for name, value in confine.own_places(spec.caps)]   # expand_deny's
    fixed += list(protected) + ["--"] + spec.lines()
    try:
        run = [os.getcwd(), exe or "-", os.path.realpath(exe) if exe else "-",
               *confine.terminals()]
    except OSError:
        return None
    texts = ["\0".join(fixed), "\0".join(run)]
    if any("\n" in t for t in texts):
        return None
    a, b = (cache.sha256(t.encode("utf-8", "surrogateescape")).hexdigest() for t in texts)
    return a[:40] + b


def _name(key: str) -> str:
    return f"plan-{key[:41]}"


_ABSENT = "- - -"


def _identity(path: str) -> str:
    """``dev ino ctime_ns`` of *path* as lstat sees it, or ``_ABSENT``."""
    try:
        st = os.lstat(path)
    except OSError:
        return _ABSENT
    return f"{st.st_dev} {st.st_ino} {st.st_ctime_ns}"


def _parse(text: str, key: str) -> tuple[list, list[str], dict, list] | None:
    body = cache.unsealed(text, [FORMAT, f"key {key}"])
    if body is None:
        return None
    env, seen, rules, notes = {}, [], [], []
    try:
        for line in body:
            if line.startswith("rule "):            # most lines: the fast case first
                rights, kind, path = line[5:].split(" ", 2)
                if kind not in ("d", "f") or path[:1] != "/":
                    return None
                rules.append((path, int(rights), kind == "d"))
                continue
            tag, _, rest = line.partition(" ")
            if tag == "env":
                name, eq, value = rest.partition("=")
                env[name] = value if eq else None
            elif tag == "seen":
                dev, ino, ctime, path = rest.split(" ", 3)
                if path[:1] != "/":
                    return None
                seen.append((path, f"{dev} {ino} {ctime}"))
            elif tag == "note":
                notes.append(rest)
            else:
                return None
    except ValueError:                              # a line with too few fields, a bad number
        return None
    return (rules, notes, env, seen) if seen else None


def lookup(spec, env: dict, exe: str | None, protected: tuple[str, ...]):
    """(key, rules, notes): the plan kept for this spec if it still holds, else
    (key, None, None); key is None when no plan may be kept for it."""
    key = _key(spec, exe, protected)
    if key is None:
        return None, None, None
    directory, _why = cache.usable_dir(create=False)
    text = cache.read_private(directory, _name(key)) if directory else None
    parsed = _parse(text, key) if text is not None else None
    if parsed is None:
        return key, None, None
    rules, notes, wanted, seen = parsed
    if any(env.get(name) != value for name, value in wanted.items()):
        return key, None, None
    if any(_identity(path) != ident for path, ident in seen):
        return key, None, None
    return key, rules, notes


def plan(spec, env: dict, exe: str | None, protected: tuple[str, ...], notes: list[str]) -> list:
    """The Landlock rules of *spec*'s filesystem section for this run: the kept
    plan when it still holds, else planned now (and kept when it may be).
    What planning says goes to *notes*, replayed from a kept plan."""
    key, rules, kept_notes = lookup(spec, env, exe, protected)
    if rules is not None:
        notes += kept_notes
        return rules
    started = time.time_ns()
    reads = _Reads(env)
    seen: set[str] = set()
    mine: list[str] = []
    rules = confine.plan_rules(spec, reads, exe, protected, mine, seen=seen if key else None)
    notes += mine
    if key is not None and seen and confine.UNCACHEABLE not in seen:
        _store(key, reads, seen, rules, mine, started)
    return rules


def _store(key: str, reads: _Reads, seen: set[str], rules: list, notes: list[str],
           started: int) -> None:
    lines = [FORMAT, f"key {key}"]
    for name in sorted(reads.read):
        value = dict.get(reads, name)
        lines.append(f"env {name}" if value is None else f"env {name}={value}")
    for path in sorted(seen):
        ident = _identity(path)
        if ident != _ABSENT and int(ident.rsplit(" ", 1)[1]) > started - RACY_NS:
            return                          # changed within RACY_NS: its tick may hide more
        lines.append(f"seen {ident} {path}")
    lines += [f"rule {rights} {'d' if is_dir else 'f'} {path}" for path, rights, is_dir in rules]
    lines += [f"note {n}" for n in notes]
    if any("\n" in line for line in lines):
        return
    data = cache.sealed(lines).encode("utf-8", "surrogateescape")
    if len(data) > cache.MAX_ENTRY:
        return
    directory, _why = cache.usable_dir(create=True)
    if directory is not None:
        cache.write_private(directory, _name(key), data)


__all__ = ["FORMAT", "lookup", "plan"]

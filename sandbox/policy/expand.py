"""Resolve ``extends`` and ``@group`` references in time linear in what they produce.

A profile is a graph of files (``extends``) and of groups (``@name`` inside
groups); written as trees, both can be exponential: ``extends: [base, base]``
on every level, or a group of ten groups of ten groups.  Here every file is
read once and every group expanded once, and duplicates are dropped as they
appear, so the work is linear in the input and the result.

What dropping a duplicate means, and why the meaning is unchanged:
- A base profile reached twice (``extends: [a, b]`` where both extend
  ``base``, or ``extends: [base, base]``) is merged once, at its first
  occurrence in depth-first order.  The tree expansion lists the file's rules
  again after that; a later copy of a rule can never be the first match (the
  earlier copy matches the same calls), so the decisions are the ones the
  full expansion gives.  Settings (``default``, ``arches``, ...) are the
  first set in the same order, as before.
- A syscall named twice in one rule (directly, or through groups) is one
  name, at the position of its first occurrence; the rule remembers the
  repetition (``RuleSpec.twice``) for ``sbx check``'s SBX135.

Limits, each reported at the reference that exceeds it: ``extends`` nested
more than MAX_EXTENDS_DEPTH files deep, more than MAX_PROFILE_FILES files,
groups nested more than MAX_GROUP_DEPTH deep.  The built-in profiles use
depth 2 and 2 (default <- web; @group -> @group).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import SbxError
from .diagnostics import Diagnostic, Position, did_you_mean

MAX_EXTENDS_DEPTH = 16
MAX_PROFILE_FILES = 64
MAX_GROUP_DEPTH = 16
SETTINGS = ("default", "unknown", "bad_arch", "arches", "baseline", "capabilities", "landlock")


class _File:
    """One profile file as read, and its direct bases once resolved."""

    def __init__(self, prof):
        self.prof = prof
        self.bases: list[_File] = []
        self.fs = self.net = None           # merged filesystem/network, computed once


def resolve_extends(reader, path: Path, read: Callable, locate: Callable, names: Callable):
    """Read *path* and the profiles it extends (each file once) and merge them.

    *read(path)* reads one file without its bases (a Profile with ``base_refs``)
    or returns None; *locate(ref, referrer)* finds a profile that file *referrer*
    names (SbxError: it may not be used), and *names()* lists the ones a
    misspelt reference may have meant.
    Returns (the merged Profile or None when *path* could not be read, whether
    every base was found and read)."""
    done: dict[str, _File | None] = {}
    complete = [True]

    def visit(p: Path, chain: list[str]) -> _File | None:
        key = chain[-1]
        if key in done:
            return done[key]
        prof = read(p)
        node = done[key] = _File(prof) if prof is not None else None
        if node is None:
            return None
        for ref, rpos in prof.base_refs:
            try:
                base_path = locate(ref, p)
            except SbxError as err:            # a base others could have written
                reader.error(rpos, str(err))
                complete[0] = False
                continue
            if base_path is None:
                reader.error(rpos, f"unknown profile '{ref}' in extends", did_you_mean(ref, names()))
                complete[0] = False
                continue
            bkey = str(base_path.resolve())
            if bkey in chain:
                reader.error(rpos, f"profile '{ref}' extends itself (cycle: {' -> '.join(chain + [bkey])})")
                complete[0] = False
                continue
            if bkey not in done:
                if len(chain) >= MAX_EXTENDS_DEPTH:
                    reader.error(rpos, f"extends nests more than {MAX_EXTENDS_DEPTH} profiles deep",
                                 hint="extend the profiles this one needs directly")
                    complete[0] = False
                    continue
                if len(done) >= MAX_PROFILE_FILES:
                    reader.error(rpos, f"a profile may be built from at most {MAX_PROFILE_FILES} files")
                    complete[0] = False
                    continue
            base = visit(base_path, chain + [bkey])
            if base is not None:
                node.bases.append(base)
            else:
                complete[0] = False
        return node

    root = visit(path, [str(path.resolve())])
    if root is None:
        return None, False
    return _merge(reader, root), complete[0]


def _preorder(root: _File) -> list[_File]:
    """Files in depth-first order, each at its first occurrence."""
    out, seen, stack = [], set(), [root]
    while stack:
        f = stack.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        out.append(f)
        stack.extend(reversed(f.bases))
    return out


def _merge(reader, root: _File):
    """The root's Profile with its bases merged in: rules and settings in
    depth-first order (first occurrence wins), filesystem and network rules
    with each file's ``inherit``."""
    prof = root.prof
    files = _preorder(root)
    prof.extends = [b.prof.name for b in root.bases]
    prof.rules = [r for f in files for r in f.prof.rules]
    for f in files[1:]:
        base = f.prof
        for attr in SETTINGS:
            if getattr(prof, attr).value is None and getattr(base, attr).value is not None:
                setattr(prof, attr, getattr(base, attr))
        for key, val in base.scope.items():
            prof.scope.setdefault(key, val)
        for g, val in base.local_groups.items():
            mine = prof.local_groups.get(g)
            if mine is None:
                prof.local_groups[g] = val
            elif mine[1] != val[1]:           # the same file reached twice defines it once
                redefined(reader, g, mine[1], val[1])
    for f in reversed(files):                 # bases before the files that extend them
        _merge_fs_net(f)
    prof.fs, prof.net = root.fs, root.net
    return prof


def _merge_fs_net(f: _File) -> None:
    """``filesystem:``/``network:`` of *f* with its bases' (already merged):
    a base's entries follow this file's unless it says ``inherit: false``.
    The network merge is not associative (a base's ``any`` keeps this file's
    port list), so it is done per file, bottom-up, like the tree expansion."""
    prof = f.prof
    fs, net = prof.fs, prof.net
    for b in f.bases:
        if b.fs is not None and (fs is None or prof.fs_inherit):
            fs = list(dict.fromkeys((fs or []) + b.fs))     # this file's entries first, once
        if b.net is not None and (net is None or prof.net_inherit):
            mine = dict(net or {})
            for key, val in b.net.items():
                if key not in mine:
                    mine[key] = val
                elif mine[key] != "any" and val != "any":
                    mine[key] = list(dict.fromkeys(mine[key] + val))
            net = mine
    f.fs, f.net = fs, net


def redefined(reader, group: str, pos: Position, first: Position) -> None:
    """A group name may be defined once: a profile that redefined a group used by
    a profile it extends would silently change what that profile's rules mean."""
    reader.error(pos, f"group '@{group}' is already defined; a profile cannot redefine a group "
                      "that other profiles' rules use", hint="give the group a new name",
                 notes=[Diagnostic(first, "first defined here", severity="note")])


class _Names:
    """An ordered set of syscall names, with a bit mask for cheap subset tests."""

    __slots__ = ("items", "mask")

    def __init__(self):
        self.items: list = []
        self.mask = 0


def expand_groups(reader, rules, groups: dict, known) -> None:
    """Replace @group references in *rules* by syscall names, once each; check
    that every name exists somewhere.  Each name keeps the position of the
    reference in the rule that brought it in first."""
    bits: dict[str, int] = {}
    memo: dict[str, _Names] = {}
    active: set[str] = set()

    def bit(name: str) -> int:
        b = bits.get(name)
        if b is None:
            b = bits[name] = 1 << len(bits)
        return b

    def group(ref: str, pos: Position, depth: int) -> _Names | None:
        g = ref[1:]
        if g not in groups:
            close = did_you_mean(g, groups)
            reader.error(pos, f"unknown group '{ref}'", close and
                         "did you mean '@" + close.split("'")[1] + "'?")
            return None
        if g in memo:
            return memo[g]
        if g in active:
            reader.error(pos, f"group '{ref}' includes itself")
            return None
        if depth > MAX_GROUP_DEPTH:
            reader.error(pos, f"groups nest more than {MAX_GROUP_DEPTH} deep")
            return None
        active.add(g)
        out = _Names()
        for member, mpos in groups[g][0]:
            add(out, member, mpos, mpos, depth + 1, None)
        active.discard(g)
        memo[g] = out
        return out

    def add(out: _Names, ref: str, pos: Position, at, depth: int, twice) -> None:
        """Add *ref* (a name or a group) to *out*; each new name gets position *at*."""
        if not ref.startswith("@"):
            if ref not in known:
                reader.error(pos, f"unknown syscall '{ref}'", did_you_mean(ref, known))
                return
            b = bit(ref)
            if out.mask & b:
                if twice is not None:
                    twice.append((ref, pos))
                return
            out.mask |= b
            out.items.append((ref, at))
            return
        members = group(ref, pos, depth)
        if members is None:
            return
        if twice is not None and members.mask & out.mask:
            twice.extend((n, pos) for n, _ in members.items if bits[n] & out.mask)
        new = members.mask & ~out.mask
        if not new:
            return
        out.mask |= new
        out.items.extend((n, at) for n, _ in members.items if bits[n] & new)

    for rule in rules:
        out, twice = _Names(), []
        for name, pos in rule.names:
            add(out, name, pos, pos, 1, twice)
        rule.names, rule.twice = out.items, twice

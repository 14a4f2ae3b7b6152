"""Where a profile name is found: the user's profiles, the system's, then the built-in ones.

A name (``--profile web``, ``extends: [web]``, ``sbx explain web ...``) is
looked up, first found wins, in:

1. ``$XDG_CONFIG_HOME/sbx/profiles/NAME.yaml`` (``~/.config/sbx/profiles``
   when XDG_CONFIG_HOME is unset, empty or relative, as the XDG base
   directory specification says),
2. ``/etc/sbx/profiles/NAME.yaml``,
3. the built-in profiles.

A reference with a ``/`` or ending in ``.yaml`` is a file, taken as given; a
name is never looked up in the current directory. A profile decides what a
later ``sbx run`` installs, so a user or system profile is refused (exit 2)
when it, or a directory above it, could be changed by anyone but its user
and root: owned by another user, or writable by group or others (a
root-owned sticky directory such as /tmp excepted, as for the filter cache).
A name inside a built-in profile always means a built-in (a built-in means
the same everywhere); a user or system profile that extends its own name
(``~/.config/sbx/profiles/web.yaml`` with ``extends: [web]``) gets the next
one on the path. Import-light: the fast path of ``sbx run`` resolves names.
"""
from __future__ import annotations

import os
import stat

from .errors import UsageError
from .paths import SYSTEM_DIR, builtin_dir, search_dirs, unsafe_reason, user_dir  # noqa: F401

ORIGINS = ("user", "system", "built-in")


class UnsafeProfile(UsageError):
    """A profile on the search path that others could have written (exit 2)."""


def is_name(ref: str) -> bool:
    """A profile reference that is looked up by name, not a file."""
    return "/" not in ref and not ref.endswith((".yaml", ".yml")) and ref not in ("", ".", "..")


def check_safe(path: str, uid: int | None = None) -> None:
    """UnsafeProfile unless *path* (and what it links to) and every directory above
    them can be changed only by root and *uid* (default: the effective uid)."""
    uid = os.geteuid() if uid is None else uid
    for where in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
        probe = "/"
        parts = [p for p in where.split("/") if p]
        for part in parts:
            probe = os.path.join(probe, part)
            try:
                st = os.lstat(probe)
            except OSError:
                continue                  # it vanished: reading it will say so
            if stat.S_ISLNK(st.st_mode):
                continue                  # its target is checked as the real path
            why = unsafe_reason(st, uid, probe)
            if why:
                raise UnsafeProfile(
                    f"refusing profile {path}: {why}; a profile decides what a later sbx run "
                    "installs, so only its user and root may be able to change it "
                    f"(fix: chown or chmod go-w {probe})")


class Found:
    """Where a name was found, and the files looked for first that did not exist."""

    __slots__ = ("path", "origin", "absent")

    def __init__(self, path: str, origin: str, absent: list[str]):
        self.path, self.origin, self.absent = path, origin, absent


def find(name: str, referrer: str | None = None, env=None) -> Found | None:
    """The profile NAME on the search path (UnsafeProfile if the one found is unsafe).

    *referrer*: the profile file whose ``extends`` names it. A built-in's names
    are built-ins; any other file is skipped over itself."""
    if not is_name(name):
        return None
    dirs = search_dirs(env)
    builtin = os.path.realpath(builtin_dir())
    if referrer is not None and os.path.dirname(os.path.realpath(referrer)) == builtin:
        dirs = dirs[-1:]
    absent: list[str] = []
    for origin, directory in dirs:
        path = os.path.join(directory, f"{name}.yaml")
        if origin == "built-in" and name == "groups":
            continue
        if referrer is not None and os.path.realpath(path) == os.path.realpath(referrer):
            continue
        if not os.path.lexists(path):
            absent.append(path)
            continue
        if origin != "built-in":
            check_safe(path)
        return Found(path, origin, absent)
    return None


def listing(env=None) -> list[tuple[str, str, str, str | None]]:
    """[(name, origin, path, shadowed by)] of every profile on the path, by name."""
    seen: dict[str, str] = {}
    out = []
    for origin, directory in search_dirs(env):
        try:
            names = sorted(e.name[:-5] for e in os.scandir(directory)
                           if e.name.endswith(".yaml") and not e.name.startswith("."))
        except OSError:
            continue
        for name in names:
            if origin == "built-in" and name == "groups":
                continue
            out.append((name, origin, os.path.join(directory, f"{name}.yaml"), seen.get(name)))
            seen.setdefault(name, origin)
    return sorted(out, key=lambda row: (row[0], ORIGINS.index(row[1])))


__all__ = ["Found", "ORIGINS", "SYSTEM_DIR", "UnsafeProfile", "check_safe", "find", "is_name",
           "listing", "search_dirs", "user_dir"]

"""What a confined command left in its working directory that git runs later, outside any sandbox.

A profile lets the command write its working directory: that is its work. In
a git repository that includes ``.git``, whose hooks git runs at the next
commit, checkout or push, and whose ``config`` can name programs git starts
(``core.fsmonitor`` on every ``git status``, ``core.hooksPath``, aliases,
filters, ``core.pager``). Nothing marks them as changed (``git status`` does
not list them), and closing ``.git`` to writes would close the working
directory itself to new files (Landlock: a path kept out of writes closes
the directories above it to new entries). So ``sbx run`` looks at them
before and after the command and says what changed: the repository's
``.git`` entry (a file may point elsewhere), its ``config``, its ``hooks``
directory and every file in it.

Import-light: ``snapshot`` runs on ``sbx run``'s hot path (a few lstat calls,
one listing of hooks in a repository; the walk up to find it elsewhere).
"""
from __future__ import annotations

import os


def _identity(path: str):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def git_dir(cwd: str) -> tuple[str, str] | None:
    """(the ``.git`` entry governing *cwd*, the repository directory it names), or None."""
    probe = cwd
    while True:
        entry = os.path.join(probe, ".git")
        if os.path.isdir(entry) and not os.path.islink(entry):
            return entry, entry
        if os.path.isfile(entry):                   # a worktree's or submodule's pointer
            try:
                with open(entry, "rb") as fh:
                    line = fh.read(4096).split(b"\n", 1)[0]
            except OSError:
                return entry, entry
            if line.startswith(b"gitdir: "):
                target = os.fsdecode(line[8:].strip())
                return entry, os.path.normpath(os.path.join(probe, target))
            return entry, entry
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent


class Snapshot:
    """The identities of what git runs from the repository of a directory."""

    def __init__(self, cwd: str):
        found = git_dir(cwd)
        self.entry, self.repo = found if found else (None, None)
        self.seen = self._look() if found else {}

    def _look(self) -> dict[str, object]:
        entry = _identity(self.entry)
        if entry is not None and os.path.isdir(self.entry):
            entry = entry[:3]               # a directory's times change with its entries
        out = {self.entry: entry}
        for name in ("config", "hooks"):
            out[os.path.join(self.repo, name)] = _identity(os.path.join(self.repo, name))
        hooks = os.path.join(self.repo, "hooks")
        try:
            with os.scandir(hooks) as it:
                names = [e.name for e in it]
        except OSError:
            names = []
        for name in names:
            path = os.path.join(hooks, name)
            out[path] = _identity(path)
        return out

    def changes(self) -> list[str]:
        """What the command changed since the snapshot, each in plain words."""
        if self.entry is None:
            return []
        now = self._look()
        changed = [p for p in dict.fromkeys(list(self.seen) + list(now))
                   if self.seen.get(p) != now.get(p) and p != os.path.join(self.repo, "hooks")]
        out = []
        hooks = os.path.join(self.repo, "hooks") + "/"
        for path in changed:
            if path == self.entry:
                out.append(f"the command replaced {path}: git now takes the repository (its hooks "
                           "and configuration) from where it points; review it before running git "
                           "there")
            elif path.startswith(hooks):
                what = "removed" if now.get(path) is None else \
                    "added" if self.seen.get(path) is None else "changed"
                if what != "removed":
                    out.append(f"the command {what} the git hook {path}: git runs it, outside any "
                               "sandbox, at the next commit, checkout, merge or push; review or "
                               "remove it")
            else:
                out.append(f"the command changed {path}: git runs the programs it names outside "
                           "any sandbox (core.fsmonitor on every git status, core.hooksPath, "
                           "aliases, filters); review it with git config --local --list")
        if self.seen.get(hooks.rstrip("/")) != now.get(hooks.rstrip("/")) and not \
                any(p.startswith(hooks) for p in changed):
            out.append(f"the command replaced {hooks.rstrip('/')}: git runs the hooks found "
                       "there; review it")
        return out


__all__ = ["Snapshot", "git_dir"]

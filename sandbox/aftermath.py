"""What a confined command left in its working directory that git runs later, outside any sandbox.

A profile lets the command write its working directory: that is its work. In
a git repository that includes ``.git``, whose hooks git runs at the next
commit, checkout or push, and whose ``config`` can name programs git starts
(``core.fsmonitor`` on every ``git status``, ``core.hooksPath``, aliases,
filters, ``core.pager``). Nothing marks them as changed (``git status`` does
not list them), and closing ``.git`` to writes would close the working
directory itself to new files (Landlock: a path kept out of writes closes
the directories above it to new entries). So ``sbx run`` looks at them
before and after the command and says what changed:

- the repository's ``.git`` entry (a file may point elsewhere), and the
  repository it names: ``config``, ``config.worktree``, ``commondir`` (where
  a worktree takes its configuration and hooks from), ``info/attributes``,
  the hooks directory and every file in it, and the hooks directory
  ``core.hooksPath`` names (husky's ``.husky/_``, ignored by git itself);
- the same for each submodule's repository (``modules/*``): ``git status``
  runs a submodule's ``core.fsmonitor`` too;
- a repository that is there after the command and was not before, or another
  one, when it runs anything (a hook that is no ``.sample``, a configuration
  naming a program).

Import-light: ``snapshot`` runs on ``sbx run``'s hot path (a few lstat calls,
one listing of hooks in a repository; the walk up to find it elsewhere).
"""
from __future__ import annotations

import os
import stat

# configuration keys that name a program git runs by itself (git-config(1))
_RUNS = (b"fsmonitor", b"hookspath", b"pager", b"editor", b"sshcommand", b"askpass",
         b"textconv", b"clean", b"smudge", b"process", b"helper")


def _identity(path: str):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read(path: str, limit: int = 1 << 20) -> bytes | None:
    """The first *limit* bytes of the regular file *path*, or None. Every file read
    here is the command's to make: a FIFO in place of .git/config would block an
    open or a read for ever (O_NONBLOCK, then the type is checked), and a link
    would lead anywhere (O_NOFOLLOW)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def git_dir(cwd: str) -> tuple[str, str] | None:
    """(the ``.git`` entry governing *cwd*, the repository directory it names), or None."""
    probe = cwd
    while True:
        entry = os.path.join(probe, ".git")
        if os.path.isdir(entry) and not os.path.islink(entry):
            return entry, entry
        if os.path.isfile(entry):                   # a worktree's or submodule's pointer
            text = _read(entry, 4096)
            if text is None:
                return entry, entry
            line = text.split(b"\n", 1)[0]
            if line.startswith(b"gitdir: "):
                target = os.fsdecode(line[8:].strip())
                return entry, os.path.normpath(os.path.join(probe, target))
            return entry, entry
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent


def _hooks_path(repo: str, top: str) -> str | None:
    """The directory ``core.hooksPath`` of *repo*'s config names (relative to the
    working tree *top*), read plainly: the last such line of the file."""
    text = _read(os.path.join(repo, "config"))
    if text is None:
        return None
    found = None
    for line in text.splitlines():
        key, eq, value = line.partition(b"=")
        if eq and key.strip().lower() == b"hookspath":
            found = os.fsdecode(value.strip().strip(b'"'))
    if not found:
        return None
    found = os.path.expanduser(found)
    return os.path.normpath(os.path.join(top, found))


def _listed(directory: str) -> list[str]:
    try:
        with os.scandir(directory) as it:
            return [os.path.join(directory, e.name) for e in it]
    except OSError:
        return []


def _runs_anything(repo: str) -> bool:
    """A repository whose hooks or configuration make git run a program."""
    if any(not p.endswith(".sample") for p in _listed(os.path.join(repo, "hooks"))):
        return True
    text = _read(os.path.join(repo, "config"))
    if text is None:
        return False
    for line in text.lower().splitlines():
        key, eq, value = line.partition(b"=")
        if eq and (key.strip() in _RUNS or value.strip().startswith(b"!")):   # a shell alias
            return True
    return False


class Snapshot:
    """The identities of what git runs from the repository of a directory."""

    def __init__(self, cwd: str):
        self.cwd = cwd
        found = git_dir(cwd)
        self.entry, self.repo = found if found else (None, None)
        self.seen = self._look() if found else {}

    def _look(self) -> dict[str, object]:
        entry = _identity(self.entry)
        if entry is not None and os.path.isdir(self.entry):
            entry = entry[:3]               # a directory's times change with its entries
        out = {self.entry: entry}
        repos = [self.repo] + [p for p in _listed(os.path.join(self.repo, "modules"))
                               if os.path.isdir(p)]
        for repo in repos:
            for name in ("config", "config.worktree", "commondir", "info/attributes"):
                out[os.path.join(repo, name)] = _identity(os.path.join(repo, name))
            hooks = [os.path.join(repo, "hooks")]
            named = _hooks_path(repo, os.path.dirname(self.entry))
            if named:
                hooks.append(named)
            for d in hooks:
                for path in _listed(d):
                    out[path] = _identity(path)
        return out

    def changes(self) -> list[str]:
        """What the command changed since the snapshot, each in plain words."""
        found = git_dir(self.cwd)
        if found != (self.entry, self.repo) and found is not None and \
                (self.entry is None or found[0] != self.entry) and _runs_anything(found[1]):
            return [f"the command made the git repository {found[1]} where it works, with hooks "
                    "or configuration that run programs: git runs them, outside any sandbox, "
                    "at the next git command there; review it before running git there"]
        if self.entry is None:
            return []
        now = self._look()
        changed = [p for p in dict.fromkeys(list(self.seen) + list(now))
                   if self.seen.get(p) != now.get(p)]
        out = []
        for path in changed:
            name = os.path.basename(path)
            if path == self.entry:
                out.append(f"the command replaced {path}: git now takes the repository (its hooks "
                           "and configuration) from where it points; review it before running git "
                           "there")
            elif name in ("config", "config.worktree", "commondir", "attributes") and \
                    path.startswith(self.repo):
                if now.get(path) is not None:
                    out.append(f"the command changed {path}: git runs the programs it names "
                               "outside any sandbox (core.fsmonitor on every git status, "
                               "core.hooksPath, aliases, filters); review it with git config "
                               "--list --show-origin")
            elif now.get(path) is not None:
                what = "added" if self.seen.get(path) is None else "changed"
                out.append(f"the command {what} the git hook {path}: git runs it, outside any "
                           "sandbox, at the next commit, checkout, merge or push; review or "
                           "remove it")
        return out


__all__ = ["Snapshot", "git_dir"]

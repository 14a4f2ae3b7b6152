"""Which profile each confined command runs: a record per ``sbx run``, read by ``sbx status``.

``sbx run`` writes ``run/PID`` in its filter cache directory (``sandbox.cache``)
when it starts a command, and removes it when the command exits. Why there:
the record says what a process is confined by, so the process must not be
able to write it, and the cache directory is the one place every run's
Landlock base layer keeps out of every confined command's reach (writes at
or below it are refused, whatever the profile allows); it is also private to
its user (0700, checked like the cache). The command's own argv, environment
or files, and any directory a profile may let it write, could be forged by
it. Without Landlock the cache is not protected and no record is written
(``sbx status`` then says the profile is unknown).

A record holds the pid's start time (field 22 of /proc/PID/stat), so a reused
pid never inherits it. A descendant of the command is attributed through its
parent chain; one reparented away from it (a daemon) is not. Import-light:
``sbx run``'s hot path writes the record.
"""
from __future__ import annotations

import os

from . import cache

DIR = "run"


def start_time(pid: int, proc: str = "/proc") -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot), or None if it is gone."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[19].decode() if len(fields) > 19 else None


def _dir(create: bool) -> str | None:
    base, _why = cache.usable_dir(create=create)
    if base is None:
        return None
    path = os.path.join(base, DIR)
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return None
    return path


def record(pid: int, profile: str, path: str | None, mode: str) -> str | None:
    """Write the record of *pid* (its profile's name and file, the mode); its path, or
    None when there is no protected place for it. Best effort: never fails a run."""
    directory = _dir(create=True)
    started = start_time(pid)
    if directory is None or started is None or "\n" in profile or "\n" in (path or ""):
        return None
    target = os.path.join(directory, str(pid))
    tmp = f"{target}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, f"start {started}\nprofile {profile}\npath {path or '-'}\nmode {mode}\n"
                     .encode("utf-8", "replace"))
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return None
    return target


def forget(where: str | None) -> None:
    if where:
        try:
            os.unlink(where)
        except OSError:
            pass


def _read(directory: str, pid: int) -> dict | None:
    try:
        fd = os.open(os.path.join(directory, str(pid)), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        data = os.read(fd, 8192) if st.st_size <= 8192 else b""
    finally:
        os.close(fd)
    if not data or st.st_mode & 0o077:
        return None
    out = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, _, val = line.partition(" ")
        out[key] = val
    return out if {"start", "profile", "path", "mode"} <= set(out) else None


def directories(uid: int) -> list[str]:
    """The record directories whose records may speak of a process of *uid*: its
    own user's and root's (a command root started may have changed its user)."""
    out = []
    for owner in dict.fromkeys((uid, 0)):
        base = cache.location(owner)
        path = os.path.join(base, DIR)
        try:
            st = os.lstat(path)
            parent = os.lstat(base)
        except OSError:
            continue
        if st.st_uid == owner and parent.st_uid == owner and not (st.st_mode | parent.st_mode) & 0o077 \
                and os.path.isdir(path) and not os.path.islink(path):
            out.append(path)
    return out


def profile_of(pid: int, proc: str = "/proc") -> dict | None:
    """The record that covers *pid*: its own, or its nearest ancestor's (the
    command's, for its children), matched by start time; None if none does."""
    try:
        uid = os.stat(f"{proc}/{pid}").st_uid
    except OSError:
        return None
    dirs = directories(uid)
    seen = 0
    while pid > 1 and seen < 64:
        for d in dirs:
            rec = _read(d, pid)
            if rec is not None and rec["start"] == start_time(pid, proc):
                return dict(rec, pid=pid)
        pid = _ppid(pid, proc)
        seen += 1
    return None


def _ppid(pid: int, proc: str) -> int:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as fh:
            data = fh.read()
        return int(data[data.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


__all__ = ["directories", "forget", "profile_of", "record", "start_time"]

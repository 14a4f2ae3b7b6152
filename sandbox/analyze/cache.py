"""Per-object summaries on disk, keyed by ELF build-id and the analyser's own version.

A second program that uses the same libc then costs only its own code.  A
summary decides what a generated profile allows, so the cache gets the filter
cache's protection (``sandbox.cache``):

- **Where.** ``analyze`` below the filter cache's fixed per-user directory
  (``sandbox.cache.location``: /var/cache/sbx for root, /run/user/UID/sbx for
  everyone else), never taken from the environment. Every ``sbx run`` and
  ``sbx trace`` keeps its command from writing at or below that directory
  (Landlock), so a confined command cannot plant a summary; the old place
  for ordinary users, ~/.cache/sbx/analyze, was writable by any profile that
  writes $HOME. That directory and its ancestors are checked as the filter
  cache checks them (``usable_dir``); without Landlock, or without a usable
  place, nothing is cached.
- **Checked before use.** The directory is created 0700 and refused when
  another user owns it or anyone else may use it. An entry is opened without
  following links and without blocking (a FIFO cannot hang sbx), and must be
  a regular file owned by the user, private (0600), at most ``MAX_ENTRY``
  bytes, for this analyser version and key, with a SHA-256 ``digest`` of its
  summary that matches. Anything else is a miss: the object is analysed again
  and the entry replaced.
- **Written safely.** An O_CREAT|O_EXCL|O_NOFOLLOW temporary file (0600),
  renamed into place.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from .summary import Summary

_SOURCES = ("code.py", "dataflow.py", "ehframe.py", "elf.py", "summary.py", "wrappers.py")
_version: str | None = None


def analyser_version() -> str:
    """A digest of the modules that compute a summary, and of capstone's version: any change
    to either gives new keys, so stale summaries are never read."""
    global _version
    if _version is None:
        import capstone
        h = hashlib.sha256(capstone.__version__.encode())
        here = Path(__file__).parent
        for name in _SOURCES:
            h.update((here / name).read_bytes())
        _version = h.hexdigest()[:16]
    return _version


MAX_ENTRY = 64 << 20          # bytes; libpython's summary is about 6 MB


def cache_dir() -> Path:
    """Where summaries live for the current user (not created here)."""
    from .. import cache
    return Path(cache.location()) / "analyze"


def _digest(summary) -> str:
    """SHA-256 of a summary's JSON form, as ``store`` writes it."""
    return hashlib.sha256(json.dumps(summary, separators=(",", ":"))
                          .encode()).hexdigest()


def _protected() -> str | None:
    """Why the default place cannot hold summaries now, or None: the filter cache's
    directory must be usable, and Landlock must be there to keep commands out of it."""
    from .. import cache
    from ..kernel import landlock
    if landlock.abi() <= 0:
        return "Landlock is not available to keep confined commands from writing it"
    where, why = cache.usable_dir(create=True)
    return None if where else why


class CacheUnsafe(Exception):
    """The cache directory exists but may not be trusted; str() says why."""


def _safe_dir(path: Path, create: bool) -> Path | None:
    """*path*, made if needed (0700); CacheUnsafe if someone else could write into it."""
    if create:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError:
            return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        raise CacheUnsafe(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        raise CacheUnsafe(f"{path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})")
    if st.st_mode & 0o077:
        raise CacheUnsafe(f"{path} is writable by group or others (mode {st.st_mode & 0o777:o})"
                          if st.st_mode & 0o022 else
                          f"{path} is open to group or others (mode {st.st_mode & 0o777:o})")
    return path


class SummaryCache:
    """load/store of summaries in one directory; ``enabled`` False means always a miss."""

    def __init__(self, directory: Path | None = None, enabled: bool = True):
        self.directory = directory or cache_dir()
        self.enabled = enabled
        self.warning: str | None = None
        self.hits = self.misses = 0
        # the default place is used only under the filter cache's protection
        self._check_place = directory is None

    def _path(self, key: str) -> Path:
        safe = "".join(c for c in key if c.isalnum())[:80] or "x"
        return self.directory / f"{safe}-{analyser_version()}.json"

    def _usable(self, create: bool) -> bool:
        if not self.enabled:
            return False
        if self._check_place:
            why = _protected()
            if why:
                self.warning = f"not using the analysis cache: {why}"
                self.enabled = False
                return False
            self._check_place = False
        try:
            return _safe_dir(self.directory, create) is not None
        except CacheUnsafe as err:
            self.warning = f"not using the analysis cache: {err}"
            self.enabled = False
            return False

    def load(self, key: str) -> Summary | None:
        """The stored summary for *key*, or None (missing, unreadable or malformed)."""
        if not self._usable(create=False):
            self.misses += 1
            return None
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or \
                        st.st_mode & 0o077 or st.st_size > MAX_ENTRY:
                    raise ValueError("not a private regular file of ours, or too large")
                raw = fh.read(MAX_ENTRY + 1)
            if len(raw) > MAX_ENTRY:
                raise ValueError("too large")
            data = json.loads(raw)
            if data.get("analyser") != analyser_version() or data.get("key") != key:
                raise ValueError("another version")
            if data.get("digest") != _digest(data["summary"]):
                raise ValueError("damaged")
            out = Summary.from_json(data["summary"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            self.misses += 1
            return None
        self.hits += 1
        return out

    def store(self, key: str, summary: Summary) -> None:
        """Write *summary* for *key*; a failure only means the next run analyses again."""
        if not self._usable(create=True):
            return
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        doc = summary.to_json()
        data = json.dumps({"analyser": analyser_version(), "key": key, "digest": _digest(doc),
                           "summary": doc}, separators=(",", ":"))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass

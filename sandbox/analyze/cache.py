"""Per-object summaries on disk, keyed by ELF build-id and the analyser's own version.

A second program that uses the same libc then costs only its own code.  The
directory (``cache_dir``) is /var/cache/sbx/analyze for root, else
$XDG_CACHE_HOME/sbx/analyze or ~/.cache/sbx/analyze.  It is created 0700 and
refused when another user owns it or group/others may write it: a summary
decides what a generated profile allows, so nobody else may plant one.
Entries are written to an O_CREAT|O_EXCL|O_NOFOLLOW temporary file and
renamed into place.  Anything unreadable, malformed or from another analyser
version is a miss: the object is analysed again and the entry replaced.
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


def cache_dir() -> Path:
    """Where summaries live for the current user (not created here)."""
    if os.geteuid() == 0:
        return Path("/var/cache/sbx/analyze")
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "sbx" / "analyze"


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
    if st.st_mode & 0o022:
        raise CacheUnsafe(f"{path} is writable by group or others (mode {st.st_mode & 0o777:o})")
    return path


class SummaryCache:
    """load/store of summaries in one directory; ``enabled`` False means always a miss."""

    def __init__(self, directory: Path | None = None, enabled: bool = True):
        self.directory = directory or cache_dir()
        self.enabled = enabled
        self.warning: str | None = None
        self.hits = self.misses = 0

    def _path(self, key: str) -> Path:
        safe = "".join(c for c in key if c.isalnum())[:80] or "x"
        return self.directory / f"{safe}-{analyser_version()}.json"

    def _usable(self, create: bool) -> bool:
        if not self.enabled:
            return False
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
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as fh:
                if os.fstat(fh.fileno()).st_uid != os.geteuid():
                    raise ValueError("not ours")
                data = json.loads(fh.read())
            if data.get("analyser") != analyser_version() or data.get("key") != key:
                raise ValueError("another version")
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
        data = json.dumps({"analyser": analyser_version(), "key": key,
                           "summary": summary.to_json()}, separators=(",", ":"))
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

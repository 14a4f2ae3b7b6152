"""Compiled-filter cache, keyed by the content hash of every file a profile was built from.

Lives on the ``sbx run`` hot path: no YAML, no JSON, no hashlib (its OpenSSL
import alone costs milliseconds) — a tiny text format and the builtin SHA-256.
An entry is valid only while the hash of each recorded file, the compiler's
fingerprint and the native architecture are unchanged.
"""
from __future__ import annotations

import os

try:                                   # the builtin (non-OpenSSL) SHA-256
    from _sha2 import sha256          # Python 3.12+
except ImportError:                    # pragma: no cover - version dependent
    try:
        from _sha256 import sha256    # Python <= 3.11
    except ImportError:
        from hashlib import sha256

FORMAT = "sbx-filter-cache 1"
_PKG_DIRS = ("bpf_filters", os.path.join("bpf_filters", "syscalls"), os.path.join("sandbox", "policy"))


def cache_dir() -> str:
    base = os.environ.get("SBX_CACHE_DIR")
    if base:
        return base
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "sbx")


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
    return h.hexdigest()[:32]


def _entry_path(key: str) -> str:
    return os.path.join(cache_dir(), "filters", sha256(key.encode()).hexdigest()[:40])


def lookup(key: str, fp: str) -> tuple[bytes, str] | None:
    """The cached (filter, profile name) for *key*, if every dependency is unchanged."""
    try:
        with open(_entry_path(key)) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    if not lines or lines[0] != FORMAT:
        return None
    prog = name = None
    for line in lines[1:]:
        tag, _, rest = line.partition(" ")
        if tag == "fingerprint" and rest != fp:
            return None
        if tag == "dep":
            digest, _, path = rest.partition(" ")
            if file_hash(path) != digest:
                return None
        elif tag == "name":
            name = rest
        elif tag == "filter":
            try:
                prog = bytes.fromhex(rest)
            except ValueError:
                return None
    if prog is None or name is None:
        return None
    return prog, name


def store(key: str, fp: str, deps: list[str], prog: bytes, name: str) -> None:
    """Write an entry atomically; a cache that cannot be written is simply skipped."""
    path = _entry_path(key)
    lines = [FORMAT, f"fingerprint {fp}", f"name {name}"]
    for d in deps:
        digest = file_hash(d)
        if digest is None:
            return
        lines.append(f"dep {digest} {d}")
    lines.append(f"filter {prog.hex()}")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass

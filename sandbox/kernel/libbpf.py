"""ctypes facade over the system libbpf (>= 1.0): load an eBPF object, attach
its programs, read and write its maps, drain its ring buffers.

Also the few kernel facts an eBPF loader needs (privilege, kernel BTF, the
threads of a process, cgroup v2 ids).  Every failure is raised as `BpfError`
naming the errno, what was attempted and, for a rejected program, the end of
the verifier log.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import os
import re
import threading
from pathlib import Path
from typing import Callable, Iterator

LIBBPF_NAMES = ("libbpf.so.1", "libbpf.so")
KERNEL_BTF = Path("/sys/kernel/btf/vmlinux")
LOG_EXCERPT_LINES = 30

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
_PERCPU_MAP_TYPES = {5, 6, 10}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
_LEVEL_DEBUG = 2
_LOG_BUF_SIZE = 4 << 20
_LIBBPF_ERRNO_BASE = 4000
_LOG_BEGIN, _LOG_END = "-- BEGIN PROG LOAD LOG --", "-- END PROG LOAD LOG --"

_vp = ctypes.c_void_p
# libbpf's print callback: (level, the format's address, the va_list's address), for
# libc's vsnprintf (kernel.libc: the one libc binding; a va_list is passed as a pointer)
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, _vp, _vp)
_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, _vp, _vp, ctypes.c_size_t)

_PROTOTYPES = {
    # name: (restype, argtypes)
    "libbpf_major_version": (ctypes.c_uint32, []),
    "libbpf_minor_version": (ctypes.c_uint32, []),
    "libbpf_set_print": (_vp, [_PRINT_FN]),
    "libbpf_strerror": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]),
    "libbpf_probe_bpf_prog_type": (ctypes.c_int, [ctypes.c_int, _vp]),
    "bpf_object__open_file": (_vp, [ctypes.c_char_p, _vp]),
    "bpf_object__load": (ctypes.c_int, [_vp]),
    "bpf_object__close": (None, [_vp]),
    "bpf_object__next_program": (_vp, [_vp, _vp]),
    "bpf_object__find_program_by_name": (_vp, [_vp, ctypes.c_char_p]),
    "bpf_object__find_map_by_name": (_vp, [_vp, ctypes.c_char_p]),
    "bpf_program__name": (ctypes.c_char_p, [_vp]),
    "bpf_program__set_autoload": (ctypes.c_int, [_vp, ctypes.c_bool]),
    "bpf_program__attach": (_vp, [_vp]),
    "bpf_link__destroy": (ctypes.c_int, [_vp]),
    "bpf_map__fd": (ctypes.c_int, [_vp]),
    "bpf_map__type": (ctypes.c_int, [_vp]),
    "bpf_map__key_size": (ctypes.c_uint32, [_vp]),
    "bpf_map__value_size": (ctypes.c_uint32, [_vp]),
    "bpf_map__max_entries": (ctypes.c_uint32, [_vp]),
    "bpf_map_update_elem": (ctypes.c_int, [ctypes.c_int, _vp, _vp, ctypes.c_uint64]),
    "bpf_map_lookup_elem": (ctypes.c_int, [ctypes.c_int, _vp, _vp]),
    "bpf_map_delete_elem": (ctypes.c_int, [ctypes.c_int, _vp]),
    "bpf_map_get_next_key": (ctypes.c_int, [ctypes.c_int, _vp, _vp]),
    "ring_buffer__new": (_vp, [ctypes.c_int, _SAMPLE_FN, _vp, _vp]),
    "ring_buffer__poll": (ctypes.c_int, [_vp, ctypes.c_int]),
    "ring_buffer__consume": (ctypes.c_int, [_vp]),
    "ring_buffer__free": (None, [_vp]),
}


class BpfError(Exception):
    """A libbpf or bpf() operation failed; the message says what and why."""

    def __init__(self, what: str, err: int | None = None, log: str = ""):
        self.what, self.errno, self.log = what, err, log
        message = what
        if err:
            message += f": {_error_text(err)}"
        excerpt = log_excerpt(log)
        if excerpt:
            message += "\n" + excerpt
        super().__init__(message)


def _error_text(err: int) -> str:
    """"EPERM (Operation not permitted)", or libbpf's text for its own codes."""
    if err < _LIBBPF_ERRNO_BASE or _library is None:
        return f"{_errno.errorcode.get(err, str(err))} ({os.strerror(err)})"
    buf = ctypes.create_string_buffer(256)
    _library.cdll.libbpf_strerror(err, buf, len(buf))
    return f"libbpf error {err} ({buf.value.decode(errors='replace')})"


def log_excerpt(log: str, lines: int = LOG_EXCERPT_LINES) -> str:
    """The last *lines* non-empty lines of a libbpf/verifier log."""
    kept = [line for line in log.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


_STATS_PREFIXES = ("processed ", "verification time", "stack depth", "libbpf:")


def verifier_summary(log: str) -> str:
    """One line: the rejected program and the verifier's last complaint."""
    prog = re.search(r"prog '([^']+)': (?:BPF program load )?failed", log)
    block = log.split(_LOG_BEGIN)[-1].split(_LOG_END)[0] if _LOG_BEGIN in log else ""
    complaints = [line.strip() for line in block.splitlines()
                  if line.strip() and not line.startswith(_STATS_PREFIXES)]
    parts = [f"program {prog.group(1)}"] if prog else []
    parts += complaints[-2:]
    return ": ".join(parts)


class _Library:
    """libbpf.so loaded once, with prototypes and the print hook installed."""

    def __init__(self) -> None:
        self.cdll = self._open()
        missing = [name for name in _PROTOTYPES if not hasattr(self.cdll, name)]
        if missing:                    # a build or version without part of the 1.0 API
            raise BpfError(f"{_mapped_path(self.cdll._name)} lacks {len(missing)} function"
                           f"{'s' if len(missing) != 1 else ''} sbx needs ({', '.join(missing[:4])}"
                           f"{', ...' if len(missing) > 4 else ''}): install a complete libbpf >= "
                           "1.0 (Debian/Ubuntu package libbpf1)")
        for name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(self.cdll, name)
            fn.restype, fn.argtypes = restype, argtypes
        self.version = (self.cdll.libbpf_major_version(), self.cdll.libbpf_minor_version())
        if self.version < (1, 0):
            raise BpfError(f"libbpf {self.version[0]}.{self.version[1]} is too old: sbx needs "
                           "libbpf >= 1.0 (Debian/Ubuntu package libbpf1)")
        from . import libc
        self._vsnprintf = libc.long_function("vsnprintf", 4)
        self._buf = ctypes.create_string_buffer(_LOG_BUF_SIZE)
        self._lock = threading.Lock()
        self._log: list[str] | None = None
        self._print_cb = _PRINT_FN(self._on_print)
        self.cdll.libbpf_set_print(self._print_cb)

    @staticmethod
    def _open() -> ctypes.CDLL:
        errors = []
        for name in LIBBPF_NAMES:
            try:
                cdll = ctypes.CDLL(name, use_errno=True)
                cdll.libbpf_major_version  # noqa: B018  (absent before 0.6)
                return cdll
            except (OSError, AttributeError) as err:
                errors.append(f"{name}: {err}")
        raise BpfError("cannot load libbpf >= 1.0 (install the libbpf1 package): "
                       + "; ".join(errors))

    def _on_print(self, level: int, fmt: int | None, args: int | None) -> int:
        log = self._log
        if log is None or level >= _LEVEL_DEBUG or not fmt:
            return 0
        size = self._vsnprintf(ctypes.addressof(self._buf), _LOG_BUF_SIZE, fmt, args or 0)
        size = size if size < 1 << 31 else size - (1 << 32)     # an int, returned in a long
        if size > 0:
            log.append(self._buf.raw[:min(size, _LOG_BUF_SIZE - 1)].decode("utf-8", "replace"))
        return 0

    def call(self, what: str, fn: Callable[[], int], log: bool = False) -> int:
        """Run *fn* (a libbpf call returning 0 / -errno); raise BpfError on error."""
        with self._lock:
            self._log = [] if log else None
            try:
                ret = fn()
                text = "".join(self._log or [])
            finally:
                self._log = None
        if ret < 0:
            raise BpfError(what, -ret, text)
        return ret

    def pointer(self, what: str, fn: Callable[[], int | None], log: bool = False) -> int:
        """Run *fn* (a libbpf call returning a pointer, NULL + errno on error)."""
        with self._lock:
            self._log = [] if log else None
            try:
                ctypes.set_errno(0)
                ptr = fn()
                err = ctypes.get_errno()
                text = "".join(self._log or [])
            finally:
                self._log = None
        if not ptr:
            raise BpfError(what, err or _errno.EINVAL, text)
        return ptr


def _mapped_path(name: str) -> str:
    """Where the dynamic loader found library *name* (from /proc/self/maps), else *name*."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                path = line.rstrip("\n").split(None, 5)[-1]
                if os.path.basename(path) == name or path.endswith("/" + name):
                    return path
    except OSError:
        pass
    return name


_library: _Library | None = None
_library_lock = threading.Lock()


def library() -> _Library:
    """The process-wide libbpf handle (loaded and version-checked once)."""
    global _library
    with _library_lock:
        if _library is None:
            _library = _Library()
        return _library


def prog_type_supported(prog_type: int) -> bool:
    """Does the kernel load a trivial program of *prog_type* (needs privilege)?"""
    return library().cdll.libbpf_probe_bpf_prog_type(prog_type, None) == 1


class BpfMap:
    """One map of a loaded object, accessed by fd with raw bytes keys/values."""

    def __init__(self, lib: _Library, name: str, handle: int):
        fn = lib.cdll
        self._lib, self.name = lib, name
        self.fd = fn.bpf_map__fd(handle)
        self.type = fn.bpf_map__type(handle)
        self.key_size = fn.bpf_map__key_size(handle)
        self.value_size = fn.bpf_map__value_size(handle)
        self.max_entries = fn.bpf_map__max_entries(handle)
        if self.fd < 0:
            raise BpfError(f"map '{name}' has no fd (object not loaded?)", -self.fd)
        if self.type in _PERCPU_MAP_TYPES:
            raise BpfError(f"map '{name}': per-CPU maps are not supported by this facade")

    def _key(self, key: bytes) -> ctypes.Array:
        if len(key) != self.key_size:
            raise BpfError(f"map '{self.name}': key is {len(key)} bytes, expected {self.key_size}")
        return ctypes.create_string_buffer(key, self.key_size)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if len(value) != self.value_size:
            raise BpfError(f"map '{self.name}': value is {len(value)} bytes, "
                           f"expected {self.value_size}")
        k, v = self._key(key), ctypes.create_string_buffer(value, self.value_size)
        self._lib.call(f"update map '{self.name}'",
                       lambda: self._lib.cdll.bpf_map_update_elem(self.fd, k, v, flags))

    def lookup(self, key: bytes) -> bytes | None:
        k, v = self._key(key), ctypes.create_string_buffer(self.value_size)
        ret = self._lib.cdll.bpf_map_lookup_elem(self.fd, k, v)
        if ret == -_errno.ENOENT:
            return None
        if ret < 0:
            raise BpfError(f"look up map '{self.name}'", -ret)
        return v.raw

    def delete(self, key: bytes) -> bool:
        """Delete *key*; False if it was absent."""
        k = self._key(key)
        ret = self._lib.cdll.bpf_map_delete_elem(self.fd, k)
        if ret == -_errno.ENOENT:
            return False
        if ret < 0:
            raise BpfError(f"delete from map '{self.name}'", -ret)
        return True

    def keys(self) -> Iterator[bytes]:
        """Every key, via bpf_map_get_next_key (a hash map being changed
        concurrently may repeat or skip keys, as the kernel documents)."""
        prev = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            ret = self._lib.cdll.bpf_map_get_next_key(self.fd, prev, nxt)
            if ret == -_errno.ENOENT:
                return
            if ret < 0:
                raise BpfError(f"iterate map '{self.name}'", -ret)
            yield nxt.raw
            prev = ctypes.create_string_buffer(nxt.raw, self.key_size)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                yield key, value


class RingBuffer:
    """A libbpf ring_buffer over one BPF_MAP_TYPE_RINGBUF map.

    *callback* gets each record as bytes; an exception it raises stops the
    current poll and is re-raised from poll()/consume().  A callback that
    returns True has had enough: the current poll()/consume() returns after
    that record (without it, libbpf reads on for as long as the producers
    keep up, so a consumer slower than them would never return).
    """

    def __init__(self, ring_map: BpfMap, callback: Callable[[bytes], bool | None]):
        self._lib, self._callback = ring_map._lib, callback
        self._error: BaseException | None = None
        self._enough = False
        self._sample_cb = _SAMPLE_FN(self._on_sample)
        self._rb = self._lib.pointer(
            f"create ring buffer on map '{ring_map.name}'",
            lambda: self._lib.cdll.ring_buffer__new(ring_map.fd, self._sample_cb, None, None))

    def _on_sample(self, _ctx: int, data: int, size: int) -> int:
        # libbpf has already moved its consumer position past this record, so
        # a negative return keeps the record read and stops the loop there.
        try:
            if self._callback(ctypes.string_at(data, size)):
                self._enough = True
                return -1
        except BaseException as err:  # re-raised in the caller's frame
            self._error = err
            return -1
        return 0

    def _finish(self, what: str, ret: int) -> int:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        if self._enough:
            self._enough = False
            return 0
        if ret == -_errno.EINTR:
            return 0
        if ret < 0:
            raise BpfError(what, -ret)
        return ret

    def poll(self, timeout_ms: int) -> int:
        """Wait up to *timeout_ms* for records, handle them; returns how many."""
        if not self._rb:
            raise BpfError("poll a closed ring buffer")
        return self._finish("poll ring buffer", self._lib.cdll.ring_buffer__poll(self._rb, timeout_ms))

    def consume(self) -> int:
        """Handle every record available now, without waiting."""
        if not self._rb:
            raise BpfError("consume a closed ring buffer")
        return self._finish("consume ring buffer", self._lib.cdll.ring_buffer__consume(self._rb))

    def close(self) -> None:
        if self._rb:
            self._lib.cdll.ring_buffer__free(self._rb)
            self._rb = None


class BpfObject:
    """An eBPF object file: open, choose programs, load, attach, close.

    Use as a context manager, or call close(); close() destroys the links
    (detaching the programs) and unloads everything.
    """

    def __init__(self, path: str | os.PathLike):
        self._lib = library()
        self.path = str(path)
        if not os.path.exists(self.path):
            raise BpfError(f"eBPF object {self.path} not found", _errno.ENOENT)
        self._obj = self._lib.pointer(
            f"open eBPF object {self.path}",
            lambda: self._lib.cdll.bpf_object__open_file(self.path.encode(), None), log=True)
        self._links: dict[str, int] = {}
        self._maps: dict[str, BpfMap] = {}

    def _require(self) -> int:
        if not self._obj:
            raise BpfError(f"eBPF object {self.path} is closed")
        return self._obj

    def program_names(self) -> list[str]:
        names, prog = [], None
        while True:
            prog = self._lib.cdll.bpf_object__next_program(self._require(), prog)
            if not prog:
                return names
            names.append(self._lib.cdll.bpf_program__name(prog).decode())

    def _program(self, name: str) -> int:
        prog = self._lib.cdll.bpf_object__find_program_by_name(self._require(), name.encode())
        if not prog:
            raise BpfError(f"no program '{name}' in {self.path}", _errno.ENOENT)
        return prog

    def set_autoload(self, name: str, autoload: bool) -> None:
        """Choose whether load() loads program *name* (before load only)."""
        prog = self._program(name)
        self._lib.call(f"set autoload of '{name}'",
                       lambda: self._lib.cdll.bpf_program__set_autoload(prog, autoload))

    def load(self) -> None:
        """Load every autoload program and create the maps (CO-RE relocated)."""
        obj = self._require()
        self._lib.call(f"load eBPF object {self.path}",
                       lambda: self._lib.cdll.bpf_object__load(obj), log=True)

    def attach(self, name: str) -> None:
        """Attach program *name* where its SEC() says (kept until close())."""
        prog = self._program(name)
        self._links[name] = self._lib.pointer(
            f"attach program '{name}'", lambda: self._lib.cdll.bpf_program__attach(prog), log=True)

    def map(self, name: str) -> BpfMap:
        if name not in self._maps:
            handle = self._lib.cdll.bpf_object__find_map_by_name(self._require(), name.encode())
            if not handle:
                raise BpfError(f"no map '{name}' in {self.path}", _errno.ENOENT)
            self._maps[name] = BpfMap(self._lib, name, handle)
        return self._maps[name]

    def close(self) -> None:
        for link in self._links.values():
            self._lib.cdll.bpf_link__destroy(link)
        self._links.clear()
        self._maps.clear()
        if self._obj:
            self._lib.cdll.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- kernel facts a loader needs ------------------------------------------------

def privilege_problem() -> str | None:
    """Why this process cannot load and attach tracing programs, or None.

    The kernel checks CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) against the
    initial user namespace: uid 0 of a user namespace (``unshare -Ur``, a
    rootless container) has them only in its own, so bpf() answers EPERM
    there, and a root whose bounding set lost them (sbx inside a sandbox) has
    them nowhere."""
    from . import caps
    if os.geteuid() != 0 and caps.in_user_namespace() is None:
        if caps.why_lacking(("BPF", "PERFMON"), "") is None:
            return None
        return "the eBPF monitor needs root"
    return caps.why_lacking(("BPF", "PERFMON"), "the eBPF monitor")


def has_kernel_btf() -> bool:
    return KERNEL_BTF.exists()


def thread_ids(pid: int) -> list[int]:
    """The tids of process *pid* (from /proc/PID/task)."""
    try:
        return sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError as err:
        raise BpfError(f"no such process {pid}", _errno.ESRCH) from err


def cgroup2_root() -> str:
    """Mount point of the cgroup v2 hierarchy (pure or hybrid setups)."""
    from .proc import mount_table
    for _dev, fstype, point in mount_table():
        if fstype == "cgroup2":
            return point
    raise BpfError("no cgroup v2 hierarchy is mounted", _errno.ENOENT)


def cgroup_id(path: str) -> tuple[int, int]:
    """(cgroup v2 id, level below the root) of a cgroup given as a directory
    under the cgroup2 mount or as a hierarchy path like "/user.slice/x"."""
    root = os.path.realpath(cgroup2_root())
    full = os.path.realpath(path)
    if not (full == root or full.startswith(root + "/")):
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
    try:
        st = os.stat(full)
    except OSError as err:
        raise BpfError(f"cgroup {path} not found under {root}", err.errno) from err
    rel = os.path.relpath(full, root)
    level = 0 if rel == "." else len(rel.split("/"))
    return st.st_ino, level

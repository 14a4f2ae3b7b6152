"""The Python twin of sbx.h: the records and maps the eBPF object shares with userspace.

Each ``struct.Struct`` mirrors one C struct of sbx.h (same field order, same
padding, little-endian as on every architecture sbx loads the object on), and
each constant one ``#define``; tests/kernel/test_monitor.py loads the object
and compares every map's key and value sizes with these.  Pure: decoding only, no kernel access.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

MODES = ("monitor", "trace")
ARCHES = ("x86_64", "i386", "x32")
ACTIONS = ("unknown", "errno", "trap", "kill", "notify")

TASK = struct.Struct("<IBBBBiiI4xQQ")
CONFIG = struct.Struct("<II")
DENIAL_KEY = struct.Struct("<IiI4x")
CALL_KEY = struct.Struct("<Ii")
ARGSPEC = struct.Struct("<I4x6Q")
ARG_KEY = struct.Struct("<IiI4xQ")
EVENT = struct.Struct("<QIIIIiIqQ6QIiiI16s")
PATH_EVENT = struct.Struct("<QIIIiqQii4HII")
PORT_KEY = struct.Struct("<II")
KIND = struct.Struct("<8xI")                  # every ring buffer record starts so
PATH_LEN, BASE_LEN = 256, 1024                # SBX_PATH_LEN, SBX_BASE_LEN
PATH1 = PATH_EVENT.size                       # path1, base1, path2, base2 in this order
BASE1 = PATH1 + PATH_LEN
PATH2 = BASE1 + BASE_LEN
BASE2 = PATH2 + PATH_LEN
CUT1, CUT2, BAD1, BAD2 = 1, 2, 4, 8           # SBX_PATH_* status bits
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")

CFG_DENIALS, CFG_CALLS, CFG_ARGS, CFG_CGROUP, CFG_PATHS = 1, 2, 4, 8, 16
# monitor mode never reads a path: its programs skip all of trace mode's work
MODE_FLAGS = {"monitor": CFG_DENIALS, "trace": CFG_DENIALS | CFG_CALLS | CFG_ARGS | CFG_PATHS}
STATS = {"dropped": 0, "events": 1, "denial_keys": 2, "call_keys": 3, "arg_keys": 4,
         "tasks": 5, "paths_lost": 6, "port_keys": 7}
EVENT_DENIAL, EVENT_PATH = 1, 2
PORT_OPS = ("bind", "connect")
MAX_CGROUP_LEVEL = 15

@dataclass(frozen=True)
class Event:
    """One denied syscall of a tracked task."""
    kind: str               # "denial"
    pid: int                # thread group id
    tid: int
    comm: str
    arch: str               # "x86_64" | "i386" | "x32"
    nr: int                 # number in that arch's syscall table (x32 bit removed)
    args: tuple[int, ...] | None
    ret: int                # return value the task saw
    action: str             # "errno" | "trap" | "kill" | "notify" | "unknown"
    errno: int | None       # errno returned (errno, notify) or SECCOMP_RET_DATA (trap)
    signal: int | None      # 31 (SIGSYS) for trap and kill
    time_ns: int            # CLOCK_MONOTONIC
    cgroup_id: int = 0      # cgroup v2 id of the task


def decode_event(record: bytes) -> Event:
    """Decode one sbx_event ring-buffer record."""
    (time_ns, kind, pid, tid, arch, nr, _pad, ret, cgroup_id, *rest) = EVENT.unpack(record)
    args, (action, errno_val, signal, _, comm) = tuple(rest[:6]), rest[6:]
    return Event(
        kind="denial" if kind == EVENT_DENIAL else f"kind{kind}",
        pid=pid, tid=tid, comm=comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
        arch=name_of(ARCHES, arch), nr=nr, args=args, ret=ret,
        action=name_of(ACTIONS, action),
        errno=errno_val if errno_val >= 0 else None,
        signal=signal or None, time_ns=time_ns, cgroup_id=cgroup_id)


@dataclass(frozen=True)
class PathEvent:
    """A file syscall of a tracked task that succeeded (x86_64 only): its paths
    as absolute paths, the relative ones joined to the directory they were
    relative to (read from the kernel's dentries at sys_enter).  A path that
    could not be read is None; ``cut`` tells which were longer than the
    probe reads (255 bytes): those keep only their first 255."""
    pid: int
    tid: int
    nr: int
    ret: int
    flags: int
    path1: bytes | None
    path2: bytes | None
    cut: tuple[bool, bool]


def _base(record: bytes, off: int, length: int) -> bytes:
    """A base directory from its names, leaf first, each NUL-terminated."""
    names = [n for n in record[off:off + length].split(b"\0") if n]
    return b"/" + b"/".join(reversed(names))


def _joined(record: bytes, path_off: int, length: int, base: bytes | None) -> bytes:
    path = record[path_off:path_off + length].split(b"\0", 1)[0]
    if base is None or path.startswith(b"/"):
        return path
    return base if not path else base.rstrip(b"/") + b"/" + path


def decode_path_event(record: bytes) -> PathEvent:
    """Decode one sbx_path_event ring-buffer record (it ends after its last buffer used)."""
    record = record.ljust(BASE2 + BASE_LEN, b"\0")
    (_t, _kind, pid, tid, nr, ret, flags, _d1, _d2, len1, len2, blen1, blen2, status,
     _pad) = PATH_EVENT.unpack_from(record)
    base1 = _base(record, BASE1, blen1) if blen1 else None
    path1 = None if status & BAD1 or not len1 else _joined(record, PATH1, len1, base1)
    path2 = None
    if len2 and not status & BAD2:
        base2 = _base(record, BASE2, blen2) if blen2 else base1
        path2 = _joined(record, PATH2, len2, base2)
    return PathEvent(pid, tid, nr, ret, flags, path1, path2,
                     (bool(status & CUT1), bool(status & CUT2)))


def name_of(names: tuple[str, ...], index: int) -> str:
    return names[index] if 0 <= index < len(names) else f"#{index}"

"""Seccomp denial monitor and syscall tracer over the sbx.bpf.o eBPF object.

`Probe("monitor")` reports every syscall that seccomp refuses in a tracked
task tree (ring-buffer events plus lossless in-kernel counters);
`Probe("trace")` also counts every syscall and selected argument values,
reports the paths of the file syscalls that succeed (``PathEvent``) and counts
the TCP ports bound and connected to: the raw material for writing a profile.  Struct layouts mirror
bpf_filters/ebpf/sbx.h; all kernel access goes through sandbox.kernel.libbpf.
"""
from __future__ import annotations

import errno
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import bpf_filters.ebpf
from bpf_filters.syscalls.arguments import counted
from sandbox.kernel import libbpf
from sandbox.kernel.libbpf import BpfError

MODES = ("monitor", "trace")
ARCHES = ("x86_64", "i386", "x32")
ACTIONS = ("unknown", "errno", "trap", "kill", "notify")
DEFAULT_OBJECT = Path(bpf_filters.ebpf.__file__).resolve().parent / "sbx.bpf.o"

# Layouts of bpf_filters/ebpf/sbx.h.
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
SIGSYS = 31

# One program per hook, in two families: tp_btf first, raw_tp as fallback.
HOOKS = ("enter", "exit", "signal", "fork", "exec", "gone")
FAMILIES = {"tp_btf": "btf", "raw_tp": "raw"}

# Arguments whose values trace mode counts, {(arch, nr): {argidx: mask}}: the
# selectors profiles narrow, from the one table of argument knowledge.
ARG_SPECS: dict[tuple[str, int], dict[int, int]] = counted()


class ProbeUnavailable(Exception):
    """The probe cannot run here; str() is one line, .log the verifier log."""

    def __init__(self, reason: str, log: str = ""):
        super().__init__(reason)
        self.reason, self.log = reason, log


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
        arch=_name(ARCHES, arch), nr=nr, args=args, ret=ret,
        action=_name(ACTIONS, action),
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


def _name(names: tuple[str, ...], index: int) -> str:
    return names[index] if 0 <= index < len(names) else f"#{index}"


def available(obj_path: str | None = None) -> tuple[bool, str]:
    """Can a Probe run here?  (True, "") or (False, one-line reason)."""
    try:
        _check_prerequisites(Path(obj_path) if obj_path else DEFAULT_OBJECT)
        if not libbpf.prog_type_supported(libbpf.BPF_PROG_TYPE_RAW_TRACEPOINT):
            return False, "the kernel refuses raw_tracepoint eBPF programs"
    except ProbeUnavailable as err:
        return False, err.reason
    return True, ""


def _check_prerequisites(obj: Path) -> None:
    if not libbpf.is_root():
        raise ProbeUnavailable("the eBPF monitor needs root")
    if not libbpf.has_kernel_btf():
        raise ProbeUnavailable(f"the kernel has no BTF ({libbpf.KERNEL_BTF} missing)")
    if not obj.is_file():
        raise ProbeUnavailable(f"eBPF object {obj} is missing (run `make bpf`)")
    try:
        libbpf.library()
    except BpfError as err:
        raise ProbeUnavailable(str(err)) from err


def _one_line(err: BpfError) -> str:
    """The error's first line plus what the verifier complained about."""
    line = str(err).splitlines()[0]
    summary = libbpf.verifier_summary(err.log)
    return f"{line} ({summary})" if summary else line


class Probe:
    """One loaded and attached sbx.bpf.o.  Context manager; close() detaches."""

    def __init__(self, mode: str, obj_path: str | None = None,
                 arg_specs: dict[tuple[str, int], dict[int, int]] | None = None,
                 family: str | None = None, on_path=None):
        """Load and attach.  *arg_specs* replaces ARG_SPECS in trace mode;
        *family* forces "tp_btf" or "raw_tp" instead of trying both in turn;
        *on_path* gets each ``PathEvent`` (trace mode) as poll() or drain() reads it."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if family is not None and family not in FAMILIES:
            raise ValueError(f"family must be one of {tuple(FAMILIES)}, not {family!r}")
        self.mode = mode
        self.path = Path(obj_path) if obj_path else DEFAULT_OBJECT
        _check_prerequisites(self.path)
        self._obj: libbpf.BpfObject | None = None
        self._ring: libbpf.RingBuffer | None = None
        self._pending: list[bytes] = []
        self._on_path = on_path
        self._config = [MODE_FLAGS[mode], 0]
        started = time.perf_counter()
        families = [family] if family else list(FAMILIES)
        self.family = self._load_any(families, ARG_SPECS if arg_specs is None else arg_specs)
        self.load_seconds = time.perf_counter() - started

    def _load_any(self, families: list[str], arg_specs: dict) -> str:
        failures: list[BpfError] = []
        for family in families:
            try:
                self._load(FAMILIES[family], arg_specs)
                return family
            except BpfError as err:
                failures.append(err)
                self.close()
        reasons = [_one_line(err) for err in failures]
        if len(set(reasons)) == 1:
            detail = reasons[0]
        else:
            detail = "; ".join(f"{family}: {why}" for family, why in zip(families, reasons))
        raise ProbeUnavailable(f"cannot load the eBPF monitor: {detail}", log=failures[0].log)

    def _load(self, suffix: str, arg_specs: dict) -> None:
        obj = self._obj = libbpf.BpfObject(self.path)
        for name in obj.program_names():
            obj.set_autoload(name, name.endswith("_" + suffix))
        obj.load()
        self._write_config()
        if self.mode == "trace":
            self._write_arg_specs(arg_specs)
        self._ring = libbpf.RingBuffer(obj.map("sbx_events"), self._on_record)
        for hook in HOOKS:
            obj.attach(f"sbx_{hook}_{suffix}")

    def _write_config(self) -> None:
        self._objmap("sbx_cfg").update(U32.pack(0), CONFIG.pack(*self._config))

    def _write_arg_specs(self, arg_specs: dict) -> None:
        specs = self._objmap("sbx_argspec")
        for (arch, nr), masks in arg_specs.items():
            argmask, values = 0, [0] * 6
            for idx, mask in masks.items():
                argmask |= 1 << idx
                values[idx] = mask
            specs.update(CALL_KEY.pack(ARCHES.index(arch), nr), ARGSPEC.pack(argmask, *values))

    def _objmap(self, name: str) -> libbpf.BpfMap:
        if self._obj is None:
            raise BpfError("the probe is closed")
        return self._obj.map(name)

    def _on_record(self, record: bytes) -> None:
        if KIND.unpack_from(record)[0] == EVENT_PATH:
            if self._on_path is not None:
                self._on_path(decode_path_event(record))
            return
        self._pending.append(record)

    # -- scope ------------------------------------------------------------------

    def track_pid(self, pid: int) -> None:
        """Track process *pid* (all its threads) and everything it forks from
        now on.  Seed it before the child execs, ideally while it blocks in a
        syscall (the launcher's sync pipe): a seeded thread's first unmatched
        syscall exit is taken for that in-flight syscall and ignored."""
        tasks = self._objmap("sbx_tasks")
        for tid in libbpf.thread_ids(pid):
            try:
                tasks.update(U32.pack(tid), TASK.pack(pid, 0, 1, 0, 0, 0, 0, 0, 0, 0),
                             libbpf.BPF_NOEXIST)
            except BpfError as err:
                if err.errno != errno.EEXIST:
                    raise

    def track_cgroup(self, cgroup_path: str) -> None:
        """Also track every task in cgroup v2 *cgroup_path* or below it (a
        directory under the cgroup2 mount, or a path like "/sbx/job1")."""
        cgid, level = libbpf.cgroup_id(cgroup_path)
        if level > MAX_CGROUP_LEVEL:
            raise ValueError(f"cgroup {cgroup_path} is {level} levels deep "
                             f"(at most {MAX_CGROUP_LEVEL} supported)")
        self._objmap("sbx_cgroups").update(U64.pack(cgid), U32.pack(level))
        self._config[0] |= CFG_CGROUP
        self._config[1] |= 1 << level
        self._write_config()

    def tracked_tids(self) -> set[int]:
        """The tids the kernel side tracks right now."""
        return {U32.unpack(key)[0] for key in self._objmap("sbx_tasks").keys()}

    # -- results ----------------------------------------------------------------

    def poll(self, timeout_ms: int = 100) -> list[Event]:
        """Wait up to *timeout_ms* for denial events; return all available."""
        if self._ring is None:
            raise BpfError("the probe is closed")
        self._ring.poll(timeout_ms)
        self._ring.consume()
        records, self._pending = self._pending, []
        return [decode_event(record) for record in records]

    def drain(self) -> None:
        """Handle every record available now (path events go to *on_path*;
        denial events wait for the next poll)."""
        if self._ring is None:
            raise BpfError("the probe is closed")
        self._ring.consume()

    def ports(self) -> dict[tuple[str, int], int]:
        """Trace mode: {("bind"|"connect", TCP port): calls} of stream sockets."""
        out = {}
        for key, count in self._objmap("sbx_ports").items():
            op, port = PORT_KEY.unpack(key)
            out[(_name(PORT_OPS, op), port)] = U64.unpack(count)[0]
        return out

    def counters(self) -> dict:
        """Lossless in-kernel counts, independent of the ring buffer:
        {"denials": {(arch, nr, action): n}, "calls": {(arch, nr): n} (trace),
         "dropped": events lost to a full ring buffer, "events": events sent,
         "map_full": {"denials"|"calls"|"args"|"tasks"|"ports": n} counts not kept,
         "paths_lost": file syscalls whose paths were not kept or sent}."""
        denials = {}
        for key, value in self._objmap("sbx_denials").items():
            arch, nr, action = DENIAL_KEY.unpack(key)
            denials[(_name(ARCHES, arch), nr, _name(ACTIONS, action))] = U64.unpack(value)[0]
        calls = {}
        for key, value in self._objmap("sbx_calls").items():
            arch, nr = CALL_KEY.unpack(key)
            calls[(_name(ARCHES, arch), nr)] = U64.unpack(value)[0]
        stats = self._objmap("sbx_stats")
        stat = {name: U64.unpack(stats.lookup(U32.pack(idx)))[0] for name, idx in STATS.items()}
        return {"denials": denials, "calls": calls, "dropped": stat["dropped"],
                "events": stat["events"], "paths_lost": stat["paths_lost"],
                "map_full": {"denials": stat["denial_keys"], "calls": stat["call_keys"],
                             "args": stat["arg_keys"], "tasks": stat["tasks"],
                             "ports": stat["port_keys"]}}

    def arg_values(self) -> dict[tuple[str, int, int], dict[int, int]]:
        """Trace mode: {(arch, nr, argidx): {masked value: count}}."""
        values: dict[tuple[str, int, int], dict[int, int]] = {}
        for key, count in self._objmap("sbx_argvals").items():
            arch, nr, idx, value = ARG_KEY.unpack(key)
            values.setdefault((_name(ARCHES, arch), nr, idx), {})[value] = U64.unpack(count)[0]
        return values

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Load, attach and read sbx.bpf.o: the seccomp denial monitor and the syscall tracer.

`Probe("monitor")` reports every syscall that seccomp refuses in a tracked
task tree (ring-buffer events plus lossless in-kernel counters);
`Probe("trace")` also counts every syscall and selected argument values,
reports the paths of the file syscalls that succeed (``PathEvent``) and counts
the TCP ports bound and connected to: the raw material for writing a profile.
Records are decoded by ``layout`` (the twin of sbx.h); all kernel access goes
through sandbox.kernel.libbpf.
"""
from __future__ import annotations

import errno
import time
from pathlib import Path

from bpf_filters.syscalls.arguments import counted

from ..kernel import libbpf
from ..kernel.libbpf import BpfError
from .layout import (ACTIONS, ARCHES, ARG_KEY, ARGSPEC, CALL_KEY, CFG_CGROUP, CONFIG, DENIAL_KEY,
                     EVENT_PATH, KIND, MAX_CGROUP_LEVEL, MODE_FLAGS, MODES, PORT_KEY, PORT_OPS,
                     STATS, TASK, U32, U64, Event, decode_event, decode_path_event, name_of)

DEFAULT_OBJECT = Path(__file__).resolve().parent / "sbx.bpf.o"

# One program per hook, in two families: tp_btf first, raw_tp as fallback.
HOOKS = ("enter", "exit", "signal", "fork", "exec", "gone")
FAMILIES = {"tp_btf": "btf", "raw_tp": "raw"}

# The most denial events one poll() returns.  The ring buffer (4 MiB, 136-byte
# records) holds at most 30,840, so a poll after the tasks exited still gets
# them all; while tasks deny faster than Python decodes (a C loop: over 1 M/s),
# libbpf would otherwise read on for as long as they run, into one list.
POLL_LIMIT = 32768

# Arguments whose values trace mode counts, {(arch, nr): {argidx: mask}}: the
# selectors profiles narrow, from the one table of argument knowledge.
ARG_SPECS: dict[tuple[str, int], dict[int, int]] = counted()


class ProbeUnavailable(Exception):
    """The probe cannot run here; str() is one line, .log the verifier log."""

    def __init__(self, reason: str, log: str = ""):
        super().__init__(reason)
        self.reason, self.log = reason, log


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
    problem = libbpf.privilege_problem()
    if problem:
        raise ProbeUnavailable(problem)
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
        self._limit, self._polling = POLL_LIMIT, False
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

    def _on_record(self, record: bytes) -> bool:
        """Keep a denial record for poll(); True (stop reading) once poll's limit is reached."""
        if KIND.unpack_from(record)[0] == EVENT_PATH:
            if self._on_path is not None:
                self._on_path(decode_path_event(record))
            return False
        if len(self._pending) >= self._limit:
            return False            # drain(): more than a poll returns; the counters have it
        self._pending.append(record)
        return self._polling and len(self._pending) >= self._limit

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

    def poll(self, timeout_ms: int = 100, limit: int = POLL_LIMIT) -> list[Event]:
        """Wait up to *timeout_ms* for denial events; return those available,
        at most *limit* (the rest stay in the ring buffer for the next poll)."""
        if self._ring is None:
            raise BpfError("the probe is closed")
        self._limit, self._polling = max(1, limit), True
        try:
            self._ring.poll(timeout_ms)
            if len(self._pending) < self._limit:
                self._ring.consume()
        finally:
            self._limit, self._polling = POLL_LIMIT, False
        records, self._pending = self._pending, []
        return [decode_event(record) for record in records]

    def drain(self) -> None:
        """Handle every record available now (path events go to *on_path*;
        denial events wait for the next poll, at most POLL_LIMIT of them: the
        in-kernel counters count the others)."""
        if self._ring is None:
            raise BpfError("the probe is closed")
        self._ring.consume()

    def ports(self) -> dict[tuple[str, int], int]:
        """Trace mode: {("bind"|"connect", TCP port): calls} of stream sockets."""
        out = {}
        for key, count in self._objmap("sbx_ports").items():
            op, port = PORT_KEY.unpack(key)
            out[(name_of(PORT_OPS, op), port)] = U64.unpack(count)[0]
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
            denials[(name_of(ARCHES, arch), nr, name_of(ACTIONS, action))] = U64.unpack(value)[0]
        calls = {}
        for key, value in self._objmap("sbx_calls").items():
            arch, nr = CALL_KEY.unpack(key)
            calls[(name_of(ARCHES, arch), nr)] = U64.unpack(value)[0]
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
            values.setdefault((name_of(ARCHES, arch), nr, idx), {})[value] = U64.unpack(count)[0]
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

"""Record what a command does: the eBPF tracer as root, else seccomp user notification.

Both recorders start the command through ``kernel.spawn`` under sbx's base
layer (``observer_steps``) and return a ``Recording``: calls per (ABI,
number), argument values, and the files and ports used (``access.FileLog``).
This is the only part of the trace package that touches the kernel.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass


from bpf_filters import syscalls

from ..errors import EXIT_SANDBOX, LaunchError, TraceError
from ..kernel import spawn, tree
from . import files as tf
from .access import Accesses, FileLog

BACKENDS = ("auto", "ebpf", "notify")
BACKEND_TEXT = {"ebpf": "eBPF (tracepoints)", "notify": "seccomp user notification"}

# kernel.spawn's child does all its own work before it waits for the go byte,
# then execs: the eBPF tracer, which tracks it from the go byte on, sees the
# command's calls only.  tests/kernel/test_trace.py checks that the eBPF and
# the notify recordings of /bin/true are equal.
_MIN_BLOCK_WAIT = 0.005   # the spawned child blocks on its go pipe ~0.3 ms after fork


# -- recording ---------------------------------------------------------------------------

@dataclass
class Recording:
    """What one traced run did, keyed like sandbox.ebpf's counters."""
    argv: list[str]
    backend: str                                      # "ebpf" | "notify"
    calls: dict[tuple[str, int], int]                 # (arch, nr) -> count
    arg_values: dict[tuple[str, int, int], dict[int, int]]
    exit_status: int                                  # raw wait status
    seconds: float = 0.0                              # from start of the command to its exit
    lost: int = 0                                     # counts a full tracer map did not keep
    files: Accesses | None = None                     # files and TCP ports it used
    places: tf.Places | None = None                   # where it ran ($CWD, $HOME ...)


def choose_backend(requested: str) -> tuple[str, str]:
    """(backend, why) for --backend *requested*; TraceError if it cannot run here."""
    if requested not in BACKENDS:
        raise TraceError(f"unknown backend {requested!r} (choose from {', '.join(BACKENDS)})", 2)
    if requested == "notify":
        return "notify", "requested"
    if os.geteuid() != 0:
        if requested == "ebpf":
            raise TraceError("cannot trace with eBPF: it needs root (try --backend notify)", 2)
        return "notify", "not root"
    from ..ebpf import available
    ok, reason = available()
    if ok:
        return "ebpf", "tracepoints"
    if requested == "ebpf":
        raise TraceError(f"cannot trace with eBPF: {reason}", 2)
    return "notify", f"eBPF unavailable: {reason}"


def record(argv: list[str], backend: str, env: dict | None = None,
           follower: tree.Follower | None = None, duration: float | None = None) -> Recording:
    """Run *argv* under the tracer *backend* ("ebpf" or "notify") until it and every
    process it left running have exited, or *duration* seconds have passed (then
    they are stopped: SIGTERM, SIGKILL after a grace period). *follower* is told
    who outlived the command (``kernel.tree.Follower``'s on_left and on_stop)."""
    if not argv:
        raise TraceError("no command to trace", 2)
    follower = follower or tree.Follower()
    with tree.Subreaper():            # orphans come to sbx, to be followed and reaped
        if backend == "ebpf":
            return record_ebpf(argv, env, follower, duration)
        return record_notify(argv, env, follower, duration)


def record_ebpf(argv: list[str], env: dict | None = None, follower: tree.Follower | None = None,
                duration: float | None = None) -> Recording:
    """The eBPF tracer (root): the child waits on the launcher's go pipe while
    the probe loads, is tracked, then execs with no filter at all."""
    follower = follower or tree.Follower()
    try:
        steps = observer_steps(argv, env)
        child = spawn.start(spawn.prepare(argv, env, steps=steps.steps, wait_go=True))
    except LaunchError as err:
        raise TraceError(str(err), err.status) from err
    finally:
        if "steps" in locals():
            steps.close()
    log = FileLog()
    table = syscalls.table("x86_64")
    probe = _start_probe(child, lambda ev: log.add(table.name(ev.nr) or "", ev.flags, ev.path1,
                                                   ev.path2, ev.cut))
    with probe:
        began = time.monotonic()
        follower.deadline = None if duration is None else began + duration
        follower.started(child.pid)          # before it runs: what it leaves is new
        child.go()
        try:
            child.wait_exec()
        except LaunchError as err:
            raise TraceError(str(err), err.status) from err
        status = tree.follow(child.pid, follower, every=probe.drain)
        seconds = time.monotonic() - began
        probe.drain()
        counters, values = probe.counters(), probe.arg_values()
        for (op, port), n in probe.ports().items():
            log.add_port(op, port, n)
    log.lost = counters["paths_lost"] + counters["map_full"]["ports"]
    calls = dict(counters["calls"])
    return Recording(argv, "ebpf", calls, values, status, seconds,
                     sum(counters["map_full"].values()), log.resolve(),
                     tf.places_of(argv, env))


def observer_steps(argv: list[str], env: dict | None):
    """What a traced command runs under: no syscall filter (it is being
    observed, not confined) and every capability its user has, but sbx's own
    Landlock layer like any run: no ptrace-mode access outside, scoped signals
    and abstract Unix sockets, and no write to sbx's filter cache (a traced
    command must not be able to decide what a later `sbx run` installs)."""
    from .. import cache, confine
    from ..kernel.caps import NAMES
    env = dict(os.environ) if env is None else env
    return confine.prepare(confine.Spec(caps=NAMES), argv[0], cache.location(), env)


def _start_probe(child: spawn.Child, on_path=None):
    """Load the probe and track *pid*; the child must never run untracked, so any
    failure (or SIGTERM/SIGHUP meanwhile) kills it before it is told to go."""
    from ..kernel.proc import wait_blocked
    from ..ebpf import Probe, ProbeUnavailable

    def interrupted(signum, _frame):
        raise TraceError(f"interrupted by signal {signum} before the command started",
                         128 + signum)
    started = time.monotonic()
    old = {s: signal.signal(s, interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        probe = Probe("trace", on_path=on_path)
        try:
            # the child must be blocked in its read of the go pipe, so that nothing it
            # did before that is counted: wait for it (the probe load usually covers it)
            if not wait_blocked(child.pid, timeout=1.0):
                time.sleep(max(0.0, _MIN_BLOCK_WAIT - (time.monotonic() - started)))
            probe.track_pid(child.pid)
        except BaseException:
            probe.close()
            raise
    except ProbeUnavailable as err:
        child.abandon()
        raise TraceError(f"cannot trace with eBPF: {err}", 2) from err
    except BaseException:
        child.abandon()
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return probe


def record_notify(argv: list[str], env: dict | None = None, follower: tree.Follower | None = None,
                  duration: float | None = None) -> Recording:
    """The unprivileged recorder (seccomp user notification): exact, slower.
    Termination signals sent to sbx are forwarded to the command (once it has
    exited, to what it left running), as sbx run does."""
    follower = follower or tree.Follower()
    from ..kernel.notify import NotifyError, run_supervised
    from ..kernel.notify_args import FileWatcher
    log = FileLog()
    child: list[int] = []
    pending: list[int] = []

    def note_child(rec) -> None:      # the first notification is the child's execve
        if not child:
            child.append(rec.pid)
            for signum in pending:
                forward(signum, None)

    def forward(signum, _frame) -> None:
        if not child:
            pending.append(signum)
            return
        follower.forward(signum)
    # the terminal's SIGINT and SIGQUIT reach the command itself (same process group)
    terminal = (signal.SIGINT, signal.SIGQUIT)
    forwarded = {s: signal.signal(s, forward) for s in spawn.FORWARD if s not in terminal}
    quiet = {s: signal.signal(s, signal.SIG_IGN) for s in terminal}
    began = time.monotonic()
    follower.deadline = None if duration is None else began + duration
    try:
        steps = observer_steps(argv, env)
        try:
            result = run_supervised(argv, env=env, on_record=note_child, steps=steps.steps,
                                    inspect=FileWatcher(log).hooks, follower=follower)
        finally:
            steps.close()
    except LaunchError as err:
        raise TraceError(str(err), err.status) from err
    except NotifyError as err:
        raise TraceError(f"cannot trace with seccomp user notification: {err}",
                         EXIT_SANDBOX) from err
    finally:
        for s, h in {**forwarded, **quiet}.items():
            signal.signal(s, h)
    return Recording(argv, "notify", result.calls, result.arg_values, result.exit_status,
                     time.monotonic() - began, 0, log.resolve(), tf.places_of(argv, env))


# -- what was observed, by name ----------------------------------------------------------

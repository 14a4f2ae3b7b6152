"""``sbx monitor`` (live stream of seccomp denials) and ``sbx refine`` (profile change from denials).

``monitor`` drives the eBPF probe of ``sandbox.ebpf`` over a process tree
(--pid), a cgroup v2 subtree (--cgroup) or every process, prints each denial
as it happens and ends with the probe's lossless counters and a per-process
tally; it keeps no event (reads are bounded batches, counts go to
``sandbox.ebpf.tally``), so its memory stays flat at any rate. Landlock's
refusals come in the same stream, from the audit records (``_LandlockFeed``).  ``refine`` reads
such denials back (and the Landlock denials of ``sbx run -o``) and prints, as
a unified diff, the smallest profile change that allows them (the logic lives
in ``sandbox.refine`` for syscalls and ``sandbox.refine_fs`` for files and
ports).
"""
from __future__ import annotations

import difflib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import click

from bpf_filters import syscalls

from .. import refine as rf
from ..paths import display_path
from .common import OutputPath, Seconds, emit, fail

CGROUP2_MOUNTS = ("/sys/fs/cgroup/unified", "/run/sbx/cgroup2")
POLL_MS = 200
BATCH = 1024            # events per poll: the stop flag and --duration are checked between batches
TOP_ROWS = 10



# -- sbx monitor --------------------------------------------------------------------

@click.command()
@click.option("--pid", "pids", type=int, multiple=True,
              help="a running process: it, its threads and all its descendants (repeatable)")
@click.option("--cgroup", "cgroups", multiple=True,
              help="a cgroup v2 (path under the cgroup2 mount, or like /sbx/job1): every task in it or below")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per denial on stdout")
@click.option("--duration", type=Seconds(), metavar="S", help="stop after S seconds")
@click.option("--profile", help="the profile the processes run under: name the rule behind each denial")
def monitor(pids, cgroups, as_json, duration, profile):
    """Stream the seccomp denials of running processes, and the files, ports and
    scopes their Landlock rules refused (audit records), until Ctrl-C,
    SIGTERM, --duration, or (with --pid only) the exit of every tracked
    process; then print the in-kernel counters, with events lost to a full
    buffer, the events read per process, and the refusals, on stderr. Memory
    stays flat at any rate. Without --pid or --cgroup every process on the
    host is watched.  Needs root.
    """
    from ..ebpf import Probe, ProbeUnavailable, available
    from ..ebpf.tally import Tally
    ok, reason = available()
    if not ok:
        fail(f"cannot monitor: {reason}", status=1)
    explain = _Explainer(profile) if profile else None
    try:
        probe = Probe("monitor")
    except ProbeUnavailable as err:
        fail(f"cannot monitor: {err}", status=1)
    with probe:
        stop = _StopFlag()
        feed = _LandlockFeed.open(pids, cgroups)       # subscribed before "watching" is said
        _scope(probe, pids, cgroups)
        if feed is not None and pids:
            feed.watch(probe.tracked_tids())
        started = time.monotonic()
        printer = _Printer(as_json, explain)
        tally = Tally()
        try:
            _stream(probe, printer, tally, stop, None if duration is None else started + duration,
                    watch_pids=bool(pids) and not cgroups, feed=feed)
            _print_counters(probe.counters(), printer, tally, time.monotonic() - started)
            if feed is not None:
                feed.print_counts()
        finally:
            if feed is not None:
                feed.close()
    sys.exit(0)


def _scope(probe, pids, cgroups) -> None:
    from ..kernel.libbpf import BpfError
    try:
        for pid in pids:
            _track_tree(probe, pid)
        if cgroups:
            _ensure_cgroup2()
        for path in cgroups:
            probe.track_cgroup(path)
        if not pids and not cgroups:
            _ensure_cgroup2()
            probe.track_cgroup("/")
    except (BpfError, ValueError) as err:
        fail(str(err), status=1)
    what = [f"process {pid} and its descendants" for pid in pids] + \
        [f"cgroup {path}" for path in cgroups]
    count = len(probe.tracked_tids())
    tasks = f" ({count} task{'s' if count != 1 else ''} now)" if pids else ""
    click.echo(f"sbx monitor: watching {', '.join(what) or 'every process'}{tasks}; "
               "Ctrl-C to stop", err=True)


def _track_tree(probe, pid: int) -> None:
    """Seed *pid* and its descendants (twice, to catch children forked meanwhile
    by a descendant not yet seeded; children of a seeded task follow by themselves)."""
    import psutil
    from ..kernel.libbpf import BpfError
    try:
        root = psutil.Process(pid)
        probe.track_pid(pid)
        for _ in range(2):
            for child in root.children(recursive=True):
                try:
                    probe.track_pid(child.pid)
                except BpfError:
                    pass                        # exited between listing and seeding
    except psutil.NoSuchProcess:
        fail(f"no such process {pid}", status=1)


def _ensure_cgroup2() -> None:
    """Mount the cgroup v2 hierarchy if this host has none mounted (hybrid
    layouts usually have it at /sys/fs/cgroup/unified; a private mount
    namespace may not)."""
    from ..kernel.mounts import MountError, ensure_cgroup2
    try:
        where, mounted = ensure_cgroup2(CGROUP2_MOUNTS)
    except MountError as err:
        fail(f"no cgroup v2 hierarchy is mounted and mounting one failed ({err.strerror})", status=1)
    if mounted:
        click.echo(f"sbx monitor: mounted the cgroup v2 hierarchy at {where}", err=True)


class _StopFlag:
    """Set by SIGINT/SIGTERM; the poll loop checks it between short waits."""

    def __init__(self):
        self.set_by = None
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._handle)

    def _handle(self, signum, _frame):
        self.set_by = signum


def _stream(probe, printer, tally, stop, deadline, watch_pids: bool, feed=None) -> None:
    """Print and tally events in batches until stopped, then what the ring
    buffer holds (at most one ring's worth: tasks may still be denying), and
    the Landlock refusals of *feed* between batches."""
    while stop.set_by is None and not printer.closed:
        wait = POLL_MS if deadline is None else max(0, min(POLL_MS, int((deadline - time.monotonic()) * 1000)))
        batch = probe.poll(wait, limit=BATCH)
        for ev in batch:
            tally.add(ev)
        printer.events(batch)
        tracked = probe.tracked_tids() if watch_pids else None
        if feed is not None:
            if tracked:
                feed.watch(tracked)
            printer.refusals(feed.poll(), feed)
        if deadline is not None and time.monotonic() >= deadline:
            break
        if watch_pids and not tracked:
            break
    if feed is not None and not printer.closed:
        printer.refusals(feed.poll(final=True), feed)
    from ..ebpf.probe import POLL_LIMIT
    left = POLL_LIMIT
    while left > 0:
        batch = probe.poll(0, limit=min(BATCH, left))
        for ev in batch:
            tally.add(ev)
        printer.events(batch)
        left -= BATCH
        if len(batch) < BATCH:
            break


class _LandlockFeed:
    """Landlock's refusals (files, ports, scopes) beside the probe's seccomp events.

    No tracepoint reports a Landlock denial (the kernel's hooks are LSM hooks,
    and fentry, lsm and kprobe programs are unavailable here), but Landlock
    logs each one as an audit record (Linux 6.15+) for a domain made with a
    log flag, as ``sbx run`` makes every domain, while audit is on: they are
    read from the audit netlink socket (root, initial network namespace).
    A denial record names only its domain; the domain's first record names
    the task that made it, which --pid and --cgroup select by. Seccomp records
    are dropped as they arrive (the probe reports those).
    """

    def __init__(self, reader):
        self.reader = reader
        self.count = 0
        self.groups: dict[tuple, int] = {}          # (blockers, target) -> count, bounded

    @classmethod
    def open(cls, pids, cgroups) -> "_LandlockFeed | None":
        """The feed, or None after saying in one line why refusals cannot be shown."""
        from ..kernel.audit import AUDIT_LANDLOCK_ACCESS, AUDIT_LANDLOCK_DOMAIN, AuditReader, \
            AuditUnavailable
        from ..kernel.netlink import ensure_audit_enabled
        reader = AuditReader(pids=list(pids) if pids else None, source="netlink",
                             owner=_in_cgroups(cgroups) if cgroups else None, max_pending=1 << 14,
                             types=(AUDIT_LANDLOCK_ACCESS, AUDIT_LANDLOCK_DOMAIN))
        try:
            reader.open()
            on = ensure_audit_enabled()      # Landlock logs only while audit is on
        except (AuditUnavailable, OSError) as err:
            reader.close()
            click.echo(f"sbx monitor: Landlock refusals are not shown: {err.strerror or err}",
                       err=True)
            return None
        if not on:
            reader.close()
            click.echo("sbx monitor: Landlock refusals are not shown: audit is off, and this kernel "
                       "is set to panic when audit records are lost (failure mode 2), so sbx "
                       "leaves it off", err=True)
            return None
        return cls(reader)

    def watch(self, tids) -> None:
        """Tasks the probe tracks (--pid's tree, children included as they fork): a
        domain one of them made is selected even if it has exited by the time its
        record is read, when /proc can no longer tell whose descendant it was."""
        for tid in tids:
            self.reader.watch(tid)

    def poll(self, final: bool = False) -> list:
        """The refusals read so far; *final*: also those still on their way (audit
        records reach the socket through the kernel's audit thread, a little
        after the call they tell of), until 0.2 s pass without one."""
        from ..kernel.audit import LandlockRecord
        out = []
        while True:
            got = [r for r in self.reader.read(0.2 if final else 0)
                   if isinstance(r, LandlockRecord) and r.kind == "access"]
            out += got
            if not final or not got:
                break
        for r in out:
            self.count += 1
            key = (r.blockers, _landlock_target(r))
            if key in self.groups or len(self.groups) < 4096:
                self.groups[key] = self.groups.get(key, 0) + 1
        return out

    def owner(self, record) -> tuple[int | None, str]:
        return self.reader.owners.get(record.domain, (None, ""))

    def print_counts(self) -> None:
        say = lambda text: click.echo(text, err=True)   # noqa: E731
        lost = f"; {self.reader.overflows} lost" if self.reader.overflows else ""
        say(f"sbx monitor: {self.count} Landlock refusal{'s' if self.count != 1 else ''} "
            f"(audit records{lost})")
        rows = sorted(self.groups.items(), key=lambda kv: -kv[1])[:TOP_ROWS]
        if rows:
            say(f"  {'COUNT':>8}  {'REFUSED':24} TARGET")
        for (blockers, target), n in rows:
            say(f"  {n:>8}  {','.join(blockers):24} {target or '-'}")

    def close(self) -> None:
        self.reader.close()


def _landlock_target(record) -> str | None:
    from ..denials import Denial
    return Denial.from_landlock(record).target


def _in_cgroups(paths):
    """owner predicate: the task runs in one of the cgroups *paths* (as ``sbx monitor
    --cgroup`` takes them: a directory under the cgroup2 mount, or a hierarchy path
    such as /sbx/job1) or below one; /proc/PID/cgroup gives its hierarchy path."""
    wanted: list[str] = []

    def hierarchy_paths() -> list[str]:
        # resolved at the first record: sbx monitor mounts the hierarchy after this is made
        from ..kernel.libbpf import cgroup2_root
        root = os.path.realpath(cgroup2_root())
        for p in paths:
            full = os.path.realpath(p)
            rel = os.path.relpath(full, root) if full == root or full.startswith(root + "/") \
                else p.strip("/") or "."
            wanted.append("/" if rel == "." else "/" + rel.strip("/"))
        return wanted

    def inside(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cgroup") as fh:
                where = next((line.split(":", 2)[2].strip() for line in fh if line.startswith("0::")),
                             None)
        except OSError:
            return False
        return where is not None and any(
            w == "/" or where == w or where.startswith(w + "/") for w in wanted or hierarchy_paths())
    return inside


class _Explainer:
    """The rule of --profile behind a denial (file:line), like `sbx explain`."""

    def __init__(self, ref: str):
        from ..kernel.seccomp import native_arch
        from ..policy import load_profile, lower
        self.policy = lower(load_profile(ref), native_arch())

    def rule(self, ev) -> str:
        from ..denials import attribute
        if ev.arch not in ("x86_64", "i386", "x32"):
            return "?"
        return attribute(self.policy, ev.arch, ev.nr, ev.args).where(with_text=False)


class _Printer:
    """One line per denial, JSON or human; notices a closed stdout."""

    def __init__(self, as_json: bool, explain: _Explainer | None):
        self.as_json, self.explain = as_json, explain
        self.offset_ns = time.time_ns() - time.monotonic_ns()   # bpf_ktime is CLOCK_MONOTONIC
        self.closed = False

    def events(self, evs) -> None:
        """One write and one flush per batch: per line, they cost more than the line."""
        if self.closed or not evs:
            return
        self._write("".join((json.dumps(self.record(ev)) if self.as_json else self.human(ev)) + "\n"
                            for ev in evs))

    def _write(self, text: str) -> None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            self.closed = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def refusals(self, records, feed) -> None:
        """Landlock refusals, in the same stream: JSON objects that ``sbx refine
        --from`` reads back, or one human line each."""
        if self.closed or not records:
            return
        lines = []
        for r in records:
            pid, comm = feed.owner(r)
            target = _landlock_target(r)
            if self.as_json:
                lines.append(json.dumps({"time": r.timestamp, "pid": pid, "comm": comm,
                                         "action": "landlock", "blockers": list(r.blockers),
                                         "target": target, "domain": r.domain}))
            else:
                stamp = time.strftime("%H:%M:%S", time.localtime(r.timestamp))
                millis = int(r.timestamp * 1000) % 1000
                # the task that made the domain (before it exec'd the command), not
                # necessarily the one refused: a denial record names only the domain
                who = f"domain of pid {pid}" if pid is not None else f"domain {r.domain}"
                lines.append(f"{stamp}.{millis:03d} {who} landlock: {','.join(r.blockers)} refused"
                             + (f" on {target}" if target else ""))
        self._write("".join(line + "\n" for line in lines))

    def record(self, ev) -> dict:
        rec = {"time": round((ev.time_ns + self.offset_ns) / 1e9, 6), "pid": ev.pid,
               "tid": ev.tid, "comm": ev.comm, "arch": ev.arch, "nr": ev.nr,
               "syscall": syscalls.name_of(ev.arch, ev.nr), "action": ev.action,
               "errno": ev.errno, "args": list(ev.args or ())}
        if self.explain is not None:
            rec["rule"] = self.explain.rule(ev)
        return rec

    def human(self, ev) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime((ev.time_ns + self.offset_ns) / 1e9))
        millis = (ev.time_ns + self.offset_ns) // 1_000_000 % 1000
        who = f"{ev.comm}[{ev.pid}" + (f"/{ev.tid}]" if ev.tid != ev.pid else "]")
        name = syscalls.name_of(ev.arch, ev.nr) or f"#{ev.nr}"
        abi = "" if ev.arch == "x86_64" else f"[{ev.arch}] "
        args = ", ".join(hex(a) for a in (ev.args or ())[:_arg_count(name)])
        rule = f"  <- {self.explain.rule(ev)}" if self.explain is not None else ""
        return f"{stamp}.{millis:03d} {who} {abi}{name}({args}) {_outcome(ev)}{rule}"


def _arg_count(name: str) -> int:
    from bpf_filters.syscalls.signatures import signature
    sig = signature(name)
    return len(sig) if sig else 6


def _outcome(ev) -> str:
    import errno as errno_mod
    err = errno_mod.errorcode.get(ev.errno, str(ev.errno)) if ev.errno is not None else None
    if ev.action == "errno":
        return f"= -1 {err}"
    if ev.action == "trap":
        return f"trapped (SIGSYS, data {ev.errno})"
    if ev.action == "kill":
        return "killed (SIGSYS)"
    if ev.action == "notify":
        return f"= -1 {err} (supervisor)" if err else f"= {ev.ret} (supervisor)"
    return f"= {ev.ret} ({ev.action})"


def _print_counters(counters: dict, printer: _Printer, tally, seconds: float) -> None:
    denials = counters["denials"]
    total = sum(denials.values())
    say = lambda text: click.echo(text, err=True)   # noqa: E731
    unread = max(0, counters["events"] - tally.events)
    say(f"sbx monitor: {total} denial{'s' if total != 1 else ''} in {seconds:.1f} s "
        f"(in-kernel counters); {tally.events} events delivered, "
        + (f"{unread} left in the buffer at the end, " if unread else "")
        + f"{counters['dropped']} dropped"
        + (", output closed early" if printer.closed else ""))
    if denials:
        say(f"  {'COUNT':>8}  {'SYSCALL':24} {'ARCH':7} ACTION")
    for (arch, nr, action), n in sorted(denials.items(), key=lambda kv: (-kv[1], kv[0])):
        name = syscalls.name_of(arch, nr) or "?"
        say(f"  {n:>8}  {f'{name} ({nr})':24} {arch:7} {action}")
    if tally.events:
        _print_tally(tally, say)
    full = {k: v for k, v in counters["map_full"].items() if v}
    if full:
        say("sbx monitor: warning: kernel maps were full, some counts are missing: "
            + ", ".join(f"{k} {v}" for k, v in full.items()))


def _print_tally(tally, say) -> None:
    """The events delivered, by process: the largest rows, each with its latest example."""
    rows = tally.top(TOP_ROWS)
    say(f"  events delivered, by process ({len(tally)} row{'s' if len(tally) != 1 else ''}"
        + (f", largest {TOP_ROWS}" if len(tally) > TOP_ROWS else "") + "):")
    say(f"  {'COUNT':>8}  {'PROCESS':24} {'SYSCALL':24} ACTION  LATEST ARGS")
    for r in rows:
        who = r.comm if r.pid is None else f"{r.comm}[{r.pid}]"
        name = syscalls.name_of(r.arch, r.nr) or "?"
        args = ", ".join(hex(a) for a in (r.example.args or ())[:min(_arg_count(name), 4)])
        say(f"  {r.count:>8}  {who:24} {f'{name} ({r.nr})':24} {r.action:7} {args}")


# -- sbx refine ---------------------------------------------------------------------

@click.command()
@click.argument("profile")
@click.option("--from", "source", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="denials: JSON lines of `sbx monitor --json` or `sbx run -o` (or audit SECCOMP and "
                   "LANDLOCK_ACCESS lines); - for stdin")
@click.option("-o", "--output", type=OutputPath(dir_okay=False), help="write the refined profile here")
@click.option("--broad", is_flag=True,
              help="also allow what the profile denies on purpose (explicit deny rules, deny: paths) "
                   "and lift a scope a denial came from (scope: {signals: any})")
def refine(profile, source, output, broad):
    """Print the smallest change to PROFILE (a unified diff) that allows the
    denials in --from: syscall rules narrowed by arguments where they allow it
    (socket families, ioctl requests, ...), first in the profile's own rules;
    for files and ports the Landlock rules refused, one path (the file, or the
    directory for entries created or removed in it) under the narrowest word,
    or one port in network: bind/connect.  With -o the new profile is written,
    after checking that it loads, compiles and allows what was refused.
    """
    from ..denials import RunContext
    from ..kernel.seccomp import native_arch
    from ..policy import load_profile, lower
    from ..policy.profile import confinement
    from .. import refine_fs as rff
    prof = load_profile(profile)
    observations, context = _read_denials(source)
    if not observations:
        fail(f"no denials in {source}", status=1)
    syscalls_seen = [o for o in observations if not o.landlock]
    files_seen = [o for o in observations if o.landlock]
    policy = lower(prof, native_arch())
    plan = rf.plan_changes(policy, syscalls_seen, broad)
    ctx = context or RunContext.here()
    grants = rff.plan_grants(confinement(prof), files_seen, ctx, broad) if files_seen else \
        rff.GrantPlan([], [], [])
    for note in grants.notes:
        click.echo(f"sbx refine: note: {note}", err=True)
    for skip in plan.skipped + grants.skipped:
        hint = " (use --broad to allow it anyway)" if skip.needs_broad else ""
        kind = "warning" if skip.needs_broad else "note"
        click.echo(f"sbx refine: {kind}: {skip.name} ({skip.denials} denial"
                   f"{'s' if skip.denials != 1 else ''}) not added: {skip.reason}{hint}", err=True)
    with open(prof.path, encoding="utf-8", newline="") as fh:     # CRLF stays CRLF
        text = fh.read()
    label = "stdin" if source == "-" else os.path.basename(source)
    try:
        new_text = rff.apply_grants(rf.apply_changes(text, plan, label), grants, label)
    except rf.RefineError as err:
        fail(str(err))
    if not plan.changes and not grants.grants:
        click.echo("sbx refine: nothing to change", err=True)
        return
    _check(new_text, policy, plan, output or prof.path, native_arch(), grants, ctx)
    out_name = display_path(output) if output else display_path(prof.path)
    diff = difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                fromfile=display_path(prof.path), tofile=out_name)
    click.echo("".join(diff), nl=False)
    if output:
        emit(new_text, output)
        click.echo(f"sbx refine: wrote {output} (allows {plan.allowed + grants.allowed} of the "
                   f"{sum(o.count for o in observations)} denials)", err=True)


def _read_denials(source: str) -> tuple[list, object]:
    """The denials of *source*, and the run's context when a line gives it."""
    from ..denials import Denial, RunContext
    from ..kernel.audit import LandlockRecord, parse_record
    from ..paths import read_input
    try:
        lines = read_input(source).decode("utf-8", "replace").splitlines()
    except OSError as err:
        fail(f"cannot read {source}: {err.strerror}")
    out, ignored, context = [], 0, None
    for lineno, text in enumerate(lines, 1):
        if text.lstrip().startswith("{"):
            try:
                obs = rf.parse_json_line(text)
                ctx = RunContext.from_json(json.loads(text)) if obs is None else None
            except rf.RefineError as err:
                _fail_at(source, lineno, err, lines)
            except ValueError as err:            # the run's context line
                _fail_at(source, lineno, rf.RefineError(str(err), text.find('"context"') + 1 or 1),
                         lines)
            if obs is not None:
                out.append(obs)
            elif ctx is not None:
                context = context or ctx
            continue
        record = parse_record(text) if "audit(" in text else None
        if isinstance(record, LandlockRecord):
            if record.kind == "access":
                out.append(Denial.from_landlock(record))
        elif record is not None and record.arch_name in ("x86_64", "i386", "x32"):
            out.append(Denial.from_audit(record))
        elif text.strip() and not text.lstrip().startswith("#"):
            ignored += 1
    if ignored:
        click.echo(f"sbx refine: note: ignored {ignored} line{'s' if ignored != 1 else ''} of "
                   f"{source} that are not denial records", err=True)
    return out, context


def _fail_at(source: str, lineno: int, err, lines: list[str]) -> None:
    """``FILE:LINE:COL: error: ...``, the line and a caret; exit status 2."""
    from ..policy.diagnostics import Diagnostic, Position
    name = "stdin" if source == "-" else display_path(source)
    diag = Diagnostic(Position(name, lineno, err.col or 1, err.length), str(err))
    click.echo(diag.format({name: lines}), err=True)
    sys.exit(2)


def _check(new_text: str, old_policy, plan, near: str, native: str, grants, ctx) -> None:
    """Load and compile the refined text from beside *near* (so relative
    ``extends`` resolve as they will), and check what it decides."""
    from ..policy import PolicyError, build_filter, load_profile, lower
    from ..policy.profile import confinement
    from ..paths import builtin_dir
    from .. import refine_fs as rff
    where = os.path.dirname(os.path.abspath(near))
    if where == os.path.abspath(builtin_dir()) or not os.access(where, os.W_OK):
        where = None            # built-ins extend by name only: any directory will do
    fd, tmp = tempfile.mkstemp(prefix=".sbx-refine-", suffix=".yaml", dir=where)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(new_text)
        new = load_profile(Path(tmp))
        build_filter(new, native=native)
        rf.check_refined(old_policy, lower(new, native), plan)
        if grants.grants:
            rff.check_grants(confinement(new), grants, ctx)
    except PolicyError as err:
        fail("the refined profile does not load:\n" + err.render())
    except rf.RefineError as err:
        fail(str(err))
    finally:
        os.unlink(tmp)

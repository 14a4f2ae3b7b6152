"""``sbx trace``: record the syscalls a command makes and write the tightest profile that runs it.

Pipeline: ``record`` (the eBPF tracer as root, else seccomp user notification)
-> ``observe`` (numbers to names, the launcher's own calls taken out)
-> ``merge`` with earlier generated profiles (``observed_from_profile``)
-> ``write_profile`` (commented YAML, byte-identical for the same input).
``sandbox.cli.trace`` then summarizes and verifies.  Only the recorders touch
the kernel, through ``sandbox.ebpf``, ``sandbox.kernel.spawn`` and
``sandbox.kernel.notify``; everything after them is pure.  The files and
ports a run used go the same way beside the syscalls: recorded into a
``trace_access.FileLog``, resolved to real paths when the run ends,
generalised and written by ``sandbox.trace_files``.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import time
from dataclasses import dataclass, field

import yaml

from bpf_filters import syscalls
from bpf_filters.ir import Action, Policy, evaluate

from . import provenance
from .errors import EXIT_SANDBOX, LaunchError
from .kernel import spawn
from .paths import builtin_dir
from bpf_filters.syscalls.arguments import ARGUMENTS

from .policy.constants import CONSTANTS
from .policy.emit import quote, rule_lines
from .policy.spell import value_text
from . import trace_files as tf
from .trace_access import Accesses, FileLog
from bpf_filters.syscalls.signatures import arg_width

BACKENDS = ("auto", "ebpf", "notify")
ZERO_ARGS = (0,) * 6
# sbx run installs the filter right before execve: these are all its child
# needs, plus what the kernel makes any program call (signal return, restart).
LAUNCHER_NEEDS = ("execve", "exit", "exit_group", "restart_syscall", "rt_sigreturn")
_KEPT = {"execve": "sbx run starts the command with it", "exit": "threads end with it",
         "exit_group": "the program ends with it",
         "restart_syscall": "the kernel resumes interrupted sleeps with it",
         "rt_sigreturn": "every signal handler returns through it",
         "clone": "glibc's fallback when clone3 fails with ENOSYS"}
# kernel.spawn's child does all its own work before it waits for the go byte,
# then execs: the eBPF tracer, which tracks it from the go byte on, sees the
# command's calls only.  tests/kernel/test_trace.py checks that the eBPF and
# the notify recordings of /bin/true are equal.
_MIN_BLOCK_WAIT = 0.005   # the spawned child blocks on its go pipe ~0.3 ms after fork

# The arguments the writer narrows: those the tracers count on the native ABI
# (bpf_filters.syscalls.arguments), except setsockopt's option, whose names
# depend on the level: the writer narrows setsockopt by level only.
NARROW: dict[str, tuple[int, ...]] = {}
for (_name, _idx), _m in ARGUMENTS.items():
    if _m.traced and (_name, _idx) != ("setsockopt", 2) and _name not in ("mmap2", "fcntl64"):
        NARROW.setdefault(_name, ())
        NARROW[_name] += (_idx,)
_SOCK_MASK_TEXT = "~(SOCK_NONBLOCK|SOCK_CLOEXEC)"
PROT_WX = CONSTANTS["PROT_WRITE"] | CONSTANTS["PROT_EXEC"]
CSIGNAL = 0xFF          # clone's low byte: the exit signal, not a flag
NAMESPACE_FLAGS = tuple(f"CLONE_NEW{n}" for n in ("NS", "CGROUP", "UTS", "IPC", "USER", "PID", "NET"))
_ENOSYS = Action("errno", 38)
BACKEND_TEXT = {"ebpf": "eBPF (tracepoints)", "notify": "seccomp user notification"}


class TraceError(Exception):
    """Tracing could not run; str() is one clear line, .status the exit code."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


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
    from .ebpf import available
    ok, reason = available()
    if ok:
        return "ebpf", "tracepoints"
    if requested == "ebpf":
        raise TraceError(f"cannot trace with eBPF: {reason}", 2)
    return "notify", f"eBPF unavailable: {reason}"


def record(argv: list[str], backend: str, env: dict | None = None) -> Recording:
    """Run *argv* to its end under the tracer *backend* ("ebpf" or "notify")."""
    if not argv:
        raise TraceError("no command to trace", 2)
    return record_ebpf(argv, env) if backend == "ebpf" else record_notify(argv, env)


def record_ebpf(argv: list[str], env: dict | None = None) -> Recording:
    """The eBPF tracer (root): the child waits on the launcher's go pipe while
    the probe loads, is tracked, then execs with no filter at all."""
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
        child.go()
        try:
            child.wait_exec()
        except LaunchError as err:
            raise TraceError(str(err), err.status) from err
        status = spawn.wait(child.pid, every=probe.drain)
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
    from . import cache, confine
    from .kernel.caps import NAMES
    env = dict(os.environ) if env is None else env
    return confine.prepare(confine.Spec(caps=NAMES), argv[0], cache.location(), env)


def _start_probe(child: spawn.Child, on_path=None):
    """Load the probe and track *pid*; the child must never run untracked, so any
    failure (or SIGTERM/SIGHUP meanwhile) kills it before it is told to go."""
    from .kernel.proc import wait_blocked
    from .ebpf import Probe, ProbeUnavailable

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


def record_notify(argv: list[str], env: dict | None = None) -> Recording:
    """The unprivileged recorder (seccomp user notification): exact, slower.
    Termination signals sent to sbx are forwarded to the command, as sbx run does."""
    from .kernel.notify import NotifyError, run_supervised
    from .kernel.notify_args import FileWatcher
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
        try:
            os.kill(child[0], signum)
        except ProcessLookupError:
            pass
    # the terminal's SIGINT and SIGQUIT reach the command itself (same process group)
    terminal = (signal.SIGINT, signal.SIGQUIT)
    forwarded = {s: signal.signal(s, forward) for s in spawn.FORWARD if s not in terminal}
    quiet = {s: signal.signal(s, signal.SIG_IGN) for s in terminal}
    began = time.monotonic()
    try:
        steps = observer_steps(argv, env)
        try:
            result = run_supervised(argv, env=env, on_record=note_child, steps=steps.steps,
                                    inspect=FileWatcher(log).hooks)
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

@dataclass
class Observed:
    """Calls by syscall name of the native ABI; merged recordings and profiles add up.
    ``sbx analyze`` adds what it found in the code: ``static`` maps a name to where it is
    made (its provenance comment), with the programs analysed and the analysis' limits."""
    calls: dict[str, int] = field(default_factory=dict)
    values: dict[tuple[str, int], dict[int, int]] = field(default_factory=dict)
    open_args: set[str] = field(default_factory=set)   # narrowing syscalls left unchecked
    commands: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    static: dict[str, str] = field(default_factory=dict)
    analyzed: list[str] = field(default_factory=list)
    widened: list[str] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)

    files: tf.Files | None = None         # the filesystem section; None: unrestricted
    net: tf.Net | None = None             # the network section; None: unrestricted

    def has(self, name: str) -> bool:
        return self.calls.get(name, 0) > 0 or name in self.static


def observe(rec: Recording, native: str = "x86_64") -> Observed:
    """Name the native ABI's calls; other ABIs and unknown numbers become notes."""
    table = syscalls.table(native)
    obs = Observed(commands=[_command_text(rec.argv)], backends=[rec.backend])
    foreign: dict[str, int] = {}
    for (arch, nr), n in sorted(rec.calls.items()):
        name = table.name(nr) if arch == native else None
        if name is None:
            label = arch if arch != native else f"{native} #{nr}"
            foreign[label] = foreign.get(label, 0) + n
            continue
        obs.calls[name] = obs.calls.get(name, 0) + n
    for (arch, nr, idx), vals in rec.arg_values.items():
        name = table.name(nr) if arch == native else None
        if name in NARROW and idx in NARROW[name]:
            obs.values[(name, idx)] = dict(vals)
    for label, n in sorted(foreign.items()):
        obs.notes.append(f"{n} calls of {label} were seen; this profile does not allow them")
    if rec.lost:
        obs.notes.append(f"the tracer's maps were full and {rec.lost} counts were lost; "
                         "rerun with --backend notify")
    for name in NARROW:
        if name in obs.calls and any((name, i) not in obs.values for i in NARROW[name]):
            obs.open_args.add(name)
    if rec.files is not None and rec.places is not None:
        obs.files, obs.net = tf.generalise(rec.files, rec.places)
        obs.notes.extend(rec.files.notes)
    return obs


def _command_text(argv: list[str]) -> str:
    return shlex.join(argv).replace("\n", "\\n")


def merge(parts: list[Observed]) -> Observed:
    """The union: counts add up, argument value sets are ORed."""
    out = Observed()
    for part in parts:
        for name, n in part.calls.items():
            out.calls[name] = out.calls.get(name, 0) + n
        for key, vals in part.values.items():
            mine = out.values.setdefault(key, {})
            for v, n in vals.items():
                mine[v] = mine.get(v, 0) + n
        out.open_args |= part.open_args
        for name, where in part.static.items():
            out.static.setdefault(name, where)
        for attr in ("commands", "backends", "notes", "analyzed", "widened", "limits"):
            getattr(out, attr).extend(x for x in getattr(part, attr) if x not in getattr(out, attr))
    out.files = tf.merge_files([p.files for p in parts])
    out.net = tf.merge_net([p.net for p in parts])
    for section, value, attr in (("filesystem", out.files, "files"), ("network", out.net, "net")):
        if value is None and any(getattr(p, attr) is not None for p in parts):
            note = f"no {section} section: a merged part had none, and the union is unrestricted"
            out.notes += [note] if note not in out.notes else []
    return out


_COMMENT = re.compile(r"\s#\s?(.*)$")


def _line_comment(lines: list[str], line: int) -> str:
    m = _COMMENT.search(lines[line - 1].rstrip("\n")) if 0 < line <= len(lines) else None
    return m.group(1) if m else ""


def _count_in(comment: str, word: str | None = None) -> int:
    """``# 12`` -> 12; with *word*, ``# read 3, write 4`` -> the count after *word*;
    a tagged comment (``# both: 12 calls; ...``, see sandbox.provenance) -> its count."""
    if comment.startswith((provenance.STATIC, provenance.TRACED, provenance.BOTH)):
        return provenance.parse(comment)[1]
    if word is not None:
        m = re.search(rf"(?:^|,\s*){re.escape(word)} (\d+)(?:,|$)", comment)
        if m:
            return int(m.group(1))
    m = re.match(r"(\d+)\b", comment)
    return int(m.group(1)) if m else 0


def observed_from_profile(prof, native: str = "x86_64") -> Observed:
    """What an earlier ``sbx trace`` profile allows, as observations (its own rules only;
    counts come back from its comments, value sets from its conditions)."""
    lines = prof.sources.get(prof.path, [])
    obs = Observed()
    for text in lines:
        if not text.startswith("#"):
            break
        if text.startswith("#   $ "):
            obs.commands.append(text[6:].rstrip("\n"))
        elif text.startswith(("#   analyzed: ", "# widened: ", "# limit: ")):
            key, _, value = text[1:].strip().partition(": ")
            getattr(obs, "limits" if key == "limit" else key).append(value.rstrip("\n"))
        elif text.startswith("# recorded with: "):
            keys = {label: key for key, label in BACKEND_TEXT.items()}
            for label in (b.strip() for b in text[17:].split(",")):
                if label and keys.get(label, label) not in obs.backends:
                    obs.backends.append(keys.get(label, label))
        elif text.startswith("# note: "):
            obs.notes.append(text[8:].rstrip("\n"))
    wx_denied: set[str] = set()
    for rule in (r for r in prof.rules if r.pos.file == prof.path):
        if rule.action.kind not in ("allow", "log"):
            for name, pos in rule.names:
                n = _count_in(_line_comment(lines, pos.line), name)
                if name == "clone3" and n:
                    obs.calls["clone3"] = obs.calls.get("clone3", 0) + n
                if name == "clone3":
                    _static_from(obs, name, _line_comment(lines, pos.line))
            if any(c.op == "&==" and c.mask == PROT_WX and c.arg == 2 for c in rule.conds):
                wx_denied.update(n for n, _ in rule.names)
            continue
        for name, pos in rule.names:
            obs.calls[name] = obs.calls.get(name, 0) + _count_in(_line_comment(lines, pos.line), name)
            _static_from(obs, name, _line_comment(lines, pos.line))
            if name in NARROW and name not in ("mmap", "mprotect"):
                _values_from_conds(obs, rule, name, lines, native)
    for name in ("mmap", "mprotect"):
        if name in obs.calls and name not in wx_denied:   # written without W^X: W|X was seen
            obs.values.setdefault((name, 2), {})[PROT_WX] = 0
        elif name in obs.calls:
            obs.values.setdefault((name, 2), {})
    obs.files, obs.net = tf.sections_from_profile(prof, lambda line: _line_comment(lines, line))
    return obs


def _static_from(obs: Observed, name: str, comment: str) -> None:
    """Keep the static provenance of *name* written by sbx analyze (``# static: ...``)."""
    _tag, _n, where = provenance.parse(comment)
    if where is not None:
        obs.static.setdefault(name, where)


def _values_from_conds(obs: Observed, rule, name: str, lines: list[str], native: str) -> None:
    if not rule.conds:
        obs.open_args.add(name)
        return
    for c in rule.conds:
        width = arg_width(native, name, c.arg)
        top = (1 << width) - 1
        if c.op in ("in", "==") and c.arg in NARROW[name]:
            vals = [v & top for v in c.values]
        elif name == "socket" and c.op == "&==" and c.arg == 1:
            vals = [c.values[0] & top]
        elif name == "clone" and c.op == "&==" and c.values[0] == 0 and c.mask is not None:
            mask = c.mask & top
            vals = [~mask & top & ~CSIGNAL] if mask >> (width - 1) else [0]   # tight / namespace form
        else:
            obs.open_args.add(name)           # a condition this writer does not produce
            continue
        comment = _line_comment(lines, c.pos.line)
        mine = obs.values.setdefault((name, c.arg), {})
        for v in vals:
            n = (_count_in(_line_comment(lines, rule.pos.line)) if name == "clone"
                 else _count_in(comment, spell(name, c.arg, v)))
            mine[v] = max(mine.get(v, 0), n)     # a value repeated over rules counts once


# -- spelling values -----------------------------------------------------------------------

def spell(name: str, idx: int, value: int) -> str:
    """A value of a narrowed argument the way a person would write it (the one speller)."""
    return value_text(name, idx, value)


def _flag_names(value: int, names, hex_fallback: bool = False) -> list[str] | None:
    """*value* as single-bit constants in bit order; an unnamed bit gives None
    (or its hex value with *hex_fallback*)."""
    out = []
    for bit in range(64):
        if value >> bit & 1:
            found = next((n for n in names if CONSTANTS.get(n) == 1 << bit), None)
            if found is None and not hex_fallback:
                return None
            out.append(found or hex(1 << bit))
    return out


# -- the profile writer --------------------------------------------------------------------

@dataclass
class _Rule:
    action: str                                   # "allow", "errno(ENOSYS)", ...
    names: list[tuple[str, str]]                  # (name or "@group", trailing comment)
    conds: list[tuple[str, str]] = field(default_factory=list)   # (condition, comment)
    comment: str = ""                             # the rule's comment: field


def _groups(table) -> dict[str, frozenset[str]]:
    """profiles/groups.yaml, nested groups expanded, reduced to *table*'s names."""
    with open(os.path.join(builtin_dir(), "groups.yaml"), encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)["groups"]

    def expand(group: str, seen: tuple) -> set[str]:
        out: set[str] = set()
        for member in raw[group]:
            if member.startswith("@"):
                if member[1:] not in seen:
                    out |= expand(member[1:], seen + (group,))
            elif member in table:
                out.add(member)
        return out
    return {g: frozenset(expand(g, ())) for g in raw}


def _pick_groups(plain: set[str], groups: dict[str, frozenset[str]]) -> list[str]:
    """Groups every member of which is in *plain*, largest first, none redundant."""
    chosen, covered = [], set()
    for g, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(members) >= 2 and members <= plain and not members <= covered:
            chosen.append(g)
            covered |= members
    return sorted(chosen)


def _allowed_by(policy: Policy | None, native: str, name: str, args=ZERO_ARGS) -> bool:
    if policy is None:
        return False
    nr = syscalls.table(native).nr(name)
    return evaluate(policy, syscalls.AUDIT_ARCH[native], nr, args).action.kind in ("allow", "log")


def _uncovered(policy: Policy | None, native: str, name: str,
               vals: dict[int, dict[int, int]]) -> dict[int, dict[int, int]]:
    """The observed argument values that *policy* (the base) does not already allow,
    trying every combination of the recorded arguments (the others zero)."""
    vals = {i: v for i, v in vals.items() if v}
    if policy is None:
        return vals
    keep: dict[int, dict[int, int]] = {i: {} for i in vals}
    idxs = sorted(vals)

    def walk(pos: int, args: list[int]) -> None:
        if pos == len(idxs):
            if not _allowed_by(policy, native, name, tuple(args)):
                for i in idxs:
                    keep[i][args[i]] = vals[i][args[i]]
            return
        for v in sorted(vals[idxs[pos]]):
            args[idxs[pos]] = v
            walk(pos + 1, args)
    walk(0, [0] * 6)
    return keep if any(keep.values()) else {}


def _counts_text(name: str, idx: int, vals: dict[int, int]) -> str:
    return ", ".join(f"{spell(name, idx, v)} {n}" for v, n in sorted(vals.items()))


def _set_cond(name: str, idx: int, vals: dict[int, int]) -> tuple[str, str]:
    spelled = [spell(name, idx, v) for v in sorted(vals)]
    text = f"arg{idx} == {spelled[0]}" if len(spelled) == 1 else \
        f"arg{idx} in [{', '.join(spelled)}]"
    return text, _counts_text(name, idx, vals)


def _narrow_rules(name: str, vals: dict[int, dict[int, int]], calls: int,
                  clone3_seen: bool) -> list[_Rule]:
    """The allow rules that admit exactly the observed values of *name*'s arguments."""
    if name == "clone":
        return [_clone_rule(vals.get(0, {}), calls, clone3_seen)]
    if name == "socket" and vals.get(1):
        dom = [_set_cond(name, 0, vals[0])] if vals.get(0) else []
        return [_Rule("allow", [(name, str(n))],
                      dom + [(f"arg1 & {_SOCK_MASK_TEXT} == {spell(name, 1, t)}",
                              _counts_text(name, 1, {t: n}))])
                for t, n in sorted(vals[1].items())]
    conds = [_set_cond(name, i, v) for i, v in sorted(vals.items()) if v]
    return [_Rule("allow", [(name, str(calls))], conds)]


def _clone_rule(vals: dict[int, int], calls: int, clone3_seen: bool) -> _Rule:
    seen = 0
    for v in vals:
        seen |= v & ~CSIGNAL
    count = str(calls) if calls else f"not seen; {_KEPT['clone']}"
    if clone3_seen:
        # clone3's flags are in memory the tracer cannot read: glibc's fallback may use any
        # flags clone3 was given, so only the namespace flags never seen stay refused
        ns = sum(CONSTANTS[f] for f in NAMESPACE_FLAGS) & ~seen
        if not ns:
            return _Rule("allow", [("clone", count)])
        return _Rule("allow", [("clone", count)], [(f"arg0 & ({_bits_text(ns)}) == 0", "")],
                     "clone3 was seen and its flags are unknown: new namespaces stay refused")
    return _Rule("allow", [("clone", count)],
                 [(f"arg0 & ~({_bits_text(seen) + '|' if seen else ''}0xff) == 0", "")],
                 "only the flag bits seen (the low byte is the exit signal)")


def _bits_text(bits: int) -> str:
    return "|".join(_flag_names(bits, [n for n in CONSTANTS if n.startswith("CLONE_")],
                                hex_fallback=True))


def plan_rules(obs: Observed, native: str = "x86_64", base_policy: Policy | None = None
               ) -> tuple[list[_Rule], list[_Rule]]:
    """(denials, allows) for *obs*; with *base_policy*, only what it does not allow."""
    table = syscalls.table(native)
    clone3_seen = obs.has("clone3")
    allowed = ({n for n in list(obs.calls) + list(obs.static) if n != "clone3"}
               | set(LAUNCHER_NEEDS) | ({"clone"} if clone3_seen else set()))
    allowed = {n for n in allowed if n in table}
    return (_denial_rules(obs, allowed, native, base_policy),
            _allow_rules(obs, allowed, native, base_policy, clone3_seen))


def _denial_rules(obs: Observed, allowed: set[str], native: str,
                  base_policy: Policy | None) -> list[_Rule]:
    """clone3 -> ENOSYS (unless the base already answers it or allows it), and W^X."""
    out: list[_Rule] = []
    c3 = syscalls.table(native).nr("clone3")
    if c3 is not None:
        base_c3 = (evaluate(base_policy, syscalls.AUDIT_ARCH[native], c3, ZERO_ARGS).action
                   if base_policy is not None else None)
        if base_c3 is None or (base_c3.denies and base_c3 != _ENOSYS):
            n = obs.calls.get("clone3", 0)
            text = (_count_text("clone3", obs) if obs.has("clone3") else "not found in the code") \
                if obs.static else (str(n) if n else "not seen")
            out.append(_Rule("errno(ENOSYS)", [("clone3", text)],
                             comment="glibc tries clone3 first and falls back to clone on "
                                     "ENOSYS; seccomp cannot read clone3's flags"))
    wx = [n for n in ("mmap", "mprotect") if n in allowed and n not in obs.open_args
          and not any(v & PROT_WX == PROT_WX for v in obs.values.get((n, 2), {}))]
    if wx and base_policy is None:
        out.append(_Rule("errno(EACCES)", [(n, "") for n in wx],
                         [("arg2 & (PROT_WRITE|PROT_EXEC) == PROT_WRITE|PROT_EXEC", "")],
                         "memory was never asked to be writable and executable at once"))
    return out


def _allow_rules(obs: Observed, allowed: set[str], native: str, base_policy: Policy | None,
                 clone3_seen: bool) -> list[_Rule]:
    """Whole groups, then the other names, then the narrowed syscalls."""
    narrowed: list[_Rule] = []
    plain: set[str] = set()
    for name in sorted(allowed):
        if name in NARROW and name not in ("mmap", "mprotect") and name not in obs.open_args:
            vals = {i: obs.values.get((name, i), {}) for i in NARROW[name]}
            if any(vals.values()) and base_policy is not None:
                vals = _uncovered(base_policy, native, name, vals)
                if not vals:
                    continue
            elif _allowed_by(base_policy, native, name):
                continue
            rules = _narrow_rules(name, vals, obs.calls.get(name, 0), clone3_seen)
            if obs.static:                       # a merged profile: tagged comments
                for rule in rules:
                    rule.names = [(n, _tagged(n, c, obs)) for n, c in rule.names]
            narrowed.extend(rules)
        elif not _allowed_by(base_policy, native, name):
            plain.add(name)
    out = []
    groups = _groups(syscalls.table(native)) if not obs.static else {}   # names keep provenance
    for g in _pick_groups(plain, groups):
        counts = ", ".join(f"{m} {obs.calls.get(m, 0)}" for m in sorted(groups[g]))
        out.append(_Rule("allow", [(f"@{g}", counts)]))
        plain -= groups[g]
    if plain:
        out.append(_Rule("allow", [(n, _count_text(n, obs)) for n in sorted(plain)]))
    return out + narrowed


def _tagged(name: str, count_text: str, obs: Observed) -> str:
    """A narrowed rule's own count (one rule per socket type), tagged for a merged profile."""
    n = int(count_text) if count_text.isdigit() else 0
    if n or name in obs.static:
        return provenance.comment(n, obs.static.get(name), tagged=True)
    return _count_text(name, obs)


def _count_text(name: str, obs: Observed) -> str:
    n = obs.calls.get(name, 0)
    if obs.static and (n or name in obs.static):
        return provenance.comment(n, obs.static.get(name), tagged=True)
    if n:
        return str(n)
    if obs.static:
        return "needed: " + _KEPT.get(name, "allowed by a merged profile")
    return "not seen; " + _KEPT.get(name, "allowed by a merged profile")


def render(obs: Observed, name: str, denials: list[_Rule], allows: list[_Rule],
           base_ref: str | None = None, baseline: str | None = None,
           header: list[str] | None = None) -> str:
    """The profile text: header comment (*header*, or sbx trace's), settings, rules; no
    timestamps. *baseline* ("5.10"): the oldest kernel the traced runs ran on."""
    out = list(header) if header is not None else _trace_header(obs)
    out += ["", f"name: {quote(name)}", f"description: {quote(_description(obs))}"]
    if base_ref is not None:
        out.append(f"extends: [{quote(base_ref)}]")
    else:
        out += ["default: errno(EPERM)", "unknown: errno(ENOSYS)", "bad_arch: kill-process",
                "arches: [native]"]
    if baseline is not None:
        out.append(f'baseline: "{baseline}"')
    out += ["", "rules:" if denials or allows else "rules: []"]
    for title, rules in (("denials", denials), ("allows", allows)):
        if rules:
            out.append(f"  # {title}")
            for rule in rules:
                out += _render_rule(rule)
    out += tf.section_lines(obs.files, obs.net)
    return "\n".join(out) + "\n"


def _trace_header(obs: Observed) -> list[str]:
    if not obs.static and not obs.analyzed:
        out = ["# sbx trace: the syscalls these commands made while traced, and nothing else."]
    elif obs.commands:
        out = ["# sbx analyze + sbx trace: the syscalls found in these programs' code, and those "
               "these commands made while traced."]
    else:
        out = ["# sbx analyze: the syscalls these programs and their libraries can make, found in "
               "their code."]
    out += [f"#   analyzed: {p}" for p in obs.analyzed]
    out += [f"#   $ {c}" for c in obs.commands]
    if obs.backends:
        out.append("# recorded with: " + ", ".join(BACKEND_TEXT.get(b, b) for b in obs.backends))
    out += [f"# note: {n}" for n in obs.notes]
    out += [f"# widened: {n}" for n in obs.widened]
    out += [f"# limit: {n}" for n in obs.limits]
    if not obs.static and not obs.analyzed:
        return out + ["# The number after '#' counts the calls seen.  Widen the profile with "
                      "another run:", "#   sbx trace --merge THIS.yaml -o THIS.yaml -- COMMAND"]
    out.append("# After each name: 'static:' where the code makes it (object, function ← the "
               "program's function on the way)")
    if obs.commands:
        out.append("# 'traced:' how often it was seen, 'both:' both.")
    if obs.limits:
        out.append("# What a limit leaves out is missing here: merge a trace of the program's "
                   "real work:")
    else:
        out.append("# Add what a real run does with:")
    out.append("#   sbx trace --merge THIS.yaml -o THIS.yaml -- COMMAND")
    return out


def _render_rule(rule: _Rule) -> list[str]:
    return rule_lines(rule.action, rule.names, rule.conds, rule.comment)


def _description(obs: Observed) -> str:
    if obs.analyzed:
        names = ", ".join(dict.fromkeys(os.path.basename(p.split(" ")[0]) for p in obs.analyzed))
        return (f"what {names} can do, found in the code by sbx analyze"
                + (", and what was traced" if obs.commands else ""))
    progs = []
    for c in obs.commands:
        try:
            words = shlex.split(c)
        except ValueError:
            words = c.split()
        prog = os.path.basename(words[0]) if words else "?"
        if prog not in progs:
            progs.append(prog)
    return f"what {', '.join(progs) or 'the traced commands'} did while traced by sbx trace"


def write_profile(obs: Observed, name: str, native: str = "x86_64", base=None,
                  base_ref: str | None = None, baseline: str | None = None) -> str:
    """The profile for *obs*; with *base* (a loaded Profile), only what it lacks; with
    *baseline*, a ``baseline:`` line (see ``kernel_baseline``)."""
    from .policy import lower
    base_policy = lower(base, native) if base is not None else None
    denials, allows = plan_rules(obs, native, base_policy)
    if base is not None:
        obs = dataclasses.replace(obs, **dict(zip(("files", "net"),
                                                  tf.without_base(obs.files, obs.net, base))))
    return render(obs, name, denials, allows, base_ref if base is not None else None, baseline)


def kernel_baseline(release: str | None = None) -> str:
    """The running kernel (``uname -r``, or *release*) as a profile's baseline, MAJOR.MINOR:
    what the traced program met there. A kernel newer than the syscall tables gives the
    tables' release: syscalls newer than those are numbers the tables do not name, which
    the profile's ``unknown:`` answers anyway."""
    m = re.match(r"(\d+)\.(\d+)", release if release is not None else os.uname().release)
    if m is None:
        raise TraceError(f"cannot read a kernel release from {release!r}", 2)
    found, top = (int(m.group(1)), int(m.group(2))), syscalls.parse_version(syscalls.KERNEL)
    floor = max((syscalls.table(a).history_floor for a in syscalls.ARCHES
                 if not syscalls.table(a).floor_exact), key=syscalls.parse_version)
    if found > top:
        return syscalls.KERNEL
    # older than the ages reach (sbx itself needs newer): the oldest release they can judge
    return floor if found < syscalls.parse_version(floor) else f"{found[0]}.{found[1]}"


def default_name(argv: list[str]) -> str:
    stem = os.path.basename(argv[0]) if argv else "profile"
    return "trace-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "command")

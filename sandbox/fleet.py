"""One profile from many recordings, with provenance, and whether learning has converged.

``build_profile`` reads recordings (``sandbox.recording``) of any number of
runs and hosts, names their calls through ``trace.observe``, merges them
with the files and ports they recorded (``trace.merge``: a union; one
recording without files leaves them unrestricted) and writes the profile
with sbx trace's writer; each rule's
comment then says how many recordings and hosts needed it, and the baseline
is the oldest kernel among the recordings (the profile must serve that host).

``convergence`` orders the recordings by start time and counts, for each,
the syscalls and argument values no earlier recording had: learning has
converged when at least two recordings were made and the latest ones, which
together make up at least half of the recorded runtime, added nothing new.
The rate reported is new syscalls per hour of runtime over that later half.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from bpf_filters import syscalls

from . import trace as tr
from .recording import RecordingFile


def observed(rf: RecordingFile, native: str) -> tr.Observed:
    """A recording's calls by name of the *native* ABI (others become notes)."""
    rec = tr.Recording(rf.provenance.command, rf.provenance.backend, dict(rf.calls),
                       {k: dict(v) for k, v in rf.arg_values.items()}, rf.provenance.exit_code << 8,
                       rf.provenance.seconds, rf.provenance.lost)
    obs = tr.observe(rec, native)
    obs.files, obs.net = rf.files, rf.net          # generalised when recorded: templates as written
    if rf.provenance.arch != native:
        obs.notes.append(f"{rf.path} was recorded on {rf.provenance.arch}; only the {native} "
                         "calls in it count")
    return obs


def _items(obs: tr.Observed) -> set[tuple]:
    """What a recording contributes: syscalls, and argument values of narrowed syscalls."""
    out = {("syscall", name) for name in obs.calls}
    out |= {("value", name, idx, v) for (name, idx), vals in obs.values.items() for v in vals}
    return out


def _started(rf: RecordingFile) -> datetime.datetime:
    return datetime.datetime.fromisoformat(rf.provenance.started.replace("Z", "+00:00"))


@dataclass
class Step:
    """One recording in time order, and what it added to those before it."""
    rf: RecordingFile
    new_syscalls: list[str]
    new_values: int


@dataclass
class Convergence:
    steps: list[Step]
    seconds: float                  # total recorded runtime
    window: list[Step]              # the latest recordings making up >= half of it
    converged: bool
    hosts: list[str] = field(default_factory=list)

    @property
    def window_seconds(self) -> float:
        return sum(s.rf.provenance.seconds for s in self.window)

    @property
    def window_new(self) -> int:
        return sum(len(s.new_syscalls) for s in self.window)

    @property
    def rate(self) -> float | None:
        """New syscalls per hour of runtime over the window (None: no runtime)."""
        hours = self.window_seconds / 3600
        return self.window_new / hours if hours > 0 else None


def convergence(files: list[RecordingFile], native: str) -> Convergence:
    ordered = sorted(enumerate(files), key=lambda p: (_started(p[1]), p[0]))
    seen: set[tuple] = set()
    steps = []
    for _i, rf in ordered:
        items = _items(observed(rf, native))
        new = items - seen
        seen |= items
        steps.append(Step(rf, sorted(n for kind, n, *_ in new if kind == "syscall"),
                          sum(1 for it in new if it[0] == "value")))
    total = sum(s.rf.provenance.seconds for s in steps)
    window: list[Step] = []
    for step in reversed(steps):
        if sum(s.rf.provenance.seconds for s in window) >= total / 2 and window:
            break
        window.insert(0, step)
    converged = (len(steps) >= 2 and steps[0] not in window
                 and not any(s.new_syscalls or s.new_values for s in window))
    hosts = list(dict.fromkeys(s.rf.provenance.host for s in steps))
    return Convergence(steps, total, window, converged, hosts)


def summary_lines(conv: Convergence) -> list[str]:
    """The learning summary ``sbx profile build`` prints."""
    n = len(conv.steps)
    out = [f"learning: {n} recording{'s' if n != 1 else ''} from {len(conv.hosts)} "
           f"host{'s' if len(conv.hosts) != 1 else ''}, {conv.seconds:.1f} s of runtime"]
    for i, s in enumerate(conv.steps, 1):
        p = s.rf.provenance
        out.append(f"  {i:>2}  {p.host}  Linux {p.kernel}  {p.started}  {p.seconds:>8.1f} s  "
                   f"+{len(s.new_syscalls)} syscalls, +{s.new_values} values  "
                   f"$ {tr.command_text(p.command)}")
    rate = conv.rate
    per_hour = f"{rate:.0f} new syscalls per hour" if rate is not None else "no runtime"
    span = (f"the latest {len(conv.window)} recording{'s' if len(conv.window) != 1 else ''} "
            f"({conv.window_seconds:.1f} s, at least half of the runtime)")
    if conv.converged:
        out.append(f"  converged: {span} added no syscall and no argument value ({per_hour})")
    else:
        why = ("one recording cannot show it: record the service again, under load"
               if n < 2 else f"{span} added {conv.window_new} syscalls and "
               f"{sum(s.new_values for s in conv.window)} argument values ({per_hour})")
        out.append(f"  not converged: {why}; keep recording before enforcing "
                   "(docs/lifecycle.md)")
    return out


# --------------------------------------------------------------------------- the profile

def _provenance(parts: list[tuple[RecordingFile, tr.Observed]]) -> dict[str, tuple[set, set]]:
    """syscall name -> (indexes of the recordings that made it, their hosts)."""
    out: dict[str, tuple[set, set]] = {}
    for i, (rf, obs) in enumerate(parts):
        for name in obs.calls:
            recs, hosts = out.setdefault(name, (set(), set()))
            recs.add(i)
            hosts.add(rf.provenance.host)
    return out


def _needed(recs: set, hosts: set) -> str:
    return (f"{len(recs)} recording{'s' if len(recs) != 1 else ''}, "
            f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}")


def _annotate(rules: list, prov: dict, calls: dict[str, int], native: str) -> None:
    """Rule comments say how many recordings and hosts needed each name."""
    members = None
    for rule in rules:
        if rule.action != "allow":
            continue                       # a denial was not needed by anything
        names = []
        for n, comment in rule.names:
            if n.startswith("@"):
                names.append((n, comment))
                continue
            if n in prov:
                comment = f"{calls.get(n, 0)}; {_needed(*prov[n])}"
            names.append((n, comment))
        rule.names = names
        groups = [n[1:] for n, _ in rule.names if n.startswith("@")]
        if groups and not rule.comment:
            members = members or tr.syscall_groups(syscalls.table(native))
            recs, hosts = set(), set()
            for g in groups:
                for m in members.get(g, ()):
                    if m in prov:
                        recs |= prov[m][0]
                        hosts |= prov[m][1]
            rule.comment = f"members needed by {_needed(recs, hosts)}"


def build_profile(files: list[RecordingFile], name: str, native: str = "x86_64", base=None,
                  base_ref: str | None = None, baseline: str | None = None) -> str:
    """The profile text for *files*; *baseline* defaults to the oldest recorded kernel."""
    from .policy import lower
    parts = [(rf, observed(rf, native)) for rf in files]
    obs = tr.merge([o for _rf, o in parts])
    base_policy = lower(base, native) if base is not None else None
    denials, allows = tr.plan_rules(obs, native, base_policy)
    prov = _provenance(parts)
    _annotate(denials + allows, prov, obs.calls, native)
    if baseline is None:
        baseline = min((tr.kernel_baseline(rf.provenance.kernel) for rf in files),
                       key=syscalls.parse_version)
    return tr.render(obs, name, denials, allows, base_ref if base is not None else None, baseline,
                     _header(files, obs))


def _header(files: list[RecordingFile], obs: tr.Observed) -> list[str]:
    hosts = list(dict.fromkeys(rf.provenance.host for rf in files))
    what = "the syscalls" if obs.files is None and obs.net is None else "the syscalls, files and ports"
    out = [f"# sbx profile build: {what} of {len(files)} recording"
           f"{'s' if len(files) != 1 else ''} from {len(hosts)} host"
           f"{'s' if len(hosts) != 1 else ''}, and nothing else."]
    for rf in sorted(files, key=_started):
        p = rf.provenance
        out.append(f"#   {p.host}, Linux {p.kernel}, {p.libc}, {p.started}, {p.seconds:g} s:")
        out.append(f"#   $ {tr.command_text(p.command)}")
    out += [f"# note: {n}" for n in obs.notes]
    out += ["# After '#': the calls seen; how many recordings and hosts made them.",
            "# Widen it with more recordings: sbx profile build REC.jsonl... -o THIS.yaml"]
    return out

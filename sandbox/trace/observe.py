"""A recording as names: ``observe`` (numbers to names, the launcher's own calls taken
out), ``merge`` of several runs, ``observed_from_profile`` (an earlier generated
profile read back). Pure.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field


from bpf_filters import syscalls
from bpf_filters.syscalls.arguments import ARGUMENTS
from bpf_filters.syscalls.signatures import arg_width

from .. import provenance
from ..paths import display_path
from ..policy.constants import CONSTANTS
from ..policy.spell import value_text
from . import files as tf
from .record import BACKEND_TEXT, Recording

# Signals: counted by the tracers, but narrowed only where a merged profile
# narrowed them (``Observed.narrowed``): a trace rarely sees the signals a
# server is sent at reload or shutdown, so a fresh trace allows them whole.
ON_DEMAND = ("kill", "tkill", "tgkill")
# The arguments the writer narrows: those the tracers count on the native ABI
# (bpf_filters.syscalls.arguments), except setsockopt's option, whose names
# depend on the level: the writer narrows setsockopt by level only.
NARROW: dict[str, tuple[int, ...]] = {}
for (_name, _idx), _m in ARGUMENTS.items():
    if _m.traced and (_name, _idx) != ("setsockopt", 2) and _name not in ("mmap2", "fcntl64"):
        NARROW.setdefault(_name, ())
        NARROW[_name] += (_idx,)
PROT_WX = CONSTANTS["PROT_WRITE"] | CONSTANTS["PROT_EXEC"]
CSIGNAL = 0xFF          # clone's low byte: the exit signal, not a flag


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
    # ON_DEMAND syscalls a merged profile narrowed; conditioned allow rules of other
    # syscalls, kept as written ({name: [(condition texts, where)]}) while no other part
    # allows the call whole; what a merge could not keep, said on stderr by sbx trace
    narrowed: dict[str, list[str]] = field(default_factory=dict)
    kept: dict[str, list[tuple[tuple[str, ...], str]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    origin: str = ""                      # the profile it was read from (observed_from_profile)

    files: tf.Files | None = None         # the filesystem section; None: unrestricted
    net: tf.Net | None = None             # the network section; None: unrestricted

    def has(self, name: str) -> bool:
        return self.calls.get(name, 0) > 0 or name in self.static


def observe(rec: Recording, native: str = "x86_64") -> Observed:
    """Name the native ABI's calls; other ABIs and unknown numbers become notes."""
    table = syscalls.table(native)
    obs = Observed(commands=[command_text(rec.argv)], backends=[rec.backend])
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
        if name in obs.calls and any((name, i) not in obs.values for i in NARROW[name]) \
                and name not in ON_DEMAND:
            obs.open_args.add(name)
    if rec.files is not None and rec.places is not None:
        obs.files, obs.net = tf.generalise(rec.files, rec.places)
        obs.notes.extend(rec.files.notes)
    return obs


def command_text(argv: list[str]) -> str:
    return shlex.join(argv).replace("\n", "\\n")


def merge(parts: list[Observed]) -> Observed:
    """The union: counts add up, argument value sets are ORed.  A conditioned rule
    is never widened silently: ``kill when arg1 in [SIGUSR1]`` and a trace that
    saw kill send SIGTERM give ``arg1 in [SIGUSR1, SIGTERM]``; where the union
    cannot be written (the other part saw the call with arguments nobody
    recorded), the rule is widened with a warning naming it."""
    out = Observed()
    _merge_conditions(parts, out)
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
        for attr in ("commands", "backends", "notes", "analyzed", "widened", "limits", "warnings"):
            getattr(out, attr).extend(x for x in getattr(part, attr) if x not in getattr(out, attr))
    out.files = tf.merge_files([p.files for p in parts])
    out.net = tf.merge_net([p.net for p in parts])
    for section, value, attr in (("filesystem", out.files, "files"), ("network", out.net, "net")):
        if value is None and any(getattr(p, attr) is not None for p in parts):
            note = f"no {section} section: a merged part had none, and the union is unrestricted"
            out.notes += [note] if note not in out.notes else []
    return out


def _allows_whole(part: Observed, name: str) -> bool:
    """Does *part* allow *name* for any arguments?  A trace that saw it without
    recording its arguments does, and so does a profile's unconditioned rule."""
    if name in part.open_args:
        return True
    if name in part.kept or (name not in part.calls and name not in part.static):
        return False
    if name not in NARROW:
        return True
    return name in ON_DEMAND and name not in part.narrowed and \
        not any(part.values.get((name, i)) for i in NARROW[name])


def _merge_conditions(parts: list[Observed], out: Observed) -> None:
    """``narrowed`` and ``kept`` of the union; a warning for each condition that
    had to go because another part allows the call for any arguments."""
    for name in sorted({n for p in parts for n in p.narrowed}):
        wide = next((p for p in parts if _allows_whole(p, name)), None)
        where = [w for p in parts for w in p.narrowed.get(name, [])]
        if wide is not None:
            out.open_args.add(name)
            for w in where:
                _warn(out, f"{w}: the narrowed `allow: {name}`", wide, name)
        else:
            out.narrowed[name] = list(dict.fromkeys(where))
    for name in sorted({n for p in parts for n in p.kept}):
        wide = next((p for p in parts if _allows_whole(p, name)), None)
        for p in parts:
            for rule in p.kept.get(name, []):
                conds, where = rule
                if wide is not None:
                    _warn(out, f"{where}: `allow: {name} when {' and '.join(conds)}`", wide, name)
                elif rule not in out.kept.setdefault(name, []):
                    out.kept[name].append(rule)


def _warn(out: Observed, rule: str, wide: Observed, name: str) -> None:
    if wide.origin:
        why = f"{wide.origin} allows {name} for any arguments"
    elif wide.backends and wide.commands and not wide.static:
        prog = shlex.split(wide.commands[-1])[0].rsplit("/", 1)[-1] if wide.commands[-1] else "?"
        why = f"the traced {prog} called {name}, whose arguments sbx trace does not record"
    else:
        why = f"another merged part allows {name} for any arguments"
    text = f"{rule} widened to any arguments: {why} (the union cannot be written)"
    if text not in out.warnings:
        out.warnings.append(text)


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
    obs = Observed(origin=display_path(prof.path))
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
    whole: set[str] = set()
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
            if name in ("mmap", "mprotect"):
                continue
            if rule.conds and not (name in NARROW and _values_from_conds(obs, rule, name, lines,
                                                                         native)):
                where = f"{display_path(rule.pos.file)}:{rule.pos.line}"
                obs.kept.setdefault(name, []).append((tuple(c.text for c in rule.conds), where))
            elif not rule.conds:
                whole.add(name)
            elif name in ON_DEMAND:
                obs.narrowed.setdefault(name, []).append(
                    f"{display_path(rule.pos.file)}:{rule.pos.line}")
    for name in whole:                 # an unconditioned rule of the same profile covers the rest
        obs.kept.pop(name, None)
        obs.narrowed.pop(name, None)
        if name in NARROW:
            obs.open_args.add(name)
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


def _values_from_conds(obs: Observed, rule, name: str, lines: list[str], native: str) -> bool:
    """The value sets of *rule*'s conditions on *name*'s narrowed arguments, added to
    *obs*; False (nothing added) if a condition is not of a form the writer writes."""
    found: list[tuple[int, list[int], str]] = []
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
            return False                      # kept as written (Observed.kept)
        found.append((c.arg, vals, _line_comment(lines, c.pos.line)))
    for arg, vals, comment in found:
        mine = obs.values.setdefault((name, arg), {})
        for v in vals:
            n = (_count_in(_line_comment(lines, rule.pos.line)) if name == "clone"
                 else _count_in(comment, spell(name, arg, v)))
            mine[v] = max(mine.get(v, 0), n)     # a value repeated over rules counts once
    return True


# -- spelling values -----------------------------------------------------------------------


def spell(name: str, idx: int, value: int) -> str:
    """A value of a narrowed argument the way a person would write it (the one speller)."""
    return value_text(name, idx, value)

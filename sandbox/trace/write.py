"""Write the tightest profile that runs what was observed: rules (``plan_rules``),
then commented YAML (``render``), byte-identical for the same input. Pure.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
from dataclasses import dataclass, field

import yaml

from bpf_filters import syscalls
from bpf_filters.ir import Action, Policy, evaluate

from .. import provenance
from ..errors import TraceError
from ..paths import builtin_dir
from ..policy.constants import CONSTANTS
from ..policy.emit import quote, rule_lines
from . import files as tf
from .observe import CSIGNAL, NARROW, ON_DEMAND, PROT_WX, Observed, spell
from .record import BACKEND_TEXT

ZERO_ARGS = (0,) * 6
# sbx run installs the filter right before execve: these are all its child
# needs, plus what the kernel makes any program call (signal return, restart).
LAUNCHER_NEEDS = ("execve", "exit", "exit_group", "restart_syscall", "rt_sigreturn")
_KEPT = {"execve": "sbx run starts the command with it", "exit": "threads end with it",
         "exit_group": "the program ends with it",
         "restart_syscall": "the kernel resumes interrupted sleeps with it",
         "rt_sigreturn": "every signal handler returns through it",
         "clone": "glibc's fallback when clone3 fails with ENOSYS"}
_SOCK_MASK_TEXT = "~(SOCK_NONBLOCK|SOCK_CLOEXEC)"
NAMESPACE_FLAGS = tuple(f"CLONE_NEW{n}" for n in ("NS", "CGROUP", "UTS", "IPC", "USER", "PID", "NET"))
_ENOSYS = Action("errno", 38)

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


def syscall_groups(table) -> dict[str, frozenset[str]]:
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
        if name in obs.kept:                       # conditions a merged profile wrote by hand
            narrowed.extend(_Rule("allow", [(name, _count_text(name, obs))], [(c, "") for c in conds])
                            for conds, _where in obs.kept[name])
        if name in ON_DEMAND and name not in obs.narrowed and name not in obs.kept:
            if not _allowed_by(base_policy, native, name):
                plain.add(name)
            continue
        if name in obs.kept and not any(obs.values.get((name, i)) for i in NARROW.get(name, ())):
            continue
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
    groups = syscall_groups(syscalls.table(native)) if not obs.static else {}   # names keep provenance
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
           header: list[str] | None = None, baseline_comment: str | None = None) -> str:
    """The profile text: header comment (*header*, or sbx trace's), settings, rules; no
    timestamps. *baseline* ("5.10"): the oldest kernel the traced runs ran on, with
    *baseline_comment* above it (see ``choose_baseline``)."""
    out = list(header) if header is not None else _trace_header(obs)
    out += ["", f"name: {quote(name)}", f"description: {quote(_description(obs))}"]
    if base_ref is not None:
        out.append(f"extends: [{quote(base_ref)}]")
    else:
        out += ["default: errno(EPERM)", "unknown: errno(ENOSYS)", "bad_arch: kill-process",
                "arches: [native]"]
    if baseline is not None:
        out += [baseline_comment] if baseline_comment else []
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
                  base_ref: str | None = None, baseline: str | None = None,
                  baseline_comment: str | None = None) -> str:
    """The profile for *obs*; with *base* (a loaded Profile), only what it lacks; with
    *baseline*, a ``baseline:`` line (see ``kernel_baseline``, ``choose_baseline``)."""
    from ..policy import lower
    base_policy = lower(base, native) if base is not None else None
    denials, allows = plan_rules(obs, native, base_policy)
    if base is not None:
        obs = dataclasses.replace(obs, **dict(zip(("files", "net"),
                                                  tf.without_base(obs.files, obs.net, base))))
    return render(obs, name, denials, allows, base_ref if base is not None else None, baseline,
                  baseline_comment=baseline_comment)


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


def choose_baseline(here: bool, previous: list,
                    given: str | None = None) -> tuple[str | None, str | None]:
    """The baseline of a profile made on this kernel (*here*: a command traced or a
    program analysed on it) and merged from the loaded profiles *previous*, and the
    comment that goes above it when the sources disagree; *given* (``--baseline``)
    overrides both (TraceError, status 2, if it is not a release the tables judge).

    The oldest (lowest) release wins: the profile must serve every kernel one of
    its parts was made on, and a syscall newer than that release answers ENOSYS
    there, so the program falls back as it did on that kernel; the newest would
    answer the default (EPERM) instead and break the fallback."""
    if given is not None:
        from ..policy.profile import check_baseline
        try:
            return check_baseline(given), None
        except syscalls.BadVersionError as err:
            raise TraceError(f"--baseline: {err}", 2) from err
    found = ([("this kernel", kernel_baseline())] if here else []) + \
        [(os.path.basename(p.path) or p.name, p.baseline.value)
         for p in previous if p.baseline.value is not None]
    if not found:
        return None, None
    chosen = min((v for _, v in found), key=syscalls.parse_version)
    if len({v for _, v in found}) == 1:
        return chosen, None
    return chosen, "# baseline: the oldest of " + ", ".join(f"{w} {v}" for w, v in found)


def default_name(argv: list[str]) -> str:
    stem = os.path.basename(argv[0]) if argv else "profile"
    return "trace-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "command")


def base_ref(base: str, output: str) -> str:
    """How the written profile names BASE: a built-in by name, a file relative to it (by
    its absolute path when OUTPUT is a device or FIFO: a copy read elsewhere, such as
    ``-o /dev/stdout > p.yaml``, has no directory in common with it)."""
    from ..policy import find_profile
    if "/" not in base and not base.endswith((".yaml", ".yml")):
        return base
    found = find_profile(base)
    if found is None:
        return base
    if os.path.exists(output) and not os.path.isfile(output) and not os.path.isdir(output):
        return os.path.abspath(found)
    return os.path.relpath(os.path.abspath(found), os.path.dirname(os.path.abspath(output)))

"""Turn observed seccomp denials into the smallest profile change that allows them.

Pure: records in, new profile text out.  ``plan_changes`` decides, per denied
syscall, the narrowest ``allow`` rule that admits exactly what was seen;
``apply_changes`` writes those rules at the top of the profile's own
``rules:`` list by editing its text (comments and layout survive);
``check_refined`` proves on the lowered policies that the seen denials are
now allowed and that no other syscall's decision moved.

Why narrowing is safe: a new rule tests every argument that any rule of the
syscall tests (plus a "selector" argument such as socket's family), and only
with the values seen.  A call it admits therefore agrees on every tested
argument with a seen denial, so every existing rule treats it like that
denial: it was denied by the same rule, and nothing the profile denies on
purpose becomes allowed unless the seen denial itself was (``--broad``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import yaml

from bpf_filters import syscalls
from bpf_filters.ir import Decision, Policy, evaluate

from bpf_filters.syscalls.arguments import selectors
from bpf_filters.syscalls.signatures import arg_width, fits

from .denials import Attribution, Denial
from .policy.emit import rule_lines
from .policy.show import action_text
from .policy.spell import value_text

MAX_TUPLES = 8          # more distinct argument combinations than this: allow the name
NONNULL = -1            # projection of a non-NULL pointer argument
ZERO_ARGS = (0,) * 6

class RefineError(Exception):
    """The denials or the profile cannot be refined; str() is one clear line,
    *col* the 1-based column in the input line it is about, when known."""

    def __init__(self, message: str, col: int | None = None, length: int = 1):
        super().__init__(message)
        self.col, self.length = col, length


@dataclass
class Change:
    """One rule to add: ``allow: names`` with optional ``when:`` conditions."""
    names: list[str]
    conds: list[str]
    denials: int
    why: list[str]                                  # one comment line per syscall
    overrides: list[str] = field(default_factory=list)   # rules denying on purpose (--broad)
    members: list[Denial] = field(default_factory=list)  # the denials it allows


@dataclass
class Skip:
    """Denials left alone, with the reason; *needs_broad* if --broad would add them."""
    name: str
    denials: int
    reason: str
    needs_broad: bool = False


@dataclass
class Plan:
    changes: list[Change]
    skipped: list[Skip]
    observations: list[Denial]

    @property
    def allowed(self) -> int:
        return sum(c.denials for c in self.changes)


# -- reading records --------------------------------------------------------------

def parse_json_line(text: str) -> Denial | None:
    """One JSON line of ``sbx monitor --json`` or ``sbx run -o`` (any object with
    arch and nr or syscall); None for blank lines, comments and objects that
    are no denial."""
    if not text.strip() or text.lstrip().startswith("#"):
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise RefineError(f"not JSON ({err.msg})", err.colno) from err
    except RecursionError as err:
        raise RefineError("JSON nested too deeply", len(text) - len(text.lstrip()) + 1) from err
    except ValueError as err:       # an integer longer than Python converts (4,300 digits)
        m = _LONG_NUMBER.search(text)
        raise RefineError("a number of more than 4,300 digits: no argument has more than 20 (the "
                          "largest, 2^64-1, is 18446744073709551615)",
                          m.start() + 1 if m else 1, 20) from err
    args = obj.get("args") if isinstance(obj, dict) else None
    if isinstance(args, list):
        for i, a in enumerate(args):
            if isinstance(a, int) and not isinstance(a, bool) and not -(1 << 63) <= a < (1 << 64):
                col, length = _number_at(text, a)
                raise RefineError(f"argument {i} is {a}, which does not fit 64 bits (registers "
                                  "hold -2^63 to 2^64-1; a larger value would wrap)", col, length)
    try:
        return Denial.from_json(obj)
    except ValueError as err:
        raise RefineError(str(err), _key_col(text, str(err))) from err


_LONG_NUMBER = re.compile(r"-?\d{4301,}")


def _number_at(text: str, value: int) -> tuple[int, int]:
    """(1-based column, length) of the literal of *value* after the "args" key of *text*."""
    start = max(0, text.find('"args"'))
    for m in re.finditer(r"-?\d+", text[start:]):
        if int(m.group()) == value:
            return start + m.start() + 1, len(m.group())
    return start + 1, 1


def _key_col(text: str, message: str) -> int:
    """The column of the key *message* is about ("unknown arch" -> "arch"), else of the object."""
    for key, word in (("args", "arg"), ("syscall", "syscall"), ("arch", "arch"), ("count", "count"),
                      ("action", "action"), ("nr", "number")):
        at = text.find(f'"{key}"') if word in message else -1
        if at >= 0:
            return at + 1
    return len(text) - len(text.lstrip()) + 1


# -- naming values ------------------------------------------------------------------

# -- planning -----------------------------------------------------------------------

def merge_observations(observations: list[Denial]) -> list[Denial]:
    """Identical calls (arch, number, arguments) folded into one, counts summed."""
    counts: dict[tuple, int] = {}
    for o in observations:
        key = (o.arch, o.nr, o.args)
        counts[key] = counts.get(key, 0) + o.count
    return [Denial(arch, nr, "errno", args=args, count=n) for (arch, nr, args), n in counts.items()]


def decide(policy: Policy, obs: Denial) -> Decision:
    """What *policy* decides for the denied call (exactly, with its arguments if known)."""
    return evaluate(policy, syscalls.AUDIT_ARCH[obs.arch], syscalls.seccomp_nr(obs.arch, obs.nr),
                    obs.args or ZERO_ARGS)


def _rules_of(policy: Policy, name: str):
    """Every lowered rule of syscall *name*, over the policy's arches."""
    out = []
    for ap in policy.arches:
        nr = syscalls.table(ap.arch).nr(name)
        out.extend(ap.rules.get(nr, ()) if nr is not None else ())
    return out


def _where(decision: Decision, policy: Policy) -> str:
    return Attribution.of(policy, decision).phrase()


def plan_changes(policy: Policy, observations: list[Denial], broad: bool = False) -> Plan:
    """What to add so that every denial in *observations* is allowed, and what not to."""
    plan = Plan([], [], list(observations))
    groups: dict[str, list[tuple[Denial, Decision]]] = {}
    for obs in merge_observations(observations):
        name = obs.name
        if name is None:
            plan.skipped.append(Skip(f"#{obs.nr} ({obs.arch})", obs.count,
                                     "not in the syscall table; no rule can name it"))
            continue
        dec = decide(policy, obs)
        if dec.reason == "bad_arch":
            plan.skipped.append(Skip(name, obs.count, f"{obs.arch} code is not allowed by the "
                                     f"profile (its arches: list); add {obs.arch} there to run it"))
        elif not dec.action.denies:
            plan.skipped.append(Skip(name, obs.count, f"already allowed by {_where(dec, policy)}"))
        else:
            groups.setdefault(name, []).append((obs, dec))
    plain: list[Change] = []
    for name, seen in groups.items():
        for change in _plan_one(policy, name, seen, broad, plan.skipped):
            (plan.changes if change.conds else plain).append(change)
    if plain:
        plan.changes.append(Change([n for c in plain for n in c.names], [],
                                   sum(c.denials for c in plain), [w for c in plain for w in c.why],
                                   [o for c in plain for o in c.overrides],
                                   [o for c in plain for o in c.members]))
    plan.skipped = merge_skips(plan.skipped)
    return plan


def merge_skips(skips: list[Skip]) -> list[Skip]:
    """One Skip per (name, reason, needs_broad), its denials summed (refine_fs uses it too)."""
    merged: dict[tuple, Skip] = {}
    for s in skips:
        key = (s.name, s.reason, s.needs_broad)
        if key in merged:
            merged[key].denials += s.denials
        else:
            merged[key] = Skip(s.name, s.denials, s.reason, s.needs_broad)
    return list(merged.values())


def _plan_one(policy: Policy, name: str, seen, broad: bool, skipped: list[Skip]) -> list[Change]:
    """The rules that allow the denials of one syscall (several when the seen
    argument combinations need more than one ``in`` list)."""
    explicit = [(o, d) for o, d in seen if d.reason == "rule"]
    if explicit and not broad:
        where = sorted({_where(d, policy) for _, d in explicit})
        skipped.append(Skip(name, sum(o.count for o, _ in explicit),
                            f"denied on purpose by {'; '.join(where)}", needs_broad=True))
        seen = [(o, d) for o, d in seen if d.reason != "rule"]
        if not seen:
            return []
    rules = _rules_of(policy, name)
    groups = _narrow(name, [o for o, _ in seen], rules)
    if groups is None:
        on_purpose = sorted({_where(Decision(r.action, r, "rule"), policy)
                             for r in rules if r.action.denies and r.origin is not None})
        if on_purpose and not broad:
            skipped.append(Skip(name, sum(o.count for o, _ in seen),
                                "allowing every call would also allow what "
                                f"{'; '.join(on_purpose)} denies on purpose, and the denials "
                                "do not narrow it down (arguments unknown or too varied)",
                                needs_broad=True))
            return []
        return [Change([name], [], sum(o.count for o, _ in seen), [_why(policy, name, seen)],
                       on_purpose, [o for o, _ in seen])]
    out = []
    for conds, members in groups:
        mine = [(o, d) for o, d in seen if id(o) in members]
        overrides = sorted({_where(d, policy) for _, d in mine if d.reason == "rule"})
        out.append(Change([name], conds, sum(o.count for o, _ in mine),
                          [_why(policy, name, mine)], overrides, [o for o, _ in mine]))
    return out


def _why(policy: Policy, name: str, seen) -> str:
    count = sum(o.count for o, _ in seen)
    decided = sorted({f"{action_text(d.action)} by {_where(d, policy)}" for _, d in seen})
    return f"{name}: {count} denial{'s' if count != 1 else ''}, {'; '.join(decided)}"


def _tested_args(rules) -> dict[int, bool]:
    """{argument: compared only with NULL} for every argument the rules test."""
    out: dict[int, bool] = {}
    for r in rules:
        for c in r.conds:
            null_only = c.op in ("==", "!=", "in", "not in") and set(c.values) == {0}
            out[c.arg] = out.get(c.arg, True) and null_only
    return out


def _narrow(name: str, seen: list[Denial], rules) -> list[tuple[list[str], set[int]]] | None:
    """Rules (condition texts, ids of the observations each admits) that admit
    exactly the seen argument combinations, or None when that is not possible."""
    if any(o.args is None for o in seen):
        return None
    tested = _tested_args(rules)
    candidates = [sorted(set(tested) | set(selectors(name))), sorted(tested)]
    for args in dict.fromkeys(tuple(c) for c in candidates):
        if not args:
            continue
        null_class = {a for a in args if tested.get(a) and _is_pointer(name, a)}
        projected = [(tuple(_project(name, o, a, a in null_class) for a in args), o) for o in seen]
        tuples = {t for t, _ in projected}
        if len(tuples) > MAX_TUPLES or not _all_fit(name, args, tuples):
            continue
        return [(conds, {id(o) for t, o in projected if t in group})
                for conds, group in _conditions(name, args, tuples, null_class)]
    return None


def _is_pointer(name: str, arg: int) -> bool:
    from bpf_filters.syscalls.signatures import signature
    sig = signature(name)
    return bool(sig and arg < len(sig) and sig[arg].pointer)


def _project(name: str, obs: Denial, arg: int, null_class: bool) -> int:
    width = arg_width(obs.arch, name, arg)
    value = obs.args[arg] & ((1 << width) - 1)
    if null_class:
        return 0 if value == 0 else NONNULL
    return value


def _all_fit(name: str, args, tuples) -> bool:
    for arch in syscalls.ARCHES:
        if name not in syscalls.table(arch):
            continue
        for i, a in enumerate(args):
            width = arg_width(arch, name, a)
            if any(t[i] != NONNULL and not fits(t[i], width) for t in tuples):
                return False
    return True


def _conditions(name, args, tuples, null_class) -> list[tuple[list[str], set[tuple]]]:
    """Group the tuples so that each rule has one ``in`` list (on the argument
    with the most values) and fixes the others with ``==``: exact, and short."""
    values = [sorted({t[i] for t in tuples}) for i in range(len(args))]
    free = [i for i, a in enumerate(args) if a not in null_class]
    pivot = max(free, key=lambda i: len(values[i])) if free else None
    groups: dict[tuple, list[tuple]] = {}
    for t in sorted(tuples):
        groups.setdefault(tuple(v for i, v in enumerate(t) if i != pivot), []).append(t)
    context = {a: set(values[i]) for i, a in enumerate(args)}
    out = []
    for key, members in groups.items():
        conds, rest = [], iter(key)
        for i, a in enumerate(args):
            if i == pivot:
                items = ", ".join(value_text(name, a, t[i], context) for t in members)
                conds.append(f"arg{a} in [{items}]")
            elif a in null_class:
                conds.append(f"arg{a} {'==' if next(rest) == 0 else '!='} 0")
            else:
                conds.append(f"arg{a} == {value_text(name, a, next(rest), context)}")
        out.append((conds, set(members)))
    return out


# -- editing the profile text -------------------------------------------------------

def render_rules(plan: Plan, indent: int, source: str = "", detail: bool = True) -> list[str]:
    """The YAML lines of the new rules, dash at column *indent*; with *detail*
    a header and a comment per rule saying which denials it allows and why."""
    pad = " " * indent
    lines = []
    if detail:
        counts: dict[str, int] = {}
        for c in plan.changes:
            for o in c.members:
                counts[o.name] = counts.get(o.name, 0) + o.count
        summary = ", ".join(f"{n} x{k}" for n, k in counts.items())
        lines.append(f"{pad}# added by sbx refine from {plan.allowed} denial"
                     f"{'s' if plan.allowed != 1 else ''}{f' in {source}' if source else ''}: {summary}")
    for c in plan.changes:
        if detail:
            lines += [f"{pad}# {w}" for w in c.why]
        lines += [f"{pad}# {'--broad: ' if detail else ''}overrides {o}" for o in c.overrides]
        lines += rule_lines("allow", [(n, None) for n in c.names], [(t, None) for t in c.conds],
                            indent=indent)
    return lines


def apply_changes(text: str, plan: Plan, source: str = "") -> str:
    """*text* with the plan's rules first in its own ``rules:`` list; every
    other line is kept as it was."""
    if not plan.changes:
        return text
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise RefineError(f"the profile is not valid YAML: {err}") from err
    if not isinstance(root, yaml.MappingNode):
        raise RefineError("the profile is not a YAML mapping")
    nl = _newline(text)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += nl
    entry = next(((k, v) for k, v in root.value
                  if isinstance(k, yaml.ScalarNode) and k.value == "rules"), None)
    if entry is None:
        block = render_rules(plan, 2, source)
        sep = [] if not lines or lines[-1].strip() == "" else [nl]
        return "".join(lines + sep + ["rules:" + nl] + [ln + nl for ln in block])
    key, value = entry
    if isinstance(value, yaml.SequenceNode) and not value.flow_style and value.value:
        indent = value.start_mark.column
    elif _is_empty(value) and value.end_mark.line == key.start_mark.line:     # rules: []
        indent = key.start_mark.column + 2
        line = lines[key.start_mark.line]
        lines[key.start_mark.line] = line[:value.start_mark.column].rstrip() + line[value.end_mark.column:]
    else:
        raise RefineError("the profile's rules: is not a block list ('- allow: ...' lines); "
                          "rewrite it in block style to refine it")
    block = [ln + nl for ln in render_rules(plan, indent, source)]
    at = key.start_mark.line + 1
    if at < len(lines) and lines[at].strip():
        block.append(nl)
    return "".join(lines[:at] + block + lines[at:])


def _newline(text: str) -> str:
    """The file's line ending, as its first line has it (a CRLF profile stays CRLF)."""
    end = text.find("\n")
    return "\r\n" if end > 0 and text[end - 1] == "\r" else "\n"


def _is_empty(node: yaml.Node) -> bool:
    return isinstance(node, yaml.SequenceNode) and not node.value


# -- checking the result ------------------------------------------------------------

def check_refined(old: Policy, new: Policy, plan: Plan) -> None:
    """The refined policy allows every denial the plan covers, and decides
    every other syscall (every number, zero arguments) as before."""
    for c in plan.changes:
        for obs in c.members:
            if decide(new, obs).action.denies:
                raise RefineError(f"internal error: the refined profile still denies "
                                  f"{obs.name} with args {obs.args}")
    added = {n for c in plan.changes for n in c.names}
    for ap in old.arches:
        table = syscalls.table(ap.arch)
        token = syscalls.AUDIT_ARCH[ap.arch]
        low = syscalls.X32_SYSCALL_BIT if ap.arch == "x32" else 0
        for nr in range(low, table.max_nr + 64):
            if table.name(nr) in added:
                continue
            before, after = evaluate(old, token, nr), evaluate(new, token, nr)
            if before.action != after.action:
                raise RefineError(f"internal error: the refined profile changes "
                                  f"{table.name(nr) or nr} on {ap.arch}: "
                                  f"{before.action} -> {after.action}")

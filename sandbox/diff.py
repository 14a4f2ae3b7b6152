"""Semantic diff of two profiles: where their filters decide differently, and by which rules.

Computed on decisions, never on text. Both profiles are lowered for the same
native ABI; then for every ABI sbx has a table for, every number of that table,
the numbers it does not name, and the architectures it has no table for, each
side's decision is split into exact argument regions: first-match order
resolved with BDDs over the six 64-bit arguments (``sandbox.interop.analysis``,
the analysis the OCI export uses), 32-bit arguments compared on their low word
as the kernel does. Each non-empty region where A's action differs from B's is
a ``Change``, with the rules (file:line) that decide it on each side.

A change *widens* when B lets through (allow, log) what A denies, or hands a
denied call to a notify listener; it *narrows* the other way round; any other
difference (kill-process to errno(EPERM), EPERM to ENOSYS, allow to log) is a
*change*. ``sandbox.layerdiff`` judges how the other layers (capabilities,
scope, Landlock, filesystem, network) differ, each difference a widening or
a narrowing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bpf_filters import syscalls
from bpf_filters.ir import M32, M64, Action, Origin, Policy

from .interop.analysis import Bdd, cond_region
from .policy import Profile, lower
from .policy.show import action_text

UNKNOWN = "(numbers the table does not name)"
OTHER = "(architectures without a table)"
RANK = {"allow": 2, "log": 2, "notify": 1}          # everything else denies: 0
MAX_TERMS = 8                                      # alternatives printed per region


@dataclass(frozen=True)
class Where:
    """What decided on one side: a rule (``origin``) or a profile-level action."""
    reason: str                     # "rule", "default", "unknown", "bad_arch"
    origin: Origin | None

    def text(self) -> str:
        from .paths import display_path
        if self.origin is None:
            return f"{self.reason} action (built-in)"
        label = "" if self.reason == "rule" else f"{self.reason} action, "
        if self.origin.file == "built-in":        # a guard lowering adds (notify, i386)
            return label + self.origin.text
        return f"{label}{display_path(self.origin.file)}:{self.origin.line}: {self.origin.text}"


@dataclass
class Change:
    """One ABI, one syscall number (or class of numbers), one argument region."""
    arch: str                       # an ABI of bpf_filters.syscalls.ARCHES, or "other"
    nr: int | None                  # as seccomp sees it (x32 with its bit); None for a class
    name: str
    region: int                     # BDD node: the argument vectors where the two differ
    old: Action
    new: Action
    old_by: list[Where] = field(default_factory=list)
    new_by: list[Where] = field(default_factory=list)

    @property
    def kind(self) -> str:
        a, b = RANK.get(self.old.kind, 0), RANK.get(self.new.kind, 0)
        return "widening" if b > a else "narrowing" if b < a else "change"


@dataclass
class Diff:
    old: Profile
    new: Profile
    native: str
    changes: list[Change]
    bdd: Bdd
    confinement: list[tuple]      # (section, widening|narrowing, text, item): sandbox.layerdiff

    def count(self, kind: str) -> int:
        return len({c.name for c in self.changes if c.kind == kind})


def _conds_region(bdd: Bdd, rule) -> int:
    n = 1
    for c in rule.conds:
        n = bdd.both(n, cond_region(bdd, c, wide=False))
    return n


def decide(bdd: Bdd, policy: Policy, arch: str, nr: int | None) -> list[tuple[Action, int, Where]]:
    """(action, region, where) pieces of one side, in first-match order; their regions
    partition the argument space. *nr* None: a number *arch*'s table does not name;
    *arch* "other": an architecture without a table."""
    ap = policy.arch(arch) if arch != "other" else None
    if ap is None:
        return [(policy.bad_arch, 1, Where("bad_arch", policy.origins.get("bad_arch")))]
    if nr is None:
        return [(policy.unknown, 1, Where("unknown", policy.origins.get("unknown")))]
    out, rest = [], 1
    for rule in ap.rules.get(nr, ()):
        cond = _conds_region(bdd, rule)
        piece = bdd.both(cond, rest)
        if piece:
            out.append((rule.action, piece, Where("rule", rule.origin)))
        rest = bdd.both(rest, bdd.neg(cond))
        if not rest:
            break
    if rest:
        reason = "default" if nr in ap.known else "unknown"
        out.append((getattr(policy, reason), rest, Where(reason, policy.origins.get(reason))))
    return out


def _compare(bdd: Bdd, a: list, b: list, arch: str, nr: int | None, name: str) -> list[Change]:
    merged: dict[tuple[Action, Action], Change] = {}
    for act_a, reg_a, by_a in a:
        for act_b, reg_b, by_b in b:
            if act_a == act_b:
                continue
            both = bdd.both(reg_a, reg_b)
            if not both:
                continue
            ch = merged.get((act_a, act_b))
            if ch is None:
                ch = merged[(act_a, act_b)] = Change(arch, nr, name, 0, act_a, act_b)
            ch.region = bdd.either(ch.region, both)
            if by_a not in ch.old_by:
                ch.old_by.append(by_a)
            if by_b not in ch.new_by:
                ch.new_by.append(by_b)
    return list(merged.values())


def diff_policies(old: Policy, new: Policy, bdd: Bdd | None = None) -> tuple[list[Change], Bdd]:
    """Every (ABI, number, region) where *old* and *new* decide differently."""
    bdd = bdd or Bdd()
    out: list[Change] = []
    for arch in syscalls.ARCHES:
        table = syscalls.table(arch)
        for nr in sorted(table.by_nr):
            name = table.by_nr[nr]
            out += _compare(bdd, decide(bdd, old, arch, nr), decide(bdd, new, arch, nr), arch, nr, name)
        out += _compare(bdd, decide(bdd, old, arch, None), decide(bdd, new, arch, None), arch, None,
                        UNKNOWN)
    out += _compare(bdd, decide(bdd, old, "other", None), decide(bdd, new, "other", None), "other",
                    None, OTHER)
    return out, bdd


def diff_profiles(old: Profile, new: Profile, native: str = "x86_64") -> Diff:
    changes, bdd = diff_policies(lower(old, native), lower(new, native))
    order = {"widening": 0, "change": 1, "narrowing": 2}
    worst = {}
    for c in changes:
        worst[c.name] = min(worst.get(c.name, 3), order[c.kind])
    arch_order = {a: i for i, a in enumerate(dict.fromkeys((native,) + syscalls.ARCHES + ("other",)))}
    changes.sort(key=lambda c: (worst[c.name], c.name.startswith("("), c.name, order[c.kind],
                                arch_order[c.arch]))
    from .layerdiff import layer_changes
    return Diff(old, new, native, changes, bdd, layer_changes(old, new))


# --------------------------------------------------------------------------- membership

def contains(bdd: Bdd, region: int, args) -> bool:
    """Is the argument vector *args* (six values) in *region*?"""
    n = region
    while n > 1:
        v = bdd.var[n]
        bit = args[v // 64] >> (63 - v % 64) & 1
        n = bdd.hi[n] if bit else bdd.lo[n]
    return n == 1


def witness(bdd: Bdd, region: int) -> tuple[int, ...]:
    """One argument vector in a non-empty *region* (untested bits 0)."""
    args = [0] * 6
    n = region
    while n > 1:
        v = bdd.var[n]
        if bdd.lo[n] != 0:
            n = bdd.lo[n]
        else:
            args[v // 64] |= 1 << (63 - v % 64)
            n = bdd.hi[n]
    return tuple(args)


# --------------------------------------------------------------------------- rendering regions

MAX_VALUES = 16                                    # values or ranges listed per argument


def _span(lo: int, hi: int) -> str:
    return f"{lo:#x}" if lo == hi else f"{lo:#x}..{hi:#x}"


def _arg_terms(bdd: Bdd, s: int, arg: int) -> str:
    """One argument's set as text: values, ranges, the values it leaves out, or masks.
    A set that reads only the low word (a 32-bit argument) is written on that word."""
    low_only = all(v > arg * 64 + 31 for v in bdd.support(s))
    label, top = (f"arg{arg} (low 32 bits)", M32) if low_only else (f"arg{arg}", M64)
    dom = bdd.compare(arg, "<=", M32) if low_only else 1
    s = bdd.both(s, dom)
    spans = bdd.intervals(s, arg, MAX_VALUES)
    gaps = bdd.intervals(bdd.both(bdd.neg(s), dom), arg, MAX_VALUES)
    if gaps is not None and all(lo == hi for lo, hi in gaps) and (spans is None or len(gaps) <= len(spans)):
        values = [lo for lo, _ in gaps]
        return f"{label} != {values[0]:#x}" if len(values) == 1 else \
            f"{label} not in [{', '.join(hex(v) for v in values)}]"
    if spans is not None:
        if len(spans) == 1:
            lo, hi = spans[0]
            if lo == hi:
                return f"{label} == {lo:#x}"
            if lo == 0:
                return f"{label} <= {hi:#x}"
            if hi == top:
                return f"{label} >= {lo:#x}"
        return f"{label} in [{', '.join(_span(lo, hi) for lo, hi in spans)}]"
    cubes = bdd.cubes(s, arg, MAX_VALUES)
    if cubes is None:
        return f"{label} in a set of {bdd.count(s, arg)} values"
    parts = [f"{label} & {m & top:#x} == {v & top:#x}" for m, v in cubes]
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def region_terms(bdd: Bdd, region: int, limit: int = MAX_TERMS) -> tuple[list[str], int]:
    """The region as alternatives (each an AND over arguments), at most *limit* of them,
    and how many there are in all."""
    if region == 1:
        return ["any arguments"], 1
    boxes = bdd.boxes(region)
    out = []
    for box in boxes[:limit]:
        out.append(" and ".join(_arg_terms(bdd, s, arg) for arg, s in sorted(box.items()))
                   or "any arguments")
    return out, len(boxes)


def region_text(bdd: Bdd, region: int) -> str:
    terms, total = region_terms(bdd, region)
    more = f"; or {total - len(terms)} more" if total > len(terms) else ""
    return "; or ".join(terms) + more


# --------------------------------------------------------------------------- text and JSON

def _label(c: Change) -> str:
    if c.nr is None:
        return c.arch
    return f"{c.arch} {syscalls.reported_nr(c.arch, c.nr)}" if c.arch != "other" else "other"


def render_text(d: Diff, old_label: str, new_label: str) -> str:
    out = [f"sbx diff: {old_label} -> {new_label} (native {d.native})",
           f"syscalls widened: {d.count('widening')}, narrowed: {d.count('narrowing')}, "
           f"answered differently: {d.count('change')}"]
    width = max(len(old_label), len(new_label))
    name = None
    for c in d.changes:
        if c.name != name:
            name = c.name
            out.append("")
            out.append(name)
        out.append(f"  {c.kind:9} {_label(c)}: {region_text(d.bdd, c.region)}")
        out.append(f"    {old_label:<{width}}  {action_text(c.old):22} "
                   + "; ".join(w.text() for w in c.old_by))
        out.append(f"    {new_label:<{width}}  {action_text(c.new):22} "
                   + "; ".join(w.text() for w in c.new_by))
    if not d.changes:
        out.append("")
        out.append("the two profiles decide every syscall, number and argument alike")
    if d.confinement:
        out.append("")
        out.append("other layers:")
        out += [f"  {kind:9} {line}" for _section, kind, line, _item in d.confinement]
    return "\n".join(out) + "\n"


def _where_json(w: Where) -> dict:
    from .paths import display_path
    out: dict = {"reason": w.reason}
    if w.origin is not None:
        out.update(file=display_path(w.origin.file) if w.origin.file != "built-in" else "built-in",
                   line=w.origin.line, text=w.origin.text)
    return out


JSON_FORMAT = 2          # 2: confinement entries are objects with a kind


def to_json(d: Diff, old_label: str, new_label: str) -> dict:
    from .paths import display_path
    changes = []
    for c in d.changes:
        terms, total = region_terms(d.bdd, c.region, limit=64)
        changes.append({
            "syscall": c.name, "arch": c.arch,
            "nr": None if c.nr is None else syscalls.reported_nr(c.arch, c.nr),
            "kind": c.kind, "region": terms, "region_terms": total,
            "old": {"action": action_text(c.old), "by": [_where_json(w) for w in c.old_by]},
            "new": {"action": action_text(c.new), "by": [_where_json(w) for w in c.new_by]},
        })
    return {"format": JSON_FORMAT, "tool": "sbx", "native": d.native,
            "old": {"label": old_label, "name": d.old.name, "path": display_path(d.old.path)},
            "new": {"label": new_label, "name": d.new.name, "path": display_path(d.new.path)},
            "summary": {k: d.count(k) for k in ("widening", "narrowing", "change")},
            "changes": changes,
            "confinement": [{"section": sec, "kind": kind, "text": line}
                            for sec, kind, line, _item in d.confinement]}


__all__ = ["Change", "Diff", "OTHER", "UNKNOWN", "Where", "contains", "decide",
           "diff_policies", "diff_profiles", "region_terms", "region_text", "render_text",
           "to_json", "witness"]

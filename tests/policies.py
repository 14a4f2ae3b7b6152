"""Hypothesis strategies for random policies, and boundary inputs to check them with."""
from __future__ import annotations

import random

from hypothesis import strategies as st

from bpf_filters.ir import M32, M64, Action, ArchPolicy, Cond, Policy, Rule
from bpf_filters.syscalls import X32_SYSCALL_BIT, table

BOUNDARY32 = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
BOUNDARY64 = sorted({hi << 32 | lo for hi in (0, 1, 0x80000000, 0xFFFFFFFF) for lo in BOUNDARY32})
EDGE_NRS = [0x3FFFFFFF, 0x40000000, 0x40000001, 0x40000000 | 547, 0x7FFFFFFF, 0x80000000,
            0xFFFFFFFE, 0xFFFFFFFF]

actions = st.one_of(
    st.sampled_from([Action("allow"), Action("log"), Action("kill-process"),
                     Action("kill-thread"), Action("notify")]),
    st.builds(Action, st.just("errno"), st.integers(0, 4095)),
    st.builds(Action, st.just("trap"), st.integers(0, 0xFFFF)),
)

value64 = st.one_of(st.sampled_from(BOUNDARY64), st.integers(0, M64))


@st.composite
def conds(draw, width: int):
    top = M32 if width == 32 else M64
    arg = draw(st.integers(0, 5))
    op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "&==", "&!=", "in", "not in"]))
    if op in ("in", "not in"):
        vals = tuple(v & top for v in draw(st.lists(value64, min_size=1, max_size=7)))
        return Cond(arg, op, vals, top, width)
    value = draw(value64) & top
    mask = top
    if op in ("&==", "&!="):
        mask = draw(value64) & top
        if draw(st.booleans()):
            value &= mask          # mostly satisfiable comparisons
    return Cond(arg, op, value, mask, width)


@st.composite
def arch_policies(draw, arch: str, max_syscalls: int = 12, widths=(32, 64)):
    t = table(arch)
    nrs = draw(st.lists(st.sampled_from(sorted(t.by_nr)), max_size=max_syscalls, unique=True))
    rules = {}
    for nr in nrs:
        n = draw(st.integers(1, 3))
        rs = []
        for _ in range(n):
            width = 32 if arch == "i386" else draw(st.sampled_from(widths))
            cs = tuple(draw(st.lists(conds(width), max_size=2)))
            rs.append(Rule(draw(actions), cs))
        rules[nr] = tuple(rs)
    # many arg-free allows, like real profiles (exercises range merging and the cache check)
    for nr in draw(st.lists(st.sampled_from(sorted(t.by_nr)), max_size=60, unique=True)):
        rules.setdefault(nr, (Rule(Action("allow")),))
    return ArchPolicy(arch, rules, frozenset(t.by_nr))


@st.composite
def policies(draw, arches=None):
    if arches is None:
        arches = draw(st.sampled_from([["x86_64"], ["x86_64", "i386"], ["i386"],
                                       ["x86_64", "x32"], ["x86_64", "i386", "x32"], ["x32"]]))
    aps = [draw(arch_policies(a)) for a in arches]
    return Policy(aps, draw(actions), draw(actions), draw(actions))


def arg_vectors(policy: Policy, nr: int, arch: str) -> list[tuple[int, ...]]:
    """Argument vectors around every value the rules of *nr* compare with (the
    compiler's own self-check uses the same: ``compiler.rule_vectors``)."""
    from bpf_filters.compiler import rule_vectors
    return rule_vectors(policy.arch(arch), nr)


def numbers(arch: str) -> list[int]:
    base = list(range(0, 1024)) + EDGE_NRS
    if arch == "x32":
        base += [X32_SYSCALL_BIT | n for n in range(0, 600)]
    return base


# ------------------------------------------------------------------ large policies
# Beyond the optimal tree's DP bound (every number its own verdict), long chains of
# one-condition rules with the same action (merged into one set), and sets made of
# runs of consecutive values (compiled as ranges), some wrapping past 0xffffffff.

@st.composite
def runs(draw, width: int) -> tuple[int, ...]:
    top = M32 if width == 32 else M64
    out: set[int] = set()
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.one_of(st.sampled_from(BOUNDARY64), st.integers(0, top))) & top
        length = draw(st.sampled_from([1, 2, 3, 17, 300]))
        out.update((start + i) & top for i in range(length))
    return tuple(sorted(out))


@st.composite
def set_chain(draw, width: int) -> tuple[Rule, ...]:
    """Rules on one argument with one action, mostly mergeable, sometimes interrupted."""
    top = M32 if width == 32 else M64
    arg, action = draw(st.integers(0, 5)), draw(actions)
    out = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["==", "==", "in", "in", "not in", "other action", "two conds"]))
        if kind == "==":
            out.append(Rule(action, (Cond(arg, "==", draw(value64) & top, top, width),)))
        elif kind in ("in", "not in"):
            out.append(Rule(action, (Cond(arg, kind, draw(runs(width)), top, width),)))
        elif kind == "other action":
            out.append(Rule(draw(actions), (Cond(arg, "in", draw(runs(width)), top, width),)))
        else:
            out.append(Rule(action, (Cond(arg, "in", draw(runs(width)), top, width),
                                     draw(conds(width)))))
    return tuple(out)


@st.composite
def large_policies(draw):
    """x86_64 (sometimes with x32): hundreds of distinct verdicts plus set chains."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    arches = []
    for arch in draw(st.sampled_from([["x86_64"], ["x86_64", "x32"]])):
        t = table(arch)
        rules = {nr: (Rule(Action("errno", rng.randrange(4096))),)
                 for nr in sorted(t.by_nr) if rng.random() < 0.9}
        for nr in draw(st.lists(st.sampled_from(sorted(t.by_nr)), min_size=1, max_size=6, unique=True)):
            width = draw(st.sampled_from([32, 64]))
            rules[nr] = draw(set_chain(width)) + ((Rule(draw(actions)),) if draw(st.booleans()) else ())
        arches.append(ArchPolicy(arch, rules, frozenset(t.by_nr)))
    return Policy(arches, draw(actions), draw(actions), draw(actions))


def edge_vectors(policy: Policy, nr: int, arch: str) -> list[tuple[int, ...]]:
    """Argument vectors at both ends of every run of consecutive compared values, one
    step outside them, and with the other word changed (64-bit compares both)."""
    ap = policy.arch(arch)
    vecs = {(0,) * 6, (M64,) * 6}
    for rule in (ap.rules.get(nr, ()) if ap else ()):
        for c in rule.conds:
            top = M32 if c.width == 32 else M64
            vals = sorted({v & top for v in c.values})
            ends = {vals[0], vals[-1]} | {v for a, v in zip(vals, vals[1:]) if v != a + 1} \
                | {a for a, v in zip(vals, vals[1:]) if v != a + 1}
            for e in ends:
                for cand in (e - 1, e, e + 1, e ^ (1 << 32), e | 0xFFFFFFFF00000000):
                    args = [0] * 6
                    args[c.arg] = cand & M64
                    vecs.add(tuple(args))
    return sorted(vecs)

"""Which decisions a policy makes for a syscall: argument vectors drawn from its own conditions.

A syscall is judged by evaluating the lowered policy (``bpf_filters.ir.evaluate``)
at the values on both sides of every comparison its rules make, so rule order,
masks and conditions all count. The number of vectors is bounded (a crafted
profile must not make a check take hours).
"""
from __future__ import annotations

import itertools
import math
import random
from typing import Callable, Iterator

from bpf_filters import syscalls
from bpf_filters.ir import M32, M64, Decision, Policy, evaluate

MAX_VECTORS = 20000                                          # argument vectors tried per syscall
# ... and at most this many condition tests per syscall and question: a syscall with
# thousands of rules gets fewer vectors, so a crafted profile cannot make a check take
# hours (10,000 two-condition rules on ioctl took 5.7 min).  Real profiles need at
# most ~8,000 (build's socket: 588 vectors x 14); never fewer than 16 vectors.
MAX_TESTS = 200_000


def _candidates(rules) -> dict[int, set[int]]:
    """Per argument index, values on both sides of every condition on it."""
    per_arg: dict[int, set[int]] = {}
    for rule in rules:
        for c in rule.conds:
            top = M32 if c.width == 32 else M64
            vals = per_arg.setdefault(c.arg, {0})
            vals.add(top)
            for v in c.values:
                vals.update({v & top, (v + 1) & top, (v - 1) & top})
            if c.mask != top:
                bits = [1 << b for b in range(c.width) if c.mask >> b & 1]
                vals.update({c.mask & top, ~c.mask & top})
                for v in c.values:
                    vals.update({(v | ~c.mask) & top, v ^ bits[0] if bits else v})
                if len(bits) <= 12:
                    vals.update(bits)
    return per_arg


Constraint = dict[int, Callable[[set[int]], set[int]]]


def _vectors(per_arg: dict[int, set[int]], constrain: Constraint | None,
             limit: int = MAX_VECTORS) -> Iterator[tuple[int, ...]]:
    cands = {i: set(v) for i, v in per_arg.items()}
    for i, f in (constrain or {}).items():
        cands[i] = f(cands.get(i, {0}))
    idx = sorted(cands)
    lists = [sorted(cands[i]) for i in idx]
    total = math.prod(len(x) for x in lists)

    def vec(combo):
        args = [0] * 6
        for i, v in zip(idx, combo):
            args[i] = v
        return tuple(args)

    if total <= limit:
        for combo in itertools.product(*lists):
            yield vec(combo)
        return
    rng = random.Random(0)          # deterministic sample when the product is too large
    for _ in range(limit):
        yield vec([rng.choice(x) for x in lists])


def decisions(policy: Policy, arch: str, nr: int, constrain: Constraint | None = None
              ) -> Iterator[tuple[tuple[int, ...], Decision]]:
    """Every decision the policy makes for (arch, nr) over the relevant argument values."""
    ap = policy.arch(arch)
    rules = ap.rules.get(nr, ()) if ap else ()
    token = syscalls.AUDIT_ARCH[arch]
    tests = sum(len(r.conds) or 1 for r in rules)
    limit = max(16, min(MAX_VECTORS, MAX_TESTS // max(1, tests)))
    for args in _vectors(_candidates(rules), constrain, limit):
        yield args, evaluate(policy, token, nr, args)


def allowing(policy: Policy, arch: str, nr: int, constrain: Constraint | None = None
             ) -> tuple[tuple[int, ...], Decision] | None:
    """The first (args, decision) that lets the call through (allow or log), or None."""
    for args, dec in decisions(policy, arch, nr, constrain):
        if not dec.action.denies:
            return args, dec
    return None


def surface(policy: Policy, arch: str) -> dict[str, str]:
    """Each syscall of *arch*: "allow" (for every argument), "conditional" or "deny"."""
    out = {}
    for name, nr in sorted(syscalls.table(arch).by_name.items()):
        outcomes = {not dec.action.denies for _, dec in decisions(policy, arch, nr)}
        out[name] = "allow" if outcomes == {True} else "deny" if outcomes == {False} else "conditional"
    return out


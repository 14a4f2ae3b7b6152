"""Run every check on a profile and score it; compare two reports; pick findings by severity.

The score formula is documented in docs/checks.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from bpf_filters.ir import Policy

from ..paths import display_path
from ..policy.lower import lower
from ..policy.profile import Profile
from . import layers, rules
from .registry import BY_ID, PENALTY, RANK, SEVERITIES, Finding
from .rules import Context
from .vectors import surface

EXPOSURE_WEIGHT = 20
CHECKERS = (*rules.CHECKERS, *layers.CHECKERS)

@dataclass
class Report:
    profile: Profile
    policy: Policy
    native: str
    findings: list[Finding]
    surface: dict[str, str]
    score: int
    comparison: dict | None = None

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for f in self.findings if f.severity == s) for s in SEVERITIES}


def exposure(surf: dict[str, str]) -> float:
    """Share of the native table a process can reach: allowed 1, conditional 1/2."""
    if not surf:
        return 0.0
    reach = sum(1.0 if v == "allow" else 0.5 if v == "conditional" else 0.0 for v in surf.values())
    return reach / len(surf)


def score(findings: list[Finding], surf: dict[str, str], folded: tuple[str, ...] = ()) -> int:
    """100 - the penalty of each distinct rule id at its worst severity - 20 x exposure,
    rounded half up and floored at 0.  *folded* are rule ids reported inside SBX101
    (dangerous calls an allowing default lets in): they count as if reported."""
    worst: dict[str, str] = {c: BY_ID[c].severity for c in folded}
    for f in findings:
        if f.rule_id not in worst or RANK[f.severity] > RANK[worst[f.rule_id]]:
            worst[f.rule_id] = f.severity
    penalty = sum(PENALTY[s] for s in worst.values())
    return max(0, math.floor(100 - penalty - EXPOSURE_WEIGHT * exposure(surf) + 0.5))


def _sort_key(ctx: Context):
    order = {f: i for i, f in enumerate(ctx.profile.files)}
    return lambda f: (-RANK[f.severity], (order.get(f.pos.file, 99), f.pos.line, f.pos.col)
                      if f.pos else (-1, 0, 0), f.rule_id or "", f.message)


def check_profile(profile: Profile, native: str = "x86_64", policy: Policy | None = None) -> Report:
    """Run every check on *profile*; raises PolicyError if it does not lower."""
    policy = policy if policy is not None else lower(profile, native)
    ctx = Context(profile, policy, native)
    for checker in CHECKERS:
        checker(ctx)
    findings = sorted(ctx.out, key=_sort_key(ctx))
    surf = surface(policy, native if policy.arch(native) else ctx.arches[0])
    folded = tuple(sorted({c for c, _ in ctx.via_default.values()}))
    return Report(profile, policy, native, findings, surf, score(findings, surf, folded))


def compare(mine: Report, other: Report) -> dict:
    """What *mine* allows that *other* denies and the reverse, on the native ABI, and
    which rule ids fire only on one side."""
    a, b = mine.surface, other.surface
    common = sorted(set(a) & set(b))
    ids_a = {f.rule_id for f in mine.findings}
    ids_b = {f.rule_id for f in other.findings}
    return {
        "against": other.profile.name,
        "against_path": display_path(other.profile.path),
        "score": mine.score, "against_score": other.score,
        "allowed_here_denied_there": [n for n in common if a[n] != "deny" and b[n] == "deny"],
        "denied_here_allowed_there": [n for n in common if a[n] == "deny" and b[n] != "deny"],
        "unconditional_here_conditional_there": [n for n in common if a[n] == "allow" and b[n] == "conditional"],
        "conditional_here_unconditional_there": [n for n in common if a[n] == "conditional" and b[n] == "allow"],
        "findings_only_here": sorted(ids_a - ids_b),
        "findings_only_there": sorted(ids_b - ids_a),
    }


def at_or_above(findings, threshold: str) -> list[Finding]:
    """Findings whose severity is *threshold* or worse ("never": none)."""
    if threshold == "never":
        return []
    return [f for f in findings if RANK[f.severity] >= RANK[threshold]]

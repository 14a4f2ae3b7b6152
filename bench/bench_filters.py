"""Filter benchmarks that need no kernel: cost per syscall, cacheability, compile time.

sbx and libseccomp (linear, ``optimize=1``; binary tree, ``optimize=2``)
compile the same policy; our interpreter counts the instructions each program
executes. libseccomp cannot express everything a profile says (first-match
order between rules with different actions, ``not in``, masked ``!=``, an
``unknown`` action apart from the default), so both compile a *shared*
policy: each syscall's rules are cut after the first unconditional rule
(exact), "deny-as-default when C, else allow" chains become "allow when not
C" (exact: the default gives the denial), syscalls that still cannot be
expressed keep only their unconditional action (listed in the report), and
``unknown`` becomes the default. sbx's cost on the profile as written is
reported beside it.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

from bpf_filters import insn as I
from bpf_filters.action_cache import is_const_allow
from bpf_filters.compiler import compile_policy, verdict_for
from bpf_filters.interp import SeccompData, run
from bpf_filters.ir import ArchPolicy, Policy, Rule, evaluate
from bpf_filters.syscalls import AUDIT_ARCH, table

ROOT = Path(__file__).resolve().parent.parent
DOCKER = "tests/fixtures/docker-default.yaml"
NR_MAX = 460
X86_64 = AUDIT_ARCH["x86_64"]
NEGATE = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", "<=": ">", ">": "<=",
          "&!=": "&==", "not in": "in"}
PROGRAMS = ("sbx", "lin", "tree")          # the three compilers on the shared policy


def profile_refs() -> list[tuple[str, str, str | None]]:
    """(label, profile reference, arch restriction) for every benchmarked profile."""
    from sandbox.policy import builtin_names
    refs = [("docker-default", str(ROOT / DOCKER), None),
            ("docker-default x86_64-only", str(ROOT / DOCKER), "x86_64")]
    return refs + [(name, name, None) for name in sorted(builtin_names())]


def load_policy(ref: str, only_arch: str | None) -> Policy:
    from sandbox.policy import load_profile, lower
    pol = lower(load_profile(ref))
    if only_arch:
        pol.arches = [ap for ap in pol.arches if ap.arch == only_arch]
    return pol


# ---------------------------------------------------------------- shared policy

def first_match_chain(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    """The rules that can ever match: up to and including the first unconditional one."""
    out = []
    for r in rules:
        out.append(r)
        if not r.conds:
            break
    return tuple(out)


def complement(chain: tuple[Rule, ...], default) -> tuple[Rule, ...] | None:
    """[D when C1, ..., D when Ck, A] (D the default) as "A when no Ci holds", in DNF."""
    *denials, last = chain
    if last.conds or any(r.action != default for r in denials):
        return None
    alts: list[tuple] = [()]
    for r in denials:
        negs = [replace(c, op=NEGATE[c.op]) if c.op in NEGATE else None for c in r.conds]
        if None in negs:
            return None
        alts = [a + (n,) for a in alts for n in negs]
    return tuple(Rule(last.action, a, last.origin) for a in alts)


def expressible(rules: tuple[Rule, ...], ap: ArchPolicy, nr: int, pol: Policy) -> bool:
    """Whether libseccomp compiles this one syscall's rules as they are."""
    from sandbox.libseccomp import Unsupported, compile_bpf
    probe = Policy([ArchPolicy(ap.arch, {nr: rules}, ap.known)], pol.default, pol.default,
                   pol.bad_arch)
    try:
        compile_bpf(probe, 2)
    except (Unsupported, OSError, ValueError, RuntimeError):
        return False
    return True


def shared_policy(pol: Policy) -> tuple[Policy, dict]:
    """The policy both sbx and libseccomp compile, and what it changed (syscall names)."""
    notes: dict[str, set] = {"complemented": set(), "dropped": set(), "unnamed": set()}
    arches = []
    for ap in pol.arches:
        names = table(ap.arch)
        rules = {}
        for nr, rs in ap.rules.items():
            chain = first_match_chain(rs)
            if len({r.action for r in chain}) > 1:
                comp = complement(chain, pol.default)
                if comp is not None and expressible(comp, ap, nr, pol):
                    notes["complemented"].add(names.name(nr))
                    chain = comp
                else:
                    notes["dropped"].add(names.name(nr))
                    chain = (Rule(chain[-1].action, (), chain[-1].origin),) \
                        if not chain[-1].conds else ()
            elif any(r.conds for r in chain) and not expressible(chain, ap, nr, pol):
                notes["dropped"].add(names.name(nr))
                chain = ()
            if chain:
                rules[nr] = chain
        arches.append(ArchPolicy(ap.arch, rules, ap.known))
    shared = Policy(arches, pol.default, pol.default, pol.bad_arch, pol.name, pol.origins)
    return shared, {k: sorted(v) for k, v in notes.items()}


def compile_all(pol: Policy) -> tuple[Policy, dict, dict[str, list[I.Insn]]]:
    """Shared policy, notes, and the programs: sbx as written + the three on the shared one."""
    from sandbox.libseccomp import compile_bpf
    shared, notes = shared_policy(pol)
    skipped: set = set()
    compile_bpf(shared, 2, skipped)
    if skipped:            # syscalls libseccomp cannot name on a multi-arch filter
        notes["unnamed"] = sorted(skipped)
        for ap in shared.arches:
            t = table(ap.arch)
            ap.rules = {nr: rs for nr, rs in ap.rules.items() if t.name(nr) not in skipped}
    progs = {"written": compile_policy(pol).insns, "sbx": compile_policy(shared).insns,
             "lin": I.unpack(compile_bpf(shared, 1)), "tree": I.unpack(compile_bpf(shared, 2))}
    return shared, notes, progs


# ---------------------------------------------------------------- measurements

def executed(prog, nr: int, args=(0,) * 6) -> int:
    return run(prog, SeccompData(nr, X86_64, tuple(args)), trace=False).executed


def arg_free_allows(pol: Policy) -> set[int]:
    """x86_64 numbers the policy allows without looking at arguments."""
    ap = pol.arch("x86_64")
    out = set()
    for nr in ap.known:
        v = verdict_for(ap, nr, pol.default, pol.unknown)
        if v.action is not None and v.action.kind == "allow":
            out.add(nr)
    return out


def program_stats(prog, pol: Policy, mix) -> dict:
    """Length, uniform and mix-weighted executed instructions, action-cache coverage."""
    costs = [executed(prog, nr) for nr in range(NR_MAX + 1)]
    allows = arg_free_allows(pol)
    cached = {nr for nr in allows if is_const_allow(prog, X86_64, nr)}
    worst = max(range(len(costs)), key=costs.__getitem__)
    names = table("x86_64")
    out = {"insns": len(prog), "mean": statistics.mean(costs), "max": max(costs),
           "max_at": names.name(worst) if worst in names.by_nr else worst,
           "arg_free_allows": len(allows), "cacheable": len(cached),
           "cacheable_share": len(cached) / len(allows) if allows else None}
    if mix is not None:
        samples = list(mix.samples())
        cache_all = {nr for nr, _, _ in samples if is_const_allow(prog, X86_64, nr)}
        out["weighted"] = sum(w * executed(prog, nr, a) for nr, a, w in samples)
        out["weighted_after_cache"] = sum(w * executed(prog, nr, a) for nr, a, w in samples
                                          if nr not in cache_all)
        out["mix_calls_cached"] = sum(w for nr, _, w in samples if nr in cache_all)
    return out


def disagreements(progs: dict, shared: Policy) -> int:
    """nr 0..NR_MAX (args 0) where a program differs from the shared policy's meaning."""
    bad = 0
    for nr in range(NR_MAX + 1):
        want = evaluate(shared, X86_64, nr).action.ret
        if any(run(progs[k], SeccompData(nr, X86_64), trace=False).value != want
               for k in PROGRAMS):
            bad += 1
    return bad


def measure_profile(label: str, ref: str, only_arch: str | None, mix) -> dict:
    pol = load_policy(ref, only_arch)
    shared, notes, progs = compile_all(pol)
    return {"label": label, "ref": ref, "only_arch": only_arch, "arches": [ap.arch for ap in pol.arches],
            "notes": notes, "disagreements": disagreements(progs, shared),
            "programs": {k: program_stats(p, pol if k == "written" else shared, mix)
                         for k, p in progs.items()},
            "policy": pol, "shared": shared}


def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def compile_times(ref: str, only_arch: str | None, shared: Policy, n: int) -> dict:
    """Median ms: sbx YAML->bytes, sbx IR->bytes, libseccomp IR->bytes (linear, tree)."""
    from sandbox.libseccomp import compile_bpf
    return {
        "sbx_from_yaml": median_ms(lambda: compile_policy(load_policy(ref, only_arch)).encode(), n),
        "sbx": median_ms(lambda: compile_policy(shared).encode(), n),
        "lin": median_ms(lambda: compile_bpf(shared, 1), n),
        "tree": median_ms(lambda: compile_bpf(shared, 2), n),
    }

"""Differential tests: our filters and libseccomp's decide the same, where both can say it.

Intended differences (each asserted below, not skipped):
- 32-bit arguments: we compare the low word only (the kernel ignores the high
  word of an ``int``); libseccomp compares all 64 bits.  Equal whenever the
  high word is zero.
- ``unknown``: numbers the table does not name get our ``unknown`` action;
  libseccomp gives them the default.  Policies here set unknown == default.
- Syscalls newer than libseccomp 2.5.4 (mseal, listmount, ...) cannot be
  named in a multi-arch libseccomp filter; single-arch filters use numbers.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpf_filters.compiler import compile_policy
from bpf_filters.insn import unpack
from bpf_filters.interp import SeccompData, run
from bpf_filters.ir import M32, M64, Action, ArchPolicy, Cond, Policy, Rule
from bpf_filters.syscalls import AUDIT_ARCH, table
from sandbox.libseccomp import compile_bpf
from sandbox.policy import load_profile, lower
from tests.policies import BOUNDARY64, value64

X86 = AUDIT_ARCH["x86_64"]
LIBSECCOMP_OPS = ["==", "!=", "<", "<=", ">", ">=", "&==", "in"]
ORDERED = ("<", "<=", ">", ">=")
deny_actions = st.one_of(st.builds(Action, st.just("errno"), st.integers(1, 4094)),   # libseccomp refuses 4095
                         st.sampled_from([Action("kill-process"), Action("trap"), Action("log")]))


@st.composite
def expressible(draw, arch="x86_64"):
    """Policies libseccomp can express: per syscall one action, one comparison per arg."""
    t = table(arch)
    default = draw(deny_actions)
    rules = {}
    for nr in draw(st.lists(st.sampled_from(sorted(t.by_nr)), max_size=25, unique=True)):
        action = draw(st.one_of(st.just(Action("allow")), deny_actions).filter(lambda a: a != default))
        alts = []
        ordered: set[int] = set()
        for _ in range(draw(st.integers(1, 2))):
            args = draw(st.lists(st.integers(0, 5), max_size=1, unique=True))   # libseccomp 2.5.4 can loop forever merging multi-arg rules
            conds = []
            for a in args:
                # libseccomp 2.5.4 merges two ordered comparisons of one argument wrongly:
                # allow read when arg0 < 0, allow read when arg0 < 2**32 gives errno for
                # arg0 == 1 (sbx and the reference evaluator allow it). One per argument.
                ops = LIBSECCOMP_OPS if a not in ordered else [o for o in LIBSECCOMP_OPS if o not in ORDERED]
                op = draw(st.sampled_from(ops))
                if op in ORDERED:
                    ordered.add(a)
                if op == "in":
                    conds.append(Cond(a, op, tuple(draw(st.lists(value64, min_size=1, max_size=3)))))
                elif op == "&==":
                    mask = draw(value64)
                    conds.append(Cond(a, op, draw(value64) & mask, mask))
                else:
                    conds.append(Cond(a, op, draw(value64)))
            alts.append(Rule(action, tuple(conds)))
            if not conds:
                break
        rules[nr] = tuple(alts)
    ap = ArchPolicy(arch, rules, frozenset(t.by_nr))
    return Policy([ap], default, unknown=default, bad_arch=Action("kill-process"))


def points(policy):
    ap = policy.arches[0]
    for nr in sorted(ap.known):
        vecs = [(0,) * 6]
        for rule in ap.rules.get(nr, ()):
            for c in rule.conds:
                for v in c.values:
                    for cand in (v, v - 1, v + 1, v ^ 1 << 32):
                        args = [0] * 6
                        args[c.arg] = cand & M64
                        vecs.append(tuple(args))
        for args in vecs:
            yield nr, args


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressible())
def test_same_decisions_as_libseccomp(policy):
    ours = compile_policy(policy).insns
    for optimize in (1, 2):
        theirs = unpack(compile_bpf(policy, optimize))
        for nr, args in points(policy):
            a = run(ours, SeccompData(nr, X86, args), trace=False).value
            b = run(theirs, SeccompData(nr, X86, args), trace=False).value
            assert a == b, f"nr={nr} args={[hex(x) for x in args]}: sbx {a:#x} libseccomp {b:#x}"


def test_32bit_arguments_differ_only_in_the_high_word():
    """socket(domain) is an int: garbage above bit 31 is ignored by the kernel, and by us."""
    t = table("x86_64")
    deny_vsock = Rule(Action("errno", 97), (Cond(0, "==", 40, M32, 32),))
    ap = ArchPolicy("x86_64", {t.nr("socket"): (deny_vsock, Rule(Action("allow")))}, frozenset(t.by_nr))
    ours = compile_policy(Policy([ap], Action("errno", 1), Action("errno", 1))).insns
    # libseccomp sees the same rule as a 64-bit comparison
    ap64 = ArchPolicy("x86_64", {t.nr("socket"): (Rule(Action("errno", 97), (Cond(0, "==", 40),)),)},
                      frozenset(t.by_nr))
    theirs = unpack(compile_bpf(Policy([ap64], Action("allow"), Action("allow"))))
    nr = t.nr("socket")
    assert run(ours, SeccompData(nr, X86, (40,))).value == run(theirs, SeccompData(nr, X86, (40,))).value
    smuggled = (1 << 32 | 40,)
    assert run(ours, SeccompData(nr, X86, smuggled)).value == 0x50000 | 97      # still AF_VSOCK
    assert run(theirs, SeccompData(nr, X86, smuggled)).value == 0x7FFF0000      # libseccomp lets it by


@pytest.mark.parametrize("profile", ["default", "web", "python", "build", "strict-net", "minimal",
                                     "tests/fixtures/docker-default.yaml"])
def test_builtin_profiles_match_libseccomp_for_every_syscall(profile):
    """Every table number with zero and boundary args, for the arg-free part of each profile.

    Only the documented differences are allowed: numbers libseccomp cannot name,
    gaps in the table (our 'unknown') and rules that need first-match order.
    """
    from sandbox.libseccomp import Unsupported
    pol = lower(load_profile(profile))
    pol.arches = pol.arches[:1]
    ap = pol.arches[0]
    # libseccomp has no first-match order: keep syscalls whose rules share one action
    simple = {nr: rs for nr, rs in ap.rules.items() if len({r.action for r in rs}) == 1}
    pol.arches[0] = ArchPolicy(ap.arch, simple, ap.known)
    pol.unknown = pol.default
    try:
        theirs = unpack(compile_bpf(pol, 2))
    except Unsupported as e:
        pytest.fail(f"profile should be expressible once reduced: {e}")
    ours = compile_policy(pol).insns
    compared = 0
    for nr in sorted(ap.known):
        for args in [(0,) * 6] + [(v,) * 6 for v in BOUNDARY64 if not v >> 32]:
            a = run(ours, SeccompData(nr, X86, args), trace=False).value
            b = run(theirs, SeccompData(nr, X86, args), trace=False).value
            assert a == b, f"{profile}: {table('x86_64').name(nr)} args {args}: {a:#x} vs {b:#x}"
            compared += 1
    assert compared > 2000


MULTI_ARG = [
    [Cond(0, "==", 1), Cond(1, "==", 2)],
    [Cond(0, "&==", 0, 0x10000000), Cond(2, ">", 0x1_0000_0000)],
    [Cond(1, "<=", 0xFFFFFFFF), Cond(3, "!=", 7)],
    [Cond(0, ">=", 0x8000_0000_0000_0000), Cond(5, "<", 3)],
]


@pytest.mark.parametrize("conds", MULTI_ARG, ids=["two equalities", "mask and 64-bit >",
                                                   "<= and !=", "high-bit >= and <"])
def test_multi_argument_rules_match_libseccomp(conds):
    """Fixed multi-argument cases (random ones can hang libseccomp 2.5.4's rule merging)."""
    t = table("x86_64")
    nr = t.nr("openat")
    ap = ArchPolicy("x86_64", {nr: (Rule(Action("allow"), tuple(conds)),)}, frozenset(t.by_nr))
    pol = Policy([ap], Action("errno", 1), Action("errno", 1))
    ours = compile_policy(pol).insns
    theirs = unpack(compile_bpf(pol, 2))
    values = sorted({v for c in conds for v in (c.value, c.value - 1, c.value + 1, 0, M64) if 0 <= v <= M64})
    compared = 0
    for a in values:
        for b in values:
            args = [0] * 6
            args[conds[0].arg], args[conds[1].arg] = a, b
            assert run(ours, SeccompData(nr, X86, args)).value == run(theirs, SeccompData(nr, X86, args)).value
            compared += 1
    assert compared >= 16


def test_two_ordered_comparisons_of_one_argument_are_decided_by_their_meaning():
    """Where libseccomp 2.5.4 errs (two ordered comparisons of one argument, see
    ``expressible``), sbx's filter decides as the policy says, on the interpreter."""
    from bpf_filters.compiler import compile_policy
    from bpf_filters.interp import SeccompData, run
    from bpf_filters.ir import evaluate
    t = table("x86_64")
    nr = t.nr("read")
    pol = Policy([ArchPolicy("x86_64", {nr: (Rule(Action("allow"), (Cond(0, "<", 0),)),
                                             Rule(Action("allow"), (Cond(0, "<", 1 << 32),)))},
                             frozenset(t.by_nr))], Action("errno", 1), unknown=Action("errno", 1))
    prog = compile_policy(pol).insns
    for a in (0, 1, (1 << 32) - 1, 1 << 32, 1 << 63):
        want = evaluate(pol, X86, nr, (a, 0, 0, 0, 0, 0)).action.ret
        assert run(prog, SeccompData(nr, X86, (a, 0, 0, 0, 0, 0))).value == want
        assert want == (Action("allow").ret if a < 1 << 32 else Action("errno", 1).ret)

"""Property tests: every compiled filter means exactly what its policy says.

interpreter(compile(p)) == evaluate(p) over all numbers 0..1023, the x32 half,
edge numbers, three arch tokens and boundary arguments; the optimizer never
changes a decision; every arg-free allow is cacheable by the kernel.
"""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpf_filters.compiler import DP_MAX_RANGES, check_cacheable, compile_policy, token_ranges
from bpf_filters.disasm import disassemble
from bpf_filters.interp import SeccompData, run
from bpf_filters.ir import evaluate
from bpf_filters.syscalls import AUDIT_ARCH
from bpf_filters.verifier import verify

from tests.policies import EDGE_NRS, arg_vectors, edge_vectors, large_policies, numbers, policies

TOKENS = {"x86_64": AUDIT_ARCH["x86_64"], "i386": AUDIT_ARCH["i386"], "unknown": 0xC00000F3}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_agrees(policy, flt) -> int:
    """Compare program and policy on every input; returns the number of points."""
    points = 0
    for arch_name, token in TOKENS.items():
        # the x32 half lives under the x86_64 token
        nrs = numbers("x32") if arch_name == "x86_64" else numbers(arch_name)
        for nr in nrs:
            ap_name = "x32" if arch_name == "x86_64" and nr >= 0x40000000 else arch_name
            for args in arg_vectors(policy, nr, ap_name):
                want = evaluate(policy, token, nr, args).action.ret
                got = run(flt.insns, SeccompData(nr, token, args), trace=False).value
                if got != want:
                    raise AssertionError(
                        f"arch={arch_name} nr={nr:#x} args={[hex(a) for a in args]}: "
                        f"program returned {got:#x}, policy says {want:#x}\n"
                        + disassemble(flt.insns))
                points += 1
    return points


@SETTINGS
@given(policies())
def test_compiled_filter_equals_policy(policy):
    flt = compile_policy(policy)
    assert check_agrees(policy, flt) > 3000


@SETTINGS
@given(policies())
def test_optimizer_preserves_every_decision(policy):
    opt = compile_policy(policy, optimize_program=True)
    raw = compile_policy(policy, optimize_program=False)
    assert len(opt.insns) <= len(raw.insns)
    check_agrees(policy, raw)
    for token in TOKENS.values():
        for nr in numbers("x32"):
            for args in arg_vectors(policy, nr & 0x3FFFFFFF, "x86_64")[:6]:
                a = run(opt.insns, SeccompData(nr, token, args), trace=False).value
                b = run(raw.insns, SeccompData(nr, token, args), trace=False).value
                assert a == b, (hex(nr), args)


@SETTINGS
@given(policies())
def test_every_program_passes_the_kernel_rules_and_keeps_allows_cacheable(policy):
    flt = compile_policy(policy)
    verify(flt.insns)
    assert check_cacheable(flt.insns, policy) == []
    assert flt.insns[0].k == 4, "the arch check comes first"


@settings(max_examples=25, deadline=None)
@given(policies(arches=["x86_64"]), st.integers(0, 2**32 - 1))
def test_bad_arch_and_x32_are_separate_from_the_default(policy, nr):
    flt = compile_policy(policy)
    # a foreign arch token never reaches the syscall rules
    assert run(flt.insns, SeccompData(nr, AUDIT_ARCH["aarch64"])).value == policy.bad_arch.ret
    # every number with the x32 bit and above is the x32 half: bad_arch without x32;
    # -1 excepted: x86_64's "no syscall", a tracer's skip, gets the unknown action
    got = run(flt.insns, SeccompData(nr, AUDIT_ARCH["x86_64"])).value
    if 0x40000000 <= nr < 0xFFFFFFFF:
        assert got == policy.bad_arch.ret
    assert run(flt.insns, SeccompData(0xFFFFFFFF, AUDIT_ARCH["x86_64"])).value == policy.unknown.ret


LARGE = settings(max_examples=20, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_large_agrees(policy, flt) -> int:
    """Every number of the table and the edges, with vectors at the ends of every run of
    compared values, through the interpreter against the policy's meaning."""
    points = 0
    token = AUDIT_ARCH["x86_64"]
    for arch_name in [ap.arch for ap in policy.arches]:
        base = 0x40000000 if arch_name == "x32" else 0
        for nr in [base | n for n in range(0, 600)] + EDGE_NRS:
            for args in edge_vectors(policy, nr, arch_name):
                want = evaluate(policy, token, nr, args).action.ret
                got = run(flt.insns, SeccompData(nr, token, args), trace=False).value
                assert got == want, (f"{arch_name} nr={nr:#x} args={[hex(a) for a in args]}: "
                                     f"program {got:#x}, policy {want:#x}")
                points += 1
    return points


@LARGE
@given(large_policies())
def test_large_policy_beyond_the_dp_bound_compiles_to_its_meaning(policy):
    ranges = token_ranges(policy, AUDIT_ARCH["x86_64"])
    assert len(ranges) > DP_MAX_RANGES, "the weight-balanced tree is the one under test"
    flt = compile_policy(policy)
    verify(flt.insns)
    assert check_cacheable(flt.insns, policy) == []
    assert check_large_agrees(policy, flt) > 600


@LARGE
@given(large_policies())
def test_large_policy_optimized_equals_unoptimized(policy):
    opt = compile_policy(policy, optimize_program=True)
    raw = compile_policy(policy, optimize_program=False)
    assert len(opt.insns) <= len(raw.insns)
    token = AUDIT_ARCH["x86_64"]
    for ap in policy.arches:
        base = 0x40000000 if ap.arch == "x32" else 0
        for nr in sorted(ap.rules):
            for args in edge_vectors(policy, nr, ap.arch):
                data = SeccompData(base | nr if nr < 0x40000000 else nr, token, args)
                assert run(opt.insns, data, trace=False).value == run(raw.insns, data, trace=False).value


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=60), st.integers(0, 2**32 - 1))
def test_a_set_of_runs_is_decided_exactly(values, probe):
    """`arg0 in S` for S built from runs, at every run end, one outside, and a random point."""
    from bpf_filters.ir import M32, Action, ArchPolicy, Cond, Policy, Rule
    vals = sorted({(v + i) & M32 for v in values[:8] for i in range(values[-1] % 5 + 1)} | set(values))
    rule = Rule(Action("allow"), (Cond(0, "in", tuple(vals), M32, 32),))
    policy = Policy([ArchPolicy("x86_64", {0: (rule,)}, frozenset({0}))], Action("errno", 1))
    flt = compile_policy(policy)
    for a in {probe} | {(v + d) & M32 for v in vals for d in (-1, 0, 1)}:
        want = 0x7FFF0000 if a in vals else 0x50001
        assert flt.run(AUDIT_ARCH["x86_64"], 0, (a, 0, 0, 0, 0, 0)).value == want, hex(a)


@settings(max_examples=200, deadline=None)
@given(policies(), st.lists(st.lists(st.integers(0, 2**64 - 1), min_size=6, max_size=6),
                            min_size=1, max_size=8))
def test_a_fixed_action_is_what_every_argument_gets(policy, vectors):
    """fixed_action says what a syscall gets whatever its arguments: where it names an
    action, the policy gives exactly that at the edge vectors and at random ones."""
    from bpf_filters.ir import fixed_action
    for ap in policy.arches:
        token = AUDIT_ARCH["x86_64" if ap.arch == "x32" else ap.arch]
        base = 0x40000000 if ap.arch == "x32" else 0
        for nr in list(ap.rules)[:4]:
            fixed = fixed_action(policy, ap, nr)
            if fixed is None:
                continue
            for args in list(edge_vectors(policy, nr, ap.arch)) + [tuple(v) for v in vectors]:
                assert evaluate(policy, token, base | nr, args).action == fixed, (ap.arch, nr, args)


def test_fixed_action_is_none_where_the_arguments_decide():
    from bpf_filters.ir import M32, Action, ArchPolicy, Cond, Policy, Rule, fixed_action
    enosys, eperm = Action("errno", 38), Action("errno", 1)
    cond = (Cond(0, "==", (1,), M32, 32),)
    ap = ArchPolicy("x86_64", {1: (Rule(enosys),), 2: (Rule(enosys, cond), Rule(enosys)),
                               3: (Rule(eperm, cond), Rule(enosys)), 4: (Rule(enosys, cond),)},
                    frozenset({1, 2, 3, 4, 5}))
    policy = Policy([ap], default=eperm, unknown=enosys)
    assert [fixed_action(policy, ap, nr) for nr in (1, 2, 3, 4, 5, 999)] == \
        [enosys, enosys, None, None, eperm, enosys]


def test_a_rule_merged_after_a_list_that_repeats_a_value_is_kept():
    """Found by test_compiled_filter_equals_policy: "log when arg0 in [1, 1]" then
    "log when arg0 == 0" became one set, but the set was compared by size with
    the first list (2 == 2) and the second rule was dropped: arg0 == 0 was
    allowed. A profile can write such a list (arg1 in [TIOCSTI, 0x5412])."""
    from bpf_filters.ir import Action, ArchPolicy, Cond, Policy, Rule
    m = 0xFFFFFFFF
    for first, second in (((1, 1), 0), ((2, 2), 0), ((0, 0), 1), ((1, 1), 2)):
        log, allow = Action("log", 0), Action("allow", 0)
        ap = ArchPolicy(arch="x86_64", rules={0: (Rule(log, (Cond(0, "in", first, m, 32),)),
                                                  Rule(log, (Cond(0, "==", second, m, 32),)))},
                        known=frozenset(range(460)))
        policy = Policy([ap], default=allow, unknown=allow, bad_arch=allow)
        assert check_agrees(policy, compile_policy(policy)) > 0


@given(policies())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_disagreements_finds_none_where_the_program_means_the_policy(policy):
    """What sbx run checks before it installs or caches a compiled filter."""
    assert compile_policy(policy).disagreements() == []


def test_disagreements_finds_a_program_that_decides_otherwise():
    from bpf_filters import insn as I
    from bpf_filters.ir import Action, ArchPolicy, Cond, Policy, Rule
    deny = Action("errno", 1)
    ap = ArchPolicy(arch="x86_64", rules={16: (Rule(deny, (Cond(1, "==", 0x541C, 0xFFFFFFFF, 32),)),)},
                    known=frozenset(range(460)))
    flt = compile_policy(Policy([ap], default=Action("allow", 0), unknown=Action("allow", 0),
                                bad_arch=Action("allow", 0)))
    assert flt.disagreements() == []
    flt.insns = [I.stmt(I.RET | I.K, Action("allow", 0).ret)]      # a program that allows all
    token, nr, args = flt.disagreements()[0]
    assert (nr, args[1]) == (16, 0x541C)

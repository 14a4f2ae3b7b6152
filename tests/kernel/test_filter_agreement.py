"""Real seccomp filters must decide every syscall exactly as our interpreter says.

ALLOW would really run arbitrary syscalls (reboot, exit, pause...), so each
policy is defanged before compiling: allow -> errno(4000), log -> errno(4001),
notify -> errno(4002), trace -> errno(4003). The control flow is unchanged and
every verdict stays distinguishable; a program with any RET that could let a
syscall run is refused before it reaches the kernel. The shipped program is
checked too, with only the constants of those RETs rewritten the same way.

Points: nr 0..1023, the x32 half (0x40000000|0..547) and edge numbers through
``syscall``; nr 0..500 through ``int $0x80`` (arch i386); argument vectors
around every value the profiles' conditions compare with, plus clone, socket,
ioctl and personality vectors with high bits set. 335/336 (uretprobe,
uprobe) are excluded: seccomp never filters them on x86_64.
"""
from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import HealthCheck, given, settings

from bpf_filters import insn as I
from bpf_filters.compiler import compile_policy
from bpf_filters.disasm import disassemble
from bpf_filters.interp import run
from bpf_filters.ir import Action, ArchPolicy, Policy, Rule, evaluate
from bpf_filters.syscalls import X32_SYSCALL_BIT, table
from sandbox.policy import builtin_names, load_profile, lower
from tests.conftest import need
from tests.kernel.bpf_probe import (SECCOMP_BYPASS_X86_64, Point, Probe, kernel_outcome,
                                unsafe_returns)
from tests.policies import BOUNDARY64, arg_vectors, edge_vectors, large_policies, policies

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
PROFILES = builtin_names() + [os.path.join(FIXTURES, "docker-default.yaml")]
DEFANG = {"allow": 4000, "log": 4001, "notify": 4002, "trace": 4003}
EDGE_NRS = [0x3FFFFFFF, 0x40000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]

CLONE_NEWUSER = 0x10000000
# (syscall, argument index, values): the conditions our profiles and Docker's write
NAMED_VECTORS = [
    ("clone", 0, [0, CLONE_NEWUSER, CLONE_NEWUSER | 0x11, 0x7E020000, 0x00010000 | 0x11,
                  1 << 32 | CLONE_NEWUSER, 1 << 32, 0x11]),
    ("socket", 0, [1, 2, 10, 16, 17, 38, 40, 41, 0x1_0000_0028, 0x1_0000_0002, M32, M64]),
    ("socket", 1, [1, 2, 3, 0x80803, 0x1_0000_0003]),
    ("ioctl", 1, [0x5412, 0x1_0000_5412, 0x541C, 0x5401, 0x5413, 0xFFFF_FFFF_0000_5412]),
    ("personality", 0, [0, 8, 0x20000, 0x20008, M32, 0x1_0000_0008, 0x400000, 1, M64]),
]


def defang_action(action: Action) -> Action:
    return Action("errno", DEFANG[action.kind]) if action.kind in DEFANG else action


def defang(policy: Policy) -> Policy:
    """The same policy with every action that runs the syscall made an errno."""
    arches = [ArchPolicy(ap.arch, {nr: tuple(dataclasses.replace(r, action=defang_action(r.action))
                                             for r in rules) for nr, rules in ap.rules.items()},
                         ap.known) for ap in policy.arches]
    return dataclasses.replace(policy, arches=arches, default=defang_action(policy.default),
                               unknown=defang_action(policy.unknown),
                               bad_arch=defang_action(policy.bad_arch))


def defang_program(prog: list[I.Insn]) -> list[I.Insn]:
    """The shipped program with ALLOW/LOG/USER_NOTIF/TRACE RET constants made errnos."""
    kinds = {I.RET_ALLOW: 4000, I.RET_LOG: 4001, I.RET_USER_NOTIF: 4002, I.RET_TRACE: 4003}
    out = []
    for ins in prog:
        if ins.code == I.RET | I.K and I.action_of(ins.k) in kinds:
            ins = I.ret(I.RET_ERRNO | kinds[I.action_of(ins.k)])
        out.append(ins)
    return out


def syscall_points() -> list[Point]:
    """Every number the spec asks for, args 0 (uretprobe/uprobe left out)."""
    nrs = list(range(1024)) + EDGE_NRS + [X32_SYSCALL_BIT | n for n in range(548)]
    pts = [Point(64, nr) for nr in nrs if nr not in SECCOMP_BYPASS_X86_64]
    return pts + [Point(32, nr) for nr in range(501)]


def arch_mode(arch: str) -> int:
    return 32 if arch == "i386" else 64


def arg_points(policy: Policy, limit: int = 0) -> list[Point]:
    """Vectors around every compared value, and the named high-bit vectors."""
    pts: list[Point] = []
    for ap in policy.arches:
        for nr, rules in sorted(ap.rules.items()):
            if any(r.conds for r in rules):
                vecs = arg_vectors(policy, nr, ap.arch)
                pts += [Point(arch_mode(ap.arch), nr, v) for v in (vecs[:limit] if limit else vecs)]
    for arch in ("x86_64", "i386", "x32"):
        for name, arg, values in NAMED_VECTORS:
            nr = table(arch).nr(name)
            for v in values:
                args = [0] * 6
                args[arg] = v
                pts.append(Point(arch_mode(arch), nr, tuple(args)))
    return [p for p in pts if not (p.mode == 64 and p.nr in SECCOMP_BYPASS_X86_64)]


def compare(probe: Probe, prog: list[I.Insn], points: list[Point], policy: Policy | None = None) -> int:
    """Run *points* in the kernel and in the interpreter; fail with the disassembly."""
    bad = unsafe_returns(prog)
    assert not bad, f"refusing to install a program that can run syscalls (pcs {bad})"
    got = probe.run(prog, points)
    mismatches = []
    for point, line in zip(points, got):
        value = run(prog, probe.data(point), trace=False).value
        want = kernel_outcome(value, point)
        if line != want:
            note = ""
            if policy is not None:
                dec = evaluate(policy, point.arch, point.nr, point.seen_args)
                note = f"; policy says {dec.action} ({dec.reason} {dec.rule.origin if dec.rule else ''})"
            mismatches.append(f"{point}: kernel '{line}', interpreter {value:#010x} -> '{want}'{note}")
    if mismatches:
        pytest.fail(f"{len(mismatches)} of {len(points)} points disagree; first ones:\n"
                    + "\n".join(mismatches[:10]) + "\n" + disassemble(prog), pytrace=False)
    return len(points)


@pytest.mark.parametrize("variant", ["defanged policy", "shipped program"])
@pytest.mark.parametrize("name", PROFILES, ids=lambda n: os.path.basename(n).removesuffix(".yaml"))
def test_profile_filter_agrees_with_interpreter(int80, name, variant, record_property):
    policy = lower(load_profile(name), native="x86_64")
    if variant == "defanged policy":
        policy = defang(policy)
        prog = compile_policy(policy).insns
    else:
        prog = defang_program(compile_policy(policy).insns)
    points = syscall_points() + arg_points(policy)
    n = compare(int80, prog, points, policy if variant == "defanged policy" else None)
    record_property("points", n)
    print(f"{os.path.basename(name)} ({variant}): {n} points agree, {len(prog)} insns")


@pytest.mark.parametrize("action", [
    Action("errno", 0), Action("errno", 1), Action("errno", 4095), Action("errno", 4096),
    Action("errno", 0xFFFF), Action("trap", 0), Action("trap", 0xFFFF),
    Action("kill-thread"), Action("kill-process")],
    ids=str)
def test_action_reaches_the_process_as_modelled(int80, action, record_property):
    """Errno data above 4095 is clamped; trap data reaches si_errno in full."""
    policy = Policy([ArchPolicy("x86_64", {39: (Rule(action),)}, frozenset(table("x86_64").by_nr)),
                     ArchPolicy("i386", {20: (Rule(action),)}, frozenset(table("i386").by_nr))],
                    default=Action("errno", 4000), bad_arch=action)
    prog = compile_policy(policy).insns
    points = [Point(64, 39), Point(32, 20), Point(64, X32_SYSCALL_BIT | 39), Point(64, 1)]
    record_property("points", compare(int80, prog, points, policy))


def test_uprobe_syscalls_bypass_seccomp(probe):
    """Why 335/336 are left out: the kernel runs them whatever the filter says."""
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    need(release >= (6, 11), "uretprobe/uprobe syscalls need Linux 6.11+")
    got = probe.run([I.ret(I.RET_ERRNO | 4000)], [Point(64, 335), Point(64, 336)], jobs=1)
    assert "ret -4000" not in got, got


def random_points(policy: Policy) -> list[Point]:
    """Rule numbers with vectors around their values, neighbours, edges, the other ABIs."""
    pts = arg_points(policy, limit=12)
    for ap in policy.arches:
        mode = arch_mode(ap.arch)
        for nr in sorted(ap.rules)[:20]:
            pts += [Point(mode, (nr + d) & M32) for d in (-1, 0, 1)]
    pts += [Point(64, nr) for nr in EDGE_NRS + [0, 1, 59, 1023, X32_SYSCALL_BIT | 1]]
    pts += [Point(32, nr) for nr in (0, 1, 11, 120, 500, M32)]
    for v in BOUNDARY64[::3]:
        pts += [Point(64, 41, (v,) * 6), Point(32, 102, (v,) * 6)]
    return [p for p in dict.fromkeys(pts) if not (p.mode == 64 and p.nr in SECCOMP_BYPASS_X86_64)]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(policy=policies())
def test_random_policy_agrees_with_interpreter(int80, policy):
    policy = defang(policy)
    prog = compile_policy(policy).insns
    n = compare(int80, prog, random_points(policy), policy)
    print(f"random policy: {n} points agree, {len(prog)} insns")


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(policy=large_policies())
def test_large_random_policy_agrees_with_interpreter(int80, policy):
    """Past the optimal tree's bound, merged rule chains, sets compiled as ranges,
    shared long-jump trampolines: the kernel decides as the interpreter does."""
    policy = defang(policy)
    prog = compile_policy(policy).insns
    pts = random_points(policy)
    for ap in policy.arches:
        base = X32_SYSCALL_BIT if ap.arch == "x32" else 0
        for nr, rules in sorted(ap.rules.items()):
            if any(r.conds for r in rules):
                n = nr if nr >= X32_SYSCALL_BIT else base | nr
                pts += [Point(64, n, v) for v in edge_vectors(policy, nr, ap.arch)]
        pts += [Point(64, base | nr) for nr in range(0, 600, 7)]
    pts = [p for p in dict.fromkeys(pts) if not (p.mode == 64 and p.nr in SECCOMP_BYPASS_X86_64)]
    n = compare(int80, prog, pts, policy)
    print(f"large random policy: {n} points agree, {len(prog)} insns")

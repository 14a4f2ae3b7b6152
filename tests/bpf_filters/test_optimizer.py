"""Optimizer passes, each on the smallest program that needs it, and the round limit."""
from __future__ import annotations

import pytest

from bpf_filters import insn as I
from bpf_filters.interp import SeccompData, run
from bpf_filters.optimizer import OptimizeError, optimize

LD_NR, LD_ARCH = I.ld_abs(I.OFF_NR), I.ld_abs(I.OFF_ARCH)
DENY, ALLOW = I.ret(I.RET_ERRNO | 1), I.ret(I.RET_ALLOW)


def jeq(k, jt, jf):
    return I.jump(I.JMP | I.JEQ | I.K, k, jt, jf)


# (pass, program, optimized program)
CASES = [
    ("thread_jumps: ja to a RET becomes the RET", [LD_NR, jeq(1, 0, 1), I.stmt(I.JMP | I.JA, 1), ALLOW, DENY],
     [LD_NR, jeq(1, 1, 0), ALLOW, DENY]),
    ("thread_jumps: both branches to one place become one ja, then nothing",
     [LD_NR, jeq(1, 0, 0), DENY], [LD_NR, DENY]),
    ("drop_unreachable: code after a RET nobody jumps to", [LD_NR, DENY, ALLOW], [LD_NR, DENY]),
    ("drop_redundant_loads: nr is already in A on every path (then the first test decides nothing)",
     [LD_NR, jeq(1, 0, 1), LD_NR, jeq(2, 0, 1), DENY, ALLOW],
     [LD_NR, jeq(2, 0, 1), DENY, ALLOW]),
    ("drop_redundant_loads: A differs on one path, the load stays",
     [LD_NR, jeq(1, 0, 1), LD_ARCH, LD_NR, jeq(2, 0, 1), DENY, ALLOW],
     [LD_NR, jeq(1, 0, 1), LD_ARCH, LD_NR, jeq(2, 0, 1), DENY, ALLOW]),
]


@pytest.mark.parametrize("case,prog,want", CASES, ids=[c[0] for c in CASES])
def test_each_pass(case, prog, want):
    got = optimize(prog)
    for nr in range(4):
        data = SeccompData(nr, 0xC000003E)
        assert run(got, data).value == run(prog, data).value, (case, nr)
    assert got == want, (case, got)


def test_a_program_still_changing_at_the_round_limit_is_an_error():
    prog = [LD_NR, jeq(1, 0, 1), I.stmt(I.JMP | I.JA, 1), ALLOW, DENY]
    with pytest.raises(OptimizeError, match="after 1 rounds"):
        optimize(prog, max_rounds=1)       # round 1 changes it: no fixed point seen yet
    assert optimize(prog, max_rounds=2) == optimize(prog)

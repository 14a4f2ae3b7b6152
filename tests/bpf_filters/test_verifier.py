"""The verifier's rejections, one row per kernel rule (net/core/filter.c bpf_check_classic,
kernel/seccomp.c seccomp_check_filter), each beside the nearest program that passes.

tests/kernel/test_verifier_kernel.py installs every row in the real kernel: the kernel
must refuse the rejected program and accept its neighbour.
"""
from __future__ import annotations

import pytest

from bpf_filters import insn as I
from bpf_filters.verifier import VerifyError, verify

S, J, RET = I.stmt, I.jump, I.ret
OK = RET(I.RET_ALLOW)

# (rule, rejected program, pc the verifier names, accepted neighbour)
REJECTED = [
    ("empty program", [], 0, [OK]),
    ("longer than 4096", [OK] * 4097, 0, [OK] * 4096),
    ("last instruction not a RET", [S(I.LD | I.W | I.ABS, 0)], 0, [S(I.LD | I.W | I.ABS, 0), OK]),
    ("opcode outside seccomp's list (ld half)", [S(I.LD | I.H | I.ABS, 0), OK], 0,
     [S(I.LD | I.W | I.ABS, 0), OK]),
    ("packet-relative load (ld ind)", [S(I.LD | I.W | I.IND, 0), OK], 0, [S(I.LD | I.W | I.ABS, 0), OK]),
    ("misaligned load", [S(I.LD | I.W | I.ABS, 2), OK], 0, [S(I.LD | I.W | I.ABS, 4), OK]),
    ("load past seccomp_data", [S(I.LD | I.W | I.ABS, 64), OK], 0, [S(I.LD | I.W | I.ABS, 60), OK]),
    ("division by constant zero", [S(I.ALU | I.DIV | I.K, 0), OK], 0, [S(I.ALU | I.DIV | I.K, 1), OK]),
    ("shift by 32", [S(I.ALU | I.LSH | I.K, 32), OK], 0, [S(I.ALU | I.LSH | I.K, 31), OK]),
    ("scratch index 16", [S(I.ST, 16), OK], 0, [S(I.ST, 15), OK]),
    ("scratch read before written", [S(I.LD | I.MEM, 3), OK], 0, [S(I.ST, 3), S(I.LD | I.MEM, 3), OK]),
    ("scratch written on one path only",
     [S(I.LD | I.W | I.ABS, 0), J(I.JMP | I.JEQ | I.K, 1, 0, 1), S(I.ST, 0), S(I.LD | I.MEM, 0), OK], 3,
     [S(I.LD | I.W | I.ABS, 0), S(I.ST, 0), J(I.JMP | I.JEQ | I.K, 1, 0, 0), S(I.LD | I.MEM, 0), OK]),
    ("conditional jump past the end", [J(I.JMP | I.JEQ | I.K, 0, 0, 1), OK], 0,
     [J(I.JMP | I.JEQ | I.K, 0, 0, 0), OK]),
    ("ja past the end", [S(I.JMP | I.JA, 1), OK], 0, [S(I.JMP | I.JA, 0), OK]),
    ("RET X is not a seccomp return", [S(I.RET | I.X), OK], 0, [S(I.RET | I.RET_A), OK]),
]


@pytest.mark.parametrize("rule,bad,pc,good", REJECTED, ids=[r[0] for r in REJECTED])
def test_the_verifier_refuses_each_kernel_rule_and_accepts_the_neighbour(rule, bad, pc, good):
    with pytest.raises(VerifyError) as err:
        verify(bad)
    assert err.value.pc == pc, (rule, err.value)
    verify(good)

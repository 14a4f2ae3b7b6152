"""Check a program against the kernel's rules for seccomp filters.

Mirrors net/core/filter.c ``bpf_check_classic`` (length, jump ranges, scratch
memory written before read, shift/division constants, final RET) and
kernel/seccomp.c ``seccomp_check_filter`` (the opcode allow-list and aligned
loads inside ``struct seccomp_data``).  Every program we emit passes here
before it can reach the kernel.
"""
from __future__ import annotations

from typing import Sequence

from . import insn as I


class VerifyError(Exception):
    def __init__(self, pc: int, message: str):
        super().__init__(f"at l{pc}: {message}")
        self.pc = pc
        self.message = message


def _c(*parts: int) -> int:
    code = 0
    for p in parts:
        code |= p
    return code


# kernel/seccomp.c: "Explicitly include allowed calls."
SECCOMP_OPCODES = frozenset(
    [_c(I.LD, I.W, I.ABS), _c(I.LD, I.W, I.LEN), _c(I.LDX, I.W, I.LEN),
     _c(I.RET, I.K), _c(I.RET, I.RET_A),
     _c(I.ALU, I.NEG), _c(I.LD, I.IMM), _c(I.LDX, I.IMM),
     _c(I.MISC, I.TAX), _c(I.MISC, I.TXA),
     _c(I.LD, I.MEM), _c(I.LDX, I.MEM), I.ST, I.STX, _c(I.JMP, I.JA)]
    + [_c(I.ALU, op, src) for op in (I.ADD, I.SUB, I.MUL, I.DIV, I.AND, I.OR, I.XOR, I.LSH, I.RSH)
       for src in (I.K, I.X)]
    + [_c(I.JMP, op, src) for op in (I.JEQ, I.JGE, I.JGT, I.JSET) for src in (I.K, I.X)])


def verify(prog: Sequence[I.Insn]) -> None:
    """Raise VerifyError at the first instruction the kernel would refuse."""
    n = len(prog)
    if n == 0 or n > I.MAXINSNS:
        raise VerifyError(0, f"program length {n} is outside 1..{I.MAXINSNS}")
    for pc, ins in enumerate(prog):
        _check_insn(pc, ins, n)
    if not prog[-1].is_ret or prog[-1].code not in SECCOMP_OPCODES:
        raise VerifyError(n - 1, "the last instruction must be a ret")
    _check_memory(prog)


def _check_insn(pc: int, ins: I.Insn, n: int) -> None:
    code, k = ins.code, ins.k
    if code not in SECCOMP_OPCODES:
        raise VerifyError(pc, f"opcode {code:#06x} is not allowed in a seccomp filter")
    cls = code & 0x07
    if code == _c(I.LD, I.W, I.ABS) and (k & 3 or k >= I.DATA_SIZE):
        raise VerifyError(pc, f"load of [{k}] is not an aligned word inside seccomp_data")
    if cls == I.ALU:
        op = code & 0xF0
        if op == I.DIV and not code & I.X and k == 0:
            raise VerifyError(pc, "division by constant zero")
        if op in (I.LSH, I.RSH) and not code & I.X and k >= 32:
            raise VerifyError(pc, f"shift by {k} (must be < 32)")
    if code in (_c(I.LD, I.MEM), _c(I.LDX, I.MEM), I.ST, I.STX) and k >= I.MEMWORDS:
        raise VerifyError(pc, f"scratch memory index {k} out of range")
    if cls == I.JMP:
        if code & 0xF0 == I.JA:
            if k >= n - pc - 1:
                raise VerifyError(pc, "jump target out of bounds")
        elif pc + 1 + ins.jt >= n or pc + 1 + ins.jf >= n:
            raise VerifyError(pc, "jump target out of bounds")


def _check_memory(prog: Sequence[I.Insn]) -> None:
    """Scratch memory must be written on every path before it is read."""
    n = len(prog)
    full = (1 << I.MEMWORDS) - 1
    valid = [full] * n          # intersection of the masks on all incoming paths
    valid[0] = 0
    for pc, ins in enumerate(prog):
        mask = valid[pc]
        code = ins.code
        if code in (_c(I.LD, I.MEM), _c(I.LDX, I.MEM)) and not mask & (1 << ins.k):
            raise VerifyError(pc, f"scratch memory M[{ins.k}] read before it is written")
        if code in (I.ST, I.STX):
            mask |= 1 << ins.k
        # like the kernel's check_load_and_stores, a RET hands its mask on to the
        # next instruction (only jumps reset it): code after a RET is checked too
        if ins.is_jump:
            if code & 0xF0 == I.JA:
                targets = [pc + 1 + ins.k]
            else:
                targets = [pc + 1 + ins.jt, pc + 1 + ins.jf]
        else:
            targets = [pc + 1]
        for t in targets:
            if t < n:
                valid[t] &= mask

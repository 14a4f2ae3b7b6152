"""Emulation of the kernel's seccomp action cache (kernel/seccomp.c, 5.11+).

When a filter is attached, the kernel runs ``seccomp_is_const_allow`` for every
syscall number of the native and compat ABIs: if the filter's path for that
number reads only ``nr``/``arch`` and ends in ``RET ALLOW``, the syscall skips
the filter from then on.  We emulate the same walk so the compiler can assert
that every arg-free allow stays cacheable.
"""
from __future__ import annotations

from typing import Sequence

from . import insn as I


def is_const_allow(prog: Sequence[I.Insn], arch: int, nr: int) -> bool:
    """The kernel's ``seccomp_is_const_allow`` for one (arch, nr)."""
    reg = 0
    pc = 0
    while pc < len(prog):
        ins = prog[pc]
        code, k = ins.code, ins.k
        if code == I.LD | I.W | I.ABS:
            if k == I.OFF_NR:
                reg = nr
            elif k == I.OFF_ARCH:
                reg = arch
            else:
                return False
        elif code == I.RET | I.K:
            return k == I.RET_ALLOW
        elif code == I.JMP | I.JA:
            pc += k
        elif code & 0x07 == I.JMP and code & 0x08 == I.K:
            op = code & 0xF0
            if op == I.JEQ:
                res = reg == k
            elif op == I.JGE:
                res = reg >= k
            elif op == I.JGT:
                res = reg > k
            elif op == I.JSET:
                res = bool(reg & k)
            else:
                return False
            pc += ins.jt if res else ins.jf
        elif code == I.ALU | I.AND | I.K:
            reg &= k
        else:
            return False
        pc += 1
    return False

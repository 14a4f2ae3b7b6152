"""A full-semantics classic BPF interpreter for seccomp programs.

It runs every opcode the kernel accepts in a seccomp filter (not only the ones
our compiler emits), with the kernel's runtime rules: 32-bit registers, shifts
masked to 5 bits, division by zero ends the program with return value 0.
It returns the action, the number of executed instructions and the path taken,
so callers can attribute a decision to its source rule.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Sequence

from . import insn as I

M32 = 0xFFFFFFFF


class InterpError(Exception):
    """The program did something the kernel's checker would have refused."""

    def __init__(self, pc: int, message: str):
        super().__init__(f"at l{pc}: {message}")
        self.pc = pc


@dataclass(frozen=True)
class SeccompData:
    nr: int
    arch: int
    args: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
    ip: int = 0

    def pack(self) -> bytes:
        args = tuple(self.args) + (0,) * (6 - len(self.args))
        return struct.pack("<IIQ6Q", self.nr & M32, self.arch & M32, self.ip & (2**64 - 1),
                           *(a & (2**64 - 1) for a in args))


@dataclass
class Result:
    value: int                      # the full 32-bit return value
    executed: int                   # number of instructions executed, RET included
    path: list[int] = field(default_factory=list)   # pcs executed, in order

    @property
    def action(self) -> int:
        return I.action_of(self.value)


def _alu(op: int, a: int, b: int, pc: int) -> int | None:
    """Returns the new accumulator, or None for a runtime division by zero."""
    if op == I.ADD:
        return (a + b) & M32
    if op == I.SUB:
        return (a - b) & M32
    if op == I.MUL:
        return (a * b) & M32
    if op == I.DIV:
        return None if b == 0 else a // b
    if op == I.MOD:
        return None if b == 0 else a % b
    if op == I.OR:
        return a | b
    if op == I.AND:
        return a & b
    if op == I.XOR:
        return a ^ b
    if op == I.LSH:
        return (a << (b & 31)) & M32
    if op == I.RSH:
        return a >> (b & 31)
    if op == I.NEG:
        return (-a) & M32
    raise InterpError(pc, f"unknown alu operation {op:#x}")


def run(prog: Sequence[I.Insn], data: SeccompData | bytes, *, trace: bool = True) -> Result:
    """Run *prog* on *data* and return the seccomp return value and cost."""
    buf = data if isinstance(data, bytes) else data.pack()
    if len(buf) != I.DATA_SIZE:
        raise ValueError("seccomp_data must be 64 bytes")
    a = x = 0
    mem = [0] * I.MEMWORDS
    pc = 0
    executed = 0
    path: list[int] = []
    n = len(prog)
    while True:
        if not 0 <= pc < n:
            raise InterpError(pc, "fell off the end of the program")
        ins = prog[pc]
        executed += 1
        if trace:
            path.append(pc)
        code, k = ins.code, ins.k
        cls = code & 0x07
        if cls == I.RET:
            src = code & 0x18
            if src == I.K:
                return Result(k, executed, path)
            if src == I.RET_A:
                return Result(a, executed, path)
            raise InterpError(pc, "ret from X is not allowed")
        if cls in (I.LD, I.LDX):
            mode, size = code & 0xE0, code & 0x18
            if mode == I.ABS:
                if size != I.W or k & 3 or k + 4 > I.DATA_SIZE:
                    raise InterpError(pc, f"invalid load of [{k}]")
                val = struct.unpack_from("<I", buf, k)[0]
            elif mode == I.IMM:
                val = k
            elif mode == I.LEN:
                val = I.DATA_SIZE
            elif mode == I.MEM:
                if k >= I.MEMWORDS:
                    raise InterpError(pc, f"scratch memory index {k} out of range")
                val = mem[k]
            else:
                raise InterpError(pc, f"load mode {mode:#x} is not allowed in seccomp")
            if cls == I.LD:
                a = val
            else:
                x = val
            pc += 1
        elif cls in (I.ST, I.STX):
            if k >= I.MEMWORDS:
                raise InterpError(pc, f"scratch memory index {k} out of range")
            mem[k] = a if cls == I.ST else x
            pc += 1
        elif cls == I.ALU:
            op = code & 0xF0
            b = x if code & I.X else k
            res = _alu(op, a, b, pc)
            if res is None:
                return Result(0, executed, path)
            a = res
            pc += 1
        elif cls == I.JMP:
            op = code & 0xF0
            if op == I.JA:
                pc += 1 + k
                continue
            b = x if code & I.X else k
            if op == I.JEQ:
                taken = a == b
            elif op == I.JGT:
                taken = a > b
            elif op == I.JGE:
                taken = a >= b
            elif op == I.JSET:
                taken = bool(a & b)
            else:
                raise InterpError(pc, f"unknown jump {op:#x}")
            pc += 1 + (ins.jt if taken else ins.jf)
        elif cls == I.MISC:
            if code & 0xF8 == I.TAX:
                x = a
            elif code & 0xF8 == I.TXA:
                a = x
            else:
                raise InterpError(pc, f"unknown misc op {code:#x}")
            pc += 1
        else:
            raise InterpError(pc, f"unknown instruction class {cls}")

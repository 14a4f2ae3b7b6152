"""Classic BPF instructions as seccomp sees them: opcodes, the Insn record, pack/unpack.

A seccomp filter is an array of ``struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}``
run over ``struct seccomp_data {int nr; u32 arch; u64 instruction_pointer; u64 args[6]}``.
"""
from __future__ import annotations

import struct
from typing import Iterable, NamedTuple

# instruction classes
LD, LDX, ST, STX, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
# ld/ldx sizes and modes
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
# alu operations
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0)
# jump operations
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
# operand source
K, X = 0x00, 0x08
# ret value source (BPF_RVAL)
RET_A = 0x10
# misc
TAX, TXA = 0x00, 0x80

MEMWORDS = 16
MAXINSNS = 4096

# struct seccomp_data layout
OFF_NR = 0
OFF_ARCH = 4
OFF_IP = 8
DATA_SIZE = 64


def off_arg_lo(n: int) -> int:
    """Offset of the low 32 bits of args[n] (little endian)."""
    return 16 + 8 * n


def off_arg_hi(n: int) -> int:
    """Offset of the high 32 bits of args[n] (little endian)."""
    return 16 + 8 * n + 4


# seccomp return values (include/uapi/linux/seccomp.h)
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
RET_ACTION_FULL = 0xFFFF0000
RET_DATA = 0x0000FFFF


class Insn(NamedTuple):
    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0

    @property
    def cls(self) -> int:
        return self.code & 0x07

    @property
    def is_jump(self) -> bool:
        return self.cls == JMP

    @property
    def is_ret(self) -> bool:
        return self.cls == RET


def stmt(code: int, k: int = 0) -> Insn:
    return Insn(code, 0, 0, k & 0xFFFFFFFF)


def jump(code: int, k: int, jt: int, jf: int) -> Insn:
    return Insn(code, jt, jf, k & 0xFFFFFFFF)


def ld_abs(off: int) -> Insn:
    return stmt(LD | W | ABS, off)


def ret(value: int) -> Insn:
    return stmt(RET | K, value)


_FMT = struct.Struct("<HBBI")
INSN_SIZE = _FMT.size


def pack(prog: Iterable[Insn]) -> bytes:
    """Encode instructions as the kernel's ``struct sock_filter`` array."""
    return b"".join(_FMT.pack(i.code, i.jt, i.jf, i.k) for i in prog)


def unpack(data: bytes) -> list[Insn]:
    """Decode a ``struct sock_filter`` array; the length must be a multiple of 8."""
    if len(data) % INSN_SIZE:
        raise ValueError(f"filter length {len(data)} is not a multiple of {INSN_SIZE}")
    return [Insn(*_FMT.unpack_from(data, off)) for off in range(0, len(data), INSN_SIZE)]


def action_of(value: int) -> int:
    """The action part of a seccomp return value (kernel: ``ret & SECCOMP_RET_ACTION_FULL``)."""
    return value & RET_ACTION_FULL

"""Render seccomp programs as assembly text or C source."""
from __future__ import annotations

from typing import Callable, Sequence

from . import insn as I

_ALU = {I.ADD: "add", I.SUB: "sub", I.MUL: "mul", I.DIV: "div", I.OR: "or", I.AND: "and",
        I.LSH: "lsh", I.RSH: "rsh", I.NEG: "neg", I.MOD: "mod", I.XOR: "xor"}
_JMP = {I.JEQ: "jeq", I.JGT: "jgt", I.JGE: "jge", I.JSET: "jset"}
_FIELDS = {I.OFF_NR: "nr", I.OFF_ARCH: "arch", I.OFF_IP: "ip_lo", I.OFF_IP + 4: "ip_hi"}
for _n in range(6):
    _FIELDS[I.off_arg_lo(_n)] = f"arg{_n}_lo"
    _FIELDS[I.off_arg_hi(_n)] = f"arg{_n}_hi"


def describe_ret(value: int) -> str:
    action, data = I.action_of(value), value & I.RET_DATA
    names = {I.RET_KILL_PROCESS: "KILL_PROCESS", I.RET_KILL_THREAD: "KILL_THREAD",
             I.RET_TRAP: "TRAP", I.RET_ERRNO: "ERRNO", I.RET_USER_NOTIF: "USER_NOTIF",
             I.RET_TRACE: "TRACE", I.RET_LOG: "LOG", I.RET_ALLOW: "ALLOW"}
    name = names.get(action, f"{action:#010x}")
    return f"{name}({data})" if data or action in (I.RET_ERRNO, I.RET_TRAP) else name


def format_insn(pc: int, ins: I.Insn) -> str:
    code, k = ins.code, ins.k
    cls = code & 0x07
    if cls == I.RET:
        return "ret A" if code & 0x18 == I.RET_A else f"ret {describe_ret(k)}"
    if cls in (I.LD, I.LDX):
        reg = "ld" if cls == I.LD else "ldx"
        mode = code & 0xE0
        if mode == I.ABS:
            return f"{reg} [{k}]".ljust(14) + f"; {_FIELDS.get(k, '?')}"
        if mode == I.IMM:
            return f"{reg} #{k:#x}"
        if mode == I.LEN:
            return f"{reg} #len"
        if mode == I.MEM:
            return f"{reg} M[{k}]"
        return f"{reg} ?{code:#x}"
    if cls == I.ST:
        return f"st M[{k}]"
    if cls == I.STX:
        return f"stx M[{k}]"
    if cls == I.ALU:
        op = code & 0xF0
        if op == I.NEG:
            return "neg"
        return f"{_ALU.get(op, '?')} " + ("x" if code & I.X else f"#{k:#x}")
    if cls == I.JMP:
        op = code & 0xF0
        if op == I.JA:
            return f"ja l{pc + 1 + k:04d}"
        operand = "x" if code & I.X else f"#{k:#x}"
        return f"{_JMP.get(op, '?')} {operand}, l{pc + 1 + ins.jt:04d}, l{pc + 1 + ins.jf:04d}"
    if cls == I.MISC:
        return "txa" if code & 0xF8 == I.TXA else "tax"
    return f".word {code:#x} {ins.jt} {ins.jf} {k:#x}"


def disassemble(prog: Sequence[I.Insn], comment: Callable[[int], str | None] | None = None) -> str:
    """One line per instruction: ``l0012: jge #0x3c, l0040, l0013  ; comment``."""
    lines = []
    for pc, ins in enumerate(prog):
        text = f"l{pc:04d}: {format_insn(pc, ins)}"
        note = comment(pc) if comment else None
        lines.append(f"{text:<44}; {note}" if note else text)
    return "\n".join(lines) + "\n"


def to_c(prog: Sequence[I.Insn], name: str = "filter") -> str:
    """A C array of ``struct sock_filter`` plus its ``struct sock_fprog``."""
    ident = "".join(c if c.isalnum() else "_" for c in name)
    out = ["#include <linux/filter.h>", "", f"static struct sock_filter {ident}_insns[] = {{"]
    for pc, ins in enumerate(prog):
        out.append(f"\t{{ 0x{ins.code:02x}, {ins.jt:3d}, {ins.jf:3d}, 0x{ins.k:08x} }}, /* {pc:4d}: {format_insn(pc, ins)} */")
    out.append("};")
    out.append(f"static struct sock_fprog {ident} = {{ .len = {len(prog)}, .filter = {ident}_insns }};")
    return "\n".join(out) + "\n"

"""Constant propagation of the general-purpose registers inside one function.

Used only where a value matters: at ``syscall`` instructions (the number in
``rax``) and at calls whose arguments name a syscall number, a library or a
program.  Values form a small lattice: a set of constants (at most
``MAX_SET``), ``('arg', k)`` for the function's k-th incoming argument register
still unchanged, or unknown (absent from the state).  Blocks are split at
branch targets and after jumps; the in-state of a block joins the out-states of
its known predecessors, iterated to a fixed point.  A block nothing is known
to reach (a jump-table target) starts from unknown: a value is never guessed.

Operands come from capstone's Intel syntax (``disasm_lite``): the first
operand is the destination.
"""
from __future__ import annotations

import re

from .wrappers import ARG_REGS

MAX_SET = 16
WIDEN_AFTER = 8           # joins into a block before values that still change become unknown
M64 = (1 << 64) - 1
_REGS: dict[str, tuple[str, int]] = {}
for _q, _d, _w, _b in (("rax", "eax", "ax", "al"), ("rbx", "ebx", "bx", "bl"),
                       ("rcx", "ecx", "cx", "cl"), ("rdx", "edx", "dx", "dl"),
                       ("rsi", "esi", "si", "sil"), ("rdi", "edi", "di", "dil"),
                       ("rbp", "ebp", "bp", "bpl"), ("rsp", "esp", "sp", "spl")):
    _REGS.update({_q: (_q, 64), _d: (_q, 32), _w: (_q, 16), _b: (_q, 8)})
for _n in range(8, 16):
    _REGS.update({f"r{_n}": (f"r{_n}", 64), f"r{_n}d": (f"r{_n}", 32),
                  f"r{_n}w": (f"r{_n}", 16), f"r{_n}b": (f"r{_n}", 8)})
_REGS.update({"ah": ("rax", 8), "bh": ("rbx", 8), "ch": ("rcx", 8), "dh": ("rdx", 8)})
CALL_CLOBBERED = ("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11")
# instructions that read their first operand without writing it
_NO_WRITE = frozenset({"cmp", "test", "push", "bt", "ucomiss", "ucomisd", "comiss", "comisd",
                       "vucomiss", "vucomisd", "vcomiss", "vcomisd", "nop", "endbr64", "ptest",
                       "vptest", "prefetcht0", "prefetcht1", "prefetcht2", "prefetchnta",
                       "prefetchw", "clflush", "clflushopt", "clwb", "call", "wrfsbase",
                       "wrgsbase", "kmovq", "invlpg"})
# instructions that also write registers they do not name
_IMPLICIT = {"mul": ("rax", "rdx"), "div": ("rax", "rdx"), "idiv": ("rax", "rdx"),
             "cdq": ("rdx",), "cqo": ("rdx",), "cwd": ("rdx",), "cdqe": ("rax",), "cwde": ("rax",),
             "cbw": ("rax",), "cpuid": ("rax", "rbx", "rcx", "rdx"), "rdtsc": ("rax", "rdx"),
             "rdtscp": ("rax", "rdx", "rcx"), "cmpxchg": ("rax",), "cmpxchg8b": ("rax", "rdx"),
             "cmpxchg16b": ("rax", "rdx"), "xgetbv": ("rax", "rdx"), "rdpkru": ("rax", "rdx"),
             "syscall": ("rax", "rcx", "r11"), "leave": ("rbp",), "rdpid": (),
             "lodsb": ("rax", "rsi"), "lodsw": ("rax", "rsi"), "lodsd": ("rax", "rsi"),
             "lodsq": ("rax", "rsi"), "stosb": ("rdi",), "stosw": ("rdi",), "stosd": ("rdi",),
             "stosq": ("rdi",), "movsb": ("rsi", "rdi"), "movsw": ("rsi", "rdi"),
             "movsd": ("rsi", "rdi"), "movsq": ("rsi", "rdi"), "scasb": ("rdi",),
             "scasw": ("rdi",), "scasd": ("rdi",), "scasq": ("rdi",), "cmpsb": ("rsi", "rdi"),
             "cmpsw": ("rsi", "rdi"), "cmpsd": ("rsi", "rdi"), "cmpsq": ("rsi", "rdi"),
             "imul": ("rax", "rdx")}
_PREFIXES = ("lock ", "rep ", "repz ", "repe ", "repne ", "repnz ", "notrack ", "bnd ", "xacquire ",
             "xrelease ")
_RIP = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|\d+)\]")
_ARITH = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "and": lambda a, b: a & b,
          "or": lambda a, b: a | b, "xor": lambda a, b: a ^ b, "shl": lambda a, b: a << (b & 63),
          "shr": lambda a, b: a >> (b & 63)}
NO_FALLTHROUGH = frozenset({"jmp", "ret", "retf", "hlt", "ud2", "iretq", "iret", "sysret",
                            "ljmp", "notrack jmp", "bnd jmp", "repz ret", "bnd ret"})

Insn = tuple[int, int, str, str]


def is_padding(mnem: str, ops: str) -> bool:
    """Alignment filler compilers put between functions and before loop heads."""
    return mnem in ("nop", "int3") or mnem.startswith("data16") or (mnem == "xchg" and ops == "ax, ax")          # address, size, mnemonic, operands


def rip_target(addr: int, size: int, ops: str) -> int | None:
    """The address a ``[rip +/- disp]`` operand refers to (rip is the next instruction)."""
    m = _RIP.search(ops)
    if m is None:
        return None
    disp = int(m.group(2), 0)
    return (addr + size + (disp if m.group(1) == "+" else -disp)) & M64


def _imm(text: str) -> int | None:
    try:
        return int(text, 0) & M64
    except ValueError:
        return None


def _mask(width: int) -> int:
    return (1 << width) - 1


def _value(state: dict, operand: str, addr: int, size: int, ops: str):
    """The value of a source operand: a register, an immediate, a rip-relative lea."""
    reg = _REGS.get(operand)
    if reg is not None:
        v = state.get(reg[0])
        if isinstance(v, frozenset) and reg[1] < 64:
            return frozenset(x & _mask(reg[1]) for x in v)
        return v if reg[1] >= 32 or v is None else None
    val = _imm(operand)
    return frozenset({val}) if val is not None else None


def _join(a, b):
    if a == b:
        return a
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        u = a | b
        return u if len(u) <= MAX_SET else None
    return None


def _set(state: dict, reg: str, width: int, value) -> None:
    if value is None or width < 32:
        state.pop(reg, None)                    # partial writes keep nothing we could trust
        return
    if isinstance(value, frozenset) and width == 32:
        value = frozenset(x & 0xFFFFFFFF for x in value)
    state[reg] = value


def step(state: dict, insn: Insn) -> None:
    """Apply one instruction to *state* (register -> value) in place."""
    addr, size, mnem, ops = insn
    for p in _PREFIXES:
        if mnem.startswith(p):
            if p.startswith("rep"):
                state.pop("rcx", None)
            mnem = mnem[len(p):]
    for reg in _IMPLICIT.get(mnem, ()):
        state.pop(reg, None)
    if mnem == "call" or mnem.startswith("j") or mnem in _NO_WRITE or not ops:
        if mnem == "call":
            for reg in CALL_CLOBBERED:
                state.pop(reg, None)
        return
    parts = ops.split(", ")
    dst = _REGS.get(parts[0])
    if mnem == "xchg" and len(parts) == 2:
        other = _REGS.get(parts[1])
        if dst and other:
            a, b = state.get(dst[0]), state.get(other[0])
            _set(state, dst[0], dst[1], b)
            _set(state, other[0], other[1], a)
        else:
            for r in (dst, other):
                if r:
                    state.pop(r[0], None)
        return
    if mnem in ("xadd",) and len(parts) == 2 and _REGS.get(parts[1]):
        state.pop(_REGS[parts[1]][0], None)
    if dst is None:
        return                                  # a memory destination
    reg, width = dst
    src = parts[1] if len(parts) > 1 else None
    if mnem in ("mov", "movabs", "movzx", "movsxd", "movsx") and src is not None:
        _set(state, reg, width, _value(state, src, addr, size, ops))
    elif mnem == "lea" and src is not None:
        target = rip_target(addr, size, src)
        _set(state, reg, width, frozenset({target}) if target is not None else None)
    elif mnem in ("xor", "sub") and src == parts[0]:
        _set(state, reg, width, frozenset({0}))
    elif mnem in _ARITH and src is not None:
        a, b = state.get(reg), _value(state, src, addr, size, ops)
        if isinstance(a, frozenset) and isinstance(b, frozenset) and len(a) * len(b) <= MAX_SET:
            m = _mask(width)
            _set(state, reg, width, frozenset(_ARITH[mnem](x & m, y & m) & m for x in a for y in b))
        else:
            state.pop(reg, None)
    elif mnem.startswith("cmov") and src is not None:
        _set(state, reg, width, _join(state.get(reg), _value(state, src, addr, size, ops)))
    else:
        state.pop(reg, None)


def _branch_target(mnem: str, ops: str) -> int | None:
    if (mnem.startswith("j") or mnem.startswith(("notrack j", "bnd j", "loop"))) and \
            ops.startswith("0x"):
        return int(ops, 16)
    return None


def entry_state() -> dict:
    return {r: ("arg", k) for k, r in enumerate(ARG_REGS)}


def propagate(insns: list[Insn], start: int, end: int, sites: set[int],
              stops: frozenset[int] = frozenset()) -> dict[int, dict]:
    """The register state just before each instruction at an address in *sites*
    (a function of *insns* spanning [start, end), entered at *start*); *stops* are
    calls that never return."""
    if not insns:
        return {}
    index = {ins[0]: i for i, ins in enumerate(insns)}
    leaders = {0}
    succ: dict[int, list[int]] = {}
    for i, (addr, size, mnem, ops) in enumerate(insns):
        target = _branch_target(mnem, ops)
        if target is not None and target in index:
            leaders.add(index[target])
        base = mnem.split(" ")[-1]
        if target is not None or base in ("ret", "hlt", "ud2") or mnem in NO_FALLTHROUGH \
                or base == "jmp" or addr in stops:
            if i + 1 < len(insns):
                leaders.add(i + 1)
    order = sorted(leaders)
    block_end = {b: (order[k + 1] if k + 1 < len(order) else len(insns)) for k, b in enumerate(order)}
    preds: dict[int, int] = {b: 0 for b in order}
    for b in order:
        addr, size, mnem, ops = insns[block_end[b] - 1]
        out = []
        target = _branch_target(mnem, ops)
        base = mnem.split(" ")[-1]
        if target is not None and target in index:
            out.append(index[target])
        elif base == "jmp" and target is None and "rip" not in ops:
            out = list(order)                   # a jump table: any block may be its target
        if mnem not in NO_FALLTHROUGH and base not in ("jmp", "ret", "hlt", "ud2") \
                and addr not in stops and block_end[b] < len(insns):
            out.append(block_end[b])
        succ[b] = out
        for s in out:
            preds[s] += 1
    in_state: dict[int, dict] = {0: entry_state()}
    # a block no known edge reaches starts from nothing known, unless it is only
    # alignment padding after a jump (nothing runs it; it would spoil what follows)
    work = [0] + [b for b in order if b and not preds[b] and
                  not all(is_padding(insns[i][2], insns[i][3]) for i in range(b, block_end[b]))]
    for b in work[1:]:
        in_state[b] = {}
    found: dict[int, dict] = {}
    visits: dict[int, int] = {}
    while work:
        b = work.pop()
        state = dict(in_state[b])
        for i in range(b, block_end[b]):
            if insns[i][0] in sites:
                found[insns[i][0]] = dict(state)
            step(state, insns[i])
        for s in succ[b]:
            old = in_state.get(s)
            if old is None:
                new = state
            elif visits.get(s, 0) > WIDEN_AFTER:   # widen: a value still changing is unknown
                new = {r: v for r, v in old.items() if state.get(r) == v}
            else:
                new = {r: v for r in old.keys() & state.keys()
                       if (v := _join(old[r], state[r])) is not None}
            if old is None or new != old:
                in_state[s] = new
                visits[s] = visits.get(s, 0) + 1
                work.append(s)
    return found

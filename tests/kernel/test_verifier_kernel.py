"""Our verifier and interpreter against the kernel's own checker and BPF engine.

Random classic BPF programs (opcodes from the whole cBPF space, including the
ones seccomp refuses, random jump offsets, misaligned and out-of-range loads,
scratch memory read before it is written, division by zero, shifts of 32 and
more, a last instruction that is not RET): ``verify`` must accept exactly the
programs the kernel installs. Every program both accept then runs in the
kernel and in ``bpf_filters.interp.run`` on the same seccomp_data (nr, arch,
instruction pointer, arguments) and must return the same action.

Only numbers no syscall has are called, so even a RET A that computes ALLOW
just gets -ENOSYS: nothing real ever runs.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpf_filters import insn as I
from bpf_filters.disasm import disassemble
from bpf_filters.interp import InterpError, run
from bpf_filters.syscalls import X32_SYSCALL_BIT
from bpf_filters.verifier import SECCOMP_OPCODES, VerifyError, verify
from tests.kernel.bpf_probe import Point, Probe, kernel_outcome, nonexistent
from tests.policies import BOUNDARY64

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
ERRNO, TRAP = I.RET_ERRNO, I.RET_TRAP
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SECCOMP_CODES = sorted(SECCOMP_OPCODES)
# classic BPF the socket filter accepts but seccomp does not, and near misses
OTHER_CODES = [I.LD | I.H | I.ABS, I.LD | I.B | I.ABS, I.LD | I.W | I.IND, I.LD | I.B | I.IND,
               I.LDX | I.B | 0xA0, I.ALU | I.MOD | I.K, I.ALU | I.MOD | I.X, I.RET | I.X,
               I.LDX | I.W | I.ABS, I.JMP | I.JA | I.X, I.ALU | I.NEG | I.X, I.MISC | 0x08,
               I.LD | I.H | I.IMM, I.LD | I.H | I.LEN, I.ST | 0x08, I.JMP | 0x50, I.ALU | 0xB0,
               I.RET | I.K | 0x08, 0x16 | 0x100]

ret_values = st.one_of(
    st.builds(lambda d: ERRNO | d, st.sampled_from([0, 1, 13, 4095, 4096, 0xFFFF]) | st.integers(0, 0xFFFF)),
    st.builds(lambda d: TRAP | d, st.integers(0, 0xFFFF)),
    st.sampled_from([I.RET_KILL_PROCESS, I.RET_KILL_THREAD]))
k_values = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 8, 12, 15, 16, 17, 20, 31, 32, 33, 60, 61, 62, 63, 64, 68,
                     0x5412, 0x7FFFFFFF, 0x80000000, 0xFFFFF000, 0xFFFFF004, M32]),
    st.integers(0, 70), st.integers(0, M32))
offsets = st.one_of(st.integers(0, 3), st.integers(0, 12), st.integers(0, 255))

nrs64 = st.one_of(st.sampled_from([1000, 1023, 0x3FFFFFFF, X32_SYSCALL_BIT | 1000, 0x7FFFFFFF,
                                   0x80000000, 0xDEADBEEF, M32]),
                  st.integers(1000, 0x3FFFFFFF), st.integers(0x80000000, M32))
nrs32 = st.one_of(st.sampled_from([1000, 0x7FFFFFFF, 0x80000000, M32]), st.integers(1000, M32))
arg_values = st.one_of(st.sampled_from(BOUNDARY64), st.integers(0, 2**64 - 1))
points = st.one_of(
    st.builds(Point, st.just(64), nrs64, st.tuples(*[arg_values] * 6)),
    st.builds(Point, st.just(32), nrs32, st.tuples(*[arg_values] * 6)))


@st.composite
def wild_programs(draw):
    """Anything at all, biased towards opcodes and operands seccomp might accept."""
    n = draw(st.integers(1, 10))
    prog = []
    for pc in range(n):
        code = draw(st.one_of(st.sampled_from(SECCOMP_CODES), st.sampled_from(SECCOMP_CODES),
                              st.sampled_from(OTHER_CODES), st.integers(0, 0xFF),
                              st.integers(0, 0xFFFF)))
        if pc == n - 1 and draw(st.integers(0, 3)):
            code = draw(st.sampled_from([I.RET | I.K, I.RET | I.RET_A]))
        k = draw(ret_values if code == I.RET | I.K else k_values)
        prog.append(I.Insn(code, draw(offsets), draw(offsets), k))
    return prog


def S(code: int, k: int = 0) -> I.Insn:
    return I.stmt(code, k)


def J(code: int, k: int, jt: int, jf: int) -> I.Insn:
    return I.Insn(code, jt, jf, k)


TAILS = [[S(I.ALU | I.AND | I.K, 0xFFF), S(I.ALU | I.OR | I.K, ERRNO), S(I.RET | I.RET_A)],
         [S(I.ALU | I.AND | I.K, 0xFFFF), S(I.ALU | I.OR | I.K, TRAP), S(I.RET | I.RET_A)],
         [S(I.RET | I.RET_A)]]


@st.composite
def valid_programs(draw):
    """Programs built to pass the checker (mostly): every seccomp opcode, in-range
    jumps, aligned loads, boundary constants, stores usually before loads. Most
    end by turning A into an errno or trap whose data shows A's low bits (a
    random A would mostly be an unknown action, and they all just kill)."""
    tail = draw(st.one_of(st.sampled_from(TAILS), st.builds(lambda v: [I.ret(v)], ret_values)))
    body = draw(st.integers(1, 22))
    n = body + len(tail)
    prog = []
    for pc in range(body):
        room = n - pc - 2               # furthest jump offset that stays inside
        kind = draw(st.sampled_from(["ld", "ld", "alu", "alu", "alu", "jmp", "jmp", "mem", "misc",
                                     "misc"] * 2 + ["ret"]))
        if kind == "ld":
            ins = draw(st.one_of(
                st.builds(lambda k: I.ld_abs(k), st.sampled_from(range(0, 64, 4))),
                st.builds(lambda c, k: I.stmt(c, k), st.sampled_from([I.LD | I.IMM, I.LDX | I.IMM]), k_values),
                st.sampled_from([I.stmt(I.LD | I.W | I.LEN), I.stmt(I.LDX | I.W | I.LEN)])))
        elif kind == "alu":
            op = draw(st.sampled_from([I.ADD, I.SUB, I.MUL, I.DIV, I.OR, I.AND, I.XOR, I.LSH, I.RSH, I.NEG]))
            src = I.K if op == I.NEG else draw(st.sampled_from([I.K, I.X]))
            k = draw(st.integers(1, 31) if op in (I.LSH, I.RSH, I.DIV) and src == I.K else k_values)
            ins = I.stmt(I.ALU | op | src, k)
        elif kind == "jmp":
            op = draw(st.sampled_from([I.JEQ, I.JGT, I.JGE, I.JSET, I.JA]))
            if op == I.JA:
                ins = I.stmt(I.JMP | I.JA, draw(st.integers(0, room)))
            else:
                ins = I.Insn(I.JMP | op | draw(st.sampled_from([I.K, I.X])),
                             draw(st.integers(0, min(room, 255))), draw(st.integers(0, min(room, 255))),
                             draw(k_values))
        elif kind == "mem":
            code = draw(st.sampled_from([I.ST, I.STX, I.ST, I.STX, I.LD | I.MEM, I.LDX | I.MEM]))
            ins = I.stmt(code, draw(st.integers(0, 15)))
        elif kind == "misc":
            ins = I.stmt(I.MISC | draw(st.sampled_from([I.TAX, I.TXA])))
        else:
            ins = draw(st.one_of(st.builds(I.ret, ret_values), st.just(I.stmt(I.RET | I.RET_A))))
        prog.append(ins)
    return prog + tail


def show(prog) -> str:
    raw = ", ".join(f"({i.code:#x}, {i.jt}, {i.jf}, {i.k:#x})" for i in prog)
    return f"raw: [{raw}]\n" + disassemble(prog)


def ours(prog) -> str:
    try:
        verify(prog)
    except VerifyError as err:
        return f"refused: {err}"
    return "ok"


def check_programs(probe: Probe, progs, inputs) -> tuple[int, int]:
    """Acceptance must agree; programs both accept must return the same action on
    every input. Returns (programs checked, runtime points compared)."""
    assert all(nonexistent(p) for p in inputs), "runtime inputs must be numbers no syscall has"
    verdicts = probe.check(progs)
    compared = 0
    for prog, kernel in zip(progs, verdicts):
        mine = ours(prog)
        if (mine == "ok") != (kernel == "ok"):
            pytest.fail(f"verifier {mine!r} but kernel {kernel!r} for\n{show(prog)}", pytrace=False)
        if kernel != "ok":
            continue
        got = probe.run(prog, inputs, jobs=1)
        for point, line in zip(inputs, got):
            data = probe.data(point)
            try:
                value = run(prog, data, trace=False).value
            except InterpError as err:
                pytest.fail(f"interpreter failed on a program the kernel accepts: {err}\n"
                            f"{point} -> kernel '{line}'\n{show(prog)}", pytrace=False)
            want = kernel_outcome(value, point)
            if line != want:
                pytest.fail(f"{point} (seccomp_data {data}): kernel '{line}', interpreter "
                            f"{value:#010x} -> '{want}'\n{show(prog)}", pytrace=False)
            compared += 1
    return len(progs), compared


RET_A = S(I.RET | I.RET_A)
R_ERR = I.ret(ERRNO | 1)
LDM0 = S(I.LD | I.MEM, 0)

TABLE = {
    "an empty program is refused": [],
    "4096 instructions are accepted": [S(I.LD | I.IMM, 1)] * 4095 + [R_ERR],
    "4097 instructions are refused": [S(I.LD | I.IMM, 1)] * 4096 + [R_ERR],
    "a last instruction that is not RET is refused": [R_ERR, S(I.LD | I.IMM, 1)],
    "a jump to the last instruction is accepted": [J(I.JMP | I.JEQ, 0, 1, 0), R_ERR, R_ERR],
    "jt past the end is refused": [J(I.JMP | I.JEQ, 0, 2, 0), R_ERR, R_ERR],
    "jf past the end is refused": [J(I.JMP | I.JSET | I.X, 0, 0, 5), R_ERR],
    "ja to the last instruction is accepted": [S(I.JMP | I.JA, 1), R_ERR, R_ERR],
    "ja past the end is refused": [S(I.JMP | I.JA, 2), R_ERR, R_ERR],
    "ja with a huge offset is refused": [S(I.JMP | I.JA, M32), R_ERR],
    "ld [60] is accepted": [I.ld_abs(60), RET_A],
    "ld [62] (misaligned) is refused": [I.ld_abs(62), RET_A],
    "ld [64] (past seccomp_data) is refused": [I.ld_abs(64), RET_A],
    "ld [SKF_AD_OFF] (ancillary) is refused": [I.ld_abs(0xFFFFF000), RET_A],
    "ld half-word is refused": [S(I.LD | I.H | I.ABS, 0), RET_A],
    "ld indirect is refused": [S(I.LD | I.W | I.IND, 0), RET_A],
    "ldx msh is refused": [S(I.LDX | I.B | 0xA0, 0), RET_A],
    "ld len and ldx len are accepted": [S(I.LD | I.W | I.LEN), S(I.LDX | I.W | I.LEN), RET_A],
    "div by constant zero is refused": [S(I.ALU | I.DIV | I.K, 0), RET_A],
    "mod is refused": [S(I.ALU | I.MOD | I.K, 3), RET_A],
    "xor is accepted": [S(I.ALU | I.XOR | I.K, 3), RET_A],
    "lsh #31 is accepted": [S(I.ALU | I.LSH | I.K, 31), RET_A],
    "lsh #32 is refused": [S(I.ALU | I.LSH | I.K, 32), RET_A],
    "rsh #32 is refused": [S(I.ALU | I.RSH | I.K, 32), RET_A],
    "ret X is refused": [S(I.RET | I.X)],
    "an opcode above 0xff is refused": [S(0x106, ERRNO | 1)],
    "M[16] is refused": [S(I.ST, 16), R_ERR],
    "M[0] read before any store is refused": [LDM0, RET_A],
    "M[0] stored then read is accepted": [S(I.ST, 0), LDM0, RET_A],
    "M[0] stored on one branch only is refused": [J(I.JMP | I.JEQ, 0, 0, 1), S(I.ST, 0), LDM0, RET_A],
    "M[0] stored on both branches is accepted":
        [J(I.JMP | I.JEQ, 0, 0, 2), S(I.ST, 0), S(I.JMP | I.JA, 1), S(I.STX, 0), LDM0, RET_A],
    "M[0] read after a RET, unwritten on the fall-through, is refused by the kernel":
        [R_ERR, LDM0, RET_A],
    "M[0] read after a RET, stored before it, is accepted":
        [S(I.ST, 0), J(I.JMP | I.JEQ, 1, 0, 1), R_ERR, LDM0, RET_A],
}


@pytest.mark.parametrize("prog", TABLE.values(), ids=TABLE.keys())
def test_verifier_matches_kernel_on_edge_cases(probe, prog):
    check_programs(probe, [prog], [Point(64, 1000), Point(64, M32, (M32,) * 6)])


def _alu(op: int, k: int) -> I.Insn:
    return S(I.ALU | op | I.K, k)


RUNTIME = {
    "A starts at zero": [RET_A],
    "X starts at zero": [S(I.MISC | I.TXA), _alu(I.OR, ERRNO), RET_A],
    "division by X = 0 at runtime returns 0 (KILL_THREAD)": [S(I.LD | I.IMM, 7), S(I.ALU | I.DIV | I.X), RET_A],
    "shift by X uses its low 5 bits": [S(I.LD | I.IMM, 1), S(I.LDX | I.IMM, 33), S(I.ALU | I.LSH | I.X),
                                      _alu(I.OR, ERRNO), RET_A],
    "right shift by X = 63": [S(I.LD | I.IMM, M32), S(I.LDX | I.IMM, 63), S(I.ALU | I.RSH | I.X),
                             _alu(I.OR, ERRNO), RET_A],
    "ld len is 64": [S(I.LD | I.W | I.LEN), _alu(I.OR, ERRNO), RET_A],
    "neg and mul wrap at 32 bits": [S(I.LD | I.IMM, 3), _alu(I.NEG, 0), _alu(I.MUL, 0x55555555),
                                   _alu(I.AND, 0xFFF), _alu(I.OR, ERRNO), RET_A],
    "ip low bits": [I.ld_abs(I.OFF_IP), _alu(I.AND, 0xFFF), _alu(I.OR, ERRNO), RET_A],
    "ip high word": [I.ld_abs(I.OFF_IP + 4), _alu(I.AND, 0xFFF), _alu(I.OR, TRAP), RET_A],
    "arch and nr": [I.ld_abs(I.OFF_ARCH), _alu(I.XOR, 0xC000003E), J(I.JMP | I.JEQ, 0, 0, 2),
                    I.ld_abs(I.OFF_NR), _alu(I.AND, 0xFF), _alu(I.OR, ERRNO), RET_A],
    "arg high words": [I.ld_abs(I.off_arg_hi(0)), S(I.ALU | I.RSH | I.K, 20), S(I.MISC | I.TAX),
                       I.ld_abs(I.off_arg_hi(5)), _alu(I.AND, 0xFF), S(I.ALU | I.ADD | I.X),
                       _alu(I.OR, TRAP), RET_A],
    "jset and scratch memory": [I.ld_abs(I.off_arg_lo(1)), S(I.ST, 3), J(I.JMP | I.JSET | I.K, 0x80, 0, 2),
                                S(I.LDX | I.MEM, 3), S(I.MISC | I.TXA), _alu(I.AND, 0x7FF),
                                _alu(I.OR, ERRNO), RET_A],
    "tax then compare against X": [I.ld_abs(I.off_arg_lo(2)), S(I.MISC | I.TAX), I.ld_abs(I.off_arg_lo(3)),
                                   J(I.JMP | I.JGT | I.X, 0, 0, 1), I.ret(ERRNO | 2), I.ret(ERRNO | 3)],
}
RUNTIME_POINTS = [Point(64, 1000, (1, 2, 3, 4, 5, 6)), Point(64, M32, (M64,) * 6),
                  Point(64, X32_SYSCALL_BIT | 1000, (0x1_0000_0080, 0x80, 7, 6, 0, 0xF00_0000_0000)),
                  Point(32, 1000, (0x80, 0xFF, 6, 7, M64, M64)), Point(32, M32, (M64,) * 6)]


@pytest.mark.parametrize("prog", RUNTIME.values(), ids=RUNTIME.keys())
def test_interpreter_matches_kernel_at_runtime(int80, prog, record_property):
    n = check_programs(int80, [prog], RUNTIME_POINTS)[1]
    assert n == len(RUNTIME_POINTS), "the kernel must accept every program of this table"
    record_property("points", n)


@SETTINGS
@given(progs=st.lists(wild_programs(), min_size=16, max_size=16),
       inputs=st.lists(points, min_size=3, max_size=3))
def test_verifier_accepts_exactly_what_the_kernel_accepts(int80, progs, inputs):
    checked, compared = check_programs(int80, progs, inputs)
    print(f"wild: {checked} programs checked, {compared} runtime points compared")


@SETTINGS
@given(prog=valid_programs(), inputs=st.lists(points, min_size=6, max_size=6))
def test_interpreter_matches_kernel_on_random_programs(int80, prog, inputs):
    checked, compared = check_programs(int80, [prog], inputs)
    print(f"valid: {checked} program checked, {compared} runtime points compared")


def test_each_rejection_of_the_verifier_table_is_the_kernels(probe):
    """tests/bpf_filters/test_verifier.py's table, in the kernel: each rejected program
    is refused, each neighbour installed."""
    from tests.bpf_filters.test_verifier import REJECTED
    got = probe.check([p for _, bad, _, good in REJECTED for p in (bad, good)])
    for i, (rule, *_) in enumerate(REJECTED):
        assert got[2 * i].startswith("errno"), (rule, got[2 * i])
        assert got[2 * i + 1] == "ok", (rule, got[2 * i + 1])

"""Builder long-jump fixups, case by case: where trampolines go, what they are, and that
every program still means what its labels say (run by the interpreter)."""
from __future__ import annotations

import pytest

from bpf_filters import insn as I
from bpf_filters.builder import Builder, BuildError
from bpf_filters.interp import SeccompData, run
from bpf_filters.verifier import verify

FILL = I.ld_abs(I.OFF_ARCH)           # an instruction that changes no outcome below
DENY, ALLOW, OTHER = I.RET_ERRNO | 1, I.RET_ALLOW, I.RET_ERRNO | 2


def program(gap: int, far_is_ret: bool = True, both_far: bool = False, jumps: int = 1):
    """ld nr; *jumps* x (jeq i -> far : next); ret OTHER when nothing matched, *gap*
    fillers in between, then far: ret DENY (or ld nr; ret DENY: not a RET)."""
    b = Builder()
    b.emit(I.ld_abs(I.OFF_NR))
    for i in range(jumps):
        b.jump(I.JEQ, i, "far", "far2" if both_far else None)
    b.emit(I.ret(OTHER))
    for _ in range(gap):
        b.emit(FILL)
    if both_far:
        b.label("far2")
        b.emit(I.ret(ALLOW))
    b.label("far")
    if not far_is_ret:
        b.emit(I.ld_abs(I.OFF_NR))
    b.emit(I.ret(DENY))
    return b.assemble()


def outcome(prog, nr: int) -> int:
    return run(prog, SeccompData(nr, 0xC000003E)).value


# (case, builder arguments, instructions expected, the trampolines' kind)
CASES = [
    ("near: a jump of 255 needs nothing", dict(gap=254), 1 + 1 + 1 + 254 + 1, None),
    ("far RET: copied right after the jump", dict(gap=255), 1 + 1 + 1 + 1 + 255 + 1, "ret"),
    ("far non-RET: a ja after the jump", dict(gap=300, far_is_ret=False),
     1 + 1 + 1 + 1 + 300 + 2, "ja"),
    ("both targets far: two trampolines, jf's first", dict(gap=300, both_far=True),
     1 + 1 + 2 + 1 + 300 + 2, "ret"),
    ("600 jumps to one far RET share a trampoline every 255", dict(gap=0, jumps=600),
     1 + 600 + 2 + 1 + 1, "ret"),
]


@pytest.mark.parametrize("case,kw,size,kind", CASES, ids=[c[0] for c in CASES])
def test_trampolines(case, kw, size, kind):
    prog = program(**kw)
    verify(prog)
    assert len(prog) == size
    jumps_n = kw.get("jumps", 1)
    jumps = [p for p, ins in enumerate(prog) if ins.is_jump and ins.code != I.JMP | I.JA]
    assert all(prog[p].jt <= 255 and prog[p].jf <= 255 for p in jumps)
    if jumps_n == 1 and kind == "ret":
        assert prog[2].is_ret                     # right after the jump
    elif kind == "ja":
        assert prog[2].code == I.JMP | I.JA
    elif jumps_n > 1:                             # 600 jumps, one copy per 255 of them, plus the original
        assert sum(1 for ins in prog if ins == I.ret(DENY)) == 3
    # what the labels say, for every number the program tests and one it does not
    for nr in range(jumps_n + 1):
        want = DENY if nr < jumps_n else ALLOW if kw.get("both_far") else OTHER
        assert outcome(prog, nr) == want, (case, nr)


def test_backward_and_undefined_labels_are_refused():
    b = Builder()
    b.label("top")
    b.emit(I.ld_abs(0))
    b.goto("top")
    with pytest.raises(BuildError, match="backward"):
        b.assemble()
    b = Builder()
    b.goto("nowhere")
    with pytest.raises(BuildError, match="never defined"):
        b.assemble()
    b = Builder()
    b.alias("a", "b")
    b.alias("b", "a")
    b.goto("a")
    with pytest.raises(BuildError, match="loop"):
        b.assemble()

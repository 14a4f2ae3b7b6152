"""A program builder with named forward-only labels and long-jump fixups.

Code is emitted as items whose jump targets are label names.  ``assemble``
resolves labels into relative offsets; a conditional jump whose target is
more than 255 instructions away gets a trampoline placed right after it: a
copy of the target when that is a RET (costs no extra executed instruction),
otherwise a ``ja`` (32-bit offset).  Backward jumps do not exist in classic
BPF and are refused.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import insn as I


class BuildError(Exception):
    pass


@dataclass
class _Jump:
    code: int                 # JMP|op|K, or JMP|JA
    k: int
    jt: str | None            # label names; None = next instruction
    jf: str | None = None


class Builder:
    def __init__(self) -> None:
        self._items: list[I.Insn | _Jump] = []
        self._labels: dict[str, int] = {}     # label -> item index
        self._aliases: dict[str, str] = {}
        self._fresh = 0

    @property
    def size(self) -> int:
        """Items emitted so far (instructions, before long-jump fixes)."""
        return len(self._items)

    def fresh(self, stem: str) -> str:
        self._fresh += 1
        return f"{stem}.{self._fresh}"

    def label(self, name: str) -> None:
        if name in self._labels or name in self._aliases:
            raise BuildError(f"label {name!r} defined twice")
        self._labels[name] = len(self._items)

    def alias(self, name: str, target: str) -> None:
        """Make *name* jump wherever *target* goes (no instruction emitted)."""
        if name in self._labels or name in self._aliases:
            raise BuildError(f"label {name!r} defined twice")
        self._aliases[name] = target

    def emit(self, ins: I.Insn) -> None:
        if ins.is_jump:
            raise BuildError("use jump()/goto() for jumps")
        self._items.append(ins)

    def jump(self, op: int, k: int, jt: str | None, jf: str | None) -> None:
        self._items.append(_Jump(I.JMP | op | I.K, k & 0xFFFFFFFF, jt, jf))

    def goto(self, target: str) -> None:
        self._items.append(_Jump(I.JMP | I.JA, 0, target))

    def _resolve(self, name: str) -> int:
        seen = set()
        while name in self._aliases:
            if name in seen:
                raise BuildError(f"label alias loop at {name!r}")
            seen.add(name)
            name = self._aliases[name]
        if name not in self._labels:
            raise BuildError(f"label {name!r} is never defined")
        return self._labels[name]

    def assemble(self) -> list[I.Insn]:
        """Resolve labels into a flat program, inserting trampolines as needed."""
        nodes: list[Node] = []
        for idx, it in enumerate(self._items):
            if isinstance(it, _Jump):
                jt = self._resolve(it.jt) if it.jt is not None else idx + 1
                jf = self._resolve(it.jf) if it.jf is not None else idx + 1
                if jt <= idx or jf <= idx:
                    raise BuildError(f"backward jump at item {idx}")
                nodes.append(Node(it.code, it.k, jt, jf))
            else:
                nodes.append(Node(it.code, it.k, insn=it))
        return layout(nodes)


@dataclass(slots=True)
class Node:
    """One instruction of a program being laid out: a jump names its targets by
    node id (an index into the node list, stable while instructions are added or
    dropped around it), anything else carries its finished instruction."""
    code: int
    k: int
    jt: int | None = None          # None: not a jump
    jf: int | None = None
    insn: I.Insn | None = None

    @property
    def is_jump(self) -> bool:
        return self.jt is not None

    @property
    def is_ja(self) -> bool:
        return self.jt is not None and self.code == I.JMP | I.JA

    @property
    def is_ret(self) -> bool:
        return self.jt is None and self.code & 0x07 == I.RET

    def copy(self) -> "Node":
        return Node(self.code, self.k, self.jt, self.jf, self.insn)


def layout(nodes: list[Node]) -> list[I.Insn]:
    """Turn *nodes* (jump targets are node ids, every one forward) into a program
    with relative offsets, fixing long jumps. The jump nodes are updated in place.

    One pass from the last instruction to the first, counting for each node
    how many instructions follow it: a conditional jump's offset is then
    known when the jump is placed, and one that cannot reach (over 255) goes
    to the nearest trampoline for its target that it can reach, or to a new
    one placed right after it (the jf one first).  A trampoline is a copy of
    the target when that is a RET (no extra instruction executed), else a
    ``ja`` (32-bit offset).  Trampolines are shared: a long list of values
    whose matches all go to the same far RET gets one copy every 255
    instructions, not one per jump.
    """
    by_id = dict(enumerate(nodes))
    next_id = len(nodes)
    rev: list[int] = []                   # node ids, last instruction first
    after: dict[int, int] = {}            # node id -> instructions after it
    nearest: dict[int, int] = {}          # target id -> its trampoline closest above
    for nid in reversed(range(len(nodes))):
        node = by_id[nid]
        if node.is_jump and not node.is_ja:
            far: dict[str, int] = {}      # "jt"/"jf" -> target that needs a trampoline
            for _ in range(3):            # 0, 1 or 2 new trampolines; recount once each
                here = len(rev) + len(set(far.values()))
                want = {slot: t for slot, t in (("jf", node.jf), ("jt", node.jt))
                        if here - after[nearest.get(t, t)] - 1 > 255}
                if want == far:
                    break
                far = want
            made: set[int] = set()
            for slot in ("jt", "jf"):     # placed last-first: the jf trampoline ends up first
                target = far.get(slot)
                if target is None or target in made:
                    continue
                t = by_id[target]
                by_id[next_id] = t.copy() if t.is_ret else Node(I.JMP | I.JA, 0, target, target)
                after[next_id] = len(rev)
                rev.append(next_id)
                made.add(target)
                nearest[target] = next_id
                next_id += 1
            node.jt = nearest.get(node.jt, node.jt)
            node.jf = nearest.get(node.jf, node.jf)
        after[nid] = len(rev)
        rev.append(nid)
    out = []
    for nid in reversed(rev):
        node, here = by_id[nid], after[nid]
        if not node.is_jump:
            out.append(node.insn)
        elif node.is_ja:
            out.append(I.Insn(node.code, 0, 0, here - after[node.jt] - 1))
        else:
            out.append(I.Insn(node.code, here - after[node.jt] - 1, here - after[node.jf] - 1, node.k))
    return out

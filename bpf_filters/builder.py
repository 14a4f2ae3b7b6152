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
        # Work on absolute targets: items become (insn-or-jump, jt_index, jf_index).
        items: list[list] = []
        for idx, it in enumerate(self._items):
            if isinstance(it, _Jump):
                jt = self._resolve(it.jt) if it.jt is not None else idx + 1
                jf = self._resolve(it.jf) if it.jf is not None else idx + 1
                if jt <= idx or jf <= idx:
                    raise BuildError(f"backward jump at item {idx}")
                items.append([it.code, it.k, jt, jf])
            else:
                items.append([it.code, it.k, None, None, it])
        # node ids stay stable while positions shift: keep a list of node ids.
        return _layout(items)


def _layout(items: list[list]) -> list[I.Insn]:
    """Turn absolute-target items into relative offsets, fixing long jumps.

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
    nodes = {i: item for i, item in enumerate(items)}
    next_id = len(items)
    rev: list[int] = []                   # node ids, last instruction first
    after: dict[int, int] = {}            # node id -> instructions after it
    nearest: dict[int, int] = {}          # target id -> its trampoline closest above
    for nid in reversed(range(len(items))):
        node = nodes[nid]
        if node[2] is not None and node[0] != I.JMP | I.JA:
            slots = {}
            for _ in range(3):            # 0, 1 or 2 new trampolines; recount once each
                here = len(rev) + len(set(slots.values()))
                want = {s: node[s] for s in (3, 2)
                        if here - after[nearest.get(node[s], node[s])] - 1 > 255}
                if want == slots:
                    break
                slots = want
            made: dict[int, int] = {}
            for slot in (2, 3):           # placed last-first: the jf trampoline ends up first
                target = slots.get(slot)
                if target is None or target in made:
                    continue
                t = nodes[target]
                if t[2] is None and t[0] & 0x07 == I.RET:
                    tramp = [t[0], t[1], None, None, t[4]]
                else:
                    tramp = [I.JMP | I.JA, 0, target, target]
                nodes[next_id] = tramp
                after[next_id] = len(rev)
                rev.append(next_id)
                made[target] = nearest[target] = next_id
                next_id += 1
            for slot in (2, 3):
                node[slot] = nearest.get(node[slot], node[slot])
        after[nid] = len(rev)
        rev.append(nid)
    out = []
    for nid in reversed(rev):
        node, here = nodes[nid], after[nid]
        if node[2] is None:
            out.append(node[4])
        elif node[0] == I.JMP | I.JA:
            out.append(I.Insn(node[0], 0, 0, here - after[node[2]] - 1))
        else:
            out.append(I.Insn(node[0], here - after[node[2]] - 1, here - after[node[3]] - 1, node[1]))
    return out

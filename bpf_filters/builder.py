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
    """Turn absolute-target items into relative offsets, fixing long jumps."""
    order = list(range(len(items)))         # node ids in program order
    nodes = {i: items[i] for i in order}
    next_id = len(items)
    while True:
        pos = {nid: p for p, nid in enumerate(order)}
        bad = None
        for p, nid in enumerate(order):
            node = nodes[nid]
            if node[2] is None or node[0] == I.JMP | I.JA:
                continue
            for slot in (2, 3):
                if pos[node[slot]] - p - 1 > 255:
                    bad = (p, nid, slot)
                    break
            if bad:
                break
        if bad is None:
            break
        p, nid, slot = bad
        target = nodes[nodes[nid][slot]]
        if target[2] is None and target[0] & 0x07 == I.RET:
            tramp = [target[0], target[1], None, None, target[4]]
        else:
            tramp = [I.JMP | I.JA, 0, nodes[nid][slot], nodes[nid][slot]]
        nodes[next_id] = tramp
        order.insert(p + 1, next_id)
        nodes[nid][slot] = next_id
        # the other branch, if it was the fall-through, now skips the trampoline
        next_id += 1
    pos = {nid: p for p, nid in enumerate(order)}
    out = []
    for p, nid in enumerate(order):
        node = nodes[nid]
        if node[2] is None:
            out.append(node[4])
        elif node[0] == I.JMP | I.JA:
            out.append(I.Insn(node[0], 0, 0, pos[node[2]] - p - 1))
        else:
            out.append(I.Insn(node[0], pos[node[2]] - p - 1, pos[node[3]] - p - 1, node[1]))
    return out

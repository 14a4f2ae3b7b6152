"""Optimizer passes over assembled programs, run to a fixed point.

Each pass has the shape ``(order, nodes) -> changed`` over a graph of
``builder.Node`` whose jump targets are node ids (not offsets), so
instructions can be dropped or retargeted freely; ``relayout`` turns the
graph back into offsets with ``builder.layout`` (long-jump fixups).  Passes never change what a program returns for any input: the
property tests run optimized against unoptimized programs.
"""
from __future__ import annotations

from typing import Sequence

from . import insn as I
from .builder import Node, layout


class OptimizeError(Exception):
    """The passes did not reach a fixed point within the round limit (a bug: each
    pass only ever shrinks or shortens the program, so they must converge)."""


def to_graph(prog: Sequence[I.Insn]) -> tuple[list[int], dict[int, Node]]:
    """(order, nodes): node ids in program order, and each node by id (ids are pcs)."""
    nodes: dict[int, Node] = {}
    for pc, ins in enumerate(prog):
        if ins.code == I.JMP | I.JA:
            t = pc + 1 + ins.k
            nodes[pc] = Node(ins.code, 0, t, t)
        elif ins.is_jump:
            nodes[pc] = Node(ins.code, ins.k, pc + 1 + ins.jt, pc + 1 + ins.jf)
        else:
            nodes[pc] = Node(ins.code, ins.k, insn=ins)
    return list(range(len(prog))), nodes


def relayout(order: list[int], nodes: dict[int, Node]) -> list[I.Insn]:
    """The program of *order*, jump targets renumbered to positions, laid out."""
    remap = {nid: i for i, nid in enumerate(order)}
    items = []
    for nid in order:
        n = nodes[nid]
        items.append(Node(n.code, n.k, remap[n.jt], remap[n.jf]) if n.is_jump else n)
    return layout(items)


def thread_jumps(order: list[int], nodes: dict[int, Node]) -> bool:
    """Jumps to a ``ja`` go straight to its target; ``ja`` to a RET becomes the RET."""
    changed = False
    for nid in order:
        n = nodes[nid]
        if not n.is_jump:
            continue
        for slot in ("jt", "jf"):
            t = start = getattr(n, slot)
            while nodes[t].is_ja and nodes[t].jt != t:
                t = nodes[t].jt
            if t != start:
                setattr(n, slot, t)
                changed = True
        if n.is_ja and nodes[n.jt].is_ret:
            nodes[nid] = nodes[n.jt].copy()
            changed = True
        elif not n.is_ja and n.jt == n.jf:
            nodes[nid] = Node(I.JMP | I.JA, 0, n.jt, n.jt)
            changed = True
    return changed


def drop_unreachable(order: list[int], nodes: dict[int, Node]) -> bool:
    """Remove instructions no path reaches, and ``ja`` to the next instruction."""
    reach = set()
    for p, nid in enumerate(order):
        if p == 0:
            reach.add(nid)
        if nid not in reach:
            continue
        n = nodes[nid]
        if not n.is_jump:
            if not n.is_ret and p + 1 < len(order):
                reach.add(order[p + 1])
        else:
            reach.update((n.jt, n.jf))
    # a ja whose target is the next reachable instruction does nothing
    keep = [nid for nid in order if nid in reach]
    changed = len(keep) != len(order)
    gone: dict[int, int] = {}
    for i, nid in enumerate(keep[:-1]):
        n = nodes[nid]
        if n.is_ja and _resolve(gone, n.jt) == keep[i + 1]:
            gone[nid] = keep[i + 1]
            changed = True
    if gone:
        order[:] = [nid for nid in keep if nid not in gone]
        _redirect(nodes, order, gone)
    else:
        order[:] = keep
    return changed


def _resolve(gone: dict[int, int], nid: int) -> int:
    """Where a jump to *nid* goes once the nodes in *gone* (node -> its successor) are dropped."""
    path = []
    while nid in gone:
        path.append(nid)
        nid = gone[nid]
    for p in path:               # path compression: each chain is walked once
        gone[p] = nid
    return nid


def _redirect(nodes: dict[int, Node], order: list[int], gone: dict[int, int]) -> None:
    """Retarget every jump of *order* away from the dropped nodes, in one pass."""
    for nid in order:
        n = nodes[nid]
        if n.is_jump:
            n.jt = _resolve(gone, n.jt)
            n.jf = _resolve(gone, n.jf)


def drop_redundant_loads(order: list[int], nodes: dict[int, Node]) -> bool:
    """Drop ``ld [k]`` where the accumulator already holds [k] on every incoming path.

    One pass in program order is enough, and exact: classic BPF jumps only
    forward, so every predecessor of an instruction comes before it and has
    already told it what the accumulator holds (``meet``) when it is reached.
    Dropping a load changes no accumulator value after it (it would have
    loaded what was already there), so the facts gathered so far stay true. An
    instruction no path reaches has no facts and counts as unknown."""
    unknown = object()
    preds_seen: dict[int, object] = {}

    def meet(nid, val):
        if nid not in preds_seen:
            preds_seen[nid] = val
        elif preds_seen[nid] != val:
            preds_seen[nid] = unknown

    gone: dict[int, int] = {}
    ld_abs = I.LD | I.W | I.ABS
    for p, nid in enumerate(order):
        a_in = preds_seen.get(nid, unknown) if p else unknown
        n = nodes[nid]
        a_out = a_in
        if not n.is_jump:
            code = n.code
            if code == ld_abs:
                if a_in == n.k:
                    gone[nid] = order[p + 1]     # a load is never last: programs end in RET
                a_out = n.k
            elif code & 0x07 in (I.LD, I.ALU) or code == I.MISC | I.TXA:
                a_out = unknown
            if not n.is_ret and p + 1 < len(order):
                meet(order[p + 1], a_out)
        else:
            meet(n.jt, a_out)
            meet(n.jf, a_out)
    if not gone:
        return False
    order[:] = [nid for nid in order if nid not in gone]
    _redirect(nodes, order, gone)
    return True


PASSES = (thread_jumps, drop_unreachable, drop_redundant_loads)


def optimize(prog: Sequence[I.Insn], max_rounds: int | None = None) -> list[I.Insn]:
    """Run every pass until none changes the program; OptimizeError if that takes
    more than *max_rounds* rounds (the last round must change nothing).

    The default bound is the program's length: a round peels one link off a
    chain of collapses (a jump whose two targets meet once a ``ja`` after it is
    gone, which makes the jump before it collapse, ...), and a chain is at most
    as long as the program; random policies of 2,000 instructions needed 33
    rounds, each built-in profile 2 (one that changes, one that shows nothing
    does). Every pass removes instructions or moves
    jump targets forward, so the rounds end; hitting the bound is a bug."""
    if max_rounds is None:
        max_rounds = len(prog) + 2
    order, nodes = to_graph(prog)
    for _ in range(max_rounds):
        changed = False
        for p in PASSES:
            changed |= p(order, nodes)
        if not changed:
            return relayout(order, nodes)
    raise OptimizeError(f"the optimizer passes still change the program after {max_rounds} rounds")

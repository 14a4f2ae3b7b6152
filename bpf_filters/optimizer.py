"""Optimizer passes over assembled programs, run to a fixed point.

Each pass has the shape ``(nodes) -> changed`` over a graph whose jump targets
are node ids (not offsets), so instructions can be dropped or retargeted
freely; ``relayout`` turns the graph back into offsets (with long-jump
fixups).  Passes never change what a program returns for any input: the
property tests run optimized against unoptimized programs.
"""
from __future__ import annotations

from typing import Sequence

from . import insn as I
from .builder import _layout

# a node: [code, k, jt_id, jf_id] for jumps, [code, k, None, None, Insn] otherwise
Graph = dict


def to_graph(prog: Sequence[I.Insn]) -> tuple[list[int], dict[int, list]]:
    nodes = {}
    for pc, ins in enumerate(prog):
        if ins.code == I.JMP | I.JA:
            t = pc + 1 + ins.k
            nodes[pc] = [ins.code, 0, t, t]
        elif ins.is_jump:
            nodes[pc] = [ins.code, ins.k, pc + 1 + ins.jt, pc + 1 + ins.jf]
        else:
            nodes[pc] = [ins.code, ins.k, None, None, ins]
    return list(range(len(prog))), nodes


def relayout(order: list[int], nodes: dict[int, list]) -> list[I.Insn]:
    remap = {nid: i for i, nid in enumerate(order)}
    items = []
    for nid in order:
        n = nodes[nid]
        if n[2] is None:
            items.append(list(n))
        else:
            items.append([n[0], n[1], remap[n[2]], remap[n[3]]])
    return _layout(items)


def _is_ja(n: list) -> bool:
    return n[2] is not None and n[0] == I.JMP | I.JA


def _is_ret(n: list) -> bool:
    return n[2] is None and n[0] & 0x07 == I.RET


def thread_jumps(order: list[int], nodes: dict[int, list]) -> bool:
    """Jumps to a ``ja`` go straight to its target; ``ja`` to a RET becomes the RET."""
    changed = False
    for nid in order:
        n = nodes[nid]
        if n[2] is None:
            continue
        for slot in (2, 3):
            t = n[slot]
            while _is_ja(nodes[t]) and nodes[t][2] != t:
                t = nodes[t][2]
            if t != n[slot]:
                n[slot] = t
                changed = True
        if _is_ja(n) and _is_ret(nodes[n[2]]):
            nodes[nid] = list(nodes[n[2]])
            changed = True
        elif n[2] is not None and not _is_ja(n) and n[2] == n[3]:
            nodes[nid] = [I.JMP | I.JA, 0, n[2], n[2]]
            changed = True
    return changed


def drop_unreachable(order: list[int], nodes: dict[int, list]) -> bool:
    """Remove instructions no path reaches, and ``ja`` to the next instruction."""
    reach = set()
    for p, nid in enumerate(order):
        if p == 0:
            reach.add(nid)
        if nid not in reach:
            continue
        n = nodes[nid]
        if n[2] is None:
            if not _is_ret(n) and p + 1 < len(order):
                reach.add(order[p + 1])
        else:
            reach.update((n[2], n[3]))
    # a ja whose target is the next reachable instruction does nothing
    keep = [nid for nid in order if nid in reach]
    changed = len(keep) != len(order)
    gone: dict[int, int] = {}
    for i, nid in enumerate(keep[:-1]):
        n = nodes[nid]
        if _is_ja(n) and _resolve(gone, n[2]) == keep[i + 1]:
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


def _redirect(nodes, order, gone: dict[int, int]) -> None:
    """Retarget every jump of *order* away from the dropped nodes, in one pass."""
    for nid in order:
        n = nodes[nid]
        if n[2] is not None:
            n[2] = _resolve(gone, n[2])
            n[3] = _resolve(gone, n[3])


def drop_redundant_loads(order: list[int], nodes: dict[int, list]) -> bool:
    """Drop ``ld [k]`` where the accumulator already holds [k] on every incoming path."""
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
        if n[2] is None:
            code = n[0]
            if code == ld_abs:
                if a_in == n[1]:
                    gone[nid] = order[p + 1]     # a load is never last: programs end in RET
                a_out = n[1]
            elif code & 0x07 in (I.LD, I.ALU) or code == I.MISC | I.TXA:
                a_out = unknown
            if not _is_ret(n) and p + 1 < len(order):
                meet(order[p + 1], a_out)
        else:
            meet(n[2], a_out)
            meet(n[3], a_out)
    if not gone:
        return False
    order[:] = [nid for nid in order if nid not in gone]
    _redirect(nodes, order, gone)
    return True


PASSES = (thread_jumps, drop_unreachable, drop_redundant_loads)


def optimize(prog: Sequence[I.Insn], max_rounds: int = 20) -> list[I.Insn]:
    """Run every pass until none changes the program."""
    order, nodes = to_graph(prog)
    for _ in range(max_rounds):
        changed = False
        for p in PASSES:
            changed |= p(order, nodes)
        if not changed:
            break
    return relayout(order, nodes)

"""Turn an ``Analysis`` into what people read: the observations the profile writer takes
(``sandbox.trace.write_profile`` writes static profiles too), ``--explain`` chains and JSON.
"""
from __future__ import annotations

import os

from bpf_filters import syscalls

from ..trace.observe import NARROW, Observed
from .program import Analysis

Node = tuple[int, int]


def _name(nr: int) -> str:
    return syscalls.table("x86_64").name(nr) or f"#{nr}"


def site_text(a: Analysis, node: Node, via: str) -> str:
    """``libc.so.6 read ← main``: the object and function that make the call (and the
    wrapper it goes through), then the program's own function on the way to it."""
    r = a.reach
    obj = r.objects[node[0]]
    text = f"{obj.name} {obj.summary.label(node[1])}" + (f" {via}" if via else "")
    chain = r.chain(node)
    mine = [n for n, _ in chain if n[0] == 0 and n != node]
    if any(n[1] not in r.objects[0].summary.plt for n in mine):
        mine = [n for n in mine if n[1] not in r.objects[0].summary.plt]   # the caller, not its stub
    if mine:
        prog = r.objects[0]
        label = prog.summary.label(mine[-1][1])
        text += f" ← {label if mine[-1][1] in prog.summary.names else prog.name + ' ' + label}"
    elif chain and "stored in" in chain[0][1]:
        text += f" ← a function pointer in {chain[0][1].split('stored in ')[1].split(chr(39))[0]}'s data"
    elif chain and chain[0][0] != node:
        text += f" ← {r.label(chain[0][0])}"
    if a.ran_by:
        text = f"{os.path.basename(a.path)} ({a.ran_by}): {text}"
    return text


def best_site(sites: list) -> tuple:
    """The site to show: the first (shortest chain) that the program's own code leads to."""
    for where, node, via in sites:
        if any(n[0] == 0 for n, _ in where.reach.chain(node)[1:]):
            return where, node, via
    return sites[0]


def observed(a: Analysis) -> Observed:
    """The static findings as observations for the profile writer: every name allowed
    whole (static analysis knows no argument values), with where it is made."""
    obs = Observed()
    for nr, sites in sorted(a.all_syscalls().items()):
        obs.static[_name(nr)] = site_text(*best_site(sites))
    obs.open_args = {n for n in obs.static if n in NARROW}
    for one in [a] + a.descendants():
        label = one.path + (f" ({one.ran_by})" if one.ran_by else "")
        obs.analyzed.append(label)
        obs.widened += [w for w in one.reach.widened if w not in obs.widened]
        obs.limits += [f"{os.path.basename(one.path)}: {x}" if one is not a else x
                       for x in one.reach.limits]
    if a.kind in ("static", "static-pie"):
        obs.notes.append(f"{a.path} is statically linked: every syscall site is in its own code")
    return obs


def explain(a: Analysis, name: str) -> list[str]:
    """Why *name* is reachable: the shortest chain from what runs first to a place that
    makes it, then the other places."""
    table = syscalls.table("x86_64")
    nr = table.nr(name)
    if nr is None:
        hint = syscalls.closest(name, "x86_64")
        return [f"unknown syscall '{name}' on x86_64" + (f" (did you mean '{hint}'?)" if hint else "")]
    sites = a.all_syscalls().get(nr, [])
    if not sites:
        return [f"{name} ({nr}) is not made by any code reachable in {a.path} or its libraries"]
    where, node, via = best_site(sites)
    r = where.reach
    out = [f"{name} ({nr}) is reachable: {len(sites)} place{'s' if len(sites) != 1 else ''} make it; "
           f"the shortest chain{' in ' + where.path + ' (' + where.ran_by + ')' if where.ran_by else ''}:"]
    for i, (n, how) in enumerate(r.chain(node)):
        out.append(f"  {'  ' if i == 0 else '→ '}{r.label(n):<40} {how}")
    out.append(f"     makes the syscall{' through ' + via if via else ''}")
    others = [site_text(w, n, v) for w, n, v in sites if (w, n, v) != (where, node, via)]
    if others:
        out.append("also made in: " + "; ".join(others[:12]) + (" ..." if len(others) > 12 else ""))
    return out


def to_json(a: Analysis, default_count: int | None = None) -> dict:
    table = syscalls.table("x86_64")
    found = {}
    for nr, sites in sorted(a.all_syscalls().items()):
        where, node, via = best_site(sites)
        found[table.name(nr) or str(nr)] = {
            "nr": nr, "where": site_text(where, node, via), "places": len(sites),
            "chain": [{"function": where.reach.label(n), "how": how}
                      for n, how in where.reach.chain(node)]}
    return {
        "format": 1, "program": a.path, "arch": "x86_64", "kind": a.kind,
        "seconds": round(a.seconds, 3),
        "objects": [{"path": s.path, "key": s.key, "cached": s.cached,
                     "seconds": round(s.seconds, 3), "instructions": s.insns} for s in a.stats],
        "programs_run": [{"path": c.path, "how": c.ran_by} for c in a.descendants()],
        "syscalls": found,
        "count": len(found),
        "default_allows": default_count,
        "widened": [w for one in [a] + a.descendants() for w in one.reach.widened],
        "limits": [x for one in [a] + a.descendants() for x in one.reach.limits],
    }

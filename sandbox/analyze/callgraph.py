"""Link the summaries of a program's objects and walk everything it can reach.

Nodes are (object, function).  The walk starts at what ld.so runs: the
program's entry point, the interpreter's, every object's DT_INIT/DT_FINI,
init/fini arrays and IFUNC resolvers.  Edges:

- direct calls, tail jumps and fall-throughs inside an object;
- calls through the PLT/GOT, resolved by symbol name in load order (the
  program first, then its libraries breadth first), as ld.so binds them; an
  exported function is reached only if something reached imports it;
- a call to an IFUNC reaches its resolver and every implementation the
  resolver can return;
- indirect calls: once any reached function makes one, every function whose
  address is taken (by reached code, or stored in any loaded object's data)
  counts as called;
- ``dlopen`` with a constant name loads that library (its initializers run,
  and every function it exports may be fetched with dlsym); ``dlsym`` with a
  constant name takes that symbol's address.

What cannot be followed is collected in ``limits`` (the profile header lists
it), what is over-approximated in ``widened``.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from .loader import Loaded, load_dlopened
from .summary import Summary
from .wrappers import INTERESTING, is_libc, nss_modules

Node = tuple[int, int]                      # (object index, region)
MAX_SITES = 50


@dataclass
class Obj:
    loaded: Loaded
    summary: Summary

    @property
    def name(self) -> str:
        return self.loaded.name


@dataclass
class Reach:
    """Everything the walk found."""
    objects: list[Obj]
    syscalls: dict[int, list[tuple[Node, str]]] = field(default_factory=dict)   # nr -> sites
    parent: dict[Node, tuple[Node | None, str]] = field(default_factory=dict)
    limits: list[str] = field(default_factory=list)
    widened: list[str] = field(default_factory=list)
    execs: list[tuple[str, Node]] = field(default_factory=list)      # constant program paths
    dlopened: list[str] = field(default_factory=list)
    taken: int = 0

    def label(self, node: Node) -> str:
        obj = self.objects[node[0]]
        return f"{obj.name} {obj.summary.label(node[1])}"

    def chain(self, node: Node) -> list[tuple[Node, str]]:
        """(node, how it was reached) from a root to *node*."""
        out = []
        seen = set()
        cur: Node | None = node
        while cur is not None and cur not in seen:
            seen.add(cur)
            frm, how = self.parent[cur]
            out.append((cur, how))
            cur = frm
        return out[::-1]


class Walker:
    """One breadth-first walk; ``analyse`` turns a newly loaded object into its summary."""

    def __init__(self, objects: list[Obj], analyse: Callable[[Loaded], Summary],
                 env: dict[str, str] | None = None):
        self.r = Reach(objects)
        self.analyse = analyse
        self.env = env
        self.queue: deque[Node] = deque()
        self.taken: dict[Node, tuple[Node | None, str]] = {}
        self.indirect_from: Node | None = None
        self.exports: dict[str, list[Node]] = {}
        self.global_handle: str | None = None  # where dlopen(NULL) was reached
        self.all_exports_taken = False
        self._limits: set[str] = set()
        self._sets: dict[int, tuple[frozenset, frozenset]] = {}
        for oi in range(len(objects)):
            self._index(oi)

    # -- bookkeeping ---------------------------------------------------------------------
    def sets(self, oi: int) -> tuple[frozenset, frozenset]:
        """(IFUNC resolvers, functions with indirect calls) of object *oi*, as sets."""
        if oi not in self._sets:
            s = self.r.objects[oi].summary
            self._sets[oi] = (frozenset(s.ifunc), frozenset(s.indirect))
        return self._sets[oi]

    def _index(self, oi: int) -> None:
        for name, rids in self.r.objects[oi].summary.exports.items():
            if name not in self.exports:       # the first object in load order defines it
                self.exports[name] = [(oi, r) for r in rids]

    def limit(self, text: str) -> None:
        if text not in self._limits:
            self._limits.add(text)
            self.r.limits.append(text)

    def widen(self, text: str) -> None:
        if text not in self.r.widened:
            self.r.widened.append(text)

    def reach(self, node: Node, frm: Node | None, how: str) -> None:
        if node not in self.r.parent:
            self.r.parent[node] = (frm, how)
            self.queue.append(node)

    def call(self, node: Node, frm: Node, how: str) -> None:
        """A call to *node*; an IFUNC resolver stands for every implementation it returns."""
        self.reach(node, frm, how)
        if node[1] in self.sets(node[0])[0]:
            s = self.r.objects[node[0]].summary
            for t in s.takes.get(node[1], ()):
                self.reach((node[0], t), node, "chosen by the IFUNC resolver")

    def take(self, node: Node, frm: Node | None, how: str) -> None:
        """*node*'s address is taken: an indirect call may reach it."""
        s = self.r.objects[node[0]].summary
        if node[1] in s.plt:                    # the address of a PLT stub is the import's
            for t in self.resolve(s.plt[node[1]]):
                self.take(t, frm, how)
            return
        if node not in self.taken:
            self.taken[node] = (frm, how)
            if self.indirect_from is not None:
                self._called_indirectly(node)

    def _called_indirectly(self, node: Node) -> None:
        frm, how = self.taken[node]
        self.call(node, frm, f"called through a pointer ({how})")

    def resolve(self, name: str) -> list[Node]:
        return self.exports.get(name, [])

    # -- the walk ------------------------------------------------------------------------
    def add_object_roots(self, oi: int, program: bool, data: bool = True) -> None:
        obj = self.r.objects[oi]
        s = obj.summary
        for what, rid in s.roots:
            if what == "entry" and not (program or obj.loaded.interpreter):
                continue
            self.reach((oi, rid), None, f"{what} of {obj.name}, run by "
                       f"{'the kernel' if what == 'entry' and program else 'ld.so'}")
        if data:
            self.add_data_pointers(oi)

    def add_data_pointers(self, oi: int) -> None:
        obj = self.r.objects[oi]
        s = obj.summary
        for rid in s.data_takes:
            self.take((oi, rid), None, f"its address is stored in {obj.name}'s data")
        for name in s.data_takes_imports:
            for t in self.resolve(name):
                self.take(t, None, f"its address is stored in {obj.name}'s data")

    def run(self) -> Reach:
        # the program's own start first, so that the chains shown go through its code
        # where they can; then everything else ld.so runs and every pointer in data
        # (what is reachable does not depend on this order, only which chain is kept)
        prog = self.r.objects[0]
        if prog.summary.kind in ("static", "static-pie") and prog.summary.stripped:
            self.limit(f"{prog.name} is statically linked and stripped: its dlopen and exec "
                       "functions have no names to recognize, so libraries it loads and programs "
                       "it runs at run time are not followed")
        self.add_object_roots(0, program=True, data=False)
        self.drain()
        self.add_data_pointers(0)
        for oi in range(1, len(self.r.objects)):
            self.add_object_roots(oi, program=False)
        self.drain()
        self.r.taken = len(self.taken)
        if self.indirect_from is not None:
            self.widen(f"indirect calls (first in {self.r.label(self.indirect_from)}): each of "
                       f"the {len(self.taken)} functions whose address is taken counts as called")
        return self.r

    def drain(self) -> None:
        while self.queue:
            self.visit(self.queue.popleft())

    def visit(self, node: Node) -> None:
        oi, rid = node
        obj = self.r.objects[oi]
        s = obj.summary
        for nr in s.sys.get(rid, ()):
            self.syscall(nr, node, "")
        odd = s.unknown.get(rid, []) + s.foreign.get(rid, [])
        if odd and rid in s.mixed:
            self.limit(f"{self.r.label(node)}: code without unwind information that also holds "
                       f"data; {len(odd)} byte sequences there decode as syscall instructions "
                       "with no number set before them (most likely table data, not code)")
            odd = []
        for site in (x for x in odd if x in s.unknown.get(rid, ())):
            self.limit(f"{self.r.label(node)} makes a syscall whose number is computed at run "
                       f"time (at {obj.name}+{site:#x})")
        for site in (x for x in odd if x in s.foreign.get(rid, ())):
            self.limit(f"{self.r.label(node)} makes i386 syscalls (int 0x80 at {obj.name}+"
                       f"{site:#x}): the profile refuses every other ABI")
        for kind, via, values, site in s.consts.get(rid, ()):
            self.constant(node, kind, via, values, site)
        for t in s.calls.get(rid, ()):
            self.call((oi, t), node, "calls")
        names = list(s.imports.get(rid, ()))
        for name in names:
            targets = self.resolve(name)
            for t in targets:
                self.call(t, node, f"calls {name}")
                self.forwarded(node, t, name)
        if rid in s.takes or rid in s.takes_imports:
            how = f"its address is taken in {self.r.label(node)}"
            for t in s.takes.get(rid, ()):
                self.take((oi, t), node, how)
            for name in s.takes_imports.get(rid, ()):
                for t in self.resolve(name):
                    self.take(t, node, how)
        if self.indirect_from is None and rid in self.sets(oi)[1]:
            self.indirect_from = node
            for t in list(self.taken):
                self._called_indirectly(t)
        if rid in s.params and self.r.parent[node][1].startswith("called through a pointer"):
            for kind, k in s.params[rid]:
                if kind == "dlsym":
                    self.dlsym_computed(self.r.label(node))
                    continue
                self.limit(f"{self.r.label(node)} passes its argument {k + 1} to {kind} and may "
                           "be called through a pointer: that argument is not known")

    def forwarded(self, frm: Node, target: Node, name: str) -> None:
        """A call by name to a function that forwards an argument to a syscall, dlopen or exec
        which the caller's summary did not record (the name is not in wrappers.INTERESTING)."""
        if name in INTERESTING:
            return
        s = self.r.objects[target[0]].summary
        for kind, k in s.params.get(target[1], ()):
            if kind == "dlsym":
                self.dlsym_computed(self.r.label(frm))
                continue
            self.limit(f"{self.r.label(frm)} calls {name}, which passes its argument {k + 1} "
                       f"to {kind}: the value at that call is not known")

    def syscall(self, nr: int, node: Node, via: str) -> None:
        sites = self.r.syscalls.setdefault(nr, [])
        if len(sites) < MAX_SITES:
            sites.append((node, via))

    # -- constant arguments ----------------------------------------------------------------
    def constant(self, node: Node, kind: str, via: str, values, site: int) -> None:
        obj = self.r.objects[node[0]]
        where = f"{self.r.label(node)} (at {obj.name}+{site:#x})"
        if kind == "syscall":
            if values is None:
                self.limit(f"{where} calls {via} with a syscall number computed at run time")
            for nr in values or ():
                self.syscall(nr, node, f"{via}({nr})")
        elif kind == "dlopen":
            if values is None:
                self.dlopen_computed(node, where)
            for name in values or ():
                self.dlopen(node, name)
            if values == [] and self.global_handle is None:
                self.global_handle = where
        elif kind in ("dlsym", "dlsym-global"):
            if values is None:
                self.dlsym_computed(where, kind == "dlsym-global")
            for name in values or ():
                for t in self.resolve(name):
                    self.take(t, node, f"dlsym(\"{name}\") in {self.r.label(node)}")
        elif kind == "exec":
            if values is None:
                self.limit(f"{where} runs a program named at run time ({via}): its syscalls are "
                           "not in this profile; add the programs it runs with --exec PROGRAM")
            for path in values or ():
                if (path, node) not in self.r.execs:
                    self.r.execs.append((path, node))

    def dlopen_computed(self, node: Node, where: str) -> None:
        obj = self.r.objects[node[0]]
        if is_libc(obj.summary.name, obj.loaded.path):
            mods = [m for m in nss_modules() if self.dlopen(node, m, quiet=True)]
            self.limit(f"{where}: glibc loads NSS modules and iconv (gconv) modules by computed "
                       f"names; followed the NSS modules of /etc/nsswitch.conf"
                       f"{' (' + ', '.join(mods) + ')' if mods else ''}, not gconv modules")
            return
        self.limit(f"{where} loads a library named at run time (dlopen): what it does is not in "
                   "this profile")

    def dlsym_computed(self, where: str, global_scope: bool = False) -> None:
        """dlsym with a name computed at run time.  Its handle comes from dlopen (whose
        library's exports are all taken already), or it is RTLD_DEFAULT/RTLD_NEXT, or
        dlopen(NULL) made it: then any export of any object may be fetched."""
        if (global_scope or self.global_handle) and not self.all_exports_taken:
            self.all_exports_taken = True
            scope = "RTLD_DEFAULT" if global_scope else f"dlopen(NULL) in {self.global_handle}"
            self.widen(f"{where} looks up a symbol by a computed name, and the handle may be the "
                       f"global scope ({scope}): every function any loaded object exports "
                       "counts as called through a pointer")
            for name, nodes in list(self.exports.items()):
                for t in nodes:
                    self.take(t, None, f"any export may be fetched with dlsym ({where})")

    def dlopen(self, node: Node, name: str, quiet: bool = False) -> bool:
        objs = self.r.objects
        requester = objs[node[0]].loaded
        loaded = [o.loaded for o in objs]
        new = load_dlopened(name, requester, loaded, self.env)
        if not new:
            known = [i for i, o in enumerate(objs) if o.loaded.name == name
                     or o.summary.name == name or o.loaded.path == name]
            if known:                            # already loaded: its exports may be fetched
                self._take_exports(known[0], name)
                return True
            if not quiet:
                self.limit(f"{self.r.label(node)} calls dlopen(\"{name}\"), which is not found "
                           "here: nothing of it is in this profile")
            return False
        for lib in new:
            objs.append(Obj(lib, self.analyse(lib)))
            oi = len(objs) - 1
            self._index(oi)
            self.r.dlopened.append(lib.path)
            self.add_object_roots(oi, program=False)
        self._take_exports(len(objs) - len(new), name)
        return True

    def _take_exports(self, oi: int, name: str) -> None:
        obj = self.r.objects[oi]
        for rids in obj.summary.exports.values():
            for rid in rids:
                self.take((oi, rid), None, f"{os.path.basename(name)} is loaded with dlopen and "
                          "its exports may be fetched with dlsym")


def walk(objects: list[Obj], analyse: Callable[[Loaded], Summary],
         env: dict[str, str] | None = None) -> Reach:
    """Everything reachable in the program made of *objects* (the program first)."""
    return Walker(objects, analyse, env).run()

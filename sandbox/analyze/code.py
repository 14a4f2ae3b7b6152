"""Summarize one ELF object's code: its functions, their syscalls, calls and taken addresses.

1. Split the executable sections into functions ("regions"): the FDE ranges of
   ``.eh_frame``; code no FDE covers is cut at symbols, the entry point and
   init/fini functions; PLT sections are cut into their stubs.
2. Disassemble each region with capstone (``disasm_lite``: ~1 us per
   instruction) and record in one pass: ``syscall`` sites, direct calls and
   jumps out of the region (an edge to the region containing the target, so a
   ``.cold`` part or a second entry point is never lost), calls through the
   GOT (imports by symbol), indirect calls and jumps, and code addresses the
   region takes (rip-relative ``lea``/``mov``; immediates in position-dependent
   code).
3. Run the constant propagation (``dataflow``) only where a value matters:
   syscall sites, calls to the functions ``wrappers`` names, and calls to
   functions found to pass an argument on to a syscall (a ``syscall(3)``-style
   wrapper is found from its own code: its number comes from an argument
   register), iterated until no new forwarding function appears.
4. Function pointers in data: relocations (RELATIVE, RELR) and, in
   position-dependent files, 8-byte words that point into code.  A data
   pointer to the middle of an FDE-bounded function is a jump-table or
   computed-goto label of that function, not a function pointer.
"""
from __future__ import annotations

import bisect
import re
import time

import capstone

from bpf_filters import syscalls

from . import dataflow
from .elf import (R_64, R_GLOB_DAT, R_IRELATIVE, R_JUMP_SLOT, STT_FUNC, STT_GNU_IFUNC, Elf)
from .ehframe import fde_ranges
from .summary import Summary
from .wrappers import (ARG_REGS, INTERESTING, NORETURN, START_MAIN, STRING_ARGS,
                       SYSCALL_WRAPPERS, xid_site)

_JCC = ("jo", "jno", "jb", "jae", "je", "jne", "jbe", "ja", "js", "jns", "jp", "jnp", "jl", "jge",
        "jle", "jg", "jrcxz", "jecxz", "loop", "loope", "loopne")
_JMPS = frozenset({"jmp", "notrack jmp", "bnd jmp"})
_CALLS = frozenset({"call", "notrack call", "bnd call"})
BRANCHES = frozenset(_JCC) | _JMPS | _CALLS
_HEX = re.compile(r"0x[0-9a-f]+")
_PAD = frozenset({"nop", "int3"})
_RETS = frozenset({"ret", "repz ret", "bnd ret", "retf", "retfq", "iretq", "iretd"})
_SYMBOL_RELOCS = (R_GLOB_DAT, R_JUMP_SLOT, R_64)
_NAMED_TYPES = (0, STT_FUNC, STT_GNU_IFUNC)        # NOTYPE, FUNC, IFUNC
_BIG_GAPS = 16384          # bytes of code without FDEs above which call targets cut it too


class _Scan:
    """Working state while one object is summarized (thrown away afterwards)."""

    def __init__(self, elf: Elf, summary: Summary, signal: set[int] = frozenset()):
        self.elf, self.s = elf, summary
        self.signal = signal
        self.md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        self.code_ranges = [(c.addr, c.addr + len(c.data)) for c in elf.code]
        self.plt_ranges = [(c.addr, c.addr + len(c.data)) for c in elf.code
                           if c.name.startswith(".plt")]
        self.gaps = set(summary.gaps)
        self.sys_sites: dict[int, list[int]] = {}
        self.sites: dict[int, list[tuple[int, str]]] = {}        # region -> (site, known name)
        self.local_calls: list[tuple[int, int, int]] = []         # (caller, site, callee)
        self.flows: dict[int, tuple[list, dict]] = {}
        self.fixed = not elf.position_independent
        self.entered: dict[int, set] = {}        # region -> how else it is entered
        self.returns: set[int] = set()            # regions with a way back to their caller
        self.tails: dict[int, set[int]] = {}      # region -> regions it jumps to
        self.call_targets: dict[int, object] = {}  # call site -> region or imported name
        self.noreturn: set[int] = set()
        self.aliases: dict[int, set[str]] = {}

    # -- addresses --------------------------------------------------------------------
    def in_code(self, addr: int) -> bool:
        return any(a <= addr < b for a, b in self.code_ranges)

    def function_at(self, addr: int, exact_or_gap: bool) -> int | None:
        rid = self.s.region_at(addr)
        if rid is None or (exact_or_gap and self.s.starts[rid] != addr and rid not in self.gaps):
            return None
        return rid

    def code(self, rid: int) -> list[dataflow.Insn]:
        """The instructions of region *rid* (disassembled again; only for a few regions)."""
        start, end = self.s.starts[rid], self.s.ends[rid]
        for sec in self.elf.code:
            if sec.addr <= start < sec.addr + len(sec.data):
                return list(_disasm(self.md, sec.data[start - sec.addr:end - sec.addr], start))
        return []


def _disasm(md, data: bytes, start: int):
    """Every instruction of *data*; an undecodable byte is skipped, as a linear sweep must
    (``_scan_region`` has the same loop inline)."""
    pos, end = start, start + len(data)
    while pos < end:
        for insn in md.disasm_lite(data[pos - start:], pos):
            yield insn
            pos = insn[0] + insn[1]
        if pos < end:                           # capstone stopped at a byte it cannot decode
            pos += 1


# -- 1. regions ---------------------------------------------------------------------------

def regions(elf: Elf) -> tuple[list[int], list[int], list[int], set[int]]:
    """(starts, ends, gap regions, signal trampolines) covering every executable section."""
    fdes = fde_ranges(*elf.eh_frame) if elf.eh_frame else []
    cuts = {s.value for s in elf.symbols if s.defined and s.type in _NAMED_TYPES}
    cuts |= {a for _, a in elf.init} | {elf.entry}
    cuts |= {r.addend for r in elf.relocs.values() if r.type == R_IRELATIVE}
    cuts |= _code_pointers(elf)
    md = None
    out: list[tuple[int, int, bool]] = []
    signal: set[int] = set()
    for sec in sorted(elf.code, key=lambda c: c.addr):
        lo, hi = sec.addr, sec.addr + len(sec.data)
        if sec.name.startswith(".plt"):
            step = sec.entsize if sec.entsize >= 8 else 16
            out += [(a, min(a + step, hi), True) for a in range(lo, hi, step)]
            continue
        mine = fdes[bisect.bisect_left(fdes, (lo, 0, False)):]
        covered = sum(min(e, hi) - max(s, lo) for s, e, _ in mine if s < hi and e > lo)
        extra = set()
        if hi - lo - covered > _BIG_GAPS:
            # much code without unwind tables (busybox): functions start at call targets
            md = md or capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
            extra = {int(ops, 16) for _, _, m, ops in md.disasm_lite(sec.data, lo)
                     if m == "call" and ops[:2] == "0x"}
        here = sorted(cuts | extra)
        cursor = lo
        for s, e, sig in mine:
            if s >= hi:
                break
            s, e = max(s, cursor), min(e, hi)
            if e <= s:
                continue
            if s > cursor:
                out += _cut(cursor, s, here)
            if sig:
                signal.add(len(out))
            out.append((s, e, False))
            cursor = e
        if cursor < hi:
            out += _cut(cursor, hi, here)
    return ([a for a, _, _ in out], [b for _, b, _ in out], [i for i, r in enumerate(out) if r[2]],
            signal)


def _code_pointers(elf: Elf) -> set[int]:
    """Code addresses stored in data (function starts, where unwind tables are missing)."""
    ranges = [(c.addr, c.addr + len(c.data)) for c in elf.code]
    return {v for _, v, _ in elf.data_pointers()
            if v is not None and any(a <= v < b for a, b in ranges)}


def _cut(lo: int, hi: int, cuts: list[int]) -> list[tuple[int, int, bool]]:
    """[lo, hi) cut at the sorted *cuts* inside it."""
    points = [lo] + cuts[bisect.bisect_right(cuts, lo):bisect.bisect_left(cuts, hi)] + [hi]
    return [(a, b, True) for a, b in zip(points, points[1:])]


# -- 2. the linear pass -------------------------------------------------------------------

def _scan_region(sc: _Scan, rid: int, data: bytes, start: int, end: int) -> int:
    """One pass over the instructions of region *rid* (the loop every instruction of every
    object goes through: only cheap tests for the common case)."""
    s = sc.s
    calls, imports, takes, timports = set(), set(), set(), set()
    indirect = False
    last = ""
    n = 0
    skipped: list[int] = []
    branches, fixed, disasm = BRANCHES, sc.fixed, sc.md.disasm_lite
    pos = start
    while pos < end:
        for addr, size, mnem, ops in disasm(data[pos - start:], pos):
            pos = addr + size
            n += 1
            if mnem in branches:
                last = mnem
                _branch(sc, rid, addr, size, mnem, ops, start, end, calls, imports, takes,
                        timports)
                if ops[:2] != "0x" and "rip" not in ops:
                    indirect = True
                continue
            if mnem == "syscall":
                sc.sys_sites.setdefault(rid, []).append(addr)
            elif mnem == "sysenter" or (mnem == "int" and ops == "0x80"):
                s.foreign.setdefault(rid, []).append(addr)
            elif "rip" in ops:
                _slot(sc, rid, addr, dataflow.rip_target(addr, size, ops), False, calls, imports,
                      takes, timports)
            elif fixed and "0x" in ops and mnem in ("mov", "movabs", "push", "lea"):
                for h in _HEX.findall(ops):
                    value = int(h, 16)
                    if sc.in_code(value):
                        other = sc.function_at(value, True)
                        if other is not None and other != rid:
                            takes.add(other)
            if mnem not in _PAD and not (mnem[0] in "dx" and dataflow.is_padding(mnem, ops)):
                last = mnem
                if mnem in _RETS:
                    sc.returns.add(rid)
        if pos < end:                           # capstone stopped at a byte it cannot decode
            skipped.append(pos)
            pos += 1
    base = last.split(" ")[-1]
    if last and base not in ("jmp", "ret", "hlt", "ud2", "iretq") and \
            (rid in sc.gaps or base != "call") and rid + 1 < len(s.starts) \
            and s.starts[rid + 1] == end:
        calls.add(rid + 1)                     # falls through into the next region
        sc.tails.setdefault(rid, set()).add(rid + 1)
    calls.discard(rid)
    for attr, value in (("calls", calls), ("imports", imports), ("takes", takes - {rid}),
                        ("takes_imports", timports)):
        if value:
            getattr(s, attr)[rid] = sorted(value)
    if indirect:
        s.indirect.append(rid)
    if skipped and rid in sc.gaps:
        s.mixed.append(rid)                     # bytes no instruction decodes: data in .text
    return n


def _branch(sc: _Scan, rid: int, addr: int, size: int, mnem: str, ops: str, start: int,
            end: int, calls: set, imports: set, takes: set, timports: set) -> None:
    """A call or jump at *addr* in region *rid* spanning [start, end)."""
    s = sc.s
    if ops[:2] == "0x":
        target = int(ops, 16)
        if start <= target < end:
            return
        other = s.region_at(target)
        if other is None:
            return
        calls.add(other)
        sc.local_calls.append((rid, addr, other))
        if mnem in _CALLS:
            sc.call_targets[addr] = other
        else:
            sc.tails.setdefault(rid, set()).add(other)
        name = s.plt.get(other)                 # named local callees: see _values
        if name in INTERESTING:
            sc.sites.setdefault(rid, []).append((addr, name))
    elif "rip" in ops:
        _slot(sc, rid, addr, dataflow.rip_target(addr, size, ops), True, calls, imports,
              takes, timports)
        if mnem not in _CALLS:
            sc.returns.add(rid)                 # a tail call we do not follow here
    elif mnem not in _CALLS:
        sc.returns.add(rid)                     # an indirect jump: may be a tail call


def _slot(sc: _Scan, rid: int, addr: int, target: int | None, branch: bool,
          calls: set, imports: set, takes: set, timports: set) -> None:
    """A rip-relative reference from region *rid* to *target*: a GOT slot, code or data."""
    if target is None:
        return
    elf, s = sc.elf, sc.s
    rel = elf.relocs.get(target)
    if rel is not None and rel.symbol and rel.type in _SYMBOL_RELOCS:
        if branch:
            imports.add(rel.symbol)
            sc.call_targets[addr] = rel.symbol
            if any(a <= addr < b for a, b in sc.plt_ranges):
                s.plt[rid] = rel.symbol         # the stub itself: its callers are the sites
            elif rel.symbol in INTERESTING:
                sc.sites.setdefault(rid, []).append((addr, rel.symbol))
        else:
            timports.add(rel.symbol)
        return
    if rel is not None or elf.in_got(target):
        value = elf.pointer(target)[1]          # a local pointer, or an IFUNC's resolver
    elif sc.in_code(target) and not branch:
        value = target
    else:
        return
    other = s.region_at(value) if sc.in_code(value) else None
    if other is None or other == rid:
        return
    if branch:
        calls.add(other)
        sc.local_calls.append((rid, addr, other))
        sc.call_targets[addr] = other
    else:
        takes.add(other)


# -- 3. values ------------------------------------------------------------------------------

def _flow(sc: _Scan, rid: int, sites: set[int]) -> dict[int, dict]:
    insns, done = sc.flows.get(rid, (None, {}))
    if insns is None:
        insns = sc.code(rid)
    missing = sites - done.keys()
    if missing:
        stops = frozenset(a for a, _, m, _ in insns if m in _CALLS and _never_returns(sc, a))
        done.update(dataflow.propagate(insns, sc.s.starts[rid], sc.s.ends[rid],
                                       sites | done.keys(), stops))
    sc.flows[rid] = (insns, done)
    return {a: done.get(a, {}) for a in sites}


def _never_returns(sc: _Scan, site: int) -> bool:
    target = sc.call_targets.get(site)
    if isinstance(target, str):
        return target in NORETURN
    if target is not None and target in sc.s.plt:
        return sc.s.plt[target] in NORETURN
    return target in sc.noreturn


def _find_noreturn(sc: _Scan) -> None:
    """Regions that never return: no ret, no tail call through a pointer or the GOT, and
    every jump out of them goes to another such region (a fixed point from above)."""
    s = sc.s
    candidates = {r for r in range(len(s.starts)) if r not in sc.returns and r not in s.plt}
    changed = True
    while changed:
        changed = False
        for r in list(candidates):
            if any(t not in candidates for t in sc.tails.get(r, ())):
                candidates.discard(r)
                changed = True
    sc.noreturn = candidates


def _numbers(value) -> list[int] | None:
    if not isinstance(value, frozenset):
        return None
    table = syscalls.table("x86_64")
    if all(table.name(v) is not None for v in value):
        return sorted(value)
    return None


def _strings(elf: Elf, value) -> list[str] | None:
    if not isinstance(value, frozenset):
        return None
    out = []
    for v in sorted(value):
        if v == 0:
            continue                            # NULL: dlopen(NULL) is the program itself
        text = elf.cstring(v)
        if text is None:
            return None
        out.append(text)
    return out


def _values(sc: _Scan) -> None:
    """Syscall numbers at each site, constant arguments at calls, forwarding functions."""
    s, elf = sc.s, sc.elf
    params: dict[int, set[tuple[str, int]]] = {}
    for caller, _site, callee in sc.local_calls:
        sc.entered.setdefault(callee, set()).add(caller)
    for rid in list(s.names) + s.data_takes + [r for _, r in s.roots] + \
            [t for ts in s.takes.values() for t in ts]:
        sc.entered.setdefault(rid, set()).add(-1)
    for rid, sites in sorted(sc.sys_sites.items()):
        states = _flow(sc, rid, set(sites))
        for site in sites:
            rax = states[site].get("rax")
            nrs = _numbers(rax)
            if nrs is not None:
                s.sys[rid] = sorted(set(s.sys.get(rid, [])) | set(nrs))
            elif isinstance(rax, tuple):
                params.setdefault(rid, set()).add(("syscall", rax[1]))
            elif not _second_look(sc, rid, site):
                s.unknown.setdefault(rid, []).append(site)
    for rid, names in sc.aliases.items():       # functions the table knows by name
        for name in names:
            if name in SYSCALL_WRAPPERS:
                params.setdefault(rid, set()).add(("syscall", SYSCALL_WRAPPERS[name]))
            elif name in STRING_ARGS:
                params.setdefault(rid, set()).add(STRING_ARGS[name])
    callers: dict[int, list[tuple[int, int]]] = {}
    for caller, site, callee in sc.local_calls:
        callers.setdefault(callee, []).append((caller, site))
    for rid, sites in sorted(sc.sites.items()):   # calls to imports and PLT stubs by name
        states = _flow(sc, rid, {a for a, _ in sites})
        for site, name in sites:
            if name == START_MAIN:
                rdi = states[site].get("rdi")
                if isinstance(rdi, frozenset) and len(rdi) == 1 and s.main is None:
                    s.main = sc.function_at(next(iter(rdi)), True)
                continue
            kind, k = (("syscall", SYSCALL_WRAPPERS[name]) if name in SYSCALL_WRAPPERS
                       else STRING_ARGS[name])
            _record(sc, rid, site, name, kind, states[site], k, params)
    work = sorted(params)
    seen_edges: set[tuple[int, int, str, int]] = set()
    while work:
        callee = work.pop()
        for kind, k in sorted(params.get(callee, ())):
            for caller, site in callers.get(callee, ()):
                if (caller, site, kind, k) in seen_edges or caller == callee:
                    continue
                seen_edges.add((caller, site, kind, k))
                state = _flow(sc, caller, {site})[site]
                value = state.get(ARG_REGS[k])
                if isinstance(value, tuple) and (kind, value[1]) not in params.get(caller, ()):
                    params.setdefault(caller, set()).add((kind, value[1]))
                    work.append(caller)
                elif not isinstance(value, tuple):
                    _record(sc, caller, site, s.label(callee), kind, state, k, params)
    s.params = {r: sorted(v) for r, v in sorted(params.items())}
    if s.main is None and s.kind != "library" and s.region_at(elf.entry) is not None:
        _find_main(sc)


def _second_look(sc: _Scan, rid: int, site: int) -> bool:
    """Recover the number at a site the first pass could not: code that an FDE boundary
    cuts in two, or a signal trampoline whose FDE starts before its code.  True when the
    site is accounted for (its numbers added to the summary)."""
    s = sc.s
    insns = sc.code(rid)
    if rid in sc.signal:
        # glibc starts a restorer's FDE one byte before its code (.LSTART_name - 1, so
        # that unwinders that look up pc - 1 find it): decode from the next bytes too
        for skip in range(1, 4):
            alt = [i for i in _disasm(sc.md, _bytes(sc, rid)[skip:], s.starts[rid] + skip)]
            if any(i[0] == site for i in alt):
                nrs = _numbers(dataflow.propagate(alt, alt[0][0], s.ends[rid], {site})
                               .get(site, {}).get("rax"))
                if nrs:
                    s.sys[rid] = sorted(set(s.sys.get(rid, [])) | set(nrs))
                    return True
    entered_only_by_fallthrough = (
        rid in sc.gaps and rid > 0 and s.ends[rid - 1] == s.starts[rid]
        and rid in s.calls.get(rid - 1, ()) and not sc.entered.get(rid, set()) - {rid - 1})
    if entered_only_by_fallthrough:
        # glibc's clone/clone3 end their FDE (cfi_endproc) between `mov eax, NR` and
        # `syscall`: the number is set at the end of the function before
        joined = sc.code(rid - 1) + insns
        nrs = _numbers(dataflow.propagate(joined, s.starts[rid - 1], s.ends[rid], {site})
                       .get(site, {}).get("rax"))
        if nrs:
            s.sys[rid] = sorted(set(s.sys.get(rid, [])) | set(nrs))
            return True
    if xid_site(insns, site):
        return True
    return False


def _bytes(sc: _Scan, rid: int) -> bytes:
    start, end = sc.s.starts[rid], sc.s.ends[rid]
    for sec in sc.elf.code:
        if sec.addr <= start < sec.addr + len(sec.data):
            return sec.data[start - sec.addr:end - sec.addr]
    return b""


_GLOBAL_HANDLES = frozenset({0, dataflow.M64})      # RTLD_DEFAULT, RTLD_NEXT


def _record(sc: _Scan, rid: int, site: int, via: str, kind: str, state: dict, k: int,
            params) -> None:
    """Note the constant argument *k* of a call to *via* (a syscall number, or the name of a
    library, symbol or program) at *site*."""
    value = state.get(ARG_REGS[k])
    if kind == "dlsym" and isinstance(state.get("rdi"), frozenset) and \
            state["rdi"] <= _GLOBAL_HANDLES:
        kind = "dlsym-global"                   # dlsym(RTLD_DEFAULT or RTLD_NEXT, ...)
    if isinstance(value, tuple):                # the caller forwards its own argument
        params.setdefault(rid, set()).add((kind, value[1]))
        return
    if value is None and any(p == kind for p, _ in params.get(rid, ())):
        # a function that forwards its argument to *kind* elsewhere (execvp searching
        # PATH for its file): the value comes from its callers, which are recorded
        return
    found = _numbers(value) if kind == "syscall" else _strings(sc.elf, value)
    sc.s.consts.setdefault(rid, []).append((kind, via, found, site))


def _find_main(sc: _Scan) -> None:
    """In a static program, _start passes main to __libc_start_main in rdi at its first call."""
    entry = sc.s.region_at(sc.elf.entry)
    insns = sc.code(entry)
    calls = [a for a, _, m, _ in insns if m in _CALLS]
    if calls:
        rdi = _flow(sc, entry, {calls[0]})[calls[0]].get("rdi")
        if isinstance(rdi, frozenset) and len(rdi) == 1:
            sc.s.main = sc.function_at(next(iter(rdi)), True)


# -- 4. data and names ----------------------------------------------------------------------

def _data_pointers(sc: _Scan) -> None:
    """Functions whose address data holds (taken whatever code runs), imported functions
    named by data relocations, and IFUNC resolvers (relocations and exported IFUNCs)."""
    elf, s = sc.elf, sc.s
    taken: set[int] = set()
    timports: set[str] = set()
    for _where, value, symbol in elf.data_pointers():
        if symbol is not None:
            timports.add(symbol)
        elif value is not None and sc.in_code(value):
            rid = sc.function_at(value, True)
            if rid is not None:
                taken.add(rid)
    resolvers = {s.region_at(r.addend) for r in elf.relocs.values() if r.type == R_IRELATIVE}
    resolvers |= {s.region_at(sym.value) for sym in elf.symbols
                  if sym.dynamic and sym.defined and sym.type == STT_GNU_IFUNC}
    resolvers.discard(None)
    s.data_takes = sorted(taken - resolvers)
    s.data_takes_imports = sorted(timports)
    s.ifunc = sorted(resolvers)


def _names(elf: Elf, s: Summary) -> dict[int, set[str]]:
    """Display names (one per function, the plainest alias) and the exported functions;
    returns every name of each function (for the knowledge in ``wrappers``)."""
    cands: dict[int, list[str]] = {}
    for sym in elf.symbols:
        if not sym.defined or sym.type not in _NAMED_TYPES:
            continue
        rid = s.region_at(sym.value)
        if rid is None:
            continue
        if sym.dynamic and sym.type in (STT_FUNC, STT_GNU_IFUNC):
            if rid not in s.exports.setdefault(sym.name, []):
                s.exports[sym.name].append(rid)
        if s.starts[rid] == sym.value and sym.type != 0:
            cands.setdefault(rid, []).append(sym.name)
    for rid, names in cands.items():
        s.names[rid] = min(names, key=lambda n: (n.startswith("_"), n.startswith("__"), len(n), n))
    return {rid: set(names) for rid, names in cands.items()}


def summarize(elf: Elf, name: str, key: str) -> Summary:
    """The summary of *elf* (cache key *key*)."""
    began = time.perf_counter()
    starts, ends, gaps, signal = regions(elf)
    s = Summary(name, key, elf.kind, starts, ends, gaps)
    aliases = _names(elf, s)
    s.stripped = not any(sym.type in (STT_FUNC, STT_GNU_IFUNC) for sym in elf.symbols)
    sc = _Scan(elf, s, signal)
    sc.aliases = aliases
    plt_first = sorted(elf.code, key=lambda c: (not c.name.startswith(".plt"), c.addr))
    for sec in plt_first:
        lo = bisect.bisect_left(starts, sec.addr)
        hi = bisect.bisect_left(starts, sec.addr + len(sec.data))
        for rid in range(lo, hi):
            data = sec.data[starts[rid] - sec.addr:ends[rid] - sec.addr]
            s.insns += _scan_region(sc, rid, data, starts[rid], ends[rid])
    _data_pointers(sc)
    _find_noreturn(sc)
    entry = s.region_at(elf.entry) if elf.entry else None
    if entry is not None:
        s.roots.append(("entry", entry))
    for what, addr in elf.init:
        rid = s.region_at(addr)
        if rid is not None:
            s.roots.append((what, rid))
    for rel in elf.relocs.values():
        rid = s.region_at(rel.addend) if rel.type == R_IRELATIVE else None
        if rid is not None and ("ifunc resolver", rid) not in s.roots:
            s.roots.append(("ifunc resolver", rid))
    _values(sc)
    if s.main is not None:
        s.names.setdefault(s.main, "main")
    s.seconds = round(time.perf_counter() - began, 3)
    return s

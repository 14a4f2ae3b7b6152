"""Exact split of each syscall's argument space into per-action regions (BDDs),
the shared core of export and import."""
from __future__ import annotations

import itertools
from dataclasses import dataclass


from bpf_filters import syscalls
from bpf_filters.ir import M32, M64, Action, Cond, Rule

from ..policy import Profile, lower
from ..policy.lower import resolve_arches



OCI_ACTION = {"allow": "SCMP_ACT_ALLOW", "log": "SCMP_ACT_LOG", "errno": "SCMP_ACT_ERRNO",
              "trap": "SCMP_ACT_TRAP", "kill-process": "SCMP_ACT_KILL_PROCESS",
              "kill-thread": "SCMP_ACT_KILL_THREAD", "notify": "SCMP_ACT_NOTIFY"}
OCI_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "i386": "SCMP_ARCH_X86", "x32": "SCMP_ARCH_X32",
            "aarch64": "SCMP_ARCH_AARCH64"}
SYSTEMD_ARCH = {"x86_64": "x86-64", "i386": "x86", "x32": "x32", "aarch64": "arm64"}
PERMISSIVE = ("allow", "log")
MAX_ENTRIES_PER_SYSCALL = 256
Atom = tuple[str, int, int]          # (SCMP_CMP_*, value, valueTwo)


class Bdd:
    """Reduced ordered BDDs over the argument bits; variable ``arg*64 + 63 - bit``.

    Node 0 is the empty set, node 1 every argument vector.  Sets over one
    argument use only that argument's 64 variables (``first``, ``count`` ...).
    """

    def __init__(self) -> None:
        self.var, self.lo, self.hi = [384, 384], [0, 1], [0, 1]
        self._unique: dict[tuple, int] = {}
        self._memo: dict[tuple, int] = {}

    def mk(self, v: int, lo: int, hi: int) -> int:
        if lo == hi:
            return lo
        key = (v, lo, hi)
        n = self._unique.get(key)
        if n is None:
            n = self._unique[key] = len(self.var)
            self.var.append(v)
            self.lo.append(lo)
            self.hi.append(hi)
        return n

    def both(self, a: int, b: int) -> int:
        return self._apply(True, a, b)

    def either(self, a: int, b: int) -> int:
        return self._apply(False, a, b)

    def _apply(self, conj: bool, a: int, b: int) -> int:
        absorb, unit = (0, 1) if conj else (1, 0)
        if a == absorb or b == absorb:
            return absorb
        if a == unit or a == b:
            return b
        if b == unit:
            return a
        key = (conj, min(a, b), max(a, b))
        r = self._memo.get(key)
        if r is None:
            v = min(self.var[a], self.var[b])
            a0, a1 = (self.lo[a], self.hi[a]) if self.var[a] == v else (a, a)
            b0, b1 = (self.lo[b], self.hi[b]) if self.var[b] == v else (b, b)
            r = self._memo[key] = self.mk(v, self._apply(conj, a0, b0), self._apply(conj, a1, b1))
        return r

    def neg(self, a: int) -> int:
        if a < 2:
            return 1 - a
        key = ("not", a)
        r = self._memo.get(key)
        if r is None:
            r = self._memo[key] = self.mk(self.var[a], self.neg(self.lo[a]), self.neg(self.hi[a]))
        return r

    def compare(self, arg: int, op: str, value: int, width: int = 64, mask: int = M64) -> int:
        """{args: (args[arg] & mask) OP value} over the low *width* bits (ranges: full mask)."""
        base = arg * 64 + 63
        if op in ("==", "!=", "&==", "&!="):
            node = 1
            for b in range(width):
                if mask >> b & 1:
                    node = self.mk(base - b, 0, node) if value >> b & 1 else self.mk(base - b, node, 0)
            return node if op in ("==", "&==") else self.neg(node)
        less = op in ("<", "<=")
        node = 0 if op in ("<", ">") else 1          # all compared bits equal
        for b in range(width):                       # least significant bit first
            if value >> b & 1:
                node = self.mk(base - b, 1 if less else 0, node)
            else:
                node = self.mk(base - b, node, 0 if less else 1)
        return node

    def project(self, n: int, first: int) -> int:
        """*n* with every variable from *first* on existentially dropped (arguments first//64 on)."""
        memo: dict[int, int] = {}

        def go(n: int) -> int:
            if n < 2 or self.var[n] >= first:
                return 0 if n == 0 else 1        # a reduced diagram other than 0 has a path to 1
            if n not in memo:
                memo[n] = self.mk(self.var[n], go(self.lo[n]), go(self.hi[n]))
            return memo[n]
        return go(n)

    # --- sets over one argument
    def support(self, n: int) -> set[int]:
        """The variables set *n* depends on."""
        out, stack, seen = set(), [n], set()
        while stack:
            n = stack.pop()
            if n > 1 and n not in seen:
                seen.add(n)
                out.add(self.var[n])
                stack += [self.lo[n], self.hi[n]]
        return out

    def first(self, n: int, arg: int) -> int:
        """The smallest value in set *n* (untested bits are 0)."""
        value = 0
        while n > 1:
            if self.lo[n] == 0:
                value |= 1 << (arg * 64 + 63 - self.var[n])
                n = self.hi[n]
            else:
                n = self.lo[n]
        return value

    def count(self, n: int, arg: int) -> int:
        end = (arg + 1) * 64
        memo: dict[int, int] = {}

        def go(n: int, level: int) -> int:
            if n < 2:
                return n << (end - level)
            if n not in memo:
                v = self.var[n]
                memo[n] = go(self.lo[n], v + 1) + go(self.hi[n], v + 1)
            return memo[n] << (self.var[n] - level)
        return go(n, arg * 64)

    def intervals(self, s: int, arg: int, limit: int) -> list[tuple[int, int]] | None:
        out, start, gaps = [], 0, self.neg(s)
        while True:
            t = self.both(s, self.compare(arg, ">=", start))
            if t == 0:
                return out
            lo = self.first(t, arg)
            g = self.both(gaps, self.compare(arg, ">=", lo))
            hi = M64 if g == 0 else self.first(g, arg) - 1
            out.append((lo, hi))
            if len(out) > limit:
                return None
            if hi == M64:
                return out
            start = hi + 1

    def cubes(self, s: int, arg: int, limit: int) -> list[tuple[int, int]] | None:
        """Set *s* as (mask, value) pairs: the paths to 1."""
        out: list[tuple[int, int]] = []

        def go(n: int, mask: int, value: int) -> bool:
            if n == 0:
                return True
            if n == 1:
                out.append((mask, value))
                return len(out) <= limit
            bit = 1 << (arg * 64 + 63 - self.var[n])
            return go(self.lo[n], mask | bit, value) and go(self.hi[n], mask | bit, value | bit)
        return out if go(s, 0, 0) else None

    def split(self, n: int, arg: int) -> dict[int, int]:
        """n as {rest: set over *arg*}: n == OR(set AND rest), each rest testing later args only."""
        end, memo = (arg + 1) * 64, {}

        def go(n: int) -> dict[int, int]:
            if self.var[n] >= end:
                return {n: 1}
            if n not in memo:
                lo, hi = go(self.lo[n]), go(self.hi[n])
                memo[n] = {r: self.mk(self.var[n], lo.get(r, 0), hi.get(r, 0))
                           for r in dict.fromkeys([*lo, *hi])}
            return memo[n]
        return go(n)

    def boxes(self, n: int) -> list[dict[int, int]]:
        """n as a union of boxes {arg: set over that arg} (arguments not in a box are free)."""
        out: list[dict[int, int]] = []

        def go(n: int, arg: int, box: dict[int, int]) -> None:
            if n == 1:
                out.append(box)
                return
            for rest, s in self.split(n, arg).items():
                if rest:
                    go(rest, arg + 1, {**box, arg: s} if s != 1 else box)
        if n:
            go(n, 0, {})
        return out


def _zeros(v: int) -> int:
    return (v & -v).bit_length() - 1 if v else 64


def _interval_atoms(lo: int, hi: int, few: int = 4) -> list[Atom]:
    if lo == hi:
        return [("SCMP_CMP_EQ", lo, 0)]
    if lo == 0:      # pick the rounder constant: "< 12" rather than "<= 11"
        return [("SCMP_CMP_LT", hi + 1, 0) if _zeros(hi + 1) >= _zeros(hi) else ("SCMP_CMP_LE", hi, 0)]
    if hi == M64:
        return [("SCMP_CMP_GE", lo, 0) if _zeros(lo) >= _zeros(lo - 1) else ("SCMP_CMP_GT", lo - 1, 0)]
    if hi - lo < few:                # a few values read better one by one (masks here are 64-bit)
        return [("SCMP_CMP_EQ", v, 0) for v in range(lo, hi + 1)]
    out = []
    while lo <= hi:                  # aligned power-of-two blocks: one masked compare each
        size = lo & -lo
        while lo + size - 1 > hi:
            size >>= 1
        out.append(("SCMP_CMP_MASKED_EQ", M64 & ~(size - 1), lo) if size > 1 else ("SCMP_CMP_EQ", lo, 0))
        lo += size
    return out


def _fits_int64(atoms: list[Atom]) -> bool:
    return all(v < 1 << 63 and v2 < 1 << 63 for _, v, v2 in atoms)


def set_atoms(bdd: Bdd, s: int, arg: int, int64: bool = False) -> list[Atom]:
    """One argument's set as the fewest libseccomp comparisons whose union it is.

    *int64*: prefer comparisons whose values fit an int64 (Kubernetes' SeccompProfile CRD).
    """
    n = bdd.count(s, arg)
    if n == M64:                                   # everything but one value
        return [("SCMP_CMP_NE", bdd.first(bdd.neg(s), arg), 0)]
    spans = bdd.intervals(s, arg, 64)
    by_span = None if spans is None else [a for lo, hi in spans for a in _interval_atoms(lo, hi)]
    cubes = bdd.cubes(s, arg, MAX_ENTRIES_PER_SYSCALL)
    by_cube = None if cubes is None else [
        ("SCMP_CMP_EQ", v, 0) if m == M64 else ("SCMP_CMP_MASKED_EQ", m, v) for m, v in cubes]
    if by_span is None and by_cube is None:
        raise ValueError("argument set too complex")
    if int64:
        listed = None if spans is None else [a for lo, hi in spans for a in _interval_atoms(lo, hi, 64)]
        for atoms in (by_span, listed, by_cube):
            if atoms is not None and _fits_int64(atoms):
                return atoms
    # values and ranges read better (and fit the int64 of Kubernetes' CRD): masks where they save a lot
    if by_span is not None and (by_cube is None or 4 * len(by_cube) > len(by_span)):
        return by_span
    return by_cube


def render_region(bdd: Bdd, region: int, int64: bool = False) -> list[tuple[tuple[int, Atom], ...]]:
    """A region as OCI argument lists (an OR of ANDs, one comparison per argument)."""
    out = []
    for box in bdd.boxes(region):
        per_arg = [[(arg, a) for a in set_atoms(bdd, s, arg, int64)] for arg, s in sorted(box.items())]
        out.extend(itertools.product(*per_arg))
    return out


def cond_region(bdd: Bdd, c: Cond, wide: bool) -> int:
    """A condition as a set; *wide* compares 32-bit arguments on 64 bits, as libseccomp does."""
    width = 64 if wide else c.width
    top = M64 if width == 64 else M32
    if c.op in ("in", "not in"):
        n = 0
        for v in c.values:
            n = bdd.either(n, bdd.compare(c.arg, "==", v & top, width, top))
        return n if c.op == "in" else bdd.neg(n)
    value = c.values[0] & top
    if c.op in ("&==", "&!="):
        mask = c.mask & top
        if value & ~mask:                  # bits the mask clears can never equal
            return 0 if c.op == "&==" else 1
        return bdd.compare(c.arg, c.op, value, width, mask)
    return bdd.compare(c.arg, c.op, value, width, top)


@dataclass
class SyscallPlan:
    """What one syscall decides: per rule, the argument region it really decides."""
    name: str
    arch: str
    pieces: list[tuple[Rule, int, bool]]   # (rule, region, shadowed in part by an earlier rule)
    rest: int                              # no rule matches: the default action
    narrow: tuple[int, ...] = ()           # 32-bit arguments libseccomp compares on 64 bits
    exact: bool = False                    # ... written as low-word masks instead

    def permitted(self, bdd: Bdd, default: Action) -> int:
        n = self.rest if default.kind in PERMISSIVE else 0
        for rule, region, _ in self.pieces:
            if rule.action.kind in PERMISSIVE:
                n = bdd.either(n, region)
        return n


def _pieces(bdd: Bdd, rules: tuple[Rule, ...], wide: bool) -> tuple[list, int]:
    conds, pieces = [], []
    for r in rules:
        c = 1
        for cond in r.conds:
            c = bdd.both(c, cond_region(bdd, cond, wide))
        conds.append(c)
    for i, r in enumerate(rules):
        earlier = 0
        for j in range(i):
            if rules[j].action != r.action:
                earlier = bdd.either(earlier, conds[j])
        region = bdd.both(conds[i], bdd.neg(earlier))
        pieces.append((r, region, region != conds[i]))
    anything = 0
    for c in conds:
        anything = bdd.either(anything, c)
    return pieces, bdd.neg(anything)


def plan_syscall(bdd: Bdd, name: str, arch: str, rules: tuple[Rule, ...], default: Action,
                 low_word: bool = False) -> SyscallPlan:
    """Resolve first-match order; use exact low-word masks where 64-bit compares would let more by
    (or, with *low_word*, wherever a 32-bit argument is compared: masks inside 0xffffffff)."""
    narrow = () if arch == "i386" else tuple(sorted({
        c.arg for r in rules for c in r.conds if c.width == 32 and c.op not in ("&==", "&!=")}))
    pieces, rest = _pieces(bdd, rules, wide=True)
    plan = SyscallPlan(name, arch, pieces, rest, narrow)
    if narrow:
        exact = SyscallPlan(name, arch, *_pieces(bdd, rules, wide=False), narrow, True)
        looser = bdd.both(plan.permitted(bdd, default), bdd.neg(exact.permitted(bdd, default)))
        if looser or low_word:
            return exact
    return plan


@dataclass
class Analysis:
    profile: Profile
    native: str
    arches: list[str]
    default: Action
    plans: list[SyscallPlan]
    bdd: Bdd


def analyze(profile: Profile, native: str = "x86_64", low_word: bool = False) -> Analysis:
    """Every ruled syscall of *profile*, by name, its regions resolved (native ABI first).

    *low_word*: 32-bit arguments always as low-word masks, as the kernel reads
    them; their values then fit an int64 (Kubernetes' SeccompProfile CRD).
    """
    policy = lower(profile, native)
    bdd, plans, seen = Bdd(), [], set()
    for ap in policy.arches:
        table = syscalls.table(ap.arch)
        for nr in sorted(ap.rules):
            name = table.name(nr)
            if name and name not in seen:
                seen.add(name)
                plans.append(plan_syscall(bdd, name, ap.arch, ap.rules[nr], policy.default, low_word))
    return Analysis(profile, native, resolve_arches(profile.arches.value, native), policy.default, plans, bdd)

"""Compile a policy IR into a verified seccomp program.

Shape of every emitted filter (per architecture token):

    ld [arch]; jeq TOKEN...            the arch check comes first; others -> bad_arch
    ld [nr]; <range tree>              a weighted binary search over nr ranges
    <argument blocks>                  conditions only at the leaves that need them
    <one RET per distinct action>

The range tree covers all 2^32 syscall numbers: neighbouring numbers with the
same verdict are merged into one range, the x32 half (nr & 0x40000000) is a
range of its own (bad_arch unless x32 is listed; -1 excepted, see
``ir.NR_MINUS_ONE``), and numbers the table does
not name get the ``unknown`` action.  The tree is the optimal alphabetic tree
for the number of syscalls under each range (each number equally likely), so
the mean cost per syscall is minimal for a JGE-only tree (past DP_MAX_RANGES
ranges, a weight-balanced one: the optimum costs quadratic time).  The tree
reads only ``nr`` and ``arch``, so each arg-free allow stays cacheable by the
kernel's action cache; ``compile_policy`` asserts that.

In argument blocks, a set of values (``in``, ``not in``, and neighbouring
one-value rules with the same action, merged) is searched as runs of
consecutive numbers, so 2,000 consecutive values cost two comparisons.  A
program longer than the kernel accepts raises ``ProgramTooLarge`` with the
rules whose conditions take the most instructions.  Every step is linear or
n log n in the size of the policy.
"""
from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Sequence

from . import insn as I
from .builder import Builder
from .action_cache import is_const_allow
from .interp import Result, SeccompData, run
from .ir import M32, M64, NR_MINUS_ONE, Action, ArchPolicy, Cond, Decision, Policy, evaluate
from .optimizer import optimize
from .syscalls import AUDIT_ARCH, X32_SYSCALL_BIT
from .verifier import verify

NR_SPACE = 1 << 32


class CompileError(Exception):
    pass


class ProgramTooLarge(CompileError):
    """The program exceeds the kernel's BPF_MAXINSNS.  *largest* lists
    (rule origin, instructions) largest first, the origin None being the
    syscall-number search; *arches* the ABIs the program serves."""

    def __init__(self, insns: int, largest: list[tuple], arches: list[str]):
        super().__init__(f"the program has {insns} instructions; the kernel accepts at most "
                         f"{I.MAXINSNS}")
        self.insns, self.largest, self.arches = insns, largest, arches


@dataclass(frozen=True)
class Verdict:
    """What a syscall number leads to: a constant action or an argument block."""
    action: Action | None = None
    block: tuple | None = None       # ((conds, action), ...) + default, shared between nrs
    origins: tuple = field(default=(), compare=False)   # the rule of each block entry


@dataclass
class Filter:
    insns: list[I.Insn]
    policy: Policy
    stats: dict = field(default_factory=dict)

    def encode(self) -> bytes:
        return I.pack(self.insns)

    def run(self, arch: int, nr: int, args: Sequence[int] = (0,) * 6) -> Result:
        return run(self.insns, SeccompData(nr & M32, arch, tuple(args)))

    def explain(self, arch: int, nr: int, args: Sequence[int] = (0,) * 6) -> "Explanation":
        """The program's decision, its cost, and the rule that made it."""
        res = self.run(arch, nr, args)
        dec = evaluate(self.policy, arch, nr, args)
        return Explanation(Action.from_ret(res.value), res, dec, res.value == dec.action.ret)


    def disagreements(self, limit: int = 1) -> list[tuple[int, int, tuple[int, ...]]]:
        """Up to *limit* points (arch token, nr, args) where the program decides
        otherwise than the policy says: every number each ABI knows and one past
        it, x86_64's x32 half and -1, an unknown arch, and for each rule the
        values it compares with and their neighbours (both halves of 64 bits).
        A compiler bug caught here is a filter not installed (``sbx run`` checks
        every filter it compiles; some 3,400 points, ~30 ms, for default)."""
        out: list[tuple[int, int, tuple[int, ...]]] = []
        # x32 is the upper half of x86_64's token, checked with it
        tokens = [(AUDIT_ARCH[ap.arch], ap) for ap in self.policy.arches
                  if ap.arch in AUDIT_ARCH and ap.arch != "x32"]
        if self.policy.arch("x32") is not None and self.policy.arch("x86_64") is None:
            tokens.append((AUDIT_ARCH["x86_64"], None))
        tokens.append((0xC00000F3, None))                 # an arch no profile names
        def numbers(ap: ArchPolicy | None, base: int = 0) -> list[int]:
            """The table's numbers and one past the last, and each ruled number and
            its neighbour (rules may name numbers far beyond the table)."""
            if ap is None:
                return [base, base + 1]
            known = [n & ~base for n in ap.known]
            ruled = [n & ~base for n in ap.rules]
            out = set(range(0, max(known, default=0) + 2)) | set(ruled) | {n + 1 for n in ruled}
            return sorted(base | n for n in out if base | n <= M32)

        for token, ap in tokens:
            halves = [(ap, numbers(ap))]
            if token == AUDIT_ARCH["x86_64"]:
                halves.append((self.policy.arch("x32"), numbers(self.policy.arch("x32"),
                                                                X32_SYSCALL_BIT)))
                halves.append((ap, [NR_MINUS_ONE]))
            for half, nrs in halves:
                for nr in nrs:
                    for args in rule_vectors(half, nr):
                        if self.run(token, nr, args).value != \
                                evaluate(self.policy, token, nr, args).action.ret:
                            out.append((token, nr, args))
                            if len(out) >= limit:
                                return out
        return out


def rule_vectors(ap: ArchPolicy | None, nr: int) -> list[tuple[int, ...]]:
    """Argument vectors that reach every decision the rules of *nr* can make."""
    out = [(0,) * 6, (M64,) * 6]
    for rule in (ap.rules.get(nr, ()) if ap is not None else ()):
        for c in rule.conds:
            for v in c.values + ((c.mask,) if c.mask not in (M32, M64) else ()):
                for cand in (v, v - 1, v + 1, v | 1 << 32, v ^ (0xFFFFFFFF << 32), v & M32):
                    args = [0] * 6
                    args[c.arg] = cand & M64
                    out.append(tuple(args))
    return out


@dataclass(frozen=True)
class Explanation:
    action: Action
    result: Result
    decision: Decision       # the source map: which rule (or profile-level action) decided
    consistent: bool         # the program agrees with the policy's meaning


def verdict_for(ap: ArchPolicy, nr: int, default: Action, unknown: Action) -> Verdict:
    """The verdict of one number: its rules up to the first unconditional one.

    Neighbouring rules with the same action that each compare one argument
    with ``==`` or ``in`` become one ``in`` (first match: "A when x" then
    "A when y" is "A when x or y"), so a long list of one-value rules is one
    set, which ``_emit_set`` turns into ranges."""
    rules = ap.rules.get(nr)
    if not rules:
        return Verdict(default if nr in ap.known else unknown)
    chain: list[list] = []          # [conds, action, origin, merge key, values]
    tail = default
    for r in rules:
        if not r.conds:
            if not chain:
                return Verdict(r.action)
            tail = r.action
            break
        c = r.conds[0]
        key = None
        if len(r.conds) == 1 and c.op in ("==", "in") and c.mask == (1 << c.width) - 1:
            key = (c.arg, c.width, c.mask, r.action)
            if chain and chain[-1][3] == key:
                chain[-1][4].update(c.values)
                continue
        chain.append([r.conds, r.action, r.origin, key, set(c.values) if key else None])
    block, origins = [], []
    for conds, action, origin, key, values in chain:
        # a set, not a count: the first rule's own list may repeat a value
        # (arg1 in [TIOCSTI, 0x5412]), and the rules merged into it must not be lost
        if key is not None and values != set(conds[0].values):
            c = conds[0]
            conds = (Cond(c.arg, "in", tuple(sorted(values)), c.mask, c.width),)
        block.append((conds, action))
        origins.append(origin)
    return Verdict(block=tuple(block) + (tail,), origins=tuple(origins))


def token_ranges(policy: Policy, token: int) -> list[tuple[int, int, Verdict]]:
    """Merged [lo, hi] ranges over all 2^32 numbers for one arch token."""
    halves: list[tuple[int, int, ArchPolicy | None]]
    if token == AUDIT_ARCH["x86_64"]:
        # the x32 half ends before -1, which is x86_64's (ir.NR_MINUS_ONE says why)
        halves = [(0, X32_SYSCALL_BIT - 1, policy.arch("x86_64")),
                  (X32_SYSCALL_BIT, NR_MINUS_ONE - 1, policy.arch("x32")),
                  (NR_MINUS_ONE, NR_MINUS_ONE, policy.arch("x86_64"))]
    else:
        aps = [ap for ap in policy.arches if ap.audit_arch == token]
        halves = [(0, NR_SPACE - 1, aps[0])]
    out: list[tuple[int, int, Verdict]] = []

    def push(lo: int, hi: int, v: Verdict) -> None:
        if out and out[-1][2] == v and out[-1][1] + 1 == lo:
            out[-1] = (out[-1][0], hi, v)
        else:
            out.append((lo, hi, v))

    for lo, hi, ap in halves:
        if ap is None:
            push(lo, hi, Verdict(policy.bad_arch))
            continue
        cur = lo
        for nr in sorted(n for n in set(ap.known) | set(ap.rules) if lo <= n <= hi):
            if nr > cur:
                push(cur, nr - 1, Verdict(policy.unknown))
            push(nr, nr, verdict_for(ap, nr, policy.default, policy.unknown))
            cur = nr + 1
        if cur <= hi:
            push(cur, hi, Verdict(policy.unknown))
    return out


RANGE_BIAS = 0.5      # per range: keeps rare single-number ranges from sinking deep
BLOCK_BIAS = 3.0      # per argument block: its own instructions add to the leaf's depth
# The DP is quadratic: 28 ms at 200 ranges, 71 ms at 300, 135 ms at 400, 1.2 s at 900
# (one token's ranges: at most ~460 syscalls, twice that with x32); the balanced
# tree takes < 5 ms at 900 and its mean depth was within 2% of the optimum on
# random weights.  Real profiles have 93 (default) to 187 (Docker's, i386) ranges.
DP_MAX_RANGES = 256


def range_weights(ranges, span_hi: int) -> list[float]:
    """Weight of a range: the numbers 0..span_hi it covers (each equally likely),
    plus small biases that trade a little of the mean for a lower maximum
    (Docker's profile: mean 8.96 -> 8.97, max 16 -> 14)."""
    ws = []
    for lo, hi, v in ranges:
        inside = max(0, min(hi, span_hi) - lo + 1) if lo <= span_hi else 0
        if not inside:          # beyond the table (the x32 half, garbage): rare by design
            ws.append(1e-3)
            continue
        ws.append(inside + RANGE_BIAS + (BLOCK_BIAS if v.block is not None else 0.0))
    return ws


def search_tree(weights: Sequence[float]):
    """The optimal tree up to DP_MAX_RANGES ranges, a weight-balanced one beyond."""
    if len(weights) <= DP_MAX_RANGES:
        return optimal_tree(weights)
    return balanced_tree(weights)


def balanced_tree(weights: Sequence[float]):
    """A weight-balanced alphabetic tree in O(n log n): each node splits where
    the two sides' weights are closest (a binary search on prefix sums).
    Its mean depth is within two of the optimum (Mehlhorn 1975)."""
    pre = [0.0]
    for w in weights:
        pre.append(pre[-1] + w)

    def build(i: int, j: int):
        if i == j:
            return i
        half = (pre[i] + pre[j + 1]) / 2
        k = bisect.bisect_left(pre, half, i + 1, j + 1)      # first prefix >= half
        # split before k or before k-1 (left = i..split-1), whichever is closer to even
        best = min((c for c in (k - 1, k) if i + 1 <= c <= j),
                   key=lambda c: abs(pre[c] - half))
        return (build(i, best - 1), build(best, j))

    return build(0, len(weights) - 1)


def optimal_tree(weights: Sequence[float]):
    """Optimal alphabetic binary tree (Knuth's O(n^2) dynamic programme).

    Returns nested tuples: a leaf is an int (range index), a node is
    (left, right) where right starts at the split point.
    """
    n = len(weights)
    pre = [0.0]
    for w in weights:
        pre.append(pre[-1] + w)
    cost = [[0.0] * n for _ in range(n)]
    root = [[0] * n for _ in range(n)]
    for i in range(n):
        root[i][i] = i
    for length in range(2, n + 1):
        for i in range(n - length + 1):
            j = i + length - 1
            lo_k = max(i, root[i][j - 1])
            hi_k = min(j - 1, root[i + 1][j]) if length > 2 else i
            best, best_k = None, lo_k
            for k in range(lo_k, max(lo_k, hi_k) + 1):
                c = cost[i][k] + cost[k + 1][j]
                if best is None or c < best:
                    best, best_k = c, k
            cost[i][j] = best + pre[j + 1] - pre[i]
            root[i][j] = best_k

    def build(i: int, j: int):
        if i == j:
            return i
        k = root[i][j]
        return (build(i, k), build(k + 1, j))

    return build(0, n - 1)


class _Codegen:
    def __init__(self, policy: Policy):
        self.p = policy
        self.b = Builder()
        self.rets: dict[int, str] = {}
        self.blocks: dict[tuple, str] = {}
        self.origins: dict[str, tuple] = {}      # block label -> the rule of each entry
        self.cost: dict = {}                     # rule origin (None: the nr search) -> insns
        self.token = 0

    def ret_label(self, action: Action) -> str:
        return self.rets.setdefault(action.ret, f"ret.{action.ret:08x}")

    def target(self, v: Verdict) -> str:
        if v.action is not None:
            return self.ret_label(v.action)
        # blocks are per arch token so that every jump to one stays forward
        key = (self.token, v.block)
        label = self.blocks.get(key)
        if label is None:
            label = self.blocks[key] = f"blk.{len(self.blocks)}"
            self.origins[label] = v.origins
        return label

    def program(self) -> list[I.Insn]:
        b = self.b
        tokens = []
        for ap in self.p.arches:
            if ap.audit_arch not in tokens:
                tokens.append(ap.audit_arch)
        b.emit(I.ld_abs(I.OFF_ARCH))
        for t in tokens:
            b.jump(I.JEQ, t, f"arch.{t:08x}", None)
        b.goto(self.ret_label(self.p.bad_arch))
        emitted: set[str] = set()
        for t in tokens:            # each tree is followed by its own argument blocks (short jumps)
            b.label(f"arch.{t:08x}")
            self.token = t
            start = b.size
            self.tree(t)
            self.cost[None] = self.cost.get(None, 0) + b.size - start
            for key, label in list(self.blocks.items()):
                if label not in emitted:
                    emitted.add(label)
                    b.label(label)
                    self.arg_block(key[1], self.origins[label])
        for value, label in self.rets.items():
            b.label(label)
            b.emit(I.ret(value))
        return b.assemble()

    def tree(self, token: int) -> None:
        ranges = token_ranges(self.p, token)
        span = max((max(ap.known, default=0) for ap in self.p.arches if ap.audit_arch == token
                    and ap.arch != "x32"), default=0)
        shape = search_tree(range_weights(ranges, span))
        if isinstance(shape, int):          # one verdict for every number: no search at all
            self.b.goto(self.target(ranges[shape][2]))
            return
        self.b.emit(I.ld_abs(I.OFF_NR))
        self._node(shape, ranges)

    def _node(self, shape, ranges) -> str:
        """Emit the subtree; return the label where it starts."""
        if isinstance(shape, int):
            return self.target(ranges[shape][2])
        left, right = shape
        split = ranges[_first(right)][0]
        here = self.b.fresh("node")
        self.b.label(here)
        rlabel = self.b.fresh("right") if not isinstance(right, int) else None
        llabel = self.b.fresh("left") if not isinstance(left, int) else None
        jt = rlabel if rlabel else self.target(ranges[right][2])
        jf = llabel if llabel else self.target(ranges[left][2])
        self.b.jump(I.JGE, split, jt, jf)
        if llabel:
            self.b.alias(llabel, self._node(left, ranges))
        if rlabel:
            self.b.alias(rlabel, self._node(right, ranges))
        return here

    def arg_block(self, key: tuple, origins: tuple) -> None:
        *chain, tail = key
        for (conds, action), origin in zip(chain, origins):
            start = self.b.size
            fail = self.b.fresh("next")
            ok_final = self.ret_label(action)
            for i, c in enumerate(conds):
                ok = ok_final if i == len(conds) - 1 else self.b.fresh("and")
                emit_cond(self.b, c, ok, fail)
                if ok != ok_final:
                    self.b.label(ok)
            self.b.label(fail)
            self.cost[origin] = self.cost.get(origin, 0) + self.b.size - start
        self.b.goto(self.ret_label(tail))

    def largest(self) -> list[tuple]:
        """(rule origin, instructions) of the rules whose conditions take the most
        instructions (before optimization), largest first; None is the nr search."""
        return sorted(self.cost.items(), key=lambda kv: -kv[1])


def _first(shape) -> int:
    while not isinstance(shape, int):
        shape = shape[0]
    return shape


def emit_cond(b: Builder, c: Cond, ok: str, fail: str) -> None:
    """Jump to *ok* when ``c`` holds, else to *fail*.

    64-bit values are compared as two 32-bit words, high word first:
      a == v  <=>  hi(a) == hi(v) and lo(a) == lo(v)
      a >  v  <=>  hi(a) > hi(v) or (hi(a) == hi(v) and lo(a) > lo(v))
      a >= v  <=>  hi(a) > hi(v) or (hi(a) == hi(v) and lo(a) >= lo(v))
      a <  v  <=>  not (a >= v);   a <= v  <=>  not (a > v)
    A 32-bit argument is compared on its low word only (the kernel ignores
    the high word of an ``int`` argument), so only the second half is emitted.
    """
    wide = c.width == 64
    lo_off, hi_off = I.off_arg_lo(c.arg), I.off_arg_hi(c.arg)
    op = c.op
    if op in ("!=", "&!=", "not in", "<", "<="):
        ok, fail = fail, ok
        op = {"!=": "==", "&!=": "&==", "not in": "in", "<": ">=", "<=": ">"}[op]
    top = (1 << c.width) - 1
    mask = c.mask & top
    if op in ("==", "&=="):
        _emit_masked_eq(b, c.value & top, mask, wide, lo_off, hi_off, ok, fail)
    elif op == "in":
        _emit_in(b, sorted({v & top for v in c.values}), wide, lo_off, hi_off, ok, fail)
    else:  # ">" or ">="
        v = c.value & top
        last = I.JGT if op == ">" else I.JGE
        if wide:
            b.emit(I.ld_abs(hi_off))
            mid = b.fresh("hieq")
            b.jump(I.JGT, v >> 32, ok, None)
            b.jump(I.JEQ, v >> 32, mid, fail)
            b.label(mid)
        b.emit(I.ld_abs(lo_off))
        b.jump(last, v & M32, ok, fail)


def _emit_masked_eq(b, v, mask, wide, lo_off, hi_off, ok, fail) -> None:
    """(a & mask) == v, word by word; a word whose mask is all-ones needs no AND."""
    if v & ~mask:
        b.goto(fail)            # bits outside the mask can never match
        return
    words = [(hi_off, v >> 32, mask >> 32)] if wide else []
    words.append((lo_off, v & M32, mask & M32))
    for i, (off, val, m) in enumerate(words):
        last = i == len(words) - 1
        nxt = ok if last else b.fresh("word")
        if m == 0:
            if not last:
                continue
            b.goto(ok)          # nothing left to compare in this word
            return
        b.emit(I.ld_abs(off))
        if val == 0 and m != M32:
            b.jump(I.JSET, m, fail, nxt)          # any masked bit set -> mismatch
        elif val == m and m & (m - 1) == 0:
            b.jump(I.JSET, m, nxt, fail)          # single-bit mask, bit must be set
        else:
            if m != M32:
                b.emit(I.stmt(I.ALU | I.AND | I.K, m))
            b.jump(I.JEQ, val, nxt, fail)
        if not last:
            b.label(nxt)


def _emit_in(b, values, wide, lo_off, hi_off, ok, fail) -> None:
    groups: dict[int, list[int]] = {}
    for v in values:
        groups.setdefault(v >> 32, []).append(v & M32)
    if wide:
        b.emit(I.ld_abs(hi_off))
        labels = [b.fresh("hi") for _ in groups]
        for (hi, _), lab in zip(groups.items(), labels):
            b.jump(I.JEQ, hi, lab, None)
        b.goto(fail)
    else:
        labels = [None]
        groups = {0: [v & M32 for v in values]}
    for (_, los), lab in zip(groups.items(), labels):
        if lab:
            b.label(lab)
        b.emit(I.ld_abs(lo_off))
        _emit_set(b, intervals(los), ok, fail)


def intervals(values) -> list[tuple[int, int]]:
    """Sorted values as maximal runs of consecutive numbers: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    out: list[list[int]] = []
    for v in sorted(set(values)):
        if out and out[-1][1] + 1 == v:
            out[-1][1] = v
        else:
            out.append([v, v])
    return [(lo, hi) for lo, hi in out]


def _emit_set(b, ivs: list[tuple[int, int]], ok: str, fail: str) -> None:
    """A in the union of sorted disjoint intervals: a binary search on their
    lower ends down to chains of at most three, then per interval
        single value v:  jeq v, ok, next
        lo..hi:          jgt hi, next, _ ; jge lo, ok, fail
    (above hi: the next interval, all higher; else inside iff >= lo; every
    lower interval was passed above its hi or missed by its jeq)."""
    if len(ivs) <= 3:
        for i, (lo, hi) in enumerate(ivs):
            last = i == len(ivs) - 1
            if lo == hi:
                b.jump(I.JEQ, lo, ok, None)
                continue
            nxt = fail if last else b.fresh("iv")
            if lo == 0:
                b.jump(I.JGT, hi, nxt, ok)
            elif hi == M32:
                b.jump(I.JGE, lo, ok, fail)
            else:
                b.jump(I.JGT, hi, nxt, None)
                b.jump(I.JGE, lo, ok, fail)
            if not last:
                b.label(nxt)
        if ivs[-1][0] == ivs[-1][1]:
            b.goto(fail)
        return
    mid = len(ivs) // 2
    right = b.fresh("set")
    b.jump(I.JGE, ivs[mid][0], right, None)
    _emit_set(b, ivs[:mid], ok, fail)
    b.label(right)
    _emit_set(b, ivs[mid:], ok, fail)


def check_cacheable(prog: Sequence[I.Insn], policy: Policy) -> list[tuple[str, int]]:
    """Arg-free allows the kernel would not cache (must be empty)."""
    missing = []
    for ap in policy.arches:
        if ap.arch == "x32":
            continue            # the kernel caches only the native and compat ABIs
        for nr in sorted(ap.known):
            v = verdict_for(ap, nr, policy.default, policy.unknown)
            if v.action is not None and v.action.kind == "allow":
                if not is_const_allow(prog, ap.audit_arch, nr):
                    missing.append((ap.arch, nr))
    return missing


def compile_policy(policy: Policy, *, optimize_program: bool = True) -> Filter:
    """lower -> assemble -> optimize -> verify -> cacheability check."""
    t0 = time.perf_counter()
    if not policy.arches:
        raise CompileError("the policy names no architecture")
    gen = _Codegen(policy)
    prog = gen.program()
    if optimize_program:
        prog = optimize(prog)
    if len(prog) > I.MAXINSNS:
        raise ProgramTooLarge(len(prog), gen.largest(), [ap.arch for ap in policy.arches])
    verify(prog)
    missing = check_cacheable(prog, policy)
    if missing:
        raise CompileError(f"arg-free allows not cacheable by the kernel: {missing[:5]}")
    stats = {"insns": len(prog), "compile_ms": (time.perf_counter() - t0) * 1000}
    return Filter(prog, policy, stats)

"""Translate profiles to and from other seccomp formats: OCI/Docker JSON, systemd, Kubernetes.

Export: a profile's rules are ordered (first match wins); libseccomp, which
every OCI runtime uses, has no order.  ``analyze`` therefore splits each
syscall's argument space exactly, with binary decision diagrams over the 6x64
argument bits, into one region per action, and ``render`` writes each region
back as entries libseccomp evaluates the same way: at most one comparison per
argument per entry, several entries where one condition needs them (``in``,
``not in``, ``!=`` on a mask, a rule shadowed by an earlier one).  Regions of
different actions never overlap, so libseccomp's own precedence never matters.

Import: an OCI/Docker JSON profile, moby's ``includes``/``excludes`` resolved
for given capabilities, architecture and kernel, becomes a commented profile
in the sbx language with runc's reading of the JSON.  Both directions report
problems as Diagnostics with positions (a profile's file:line, or the JSON's).
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass

import yaml

from bpf_filters import syscalls
from bpf_filters.ir import M32, M64, Action, Cond, Rule

from .paths import display_path
from .policy import Profile, lower
from .policy.constants import CONSTANTS, ERRNO
from .policy.diagnostics import Diagnostic, PolicyError, Position, did_you_mean
from .policy.lower import arg_width, resolve_arches
from .policy.show import action_text

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


def _interval_atoms(lo: int, hi: int) -> list[Atom]:
    if lo == hi:
        return [("SCMP_CMP_EQ", lo, 0)]
    if lo == 0:      # pick the rounder constant: "< 12" rather than "<= 11"
        return [("SCMP_CMP_LT", hi + 1, 0) if _zeros(hi + 1) >= _zeros(hi) else ("SCMP_CMP_LE", hi, 0)]
    if hi == M64:
        return [("SCMP_CMP_GE", lo, 0) if _zeros(lo) >= _zeros(lo - 1) else ("SCMP_CMP_GT", lo - 1, 0)]
    if hi - lo < 4:                  # a few values read better one by one
        return [("SCMP_CMP_EQ", v, 0) for v in range(lo, hi + 1)]
    out = []
    while lo <= hi:                  # aligned power-of-two blocks: one masked compare each
        size = lo & -lo
        while lo + size - 1 > hi:
            size >>= 1
        out.append(("SCMP_CMP_MASKED_EQ", M64 & ~(size - 1), lo) if size > 1 else ("SCMP_CMP_EQ", lo, 0))
        lo += size
    return out


def set_atoms(bdd: Bdd, s: int, arg: int) -> list[Atom]:
    """One argument's set as the fewest libseccomp comparisons whose union it is."""
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
    # values and ranges read better (and fit the int64 of Kubernetes' CRD): masks where they save a lot
    if by_span is not None and (by_cube is None or 4 * len(by_cube) > len(by_span)):
        return by_span
    return by_cube


def render_region(bdd: Bdd, region: int) -> list[tuple[tuple[int, Atom], ...]]:
    """A region as OCI argument lists (an OR of ANDs, one comparison per argument)."""
    out = []
    for box in bdd.boxes(region):
        per_arg = [[(arg, a) for a in set_atoms(bdd, s, arg)] for arg, s in sorted(box.items())]
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


def plan_syscall(bdd: Bdd, name: str, arch: str, rules: tuple[Rule, ...], default: Action) -> SyscallPlan:
    """Resolve first-match order; use exact low-word masks where 64-bit compares would let more by."""
    narrow = () if arch == "i386" else tuple(sorted({
        c.arg for r in rules for c in r.conds if c.width == 32 and c.op not in ("&==", "&!=")}))
    pieces, rest = _pieces(bdd, rules, wide=True)
    plan = SyscallPlan(name, arch, pieces, rest, narrow)
    if narrow:
        exact = SyscallPlan(name, arch, *_pieces(bdd, rules, wide=False), narrow, True)
        looser = bdd.both(plan.permitted(bdd, default), bdd.neg(exact.permitted(bdd, default)))
        if looser:
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


def analyze(profile: Profile, native: str = "x86_64") -> Analysis:
    """Every ruled syscall of *profile*, by name, its regions resolved (native ABI first)."""
    policy = lower(profile, native)
    bdd, plans, seen = Bdd(), [], set()
    for ap in policy.arches:
        table = syscalls.table(ap.arch)
        for nr in sorted(ap.rules):
            name = table.name(nr)
            if name and name not in seen:
                seen.add(name)
                plans.append(plan_syscall(bdd, name, ap.arch, ap.rules[nr], policy.default))
    return Analysis(profile, native, resolve_arches(profile.arches.value, native), policy.default, plans, bdd)


# ---------------------------------------------------------------- OCI / Docker / Kubernetes

def _oci_action(a: Action) -> dict:
    out = {"action": OCI_ACTION[a.kind]}
    if a.kind == "errno":
        out["errnoRet"] = a.data
    return out


def _spec_index(profile: Profile) -> dict:
    return {spec.origin: (i, spec) for i, spec in enumerate(profile.rules)}


def _check_actions(an: Analysis, diags: list[Diagnostic]) -> None:
    prof = an.profile
    if an.default.kind == "notify":
        diags.append(Diagnostic(prof.default.pos, "OCI runtimes refuse SCMP_ACT_NOTIFY as the default "
                                "action"))
    specs = _spec_index(prof)
    for plan in an.plans:
        for rule, region, _ in plan.pieces:
            if not region or rule.action == an.default:
                continue
            spec = specs[rule.origin][1]
            if rule.action.kind == "notify":
                diags.append(Diagnostic(spec.pos, f"'{plan.name}' uses notify: SCMP_ACT_NOTIFY needs a "
                                        "listenerPath to a seccomp agent, which sbx does not provide",
                                        hint="use errno(...) or trap, or run it under `sbx run`"))
            elif rule.action.kind == "trap" and rule.action.data:
                diags.append(Diagnostic(spec.pos, f"trap({rule.action.data}): OCI has no field for the "
                                        "trap's si_errno data; SCMP_ACT_TRAP sends 0", severity="warning"))
    if prof.bad_arch.value != Action("kill-thread"):
        diags.append(Diagnostic(prof.bad_arch.pos, f"OCI has no wrong-architecture action (here "
                                f"{action_text(prof.bad_arch.value)}): runc keeps libseccomp's kill-thread",
                                severity="warning"))
    unknown = prof.unknown.value
    if unknown != an.default:
        diags.append(Diagnostic(prof.unknown.pos, f"OCI has no action for syscall numbers the tables do not "
                                f"name (here {action_text(unknown)}): runc answers ENOSYS above the highest "
                                "syscall it knows and defaultAction for gaps below it", severity="warning"))


def _widening_notes(an: Analysis, diags: list[Diagnostic]) -> None:
    specs = _spec_index(an.profile)
    for plan in an.plans:
        if not plan.narrow:
            continue
        rule = next(r for r, _, _ in plan.pieces if any(c.arg in plan.narrow for c in r.conds))
        args = " and ".join(f"arg{a}" for a in plan.narrow) + (" are" if len(plan.narrow) > 1 else " is")
        if plan.exact:
            msg = (f"{plan.name}: {args} 32-bit; a 64-bit comparison would let a value with garbage in "
                   "the upper half (which the kernel ignores) through, so the entries compare the low "
                   "word with masks")
        else:
            msg = (f"{plan.name}: {args} 32-bit but OCI compares all 64 bits: a call with garbage in "
                   "the upper half (which the kernel ignores) is denied there and decided by the low "
                   "word here")
        diags.append(Diagnostic(specs[rule.origin][1].pos, msg, severity="warning"))


def oci_entries(an: Analysis, comments: bool = True) -> list[dict]:
    """The syscalls[] entries: one per (rule, action, argument list), names merged and sorted."""
    specs = _spec_index(an.profile)
    groups: dict[tuple, list[str]] = {}
    for plan in an.plans:
        for rule, region, shadowed in plan.pieces:
            if not region or rule.action == an.default:
                continue
            try:
                arg_lists = render_region(an.bdd, region)
            except ValueError:
                arg_lists = None
            if arg_lists is None or len(arg_lists) > MAX_ENTRIES_PER_SYSCALL:
                spec = specs[rule.origin][1]
                raise PolicyError([Diagnostic(spec.pos, f"'{plan.name}': the argument region this rule "
                                              "decides needs too many libseccomp entries",
                                              hint="simplify the conditions of this and earlier rules")],
                                  an.profile.sources)
            idx = specs[rule.origin][0]
            for args in arg_lists:
                groups.setdefault((idx, rule.action, args, shadowed, plan.exact), []).append(plan.name)
    out = []
    for key in sorted(groups, key=lambda k: k[0]):
        idx, action, args, shadowed, exact = key
        entry = {"names": sorted(set(groups[key])), **_oci_action(action)}
        if args:
            entry["args"] = [{"index": i, "value": v, "valueTwo": v2, "op": op} if op == "SCMP_CMP_MASKED_EQ"
                             else {"index": i, "value": v, "op": op} for i, (op, v, v2) in args]
        if comments:
            spec = an.profile.rules[idx]
            text = spec.comment or f"{action_text(spec.action)} rule"
            note = " (where no earlier rule decides)" if shadowed else ""
            note += " (32-bit argument: low word)" if exact and args else ""
            entry["comment"] = f"{text}{note} [{display_path(spec.pos.file)}:{spec.pos.line}]"
        out.append(entry)
    return out


def export_oci(an: Analysis, comments: bool = True, known=None) -> tuple[dict, list[Diagnostic]]:
    """The OCI ``linux.seccomp`` object (Docker's --security-opt seccomp= file) and warnings.

    *known(name)* tells whether the target's libseccomp can name a syscall;
    runc silently drops rules for names it cannot.
    """
    diags: list[Diagnostic] = []
    _check_actions(an, diags)
    errors = [d for d in diags if d.severity == "error"]
    if errors:
        raise PolicyError(diags, an.profile.sources)
    _widening_notes(an, diags)
    out: dict = {"defaultAction": OCI_ACTION[an.default.kind]}
    if an.default.kind == "errno":
        out["defaultErrnoRet"] = an.default.data
    out["architectures"] = [OCI_ARCH[a] for a in an.arches]
    out["syscalls"] = oci_entries(an, comments)
    if known is not None:
        lost = sorted({n for e in out["syscalls"] for n in e["names"] if not known(n)})
        if lost:
            diags.append(Diagnostic(None, f"libseccomp on this machine cannot name {', '.join(lost)}: "
                                    "runc built against it ignores their rules (they get "
                                    "defaultAction, or ENOSYS above its highest known syscall)",
                                    severity="warning"))
    return out, diags


def k8s_name(name: str) -> str:
    """A Kubernetes object name (DNS subdomain) from a profile name."""
    out = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in name.lower()).strip("-.")
    return out[:253] or "sbx-profile"


def export_k8s(an: Analysis) -> tuple[str, str, list[Diagnostic]]:
    """(security-profiles-operator SeccompProfile manifest, localhost profile JSON, warnings)."""
    spec, diags = export_oci(an, comments=False)
    local, _ = export_oci(an, comments=True)
    name = k8s_name(an.profile.name)
    big = sorted({n for e in spec["syscalls"] for a in e.get("args", ()) for n in e["names"]
                  if max(a["value"], a.get("valueTwo", 0)) >= 1 << 63})
    if big:
        diags.append(Diagnostic(None, f"entries for {', '.join(big)} compare values >= 2^63, which the "
                                "SeccompProfile CRD (int64) cannot hold exactly: use the localhost JSON "
                                "profile for this one", severity="warning"))
    manifest = {"apiVersion": "security-profiles-operator.x-k8s.io/v1beta1", "kind": "SeccompProfile",
                "metadata": {"name": name}, "spec": spec}
    head = (f"# seccomp profile '{an.profile.name}' from {display_path(an.profile.path)} "
            "(sbx export --format k8s)\n"
            "# Install with the security-profiles-operator: kubectl apply -f this file; a Pod then uses\n"
            "#   securityContext:\n#     seccompProfile:\n#       type: Localhost\n"
            f"#       localhostProfile: operator/<namespace>/{name}.json\n"
            f"# Without the operator, copy the localhost profile ({name}.json) to\n"
            f"# /var/lib/kubelet/seccomp/profiles/{name}.json on every node; then\n"
            f"# localhostProfile: profiles/{name}.json\n")
    text = head + yaml.safe_dump(manifest, sort_keys=False, default_flow_style=None, width=100)
    return text, json.dumps(local, indent=2) + "\n", diags


# ---------------------------------------------------------------- systemd

def _families(an: Analysis, plan: SyscallPlan) -> tuple[str, list[str]] | None:
    """socket() decided by arg0 alone: ("allow"|"deny", AF_ names) for RestrictAddressFamilies=."""
    bdd = an.bdd
    permitted = plan.permitted(bdd, an.default)
    if any(v >= 64 for v in bdd.support(permitted)):
        return None
    names = {v: k for k, v in reversed(list(CONSTANTS.items())) if k.startswith("AF_")}
    top = max(names) + 1           # families are ints: look at low-word values only
    above = bdd.both(bdd.compare(0, ">=", top), bdd.compare(0, "<", 1 << 32))
    rest = bdd.both(permitted, above)
    if rest not in (0, above):
        return None
    ok = {v for v in range(top) if bdd.both(permitted, bdd.compare(0, "==", v)) != 0}
    if rest == 0:
        return "allow", [names[v] for v in sorted(ok) if v in names and v != 0]
    denied = [v for v in range(top) if v not in ok]
    if any(v not in names for v in denied):
        return None
    return "deny", [names[v] for v in denied]


NAMESPACES = {"CLONE_NEWCGROUP": "cgroup", "CLONE_NEWIPC": "ipc", "CLONE_NEWNET": "net", "CLONE_NEWNS": "mnt",
              "CLONE_NEWPID": "pid", "CLONE_NEWUSER": "user", "CLONE_NEWUTS": "uts", "CLONE_NEWTIME": "time"}


def _namespaces(an: Analysis, plan: SyscallPlan) -> list[str] | None:
    """clone() allowed exactly when some CLONE_NEW* flags are clear: those namespace types."""
    bdd = an.bdd
    permitted = plan.permitted(bdd, an.default)
    bits = {CONSTANTS[k]: v for k, v in NAMESPACES.items()}
    denied = [b for b in bits if not bdd.both(permitted, bdd.compare(0, "&==", b, 64, b))]
    mask = sum(denied)
    if not denied or permitted != bdd.compare(0, "&==", 0, 64, mask):
        return None
    return sorted(bits[b] for b in denied)


def _wrap(key: str, prefix: str, words: list[str], width: int = 100) -> list[str]:
    lines, cur = [], []
    for w in words:
        if cur and len(key) + len(prefix) + len(" ".join(cur + [w])) > width:
            lines.append(f"{key}={prefix}{' '.join(cur)}")
            cur = []
        cur.append(w)
    if cur:
        lines.append(f"{key}={prefix}{' '.join(cur)}")
    return lines


def _systemd_action(a: Action) -> str:
    return action_text(a)[6:-1] if a.kind == "errno" else "kill"


@dataclass
class _Dropin:
    listed: list[str]
    logged: list[str]
    notes: list[str]
    extra: list[str]
    other: dict[str, list[str]]        # deny actions systemd replaces by its default: names


def _allow_listed(an: Analysis, plan: SyscallPlan, d: _Dropin) -> None:
    """Allow-list mode: list what is allowed for all arguments; the rest stays denied."""
    bdd = an.bdd
    permitted = plan.permitted(bdd, an.default)
    denials = list(dict.fromkeys(r.action for r, g, _ in plan.pieces
                                 if g and r.action.kind not in PERMISSIVE))
    partial = permitted not in (0, 1)
    fam = _families(an, plan) if plan.name == "socket" and partial else None
    spaces = _namespaces(an, plan) if plan.name == "clone" and partial else None
    if permitted == 1 or fam or spaces:
        d.listed.append(plan.name)
        d.logged += [plan.name] * any(r.action.kind == "log" and g for r, g, _ in plan.pieces)
    if spaces:
        d.extra.append(f"RestrictNamespaces=~{' '.join(spaces)}")
        d.notes.append("clone: new namespaces refused by RestrictNamespaces= (which also covers unshare() "
                       "and setns())")
    elif fam:
        kind, names = fam
        d.extra.append(f"RestrictAddressFamilies={'~' if kind == 'deny' else ''}{' '.join(names) or 'none'}")
        d.notes.append("socket: address families checked by RestrictAddressFamilies= (EAFNOSUPPORT; "
                       "socket() only: socketpair() and i386 socketcall() are not checked)")
        denials = [a for a in denials if a != Action("errno", 97)]
    elif partial:
        d.notes.append(f"{plan.name}: allowed here only for some arguments; systemd cannot check arguments, "
                       "so it is left denied")
    for a in denials:
        if a != an.default:
            d.other.setdefault(action_text(a), []).append(plan.name)


def _deny_listed(an: Analysis, plan: SyscallPlan, d: _Dropin) -> None:
    """Deny-list mode (the default allows): list what is denied for any argument."""
    permitted = plan.permitted(an.bdd, an.default)
    if permitted == 1:
        return
    denials = [r.action for r, g, _ in plan.pieces if g and r.action.kind not in PERMISSIVE]
    a = denials[0] if denials else an.default
    if a.kind not in ("errno", "kill-process", "kill-thread"):
        d.notes.append(f"{plan.name}: {action_text(a)} has no systemd equivalent: killed instead")
    if permitted:
        d.notes.append(f"{plan.name}: denied here only for some arguments; systemd cannot check arguments, "
                       "so it is denied for all")
    d.listed.append(f"{plan.name}:{_systemd_action(a)}")


def export_systemd(an: Analysis) -> str:
    """A ``[Service]`` drop-in: SystemCallFilter= and friends, the inexpressible parts as comments."""
    prof, default = an.profile, an.default
    allow_list = default.kind not in PERMISSIVE
    d = _Dropin([], [], [], [], {})
    for plan in an.plans:
        (_allow_listed if allow_list else _deny_listed)(an, plan, d)
    notes = d.notes + [f"{text} here, the default action under systemd: {', '.join(sorted(names))}"
                       for text, names in d.other.items()]
    if prof.unknown.value != default:
        notes.append(f"numbers the tables do not name: {action_text(prof.unknown.value)} here, the default "
                     "action under systemd")
    if prof.bad_arch.value.kind != "kill-process":
        notes.append(f"other architectures: {action_text(prof.bad_arch.value)} here; systemd denies them")
    out = [f"# systemd drop-in for profile '{prof.name}' ({display_path(prof.path)}), from "
           "`sbx export --format systemd`",
           "# Install as /etc/systemd/system/UNIT.service.d/sbx-seccomp.conf, then "
           "`systemctl daemon-reload`."]
    if notes:
        out += ["# What systemd cannot express (the safe side was chosen):"] + [f"#   {n}" for n in notes]
    out += ["[Service]", "SystemCallArchitectures=" + " ".join(
        "native" if a == "native" else SYSTEMD_ARCH[a] for a in dict.fromkeys(prof.arches.value))]
    out += _wrap("SystemCallFilter", "" if allow_list else "~", sorted(d.listed))
    if allow_list and default.kind == "errno":
        out.append(f"SystemCallErrorNumber={_systemd_action(default)}")
    elif allow_list:
        out.append(f"# default {action_text(default)}: systemd kills the process (SIGSYS) for the rest")
    out += d.extra + (_wrap("SystemCallLog", "", sorted(d.logged)) if d.logged else [])
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- import

SCMP_TO_ARCH = {v: k for k, v in OCI_ARCH.items()}
SCMP_ARCHES = ("SCMP_ARCH_NATIVE", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
               "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
               "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
               "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
               "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
               "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB")
GOARCH = {"x86_64": ("amd64",), "i386": ("386", "x86"), "x32": ("x32",), "aarch64": ("arm64",)}
DOCKER_CAPS = ("CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
               "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID",
               "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT")
FROM_OCI = {"SCMP_ACT_ALLOW": "allow", "SCMP_ACT_LOG": "log", "SCMP_ACT_ERRNO": "errno",
            "SCMP_ACT_TRAP": "trap", "SCMP_ACT_KILL": "kill-thread", "SCMP_ACT_KILL_THREAD": "kill-thread",
            "SCMP_ACT_KILL_PROCESS": "kill-process", "SCMP_ACT_TRACE": "trace", "SCMP_ACT_NOTIFY": "notify"}
FROM_OCI_OP = {"SCMP_CMP_EQ": "==", "SCMP_CMP_NE": "!=", "SCMP_CMP_LT": "<", "SCMP_CMP_LE": "<=",
               "SCMP_CMP_GE": ">=", "SCMP_CMP_GT": ">", "SCMP_CMP_MASKED_EQ": "&=="}
# Arguments whose values have well-known names: (syscall, arg) -> (bit flags?, name patterns)
SYMBOLS = {("socket", 0): (False, "AF_*"), ("socketpair", 0): (False, "AF_*"),
           ("socket", 1): (False, "SOCK_*"), ("clone", 0): (True, "CLONE_*"),
           ("unshare", 0): (True, "CLONE_*"), ("setns", 1): (True, "CLONE_*"),
           ("personality", 0): (True, "PER_LINUX PER_LINUX32 UNAME26 ADDR_NO_RANDOMIZE FDPIC_FUNCPTRS "
                                      "MMAP_PAGE_ZERO ADDR_COMPAT_LAYOUT READ_IMPLIES_EXEC "
                                      "ADDR_LIMIT_32BIT SHORT_INODE WHOLE_SECONDS STICKY_TIMEOUTS "
                                      "ADDR_LIMIT_3GB"),
           ("ioctl", 1): (False, "TC* TIOC* FIO* SIOC*"), ("prctl", 0): (False, "PR_*"),
           ("fcntl", 1): (False, "F_*"), ("arch_prctl", 0): (False, "ARCH_*"),
           ("mmap", 2): (True, "PROT_*"), ("mprotect", 2): (True, "PROT_*"), ("mmap", 3): (True, "MAP_*"),
           ("madvise", 2): (False, "MADV_*"), ("futex", 1): (False, "FUTEX_*"),
           ("kill", 1): (False, "SIG*"), ("tkill", 1): (False, "SIG*"), ("tgkill", 2): (False, "SIG*"),
           ("open", 1): (True, "O_*"), ("openat", 2): (True, "O_*"), ("memfd_create", 1): (True, "MFD_*"),
           ("getrandom", 2): (True, "GRND_*"), ("setsockopt", 1): (False, "SOL_*"),
           ("getsockopt", 1): (False, "SOL_*"), ("seccomp", 0): (False, "SECCOMP_*")}


@dataclass
class ImportOptions:
    caps: frozenset[str] = frozenset()
    arch: str = "x86_64"
    kernel: tuple[int, int] | None = None     # None: every includes.minKernel is taken as met
    name: str | None = None


@dataclass
class ImportedRule:
    action: Action
    names: list[str]
    conds: list[tuple[int, str, int, int]]    # (arg, op, value, mask); op "&==" is masked
    comment: str | None
    line: int
    notes: list[str]


class _Json:
    """Typed access to a JSON document composed as YAML nodes, which keep line:col."""

    def __init__(self, file: str, text: str):
        self.file, self.diags = file, []
        self.sources = {file: text.splitlines(keepends=True)}

    def pos(self, node) -> Position:
        m, e = node.start_mark, node.end_mark
        return Position(self.file, m.line + 1, m.column + 1,
                        max(1, e.column - m.column) if e.line == m.line else 1)

    def say(self, node, msg: str, hint: str | None = None, severity: str = "error") -> None:
        self.diags.append(Diagnostic(self.pos(node) if node is not None else None, msg, severity, hint))

    @staticmethod
    def kind(node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "object"
        if isinstance(node, yaml.SequenceNode):
            return "array"
        if node.style == '"':
            return "string"
        return {"true": "boolean", "false": "boolean", "null": "null"}.get(node.value, "number")

    def expect(self, node, kind: str, what: str) -> bool:
        if self.kind(node) == kind:
            return True
        self.say(node, f"{what} must be {'an' if kind[0] in 'ao' else 'a'} {kind}, not {self.kind(node)}")
        return False

    def fields(self, node, allowed: tuple[str, ...], what: str) -> dict:
        if not self.expect(node, "object", what):
            return {}
        out: dict = {}
        for k, v in node.value:
            if k.value in out:
                self.say(k, f"duplicate key '{k.value}' in {what}")
            elif k.value not in allowed:
                self.say(k, f"unknown key '{k.value}' in {what} (ignored)", did_you_mean(k.value, allowed),
                         severity="warning")
            else:
                out[k.value] = v
        return out

    def string(self, node, what: str) -> str | None:
        return node.value if self.expect(node, "string", what) else None

    def uint(self, node, what: str, top: int = M64) -> int | None:
        if not self.expect(node, "number", what):
            return None
        if not re.fullmatch(r"0|[1-9][0-9]*", node.value) or int(node.value) > top:
            self.say(node, f"{what} must be an integer 0..{top}, not {node.value}")
            return None
        return int(node.value)

    def strings(self, node, what: str) -> list[tuple[str, object]]:
        if node is None or self.kind(node) == "null" or not self.expect(node, "array", what):
            return []
        return [(s, n) for n in node.value if (s := self.string(n, what)) is not None]


def _compose(file: str, text: str, j: _Json):
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        j.diags.append(Diagnostic(Position(file, err.lineno, err.colno), f"invalid JSON: {err.msg}"))
        return None
    # JSON is YAML, except that YAML forbids tabs as indentation; a tab is one column either way
    try:
        node = yaml.compose(text.replace("\t", " "), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:        # valid JSON that YAML 1.1 still rejects
        mark = err.problem_mark or err.context_mark
        j.diags.append(Diagnostic(Position(file, mark.line + 1, mark.column + 1) if mark else None,
                                  f"cannot read this JSON: {err.problem or err.context}"))
        return None
    return node if node is not None and j.expect(node, "object", "a seccomp profile") else None


def _read_action(j: _Json, anode, enode) -> Action | None:
    name = j.string(anode, "action")
    kind = FROM_OCI.get(name) if name else None
    if kind is None:
        if name:
            j.say(anode, f"unknown action '{name}'", did_you_mean(name, FROM_OCI))
        return None
    data = None
    if enode is not None:
        if j.kind(enode) == "string" and enode.value in ERRNO:      # containers/common "errno": "ENOSYS"
            data = ERRNO[enode.value]
        else:
            data = j.uint(enode, "errnoRet", 4095)
        if kind not in ("errno", "trace"):
            j.say(enode, f"errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {name} "
                         "(OCI runtimes refuse the profile)")
    if kind == "errno":
        return Action("errno", 1 if data is None else data)
    if kind == "trace":
        j.say(anode, "SCMP_ACT_TRACE with no tracer attached fails the call with ENOSYS: imported as "
                     "errno(ENOSYS)", severity="warning")
        return Action("errno", 38)
    if kind == "notify":
        j.say(anode, "SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath): imported as notify",
              severity="warning")
    return Action(kind)


def parse_kernel(text: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _applies(j: _Json, fields: dict, opts: ImportOptions, notes: list[str]) -> str | None:
    """moby's includes/excludes for *opts*: why the entry is left out, or None (then *notes*)."""
    goarch, spec = GOARCH[opts.arch], {}
    for key in ("excludes", "includes"):
        f = j.fields(fields[key], ("caps", "arches", "minKernel"), key) if key in fields else {}
        caps = [c for c, _ in j.strings(f.get("caps"), f"{key}.caps")]
        arches = [a for a, _ in j.strings(f.get("arches"), f"{key}.arches")]
        text = kern = None
        if "minKernel" in f and j.kind(f["minKernel"]) != "null":
            text = j.string(f["minKernel"], f"{key}.minKernel")
            kern = parse_kernel(text) if text else None
            if text and kern is None:
                j.say(f["minKernel"], f"invalid kernel version '{text}' (expected MAJOR.MINOR)")
        spec[key] = (caps, arches, kern, text)
    (xcaps, xarches, _, _), (icaps, iarches, ikern, ktext) = spec["excludes"], spec["includes"]
    if set(xarches) & set(goarch):
        return f"excludes arches {', '.join(xarches)}"
    if set(xcaps) & opts.caps:
        return f"excludes caps {', '.join(sorted(set(xcaps) & opts.caps))} (granted)"
    if iarches and not set(iarches) & set(goarch):
        return f"includes arches {', '.join(iarches)}"
    if icaps and not set(icaps) <= opts.caps:
        return f"includes caps {', '.join(icaps)}"
    if ikern and opts.kernel and opts.kernel < ikern:
        return f"includes minKernel {ktext} (kernel {opts.kernel[0]}.{opts.kernel[1]})"
    for what, items in (("excludes caps", xcaps), ("excludes arches", xarches),
                        ("includes arches", iarches), ("includes caps", icaps)):
        if items:
            notes.append(f"{what} {', '.join(items)}" + (" (not granted)" if what == "excludes caps" else ""))
    if ikern:
        notes.append(f"includes minKernel {ktext}" + (" (taken as met)" if opts.kernel is None else ""))
    return None


def _read_args(j: _Json, node, names: list[str]) -> list[tuple[int, str, int, int]] | None:
    conds, ok = [], True
    for a in (node.value if node is not None and j.expect(node, "array", "args") else []):
        f = j.fields(a, ("index", "value", "valueTwo", "op"), "an argument comparison")
        if "index" not in f or "op" not in f:
            j.say(a, "an argument comparison needs 'index' and 'op'")
        idx = j.uint(f["index"], "index", 5) if "index" in f else None
        op = j.string(f["op"], "op") if "op" in f else None
        if op and op not in FROM_OCI_OP:
            j.say(f["op"], f"invalid op '{op}'", did_you_mean(op, FROM_OCI_OP))
            op = None
        value = j.uint(f["value"], "value") if "value" in f else 0
        two = j.uint(f["valueTwo"], "valueTwo") if "valueTwo" in f else 0
        if None in (idx, op, value, two):
            ok = False
            continue
        if op == "SCMP_CMP_MASKED_EQ":
            if two & ~value:
                j.say(a, f"valueTwo {two:#x} has bits outside the mask {value:#x}: this never matches",
                      severity="warning")
            cond = (idx, "&==", two, value)
        else:
            cond = (idx, FROM_OCI_OP[op], value, M64)
        ok &= _fits(j, f.get("value", a), names, cond)
        conds.append(cond)
    return conds if ok else None


def _fits(j: _Json, node, names: list[str], cond: tuple[int, str, int, int]) -> bool:
    """sbx compares 32-bit arguments on their low word: a wider value cannot be written."""
    idx, _, value, mask = cond
    for name in names:
        for arch in syscalls.ARCHES:
            if name in syscalls.table(arch) and arg_width(arch, name, idx) == 32:
                bad = [v for v in (value, mask if mask != M64 else 0) if v > M32]
                if bad:
                    j.say(node, f"value {bad[0]:#x} does not fit the 32-bit argument arg{idx} of {name} "
                                f"on {arch} (the kernel reads its low word only)")
                    return False
    return True


def _read_entries(j: _Json, nodes, opts: ImportOptions, skipped: list[str]) -> list[ImportedRule]:
    known, out = syscalls.all_names(), []
    for node in nodes:
        f = j.fields(node, ("names", "name", "action", "errnoRet", "errno", "args", "comment",
                            "includes", "excludes"), "a syscalls entry")
        if not f:
            continue
        line, notes = node.start_mark.line + 1, []
        if "name" in f and "names" in f:
            j.say(node, "both 'name' and 'names' in one entry: use either 'name' or 'names'")
        names = [(s, n) for s, n in ([(j.string(f["name"], "name"), f["name"])] if "name" in f
                                      else j.strings(f.get("names"), "names")) if s]
        if "action" not in f:
            j.say(node, "a syscalls entry needs an 'action'")
            continue
        action = _read_action(j, f["action"], f.get("errnoRet", f.get("errno")))
        why = _applies(j, f, opts, notes)
        label = ", ".join(n for n, _ in names[:6]) + (f" ... ({len(names)} names)" if len(names) > 6 else "")
        if why is not None:
            skipped.append(f"line {line}: {why}: {label}")
            continue
        for name, nnode in names:
            if name not in known:
                j.say(nnode, f"unknown syscall '{name}' on every supported architecture (skipped, as runc "
                             "skips names it cannot resolve)", did_you_mean(name, known), "warning")
        good = [n for n, _ in names if n in known]
        conds = _read_args(j, f.get("args"), good)
        comment = j.string(f["comment"], "comment") if "comment" in f else None
        if action is None or conds is None:
            continue
        if not good:
            skipped.append(f"line {line}: no known syscall name: {label}")
        elif len({c[0] for c in conds}) < len(conds):
            j.say(f["args"], "several comparisons on one argument: runc then adds each comparison as a "
                             "rule of its own (any of them matches)", severity="warning")
            out += [ImportedRule(action, good, [c], comment, line, notes) for c in conds]
        else:
            out.append(ImportedRule(action, good, conds, comment, line, notes))
    return out


def _as_libseccomp(j: _Json, rules: list[ImportedRule], default: Action) -> list[ImportedRule]:
    """Drop what libseccomp ignores, so that first-match order gives libseccomp's answers.

    runc skips rules with the default action; a syscall with an unconditional
    rule is decided by the first such rule alone.  Overlapping conditional rules
    with different actions follow libseccomp's tree, not the file order: warned.
    """
    out = []
    for r in rules:
        if r.action != default:
            out.append(r)
            continue
        j.diags.append(Diagnostic(Position(j.file, r.line, 1), f"{action_text(r.action)} is the default "
                                  f"action: runc ignores this entry ({', '.join(r.names[:4])})", "note"))
    decider: dict[str, ImportedRule] = {}
    for r in out:
        for n in r.names:
            if not r.conds:
                decider.setdefault(n, r)
    for r in out:
        lost = [n for n in r.names if n in decider and decider[n] is not r]
        if [n for n in lost if decider[n].action != r.action]:
            first = decider[lost[0]].line
            j.diags.append(Diagnostic(Position(j.file, r.line, 1), f"{', '.join(lost)}: libseccomp lets the "
                                      f"unconditional rule at line {first} decide, this entry never "
                                      "applies to them", "warning"))
        r.names = [n for n in r.names if n not in lost]
    bdd, regions = Bdd(), {}
    for r in out:
        region = 1
        for arg, op, value, mask in r.conds:
            region = bdd.both(region, bdd.compare(arg, op, value, 64, mask))
        for n in r.names:
            for other, oregion in regions.get(n, []):
                if other.action != r.action and bdd.both(region, oregion):
                    j.diags.append(Diagnostic(Position(j.file, r.line, 1), f"{n}: arguments matched by this "
                                              f"entry and by line {other.line} get different actions; "
                                              "libseccomp's choice does not follow file order, sbx's does",
                                              "warning"))
            regions.setdefault(n, []).append((r, region))
    return [r for r in out if r.names]


def _symbol(names: list[str], arg: int, value: int) -> str:
    spec = {SYMBOLS.get((n, arg)) for n in names}
    plain = str(value) if value < 4096 else hex(value)
    if len(spec) != 1 or None in spec:
        return plain
    flags, patterns = spec.pop()
    pats = patterns.split()
    named = [(k, v) for k, v in CONSTANTS.items() if v >= 0 and any(
        k.startswith(p[:-1]) if p.endswith("*") else k == p for p in pats)]
    for k, v in named:
        if v == value:
            return k
    if flags and value:
        bits: dict[int, str] = {}
        for k, v in named:
            if v and not v & (v - 1) and value & v:
                bits.setdefault(v, k)
        if sum(bits) == value:
            return "|".join(bits[b] for b in sorted(bits))
    return plain


def _cond_text(names: list[str], cond: tuple[int, str, int, int]) -> str:
    arg, op, value, mask = cond
    if op == "&==":
        return f"arg{arg} & {_symbol(names, arg, mask)} == {_symbol(names, arg, value)}"
    shown = _symbol(names, arg, value) if op in ("==", "!=") else (str(value) if value < 4096 else hex(value))
    return f"arg{arg} {op} {shown}"


def _yaml_rule(r: ImportedRule, file: str) -> list[str]:
    key = action_text(r.action)
    lines = [f"  # {file}:{r.line}" + (f" ({'; '.join(r.notes)})" if r.notes else "")]
    if len(r.names) == 1:
        lines.append(f"  - {key}: {r.names[0]}")
    else:
        lines.append(f"  - {key}: [")
        cur = "     "
        for n in r.names:
            if len(cur) + len(n) > 98:
                lines.append(cur.rstrip())
                cur = "     "
            cur += f" {n},"
        lines += [cur.rstrip(","), "    ]"]
    if r.conds:
        lines.append(f"    when: [{', '.join(json.dumps(_cond_text(r.names, c)) for c in r.conds)}]")
    if r.comment:
        lines.append(f"    comment: {json.dumps(r.comment, ensure_ascii=False)}")
    return lines


def _import_arches(j: _Json, top: dict, native: str) -> list[str]:
    listed = j.strings(top.get("architectures"), "architectures")
    amap = top.get("archMap")
    if listed and amap is not None and j.kind(amap) == "array" and amap.value:
        j.say(amap, "'architectures' and 'archMap' were both given: use either 'architectures' or 'archMap'")
    if amap is not None and not listed and j.expect(amap, "array", "archMap"):
        for item in amap.value:
            f = j.fields(item, ("architecture", "subArchitectures"), "an archMap entry")
            main = j.string(f["architecture"], "architecture") if "architecture" in f else None
            if main == OCI_ARCH[native]:
                subs = j.strings(f.get("subArchitectures"), "subArchitectures")
                listed = [(main, f["architecture"])] + subs
    out = [native]
    for name, node in listed:
        ours = SCMP_TO_ARCH.get(name)
        if name not in SCMP_ARCHES:
            j.say(node, f"unknown architecture '{name}'", did_you_mean(name, SCMP_ARCHES))
        elif ours is None and name != "SCMP_ARCH_NATIVE":
            j.say(node, f"{name} has no syscall table in sbx: its calls get bad_arch", severity="warning")
        elif ours and ours not in out:
            out.append(ours)
    return out


def _import_header(name: str, shown: str, opts: ImportOptions, unknown: Action,
                   skipped: list[str]) -> list[str]:
    caps = ", ".join(sorted(opts.caps)) or "none"
    kern = "taken as met" if opts.kernel is None else f"{opts.kernel[0]}.{opts.kernel[1]}"
    out = [f"# {name}: imported by `sbx import` from {shown}",
           f"# Resolved for arch {opts.arch} (\"{GOARCH[opts.arch][0]}\" in includes/excludes), "
           f"capabilities: {caps}, includes.minKernel: {kern}.",
           "# Read as runc reads it: entries with the default action are ignored, an unconditional",
           "# entry alone decides its syscall, comparisons repeated on one argument are alternatives.",
           "# Differences: sbx compares 32-bit arguments (an int such as socket's family) on their low",
           "# word, libseccomp on all 64 bits; numbers the syscall tables do not name get",
           f"# {action_text(unknown)} here (runc: ENOSYS above the highest syscall libseccomp knows);",
           "# bad_arch is libseccomp's kill-thread, as under runc."]
    if skipped:
        out += ["# Entries left out:"] + [f"#   {s}" for s in skipped]
    return out


def import_oci(text: str, file: str, opts: ImportOptions) -> tuple[str, list[Diagnostic]]:
    """An OCI/Docker seccomp JSON as a profile in the sbx language (text, warnings); raises PolicyError."""
    j = _Json(file, text)
    root = _compose(file, text, j)
    keys = ("defaultAction", "defaultErrnoRet", "defaultErrno", "architectures", "archMap", "syscalls",
            "flags", "listenerPath", "listenerMetadata")
    top = j.fields(root, keys, "the profile") if root else {}
    default = None
    if root is not None and "defaultAction" not in top:
        j.say(root, "the profile has no 'defaultAction'")
    elif root is not None:
        default = _read_action(j, top["defaultAction"], top.get("defaultErrnoRet", top.get("defaultErrno")))
    arches = _import_arches(j, top, opts.arch) if root is not None else []
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if key in top:
            j.say(top[key], f"'{key}' is not carried over (sbx run --log asks for SECCOMP_FILTER_FLAG_LOG)",
                  severity="warning")
    skipped: list[str] = []
    listed = "syscalls" in top and j.expect(top["syscalls"], "array", "syscalls")
    nodes = top["syscalls"].value if listed else []
    rules = _read_entries(j, nodes, opts, skipped)
    if default is None or any(d.severity == "error" for d in j.diags):
        raise PolicyError([d for d in j.diags if d.severity == "error"] or j.diags, j.sources)
    rules = _as_libseccomp(j, rules, default)
    shown = display_path(file)
    name = opts.name or re.sub(r"\.json$", "", file.rsplit("/", 1)[-1])
    unknown = default if default.kind in PERMISSIVE else Action("errno", 38)
    desc = f"imported from {shown} for {opts.arch}, capabilities: {', '.join(sorted(opts.caps)) or 'none'}"
    out = _import_header(name, shown, opts, unknown, skipped) + [
        "", f"name: {json.dumps(name)}", f"description: {json.dumps(desc)}",
        f"default: {action_text(default)}", f"unknown: {action_text(unknown)}",
        f"arches: [{', '.join(arches)}]", "bad_arch: kill-thread", "", "rules:" if rules else "rules: []"]
    for r in rules:
        out += _yaml_rule(r, shown) + [""]
    return "\n".join(out).rstrip() + "\n", [d for d in j.diags if d.severity != "error"]

"""The policy IR: what a filter must decide, and a plain evaluator of that meaning.

A ``Policy`` holds, per architecture, the ordered rules of each syscall number,
plus the default action (table syscalls no rule matches), the unknown action
(numbers the syscall table does not name) and the bad-arch action (any other
architecture, and the x32 ABI unless it is listed).  ``evaluate`` is the
reference semantics: the compiler's output must agree with it on every input.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from . import insn as I
from .syscalls import AUDIT_ARCH, X32_SYSCALL_BIT

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF

_BASE = {"allow": I.RET_ALLOW, "log": I.RET_LOG, "errno": I.RET_ERRNO, "trap": I.RET_TRAP,
         "kill-process": I.RET_KILL_PROCESS, "kill-thread": I.RET_KILL_THREAD,
         "notify": I.RET_USER_NOTIF, "trace": I.RET_TRACE}


@dataclass(frozen=True)
class Action:
    kind: str
    data: int = 0

    def __post_init__(self):
        if self.kind not in _BASE:
            raise ValueError(f"unknown action {self.kind!r}")
        if not 0 <= self.data <= I.RET_DATA:
            raise ValueError(f"action data {self.data} out of range 0..65535")

    @property
    def ret(self) -> int:
        return _BASE[self.kind] | self.data

    @classmethod
    def from_ret(cls, value: int) -> "Action":
        base, data = I.action_of(value), value & I.RET_DATA
        for kind, b in _BASE.items():
            if b == base:
                return cls(kind, data if kind in ("errno", "trap", "trace") else 0)
        return cls("kill-process")   # the kernel treats unknown actions as kill-process

    @property
    def denies(self) -> bool:
        return self.kind not in ("allow", "log")

    def __str__(self) -> str:
        if self.kind in ("errno", "trap", "trace") and (self.data or self.kind == "errno"):
            return f"{self.kind}({self.data})"
        return self.kind


ALLOW = Action("allow")
KILL_PROCESS = Action("kill-process")


@dataclass(frozen=True)
class Origin:
    """Where a rule (or a profile-level action) was written."""
    file: str
    line: int
    col: int = 1
    text: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


# comparison operators; masked forms carry a mask, set forms a tuple of values
OPS = ("==", "!=", "<", "<=", ">", ">=", "&==", "&!=", "in", "not in")


@dataclass(frozen=True)
class Cond:
    """``(arg[n] & mask) OP value`` over ``width`` bits (32: the low word only)."""
    arg: int
    op: str
    value: int | tuple[int, ...]
    mask: int = M64
    width: int = 64

    def __post_init__(self):
        if not 0 <= self.arg <= 5:
            raise ValueError(f"argument index {self.arg} out of range 0..5")
        if self.op not in OPS:
            raise ValueError(f"unknown operator {self.op!r}")
        if self.width not in (32, 64):
            raise ValueError("width must be 32 or 64")

    @property
    def values(self) -> tuple[int, ...]:
        return self.value if isinstance(self.value, tuple) else (self.value,)

    def holds(self, args: Sequence[int]) -> bool:
        top = M32 if self.width == 32 else M64
        a = args[self.arg] & top & self.mask
        vals = [v & top for v in self.values]
        v = vals[0]
        op = self.op
        if op in ("==", "&=="):
            return a == v
        if op in ("!=", "&!="):
            return a != v
        if op == "<":
            return a < v
        if op == "<=":
            return a <= v
        if op == ">":
            return a > v
        if op == ">=":
            return a >= v
        if op == "in":
            return a in vals
        return a not in vals

    def __str__(self) -> str:
        lhs = f"arg{self.arg}" if self.mask in (M64, M32) else f"arg{self.arg} & {self.mask:#x}"
        op = self.op.lstrip("&")
        if self.op in ("in", "not in"):
            return f"{lhs} {op} [{', '.join(hex(v) for v in self.values)}]"
        return f"{lhs} {op} {self.value:#x}"


@dataclass(frozen=True)
class Rule:
    action: Action
    conds: tuple[Cond, ...] = ()
    origin: Origin | None = None

    def matches(self, args: Sequence[int]) -> bool:
        return all(c.holds(args) for c in self.conds)


@dataclass
class ArchPolicy:
    """Rules for one ABI. ``known`` are the numbers the syscall table names."""
    arch: str
    rules: dict[int, tuple[Rule, ...]]
    known: frozenset[int]

    @property
    def audit_arch(self) -> int:
        return AUDIT_ARCH[self.arch]


@dataclass
class Policy:
    arches: list[ArchPolicy]
    default: Action
    unknown: Action = Action("errno", 38)
    bad_arch: Action = KILL_PROCESS
    name: str = "policy"
    origins: Mapping[str, Origin | None] = field(default_factory=dict)  # default/unknown/bad_arch

    def arch(self, name: str) -> ArchPolicy | None:
        for ap in self.arches:
            if ap.arch == name:
                return ap
        return None

    def origin_of(self, decision: "Decision") -> Origin | None:
        """Where the profile says what *decision* says: the deciding rule, or the
        profile-level action (default, unknown, bad_arch) that decided."""
        if decision.rule is not None:
            return decision.rule.origin
        return self.origins.get(decision.reason)


@dataclass(frozen=True)
class Decision:
    action: Action
    rule: Rule | None        # None: a profile-level action (see ``reason``)
    reason: str              # "rule", "default", "unknown", "bad_arch"


# NOTE: syscall number -1 (0xFFFFFFFF) on the x86_64 token belongs to the x86_64
# ABI, where no table names it (so it gets ``unknown``), not to the x32 half with
# its wrong-ABI action. It is what a tracer writes to skip a syscall at the
# entry stop, and the kernel runs seccomp after that stop with the number the
# tracer left (kernel/entry/common.c: ptrace_report_syscall_entry, then
# __secure_computing): killing there would kill every program whose debugger
# or strace --inject skips a call. A program that calls syscall(-1) itself gets
# -ENOSYS from the kernel anyway. libseccomp makes the same exception (-1 gets
# its default action on x86_64).
NR_MINUS_ONE = 0xFFFFFFFF


def select_arch(policy: Policy, arch: int, nr: int) -> ArchPolicy | None:
    """The ABI a (arch token, nr) pair belongs to, or None for bad_arch."""
    if arch == AUDIT_ARCH["x86_64"]:
        # every number from the x32 bit up is the x32 half (x32 syscalls, or garbage),
        # except -1: x86_64's "no syscall" (NR_MINUS_ONE)
        name = "x32" if nr >= X32_SYSCALL_BIT and nr != NR_MINUS_ONE else "x86_64"
        return policy.arch(name)
    for ap in policy.arches:
        if ap.audit_arch == arch and ap.arch not in ("x86_64", "x32"):
            return ap
    return None


def fixed_action(policy: Policy, ap: ArchPolicy, nr: int) -> Action | None:
    """The action *policy* gives syscall *nr* of *ap* whatever its arguments, or
    None when the arguments decide: the actions of its rules up to the first
    without conditions (or then the default), when they are all the same."""
    seen = set()
    for rule in ap.rules.get(nr, ()):
        seen.add(rule.action)
        if not rule.conds:
            break
    else:
        seen.add(policy.default if nr in ap.known else policy.unknown)
    return seen.pop() if len(seen) == 1 else None


def evaluate(policy: Policy, arch: int, nr: int, args: Sequence[int] = (0,) * 6) -> Decision:
    """The reference meaning of *policy* for one syscall."""
    nr &= M32
    ap = select_arch(policy, arch, nr)
    if ap is None:
        return Decision(policy.bad_arch, None, "bad_arch")
    for rule in ap.rules.get(nr, ()):
        if rule.matches(args):
            return Decision(rule.action, rule, "rule")
    if nr in ap.known:
        return Decision(policy.default, None, "default")
    return Decision(policy.unknown, None, "unknown")

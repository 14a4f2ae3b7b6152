"""A second backend: compile the same policy IR with libseccomp (through pyseccomp).

Used as a test oracle and as the peer in ``make bench``.  libseccomp cannot
express everything our IR can (first-match ordering between overlapping
conditional rules with different actions, ``not in`` on one argument,
per-argument widths, an ``unknown`` action distinct from the default);
``Unsupported`` says so instead of compiling something different.
"""
from __future__ import annotations

import tempfile

import pyseccomp as sc

from bpf_filters import syscalls
from bpf_filters.ir import Cond, Policy

_ARCH = {"x86_64": sc.Arch.X86_64, "i386": sc.Arch.X86, "x32": sc.Arch.X32,
         "aarch64": sc.Arch.AARCH64}
_OPS = {"==": sc.EQ, "!=": sc.NE, "<": sc.LT, "<=": sc.LE, ">": sc.GT, ">=": sc.GE}


class Unsupported(Exception):
    pass


def _args(conds: tuple[Cond, ...]) -> list[list[sc.Arg]]:
    """Conditions as libseccomp comparisons; ``in`` expands into one rule per value."""
    alts: list[list[sc.Arg]] = [[]]
    for c in conds:
        if c.op in _OPS:
            opts = [sc.Arg(c.arg, _OPS[c.op], c.value)]
        elif c.op == "&==":
            opts = [sc.Arg(c.arg, sc.MASKED_EQ, c.mask, c.value)]
        elif c.op == "in":
            opts = [sc.Arg(c.arg, sc.EQ, v) for v in c.values]
        else:
            raise Unsupported(f"libseccomp has no '{c.op}' comparison")
        alts = [a + [o] for a in alts for o in opts]
    for a in alts:
        if len({x._arg for x in a}) != len(a):
            raise Unsupported("libseccomp allows one comparison per argument in a rule")
    return alts


def build(policy: Policy, optimize: int = 2, skipped: set | None = None):
    """A pyseccomp SyscallFilter for *policy*; optimize 2 = binary tree, 1 = linear.

    Syscalls libseccomp does not know are left out of a multi-arch filter (runc
    does the same) and their names added to *skipped*.
    """
    skipped = set() if skipped is None else skipped
    f = sc.SyscallFilter(policy.default.ret)
    f.set_attr(sc.Attr.ACT_BADARCH, policy.bad_arch.ret)
    f.set_attr(sc.Attr.CTL_NNP, 0)
    if optimize:
        f.set_attr(sc.Attr.CTL_OPTIMIZE, optimize)
    native = sc.system_arch()
    wanted = [_ARCH[ap.arch] for ap in policy.arches]
    for a in wanted:
        if not f.exist_arch(a):
            f.add_arch(a)
    if native not in wanted:
        f.remove_arch(native)
    for ap in policy.arches:
        table = syscalls.table(ap.arch)
        for nr, rules in ap.rules.items():
            name = table.name(nr)
            if sc.resolve_syscall(_ARCH[ap.arch], name) == -1:      # __NR_SCMP_ERROR
                # newer than libseccomp's table: only a number can name it (native arch only)
                if len(policy.arches) != 1 or _ARCH[ap.arch] != native:
                    skipped.add(name)       # as runc does: libseccomp cannot name it
                    continue
                name = nr
            actions = {r.action for r in rules}
            if len(rules) > 1 and len(actions) > 1:
                # first-match ordering is expressible only when the rules are disjoint
                raise Unsupported(f"{name}: rules with different actions need first-match order")
            for r in rules:
                if r.action == policy.default:
                    continue
                if not r.conds:
                    f.add_rule(r.action.ret, name)
                    break
                for alt in _args(r.conds):
                    f.add_rule(r.action.ret, name, *alt)
    return f


def compile_bpf(policy: Policy, optimize: int = 2, skipped: set | None = None) -> bytes:
    """The raw filter libseccomp generates for *policy*."""
    f = build(policy, optimize, skipped)
    with tempfile.TemporaryFile() as fh:
        f.export_bpf(fh)
        fh.flush()
        fh.seek(0)
        return fh.read()

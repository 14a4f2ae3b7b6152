"""The profile language: load YAML profiles with positions, lower them to the IR, compile.

Pipeline: ``load_profile`` (text -> Profile, every problem as a Diagnostic)
-> ``lower`` (Profile -> per-arch Policy IR) -> ``bpf_filters.compile_policy``.
"""
from __future__ import annotations

from bpf_filters.compiler import Filter, ProgramTooLarge, compile_policy
from bpf_filters.insn import MAXINSNS
from bpf_filters.ir import Action, Policy

from .diagnostics import Diagnostic, PolicyError, Position
from .lower import lower
from .profile import Profile, builtin_dir, builtin_names, find_profile, load_profile


def complain(policy: Policy) -> Policy:
    """Complain mode: what the profile would deny by default is logged and allowed."""
    policy.default = Action("log")
    policy.unknown = Action("log")
    return policy


def build_filter(profile: Profile, native: str = "x86_64", mode: str = "enforce",
                 optimize: bool = True) -> Filter:
    """The profile's filter; PolicyError if the profile does not lower, or if the
    program is longer than the kernel accepts."""
    policy = lower(profile, native)
    if mode == "complain":
        policy = complain(policy)
    try:
        return compile_policy(policy, optimize_program=optimize)
    except ProgramTooLarge as err:
        raise PolicyError([too_large(err, profile)], profile.sources) from None


def too_large(err: ProgramTooLarge, profile: Profile) -> Diagnostic:
    """A program over the kernel's limit, as an error at the rule whose conditions
    take the most instructions, with the next two as notes and what to change."""
    rules = [(o, n) for o, n in err.largest if o is not None and o.line >= 1]
    search = next((n for o, n in err.largest if o is None), 0)
    msg = f"the filter is too large for the kernel: {err.insns:,} instructions, at most {MAXINSNS:,}"
    hint = ("write consecutive values as one `in` list (it compiles to a range check), test flags "
            "with a mask (`argN & M == V`), keep rules with the same action on the same argument "
            "next to each other (they merge), drop conditions on calls that need none")
    if len(err.arches) > 1:
        hint += f", or list fewer ABIs in arches ({', '.join(err.arches)}: each has its own copy)"
    if not rules:
        return Diagnostic(Position(profile.path, 1, 1), f"{msg}; the syscall-number search takes "
                          f"{search:,}", hint=hint)
    (top, n), rest = rules[0], rules[1:3]
    total = sum(k for _, k in rules)
    many = f"the conditions of {len(rules):,} rules take {total:,} (before optimization), " \
        if len(rules) > 1 else ""
    notes = [Diagnostic(Position(o.file, o.line, o.col), f"this rule's conditions take {k:,}",
                        severity="note") for o, k in rest]
    return Diagnostic(Position(top.file, top.line, top.col), f"{msg}; {many}this rule's conditions "
                      f"take {n:,}" + (", the most" if many else ""), hint=hint, notes=notes)


__all__ = ["Diagnostic", "PolicyError", "Position", "Profile", "build_filter", "builtin_dir",
           "builtin_names", "complain", "find_profile", "load_profile", "lower", "too_large"]

"""The profile language: load YAML profiles with positions, lower them to the IR, compile.

Pipeline: ``load_profile`` (text -> Profile, every problem as a Diagnostic)
-> ``lower`` (Profile -> per-arch Policy IR) -> ``bpf_filters.compile_policy``.
"""
from __future__ import annotations

from bpf_filters.compiler import Filter, compile_policy
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
    policy = lower(profile, native)
    if mode == "complain":
        policy = complain(policy)
    return compile_policy(policy, optimize_program=optimize)


__all__ = ["Diagnostic", "PolicyError", "Position", "Profile", "build_filter", "builtin_dir",
           "builtin_names", "complain", "find_profile", "load_profile", "lower"]

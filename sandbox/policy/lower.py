"""Lower a loaded Profile into the per-architecture policy IR.

Syscall names become numbers of each target ABI (a name the ABI lacks is
skipped there, with a warning); conditions get the width of the argument
they test (32-bit ``int`` arguments compare their low word only, as the
kernel reads them; every i386 argument is 32-bit).
"""
from __future__ import annotations

from bpf_filters import syscalls
from bpf_filters.ir import M32, M64, ArchPolicy, Cond, Origin, Policy, Rule
from bpf_filters.syscalls.signatures import signature

from .diagnostics import Diagnostic, PolicyError
from .profile import Profile


def arg_width(arch: str, name: str, arg: int) -> int:
    if arch == "i386":
        return 32
    sig = signature(name)
    if sig and arg < len(sig):
        return sig[arg].width
    return 64


def fits(value: int, width: int) -> bool:
    return -(1 << (width - 1)) <= value < (1 << width)


def _fit(value: int, width: int) -> int | None:
    """Two's complement of *value* in *width* bits, or None if it does not fit."""
    if -(1 << (width - 1)) <= value < (1 << width):
        return value & ((1 << width) - 1)
    return None


def resolve_arches(arches: list[str], native: str) -> list[str]:
    out = []
    for a in arches:
        a = native if a == "native" else a
        if a not in out:
            out.append(a)
    return out


def lower(profile: Profile, native: str = "x86_64") -> Policy:
    """Build the IR; raises PolicyError for values that do not fit their argument."""
    diags: list[Diagnostic] = []
    arch_policies = []
    for arch in resolve_arches(profile.arches.value, native):
        table = syscalls.table(arch)
        rules: dict[int, list[Rule]] = {}
        for spec in profile.rules:
            for name, _pos in spec.names:
                nr = table.nr(name)
                if nr is None:
                    continue
                conds = []
                for c in spec.conds:
                    width = arg_width(arch, name, c.arg)
                    vals = [_fit(v, width) for v in c.values]
                    mask = _fit(c.mask, width) if c.mask is not None else None
                    if any(v is None for v in vals) or (c.mask is not None and mask is None):
                        diags.append(Diagnostic(
                            c.pos, f"value does not fit the {width}-bit argument arg{c.arg} of "
                                   f"{name} on {arch}"))
                        continue
                    value = tuple(vals) if c.op in ("in", "not in") else vals[0]
                    top = M32 if width == 32 else M64
                    conds.append(Cond(c.arg, c.op, value, mask if mask is not None else top, width))
                rules.setdefault(nr, []).append(Rule(spec.action, tuple(conds), spec.origin))
        known = frozenset(table.by_nr)
        arch_policies.append(ArchPolicy(arch, {k: tuple(v) for k, v in rules.items()}, known))
    if [d for d in diags if d.severity == "error"]:
        raise PolicyError(diags, profile.sources)

    def origin(setting):
        if setting.pos is None:
            return None
        return Origin(setting.pos.file, setting.pos.line, setting.pos.col,
                      profile.sources.get(setting.pos.file, [""] * setting.pos.line)[setting.pos.line - 1].strip())

    return Policy(arch_policies, profile.default.value, profile.unknown.value,
                  profile.bad_arch.value, profile.name,
                  {"default": origin(profile.default), "unknown": origin(profile.unknown),
                   "bad_arch": origin(profile.bad_arch)})

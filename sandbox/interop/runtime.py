"""The OCI runtime preset: what runc and crun call after installing a container's filter.

A profile traced from a command never saw the container runtime's own last
calls (closing descriptors, opening the exec FIFO through /proc/self/fd,
capabilities, execve), so exported as it is it stops runc before the command
starts.  ``with_runtime_preset`` puts the rules of profiles/presets/oci-runtime.yaml
(the one list, documented there) before the profile's own, and reports which
syscalls that lets through where the profile alone did not.
"""
from __future__ import annotations

import dataclasses
import os

from bpf_filters import syscalls

from ..paths import builtin_dir, display_path
from ..policy import Profile, load_profile, lower
from .analysis import Bdd, plan_syscall

PRESET_PATH = os.path.join(builtin_dir(), "presets", "oci-runtime.yaml")


def load_preset() -> Profile:
    return load_profile(PRESET_PATH)


def with_runtime_preset(prof: Profile, native: str) -> tuple[Profile, list[str]]:
    """(the profile with the preset's rules first, syscalls the preset newly lets through for some arguments)."""
    preset = load_preset()
    merged = dataclasses.replace(
        prof, rules=preset.rules + prof.rules, files=prof.files + preset.files,
        sources={**prof.sources, **preset.sources}, warnings=list(prof.warnings))
    return merged, widened(prof, merged, {n for r in preset.rules for n, _ in r.names}, native)


def widened(before: Profile, after: Profile, names: set[str], native: str) -> list[str]:
    """Which of *names* *after* permits for arguments that *before* does not (any ABI)."""
    bdd, out = Bdd(), set()
    pb, pa = lower(before, native), lower(after, native)
    for ab, aa in zip(pb.arches, pa.arches):
        table = syscalls.table(aa.arch)
        for name in names:
            nr = table.nr(name)
            if nr is None:
                continue
            was = plan_syscall(bdd, name, ab.arch, ab.rules.get(nr, ()), pb.default).permitted(bdd, pb.default)
            now = plan_syscall(bdd, name, aa.arch, aa.rules.get(nr, ()), pa.default).permitted(bdd, pa.default)
            if bdd.both(now, bdd.neg(was)):
                out.add(name)
    return sorted(out)


def preset_note(added: list[str]) -> str:
    where = display_path(PRESET_PATH)
    if not added:
        return (f"sbx: added the OCI runtime preset ({where}): the profile already allows everything "
                "runc/crun call after installing the filter (--no-runtime-preset leaves it out)")
    return (f"sbx: added the OCI runtime preset ({where}), the calls runc/crun make after installing the "
            f"filter; it newly allows (for some arguments): {', '.join(added)} "
            "(--no-runtime-preset leaves it out)")

"""Syscall name <-> number tables for the architectures a filter can meet.

The numbers come from the Linux v6.18 syscall tables vendored in ``tbl/`` and
turned into ``_<arch>.py`` by ``tools/gen_syscalls.py``. Everything here is
pure data lookup: nothing asks the running kernel or the host which
architecture it is.

x32 numbers include ``X32_SYSCALL_BIT``: that is the value seccomp puts in
``seccomp_data.nr`` for an x32 task, and x32 shares ``AUDIT_ARCH_X86_64`` with
x86_64, so a filter tells them apart by that bit alone.
"""
from __future__ import annotations

import difflib
import functools
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

KERNEL = "6.18"
ARCHES = ("x86_64", "i386", "x32", "aarch64")

# linux/audit.h: EM_* | __AUDIT_ARCH_64BIT (0x80000000) | __AUDIT_ARCH_LE (0x40000000)
AUDIT_ARCH: dict[str, int] = {
    "x86_64": 0xC000003E,   # EM_X86_64 (62)
    "i386": 0x40000003,     # EM_386 (3), 32-bit
    "x32": 0xC000003E,      # same as x86_64; see X32_SYSCALL_BIT
    "aarch64": 0xC00000B7,  # EM_AARCH64 (183)
}
X32_SYSCALL_BIT = 0x40000000


class UnknownArchError(ValueError):
    """An architecture name that has no syscall table here."""


class BadVersionError(ValueError):
    """A kernel release that is not written MAJOR.MINOR, or that the ages cannot judge."""


def parse_version(text: str) -> tuple[int, int]:
    """``"5.10"`` -> ``(5, 10)``: a mainline release, ordered as the kernel numbers them."""
    match = re.fullmatch(r"(\d+)\.(\d+)", text.strip()) if isinstance(text, str) else None
    if match is None:
        raise BadVersionError(
            f"bad kernel release {text!r}: expected MAJOR.MINOR, such as '5.10'")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True, eq=False)
class SyscallTable:
    """One architecture's syscalls, both ways round.

    ``max_nr`` is the highest number in the table (for x32, with the x32 bit),
    the boundary above which a filter treats a number as unknown to this
    kernel version.
    """

    arch: str
    audit_arch: int
    by_name: Mapping[str, int]
    by_nr: Mapping[int, str]
    max_nr: int

    def nr(self, name: str) -> int | None:
        """The number of syscall *name*, or None when this arch lacks it."""
        return self.by_name.get(name)

    def name(self, nr: int) -> str | None:
        """The name of syscall number *nr*, or None when nothing has it."""
        return self.by_nr.get(nr)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __len__(self) -> int:
        return len(self.by_name)

    def __repr__(self) -> str:
        return f"<SyscallTable {self.arch}: {len(self)} syscalls, max_nr={self.max_nr:#x}>"


def _check_arch(arch: str) -> None:
    if arch not in ARCHES:
        hint = difflib.get_close_matches(arch, ARCHES, n=1)
        suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise UnknownArchError(
            f"unknown architecture '{arch}'; known: {', '.join(ARCHES)}{suffix}")


@functools.lru_cache(maxsize=None)
def table(arch: str) -> SyscallTable:
    """The syscall table of *arch*, one of ``ARCHES`` (loaded on first use)."""
    _check_arch(arch)
    module = importlib.import_module(f"._{arch}", __name__)
    by_name: dict[str, int] = dict(module.SYSCALLS)
    by_nr = {nr: name for name, nr in by_name.items()}
    if len(by_nr) != len(by_name):
        raise RuntimeError(f"{module.__name__}: two syscalls share a number")
    return SyscallTable(
        arch=arch,
        audit_arch=AUDIT_ARCH[arch],
        by_name=MappingProxyType(by_name),
        by_nr=MappingProxyType(by_nr),
        max_nr=max(by_nr),
    )


@functools.lru_cache(maxsize=None)
def all_names() -> frozenset[str]:
    """Every syscall name known on at least one architecture."""
    return frozenset(name for arch in ARCHES for name in table(arch).by_name)


def closest(name: str, arch: str | None = None) -> str | None:
    """The known syscall name most like *name*, for "did you mean" messages.

    Looks among *arch*'s names, or every architecture's when *arch* is None.
    Returns None when nothing is reasonably close.
    """
    candidates = table(arch).by_name.keys() if arch is not None else all_names()
    matches = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def seccomp_nr(arch: str, nr: int) -> int:
    """The number seccomp sees for *nr* as the monitor and audit report it
    (they give x32 numbers without the x32 bit, the tables keep it)."""
    return nr | X32_SYSCALL_BIT if arch == "x32" else nr


def reported_nr(arch: str, nr: int) -> int:
    """The inverse of ``seccomp_nr``: an x32 number without its x32 bit."""
    return nr & ~X32_SYSCALL_BIT if arch == "x32" else nr


def name_of(arch: str, nr: int) -> str | None:
    """The name of reported number *nr* on *arch*, or None (unknown arch or number)."""
    if arch not in ARCHES:
        return None
    return table(arch).name(seccomp_nr(arch, nr))


__all__ = [
    "ARCHES", "AUDIT_ARCH", "KERNEL", "X32_SYSCALL_BIT",
    "BadVersionError", "SyscallTable", "UnknownArchError", "all_names", "closest", "name_of",
    "parse_version", "reported_nr", "seccomp_nr", "table",
]

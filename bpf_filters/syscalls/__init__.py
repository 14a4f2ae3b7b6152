"""Syscall name <-> number tables for the architectures a filter can meet.

The numbers come from the Linux v6.18 syscall tables vendored in ``tbl/`` and
turned into ``_<arch>.py`` by ``tools/gen_syscalls.py``. Everything here is
pure data lookup: nothing asks the running kernel or the host which
architecture it is.

x32 numbers include ``X32_SYSCALL_BIT``: that is the value seccomp puts in
``seccomp_data.nr`` for an x32 task, and x32 shares ``AUDIT_ARCH_X86_64`` with
x86_64, so a filter tells them apart by that bit alone.

Import-light on purpose (no dataclasses, difflib only when a name is
misspelt): ``sandbox.kernel`` takes its syscall numbers from here on the
``sbx run`` hot path, where importing ``dataclasses`` alone costs ~10 ms.
"""
from __future__ import annotations

TYPE_CHECKING = False      # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from collections.abc import Mapping

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


class SyscallTable:
    """One architecture's syscalls, both ways round.

    ``max_nr`` is the highest number in the table (for x32, with the x32 bit),
    the boundary above which a filter treats a number as unknown to this
    kernel version.
    """

    __slots__ = ("arch", "audit_arch", "by_name", "by_nr", "max_nr")

    def __init__(self, arch: str, audit_arch: int, by_name: Mapping[str, int],
                 by_nr: Mapping[int, str], max_nr: int) -> None:
        self.arch, self.audit_arch, self.max_nr = arch, audit_arch, max_nr
        self.by_name, self.by_nr = by_name, by_nr

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, name):
            raise AttributeError(f"SyscallTable.{name} is read-only")
        object.__setattr__(self, name, value)

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
        import difflib
        hint = difflib.get_close_matches(arch, ARCHES, n=1)
        suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise UnknownArchError(
            f"unknown architecture '{arch}'; known: {', '.join(ARCHES)}{suffix}")


_TABLES: dict[str, SyscallTable] = {}


def _module(arch: str):
    _check_arch(arch)
    return __import__(f"{__name__}._{arch}", fromlist=["SYSCALLS"])


def table(arch: str) -> SyscallTable:
    """The syscall table of *arch*, one of ``ARCHES`` (loaded on first use)."""
    if arch in _TABLES:
        return _TABLES[arch]
    from types import MappingProxyType
    module = _module(arch)
    by_name: dict[str, int] = dict(module.SYSCALLS)
    by_nr = {nr: name for name, nr in by_name.items()}
    if len(by_nr) != len(by_name):
        raise RuntimeError(f"{module.__name__}: two syscalls share a number")
    _TABLES[arch] = SyscallTable(
        arch=arch,
        audit_arch=AUDIT_ARCH[arch],
        by_name=MappingProxyType(by_name),
        by_nr=MappingProxyType(by_nr),
        max_nr=max(by_nr),
    )
    return _TABLES[arch]


_ALL: list[frozenset[str]] = []


def all_names() -> frozenset[str]:
    """Every syscall name known on at least one architecture."""
    if not _ALL:
        _ALL.append(frozenset(name for arch in ARCHES for name in table(arch).by_name))
    return _ALL[0]


def closest(name: str, arch: str | None = None) -> str | None:
    """The known syscall name most like *name*, for "did you mean" messages.

    Looks among *arch*'s names, or every architecture's when *arch* is None.
    Returns None when nothing is reasonably close.
    """
    import difflib
    candidates = table(arch).by_name.keys() if arch is not None else all_names()
    matches = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


_ARCH_BY_TOKEN = {0xC000003E: "x86_64", 0x40000003: "i386", 0xC00000B7: "aarch64",
                  0x40000028: "arm"}


def arch_of(audit_arch: int, nr: int) -> tuple[str, int]:
    """Name a (AUDIT_ARCH_*, nr) pair as seccomp, audit and the tracers see it:
    x32 calls are x86_64 with bit 30 set (returned without it); an arch with
    no table here is named ``arch-0x...``."""
    if audit_arch == AUDIT_ARCH["x86_64"] and nr & X32_SYSCALL_BIT:
        return "x32", nr & ~X32_SYSCALL_BIT
    return _ARCH_BY_TOKEN.get(audit_arch, f"arch-{audit_arch:#x}"), nr


def numbers(arch: str) -> Mapping[str, int]:
    """name -> number of *arch*, straight from the generated module (no table
    object built): the cheapest lookup, for the kernel seam's hot path."""
    return _module(arch).SYSCALLS


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
    "SyscallTable", "UnknownArchError", "all_names", "arch_of", "closest", "name_of", "numbers", "reported_nr",
    "seccomp_nr", "table",
]

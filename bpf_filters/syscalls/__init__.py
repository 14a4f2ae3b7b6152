"""Syscall name <-> number tables for the architectures a filter can meet.

The numbers come from the Linux v6.18 syscall tables vendored in ``tbl/`` and
turned into ``_<arch>.py`` by ``tools/gen_syscalls.py``. Everything here is
pure data lookup: nothing asks the running kernel or the host which
architecture it is.

Each syscall also has an age: the first mainline release whose table had it
(``tbl/introduced.tsv``, derived from the kernel's own tables of every
release by ``tools/syscall_history.py``; docs/syscall-ages.md).
``newer_than(arch, "5.10")`` names the syscalls a 5.10 kernel may lack.

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


class BadVersionError(ValueError):
    """A kernel release that is not written MAJOR.MINOR, or that the ages cannot judge."""


class Age:
    """When a syscall entered one architecture's table.

    ``release`` is the first release read whose table has it. When ``exact``
    is False that is only an upper bound: ``not_in`` is then the newest
    release read that lacks it (the releases between were not read), or None
    when ``release`` is where the history starts.
    """

    __slots__ = ("release", "exact", "not_in")

    def __init__(self, release: str, exact: bool, not_in: str | None = None) -> None:
        self.release, self.exact, self.not_in = release, exact, not_in

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Age) and (self.release, self.exact, self.not_in) == (
            other.release, other.exact, other.not_in)

    def __hash__(self) -> int:
        return hash((self.release, self.exact, self.not_in))

    def __repr__(self) -> str:
        return f"Age(release={self.release!r}, exact={self.exact!r}, not_in={self.not_in!r})"


def parse_version(text: str) -> tuple[int, int]:
    """``"5.10"`` -> ``(5, 10)``: a mainline release, ordered as the kernel numbers them."""
    parts = text.strip().split(".") if isinstance(text, str) else []
    if len(parts) != 2 or not all(p.isdigit() and p.isascii() for p in parts):
        raise BadVersionError(
            f"bad kernel release {text!r}: expected MAJOR.MINOR, such as '5.10'")
    return int(parts[0]), int(parts[1])


class SyscallTable:
    """One architecture's syscalls, both ways round, with their ages.

    ``max_nr`` is the highest number in the table (for x32, with the x32 bit),
    the boundary above which a filter treats a number as unknown to this
    kernel version. ``ages`` maps a name to the first release whose table had
    it (an upper bound when ``unpinned`` names the newest release read without
    it); ``history_floor`` is the oldest release the ages reach, and
    ``floor_exact`` says whether the ABI itself begins there.
    """

    __slots__ = ("arch", "audit_arch", "by_name", "by_nr", "max_nr", "ages", "unpinned",
                 "history_floor", "floor_exact")

    def __init__(self, arch: str, audit_arch: int, by_name: Mapping[str, int],
                 by_nr: Mapping[int, str], max_nr: int, ages: Mapping[str, str] = None,
                 unpinned: Mapping[str, str] = None, history_floor: str = "",
                 floor_exact: bool = False) -> None:
        self.arch, self.audit_arch, self.max_nr = arch, audit_arch, max_nr
        self.by_name, self.by_nr = by_name, by_nr
        self.ages, self.unpinned = ages or {}, unpinned or {}
        self.history_floor, self.floor_exact = history_floor, floor_exact

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

    def introduced(self, name: str) -> str | None:
        """The first release whose table has *name*, or None when this arch lacks it.

        For a syscall whose age is not pinned (see ``age``) this is the newest
        release it may have entered in.
        """
        return self.ages.get(name)

    def age(self, name: str) -> Age | None:
        """The age of *name* with its certainty, or None when this arch lacks it."""
        release = self.ages.get(name)
        if release is None:
            return None
        if name in self.unpinned:
            return Age(release, False, self.unpinned[name])
        if release == self.history_floor and not self.floor_exact:
            return Age(release, False, None)
        return Age(release, True)

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
    if set(module.INTRODUCED) != set(by_name):
        raise RuntimeError(f"{module.__name__}: INTRODUCED does not date every syscall")
    _TABLES[arch] = SyscallTable(
        arch=arch,
        audit_arch=AUDIT_ARCH[arch],
        by_name=MappingProxyType(by_name),
        by_nr=MappingProxyType(by_nr),
        max_nr=max(by_nr),
        ages=MappingProxyType(dict(module.INTRODUCED)),
        unpinned=MappingProxyType(dict(module.UNPINNED)),
        history_floor=module.HISTORY_FLOOR,
        floor_exact=module.FLOOR_EXACT,
    )
    return _TABLES[arch]


def newer_than(arch: str, baseline: str) -> frozenset[str]:
    """The syscalls of *arch* that a kernel of release *baseline* ("5.10") may lack.

    A syscall counts when it entered the table after *baseline*. One whose age
    is a range (``SyscallTable.age``) counts unless the whole range is at or
    before *baseline*: the kernel may lack it, so it is the one to expect
    ENOSYS from. Raises BadVersionError for a release not written MAJOR.MINOR,
    and for one older than the history of *arch* when that history does not
    start where the ABI began (x86_64 and i386 start at 3.3 with syscalls
    that are older): the ages cannot tell what such a kernel had.
    """
    base = parse_version(baseline)
    tbl = table(arch)
    if base < parse_version(tbl.history_floor) and not tbl.floor_exact:
        raise BadVersionError(
            f"{arch} syscall ages start at {tbl.history_floor}; {baseline} is older "
            f"(docs/syscall-ages.md)")
    return frozenset(name for name, release in tbl.ages.items()
                     if parse_version(release) > base)


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
    "Age", "BadVersionError", "SyscallTable", "UnknownArchError", "newer_than", "parse_version", "all_names", "arch_of", "closest", "name_of", "numbers", "reported_nr",
    "seccomp_nr", "table",
]

#!/usr/bin/env python3
"""Generate bpf_filters/syscalls/_<arch>.py from the vendored Linux syscall tables
(and from them the eBPF object's syscall_nr.h and the kernel seam's sysnos.py).

Each kernel table line reads ``<number> <abi> <name> [<entry point> ...]``; an
architecture is the set of lines whose ABI it builds with. The output modules
are deterministic (sorted by number, then name) so ``make syscalls`` is
idempotent and a test can compare the committed files with a fresh run.

Each module also gets ``INTRODUCED``, the release that first had each syscall,
from ``tbl/introduced.tsv`` (derived from the kernel's history by
tools/syscall_history.py; see docs/syscall-ages.md). Every syscall of the
table must have exactly one age there, under the same number.

    python3 tools/gen_syscalls.py              # rewrite the committed modules
    python3 tools/gen_syscalls.py --out DIR    # write them somewhere else
    python3 tools/gen_syscalls.py --check      # exit 1 if the committed ones are stale
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

KERNEL = "6.18"
X32_SYSCALL_BIT = 0x40000000

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TBL_DIR = REPO / "bpf_filters" / "syscalls" / "tbl"
DEFAULT_OUT_DIR = REPO / "bpf_filters" / "syscalls"
# the eBPF object's numbers: x86_64 only (its path events are x86_64's)
EBPF_HEADER = REPO / "sandbox" / "ebpf" / "syscall_nr.h"
# the numbers the kernel seam calls by number (sandbox.kernel.libc.sysno), for the
# architectures sbx can run on: one small module that a cached `sbx run` loads
# instead of the whole tables
SEAM_MODULE = REPO / "sandbox" / "kernel" / "sysnos.py"
SEAM_SYSCALLS = ("capget", "capset", "getppid", "landlock_add_rule", "landlock_create_ruleset",
                 "landlock_restrict_self", "openat2", "pidfd_getfd", "seccomp")
SEAM_ARCHES = ("x86_64", "i386", "aarch64")
AGES_FILE = "introduced.tsv"
AGES_COLUMNS = ("arch", "name", "nr", "introduced")
AGES_HEADER = "\t".join(AGES_COLUMNS)
# "5.8": first in 5.8. "<=3.3": in the oldest release read, perhaps older.
# "5.0<5.2": not in 5.0, in 5.2, the release between not read. See docs/syscall-ages.md.
_AGE = re.compile(r"(?:(<=)|(\d+\.\d+)<)?(\d+\.\d+)")


@dataclass(frozen=True)
class ArchSpec:
    """How one architecture's numbers are taken from a kernel table."""

    arch: str
    tbl: str            # file name under tbl/
    source: str         # the table's path in the kernel tree
    abis: tuple[str, ...]
    bit: int = 0        # OR'ed into every number (x32 as seccomp sees it)


# arm64 builds the generic table with "common,64" plus the ABIs listed in
# arch/arm64/kernel/Makefile.syscalls (syscall_abis_64 += renameat rlimit memfd_secret).
SPECS = (
    ArchSpec("x86_64", "syscall_64.tbl", "arch/x86/entry/syscalls/syscall_64.tbl",
             ("common", "64")),
    ArchSpec("i386", "syscall_32.tbl", "arch/x86/entry/syscalls/syscall_32.tbl",
             ("i386",)),
    ArchSpec("x32", "syscall_64.tbl", "arch/x86/entry/syscalls/syscall_64.tbl",
             ("common", "x32"), X32_SYSCALL_BIT),
    ArchSpec("aarch64", "syscall.tbl", "scripts/syscall.tbl",
             ("common", "64", "renameat", "rlimit", "memfd_secret")),
)


class TableError(Exception):
    """A syscall table or ages file that cannot be turned into a module."""


class Entry(NamedTuple):
    nr: int
    abi: str
    name: str
    line: int
    entry: str = ""     # the native entry point; "" for a reserved slot (no entry point)


def parse_table(text: str, path: str) -> list[Entry]:
    """Return the table's entries in file order; comments and blank lines skipped."""
    entries = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 3:
            raise TableError(f"{path}:{lineno}: expected '<number> <abi> <name>', got {raw!r}")
        try:
            nr = int(fields[0], 10)
        except ValueError:
            raise TableError(f"{path}:{lineno}: bad syscall number {fields[0]!r}") from None
        entry = fields[3] if len(fields) > 3 else ""
        entries.append(Entry(nr, fields[1], fields[2], lineno, entry))
    return entries


def select(entries: list[Entry], spec: ArchSpec, path: str, strict: bool = True
           ) -> dict[str, Entry]:
    """Map name -> entry for the entries whose ABI *spec* builds with.

    A name or a number used twice within one architecture is an error: it would
    make the table ambiguous in one direction or the other. Old tables had such
    slips (v4.7 gave x32 preadv2 the number of preadv), so with *strict* False
    a repeated number is kept and a repeated name keeps its first entry.
    """
    by_name: dict[str, Entry] = {}
    by_nr: dict[int, Entry] = {}
    for entry in entries:
        if entry.abi not in spec.abis:
            continue
        for key, seen in ((entry.name, by_name), (entry.nr, by_nr)):
            first = seen.get(key)
            if first is not None and strict:
                raise TableError(
                    f"{path}:{entry.line}: {spec.arch}: {key!r} already defined "
                    f"at line {first.line}")
            seen.setdefault(key, entry)
    return by_name


class Age(NamedTuple):
    nr: int                 # as the kernel table numbers it (x32 without X32_SYSCALL_BIT)
    since: str              # "MAJOR.MINOR": the first release read that has it
    exact: bool             # False: *since* is only an upper bound
    not_in: str | None      # when not exact: the newest release read that lacks it, if any
    line: int


def read_ages(text: str, path: str) -> dict[str, dict[str, Age]]:
    """Parse an ages file: arch -> name -> Age. '#' lines are comments."""
    arches = {spec.arch for spec in SPECS}
    ages: dict[str, dict[str, Age]] = {arch: {} for arch in arches}
    header_seen = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        fields = raw.split("\t")
        if not header_seen:
            if tuple(fields) != AGES_COLUMNS:
                raise TableError(f"{path}:{lineno}: expected the header row "
                                 f"{AGES_HEADER!r}, got {raw!r}")
            header_seen = True
            continue
        if len(fields) != len(AGES_COLUMNS):
            raise TableError(f"{path}:{lineno}: expected {len(AGES_COLUMNS)} tab-separated "
                             f"fields, got {raw!r}")
        arch, name, nr_text, since = fields
        if arch not in arches:
            raise TableError(f"{path}:{lineno}: unknown architecture {arch!r}")
        match = _AGE.fullmatch(since)
        if not nr_text.isdigit() or match is None:
            raise TableError(f"{path}:{lineno}: bad number or version in {raw!r}")
        first = ages[arch].get(name)
        if first is not None:
            raise TableError(f"{path}:{lineno}: {arch} {name!r} already dated at line {first.line}")
        floor, not_in, since = match.groups()
        if not_in is not None and _version_key(not_in) >= _version_key(since):
            raise TableError(f"{path}:{lineno}: {not_in} is not older than {since}")
        ages[arch][name] = Age(int(nr_text), since, floor is None and not_in is None,
                               not_in, lineno)
    if not header_seen:
        raise TableError(f"{path}: no header row {AGES_HEADER!r}")
    return ages


def _version_key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


def check_ages(spec: ArchSpec, entries: dict[str, Entry], ages: dict[str, Age],
               path: str) -> None:
    """Check that *ages* dates exactly the syscalls of *entries*."""
    hint = "; rerun tools/syscall_history.py (docs/syscall-ages.md)"
    for name, entry in entries.items():
        age = ages.get(name)
        if age is None:
            raise TableError(f"{path}: {spec.arch} {name!r} ({entry.nr}) has no age{hint}")
        if age.nr != entry.nr:
            raise TableError(f"{path}:{age.line}: {spec.arch} {name!r} is {age.nr} here "
                             f"but {entry.nr} in {spec.tbl}{hint}")
    for name, age in ages.items():
        if name not in entries:
            raise TableError(f"{path}:{age.line}: {spec.arch} {name!r} is not in {spec.tbl}{hint}")
    floor = min((age.since for age in ages.values()), key=_version_key)
    for name, age in ages.items():
        if not age.exact and age.not_in is None and age.since != floor:
            raise TableError(f"{path}:{age.line}: {spec.arch} {name!r}: only the oldest "
                             f"release ({floor}) can be an open bound ('<=')")


def render(spec: ArchSpec, syscalls: dict[str, int], ages: dict[str, Age]) -> str:
    """The text of the generated module for *spec*."""
    abis = ", ".join(spec.abis)
    doc = f"{spec.arch} system call numbers: ABIs {abis} of {spec.tbl}."
    if spec.bit:
        doc += f"\n\nNumbers include X32_SYSCALL_BIT ({spec.bit:#x}), as seccomp sees them."
    doc += ("\n\nINTRODUCED: the first mainline release whose table has the syscall, under"
            "\nthis name and number (tbl/introduced.tsv). The history starts at"
            "\nHISTORY_FLOOR: unless FLOOR_EXACT, a syscall dated there may be older."
            "\nUNPINNED: syscalls dated only within a range, because the releases"
            "\nbetween were not read: not in UNPINNED[name], in INTRODUCED[name].\n")
    quoted_abis = ", ".join(f'"{abi}"' for abi in spec.abis)
    out = [
        f"# DO NOT EDIT: generated by tools/gen_syscalls.py from Linux v{KERNEL} {spec.source}",
        f'"""{doc}"""',
        "",
        f'KERNEL = "{KERNEL}"',
        f'SOURCE = "{spec.source}"',
        f"ABIS = ({quoted_abis}{',' if len(spec.abis) == 1 else ''})",
    ]
    floor = min((age.since for age in ages.values()), key=_version_key)
    out += [f'HISTORY_FLOOR = "{floor}"',
            f"FLOOR_EXACT = {all(age.exact or age.not_in for age in ages.values())}",
            "", "SYSCALLS: dict[str, int] = {"]
    ordered = sorted(syscalls.items(), key=lambda item: (item[1], item[0]))
    for name, nr in ordered:
        if spec.bit:
            out.append(f'    "{name}": {nr:#010x},  # {nr & ~spec.bit}')
        else:
            out.append(f'    "{name}": {nr},')
    out += ["}", "", "INTRODUCED: dict[str, str] = {"]
    for name, _ in ordered:
        out.append(f'    "{name}": "{ages[name].since}",')
    out += ["}", "", "UNPINNED: dict[str, str] = {"]
    out += [f'    "{name}": "{ages[name].not_in}",' for name, _ in ordered if ages[name].not_in]
    out.append("}")
    return "\n".join(out) + "\n"


def read_tables(tbl_dir: Path) -> dict[str, dict[str, Entry]]:
    """arch -> name -> Entry, from the vendored tables in *tbl_dir*."""
    tables = {}
    for spec in SPECS:
        path = tbl_dir / spec.tbl
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise TableError(f"{path}: cannot read: {err.strerror}") from err
        entries = select(parse_table(text, str(path)), spec, str(path))
        if not entries:
            raise TableError(f"{path}: no entries for {spec.arch} (ABIs {spec.abis})")
        tables[spec.arch] = entries
    return tables


def generate(tbl_dir: Path) -> dict[str, str]:
    """Module file name -> text, for every architecture."""
    tables = read_tables(tbl_dir)
    ages_path = tbl_dir / AGES_FILE
    try:
        ages = read_ages(ages_path.read_text(encoding="utf-8"), str(ages_path))
    except OSError as err:
        raise TableError(f"{ages_path}: cannot read: {err.strerror}") from err
    modules = {}
    for spec in SPECS:
        entries = tables[spec.arch]
        check_ages(spec, entries, ages[spec.arch], str(ages_path))
        syscalls = {name: e.nr | spec.bit for name, e in entries.items()}
        modules[f"_{spec.arch}.py"] = render(spec, syscalls, ages[spec.arch])
    return modules


def ebpf_header(tbl_dir: Path) -> str:
    """``#define NR_<name> <number>`` for every x86_64 syscall, for sbx.bpf.c."""
    entries = read_tables(tbl_dir)["x86_64"]
    lines = ["/* Generated by tools/gen_syscalls.py from the vendored syscall tables: do not edit.",
             " * x86_64 syscall numbers for sbx.bpf.c (its path events are x86_64's). */",
             "#ifndef SBX_SYSCALL_NR_H", "#define SBX_SYSCALL_NR_H", ""]
    width = max(len(n) for n in entries) + 4
    for name, e in sorted(entries.items(), key=lambda kv: (kv[1].nr, kv[0])):
        lines.append(f"#define {'NR_' + name:<{width}} {e.nr}")
    return "\n".join(lines + ["", "#endif", ""])


def seam_module(tbl_dir: Path) -> str:
    """``NUMBERS[arch][name]`` for the syscalls in SEAM_SYSCALLS (those *arch* has)."""
    tables = read_tables(tbl_dir)
    lines = [f"# DO NOT EDIT: generated by tools/gen_syscalls.py from the Linux v{KERNEL} syscall tables",
             '"""The numbers of the syscalls the kernel seam makes by number (``libc.sysno``):',
             "the same as ``bpf_filters.syscalls``, for the architectures sbx runs on, in a",
             "module small enough for the ``sbx run`` hot path (the whole tables cost ~0.6 ms",
             'to import). Other syscalls are looked up in the tables."""', "",
             "NUMBERS: dict[str, dict[str, int]] = {"]
    for arch in SEAM_ARCHES:
        entries = tables[arch]
        lines.append(f'    "{arch}": {{')
        lines += [f'        "{name}": {entries[name].nr},' for name in SEAM_SYSCALLS if name in entries]
        lines.append("    },")
    return "\n".join(lines + ["}", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tbl", type=Path, default=DEFAULT_TBL_DIR,
                        help="directory holding the vendored .tbl files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR,
                        help="directory to write _<arch>.py into")
    parser.add_argument("--header", type=Path, default=EBPF_HEADER,
                        help="where to write the eBPF object's syscall_nr.h")
    parser.add_argument("--seam", type=Path, default=SEAM_MODULE,
                        help="where to write the kernel seam's sysnos.py")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if --out, --header or --seam is not up to date")
    args = parser.parse_args(argv)
    try:
        modules = generate(args.tbl)
        header = ebpf_header(args.tbl)
        seam = seam_module(args.tbl)
    except TableError as err:
        print(f"gen_syscalls: error: {err}", file=sys.stderr)
        return 1
    outputs = {args.out / name: text for name, text in modules.items()}
    outputs[args.header] = header
    outputs[args.seam] = seam
    stale = [p for p, text in outputs.items()
             if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"gen_syscalls: {path} is out of date", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(outputs[path], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

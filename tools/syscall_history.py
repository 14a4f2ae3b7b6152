#!/usr/bin/env python3
"""Derive the release that introduced each syscall from the kernel's own syscall tables.

Reads the syscall tables of every mainline release from v3.3 to the vendored
kernel (gen_syscalls.KERNEL) and writes bpf_filters/syscalls/tbl/introduced.tsv:
for each architecture and each syscall of the vendored table, the first release
whose table has that syscall under the same name and number (and, for a syscall
with an entry point, with an entry point then too, not a reserved slot).

The tables of a release:
  x86_64, x32  arch/x86/entry/syscalls/syscall_64.tbl (arch/x86/syscalls/ before v4.2)
  i386         arch/x86/entry/syscalls/syscall_32.tbl (likewise)
  aarch64      scripts/syscall.tbl with the ABIs of arch/arm64/kernel/Makefile.syscalls
               (v6.11 on); before, arch/arm64/include/asm/unistd.h and the headers it
               includes, evaluated as a native 64-bit build (unistd_header.py)

    python3 tools/syscall_history.py --git ~/src/linux        # tags v3.3 .. v6.18
    python3 tools/syscall_history.py --snapshots DIR          # DIR/<X.Y>/<kernel path>
    python3 tools/syscall_history.py --git ~/src/linux --check

A snapshot directory holds, per release X.Y, the files above plus the top-level
Makefile (its VERSION and PATCHLEVEL must say X.Y). A stable X.Y.Z tree or a
late X.Y-rcN tree can stand in for X.Y where the release itself is not at hand:
new syscalls enter in the merge window, before -rc1, and stable updates do not
add them (they have backported x32 fixes, which the monotonicity check below
catches when the next release's tree lacks them). The Makefile's full version
is recorded beside each release. A release the source lacks is skipped; a
syscall first seen right after a skipped release is dated by a bound ("5.0<5.2":
not in 5.0, in 5.2) until that release is added.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import gen_syscalls
from gen_syscalls import AGES_FILE, AGES_HEADER, SPECS, ArchSpec, Entry, TableError
from unistd_header import ENTRY as ARM64_HEADER
from unistd_header import HeaderError, arm64_table

sys.path.insert(0, str(gen_syscalls.REPO))
from bpf_filters.syscalls import ARCHES, parse_version  # noqa: E402

KERNEL = gen_syscalls.KERNEL
FIRST = "3.3"                # v3.3 moved x86 from unistd_*.h to syscall_*.tbl
LAST_MINOR = {3: 19, 4: 20, 5: 19}   # v3.19 -> v4.0, v4.20 -> v5.0, v5.19 -> v6.0
ARM64_MERGED = "3.7"         # arch/arm64 first appears in v3.7
X86_DIRS = ("arch/x86/entry/syscalls/", "arch/x86/syscalls/")   # moved in v4.2
GENERIC_TBL = "scripts/syscall.tbl"                             # v6.11 on
ARM64_ABIS = "arch/arm64/kernel/Makefile.syscalls"
UNIMPLEMENTED = ("", "sys_ni_syscall")


def mainline_releases(first: str = FIRST, last: str = KERNEL) -> list[str]:
    """Every mainline release from *first* to *last*, in order."""
    major, minor = parse_version(first)
    end = parse_version(last)
    out = []
    while (major, minor) <= end:
        out.append(f"{major}.{minor}")
        if minor >= LAST_MINOR.get(major, 1 << 30):
            major, minor = major + 1, 0
        else:
            minor += 1
    return out


def blob_id(data: bytes) -> str:
    """The git blob id of *data*, so a snapshot names its files as a clone does."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class GitTree:
    """A Linux git clone: release X.Y is tag vX.Y. Reads go through one `git cat-file --batch`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._batch: subprocess.Popen | None = None

    def _object(self, name: str) -> bytes | None:
        if self._batch is None:
            self._batch = subprocess.Popen(["git", "-C", str(self.path), "cat-file", "--batch"],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._batch.stdin is not None and self._batch.stdout is not None
        self._batch.stdin.write(name.encode() + b"\n")
        self._batch.stdin.flush()
        header = self._batch.stdout.readline().split()
        if len(header) != 3:        # "<name> missing" (or ambiguous)
            return None
        data = self._batch.stdout.read(int(header[2]) + 1)[:-1]
        return data

    def has(self, release: str) -> bool:
        return self._object(f"refs/tags/v{release}") is not None

    def read(self, release: str, path: str) -> bytes | None:
        return self._object(f"refs/tags/v{release}:{path}")


class SnapshotTree:
    """A directory with one subdirectory per release, named X.Y, holding kernel paths."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def has(self, release: str) -> bool:
        return (self.path / release).is_dir()

    def read(self, release: str, path: str) -> bytes | None:
        file = self.path / release / path
        return file.read_bytes() if file.is_file() else None


@dataclass
class Release:
    """The tables one release had: arch -> name -> Entry, or None where unknown."""

    release: str
    makefile: str                                   # "5.8.1", as its Makefile says
    files: dict[str, str] = field(default_factory=dict)   # path -> git blob id
    tables: dict[str, dict[str, Entry] | None] = field(default_factory=dict)


def _makefile_version(text: str, where: str) -> tuple[str, str]:
    """(X.Y, full version) from a top-level kernel Makefile."""
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)[ \t]*=[ \t]*(\S*)",
                             text, re.M))
    if not fields.get("VERSION", "").isdigit() or not fields.get("PATCHLEVEL", "").isdigit():
        raise TableError(f"{where}: no VERSION/PATCHLEVEL")
    extra = fields.get("EXTRAVERSION", "")
    release = f"{fields['VERSION']}.{fields['PATCHLEVEL']}"
    sublevel = fields.get("SUBLEVEL") or "0"
    return release, f"{release}.{sublevel}{extra}"


def read_release(tree: GitTree | SnapshotTree, release: str) -> Release:
    """The tables of *release* in *tree* (which has it)."""
    used: dict[str, bytes] = {}

    def read(path: str) -> bytes | None:
        data = tree.read(release, path)
        if data is not None:
            used[path] = data
        return data

    makefile = read("Makefile")
    where = f"{release}:Makefile"
    if makefile is None:
        raise TableError(f"{where}: missing")
    said, full = _makefile_version(makefile.decode("utf-8", "replace"), where)
    if said != release:
        raise TableError(f"{where}: says {full}, not {release}")
    out = Release(release, full)
    specs = {spec.arch: spec for spec in SPECS}
    for tbl, arches in (("syscall_64.tbl", ("x86_64", "x32")), ("syscall_32.tbl", ("i386",))):
        path = next((d + tbl for d in X86_DIRS if read(d + tbl) is not None), None)
        for arch in arches:
            if path is None:
                out.tables[arch] = None
                continue
            spec = specs[arch]
            text = used[path].decode("utf-8", "replace")
            where = f"{release}:{path}"
            out.tables[arch] = gen_syscalls.select(
                gen_syscalls.parse_table(text, where), spec, where, strict=False)
    out.tables["aarch64"] = _arm64(release, read)
    out.files = {path: blob_id(data) for path, data in sorted(used.items()) if path != "Makefile"}
    return out


def _arm64(release: str, read) -> dict[str, Entry] | None:
    if parse_version(release) < parse_version(ARM64_MERGED):
        return {}
    tbl, abis = read(GENERIC_TBL), read(ARM64_ABIS)
    if tbl is not None and abis is not None:
        extra = re.findall(r"^syscall_abis_64\s*\+?=\s*(.*)$", abis.decode(), re.M)
        spec = ArchSpec("aarch64", "syscall.tbl", GENERIC_TBL,
                        ("common", "64", *" ".join(extra).split()))
        where = f"{release}:{GENERIC_TBL}"
        return gen_syscalls.select(gen_syscalls.parse_table(tbl.decode(), where), spec, where,
                                   strict=False)
    if read(ARM64_HEADER) is None:
        return None
    try:
        slots = arm64_table(lambda p: None if (d := read(p)) is None else d.decode())
    except HeaderError as err:
        raise TableError(f"{release}: {err}") from err
    return {name: Entry(nr, "64", name, 0, sym) for nr, name, sym in slots}


def _matches(final: Entry, seen: Entry | None) -> bool:
    if seen is None or seen.nr != final.nr:
        return False
    return final.entry in UNIMPLEMENTED or seen.entry not in UNIMPLEMENTED


@dataclass
class Ages:
    rows: list[tuple[str, str, int, str]]    # arch, name, nr, "5.8", "<=3.3" or "5.0<5.2"
    counts: dict[str, dict[str, int | None]]        # release -> arch -> final syscalls present


def compute_ages(history: dict[str, Release | None], final: dict[str, dict[str, Entry]],
                 releases: list[str]) -> Ages:
    """Date every syscall of *final* from *history* (release -> tables, None if not read).

    A syscall is dated by the earliest release of its last unbroken run of
    releases that have it; releases not read neither break nor start a run.
    The date is exact when the release before it was read (and lacks it).
    Otherwise it is a bound: "<=X.Y" when X.Y is the first release read,
    "A.B<X.Y" when A.B is the newest release read before X.Y (it lacks the
    syscall) and the releases between were not read. A syscall present in a
    release before its run (the tables are not monotone) is an error.
    """
    rows: list[tuple[str, str, int, str]] = []
    problems: list[str] = []

    def table(release: str, arch: str) -> dict[str, Entry] | None:
        rel = history.get(release)
        return None if rel is None else rel.tables.get(arch)

    for arch in ARCHES:
        read = [r for r in releases if table(r, arch) is not None]
        for name, entry in sorted(final[arch].items(), key=lambda item: (item[1].nr, item[0])):
            start = len(read)
            while start > 0 and _matches(entry, table(read[start - 1], arch).get(name)):
                start -= 1
            if start == len(read):
                problems.append(f"{arch} {name}: not in the {read[-1] if read else '?'} table read")
                continue
            since = read[start]
            before = [r for r in read[:start] if _matches(entry, table(r, arch).get(name))]
            if before:
                problems.append(f"{arch} {name} ({entry.nr}): in {before[0]}, gone before "
                                f"{since}: the tables are not monotone")
            if start == 0:
                age = f"<={since}"
            elif releases[releases.index(since) - 1] == read[start - 1]:
                age = since
            else:
                age = f"{read[start - 1]}<{since}"
            rows.append((arch, name, entry.nr, age))
    if problems:
        raise TableError("cannot date every syscall:\n  " + "\n  ".join(problems))
    counts = {}
    for release in releases:
        counts[release] = {}
        for arch in ARCHES:
            tbl = table(release, arch)
            counts[release][arch] = None if tbl is None else sum(
                _matches(e, tbl.get(n)) for n, e in final[arch].items())
    return Ages(rows, counts)


def render(ages: Ages, history: dict[str, Release | None], command: str) -> str:
    """The text of introduced.tsv."""
    first, last = next(iter(history)), KERNEL
    out = [
        "# SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note",
        "#",
        f"# sbx: derived from the syscall tables of Linux v{first} .. v{last} by",
        "# sbx: tools/syscall_history.py (see docs/syscall-ages.md); do not edit.",
        f"# sbx: regenerate: {command}",
        "# sbx: then `make syscalls` writes INTRODUCED into bpf_filters/syscalls/_<arch>.py.",
        "#",
        "# introduced: the first release whose table has the syscall under this name and",
        "# number (with an entry point, if it has one now). '<=X.Y': already in the",
        "# oldest release read, so perhaps older. 'A.B<X.Y': not in A.B, in X.Y, and",
        "# the releases between were not read (marked 'not read' below).",
        "#",
        "# The releases read: the version their Makefile gave, how many of the syscalls",
        "# below each arch's table had ('-': not read), and the git blob id of each",
        "# kernel file the tables came from (`git rev-parse vX.Y:PATH` in a clone).",
    ]
    for release, rel in history.items():
        if rel is None:
            out.append(f"#@release\t{release}\tnot read")
            continue
        counts = "\t".join(f"{arch}={'-' if ages.counts[release][arch] is None else ages.counts[release][arch]}"
                           for arch in ARCHES)
        out.append(f"#@release\t{release}\t{rel.makefile}\t{counts}")
        out += [f"#@file\t{release}\t{path}\t{blob}" for path, blob in rel.files.items()]
    out.append(AGES_HEADER)
    out += ["\t".join((arch, name, str(nr), since)) for arch, name, nr, since in ages.rows]
    return "\n".join(out) + "\n"


def data_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def derive(tree: GitTree | SnapshotTree, tbl_dir: Path) -> tuple[Ages, dict[str, Release | None]]:
    releases = mainline_releases()
    history: dict[str, Release | None] = {}
    for release in releases:
        history[release] = read_release(tree, release) if tree.has(release) else None
    last = history[releases[-1]]
    if last is None:
        raise TableError(f"v{KERNEL} is not in the source: it must end at the vendored kernel")
    final = gen_syscalls.read_tables(tbl_dir)
    for arch in ARCHES:
        theirs = last.tables.get(arch) or {}
        ours = {n: (e.nr, e.entry) for n, e in final[arch].items()}
        if {n: (e.nr, e.entry) for n, e in theirs.items()} != ours:
            raise TableError(f"{arch}: the v{KERNEL} table of the source differs from {tbl_dir}")
    return compute_ages(history, final, releases), history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--git", type=Path, help="a Linux git clone with the release tags")
    source.add_argument("--snapshots", type=Path, help="a directory of <X.Y>/<kernel path>")
    parser.add_argument("--tbl", type=Path, default=gen_syscalls.DEFAULT_TBL_DIR,
                        help="the vendored tables; introduced.tsv is written there")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the ages in introduced.tsv differ")
    args = parser.parse_args(argv)
    tree = GitTree(args.git) if args.git else SnapshotTree(args.snapshots)
    command = ("python3 tools/syscall_history.py "
               + ("--git LINUX_CLONE" if args.git else "--snapshots DIR"))
    out = args.tbl / AGES_FILE
    try:
        ages, history = derive(tree, args.tbl)
    except TableError as err:
        print(f"syscall_history: error: {err}", file=sys.stderr)
        return 1
    text = render(ages, history, command)
    if args.check:
        old = out.read_text(encoding="utf-8") if out.is_file() else ""
        diff = sorted(set(data_rows(old)) ^ set(data_rows(text)))
        for line in diff[:20]:
            mark = "-" if line in data_rows(old) else "+"
            print(f"syscall_history: {mark} {line}", file=sys.stderr)
        return 1 if diff else 0
    out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

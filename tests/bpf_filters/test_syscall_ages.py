"""Syscall ages: the vendored history, the generated INTRODUCED, and the newer_than API.

The spot checks below were each read off the kernel trees the ages were derived
from and agree with an independent source: the Systrack tables of built v4.0+
kernels (mebeim/linux-syscalls) and, for older releases, man-pages syscalls(2).
"""
import re
from pathlib import Path

import pytest

from bpf_filters.syscalls import (
    ARCHES, Age, BadVersionError, newer_than, parse_version, table,
)
from tests.conftest import REPO

AGES = REPO / "bpf_filters" / "syscalls" / "tbl" / "introduced.tsv"


def _release_lines() -> list[list[str]]:
    return [line.split("\t") for line in AGES.read_text().splitlines()
            if line.startswith("#@release\t")]


@pytest.mark.parametrize("arch, name, release", [
    ("x86_64", "clone3", "5.3"),
    ("x86_64", "pidfd_open", "5.3"),
    ("x86_64", "openat2", "5.6"),
    ("x86_64", "faccessat2", "5.8"),
    ("x86_64", "close_range", "5.9"),
    ("x86_64", "epoll_pwait2", "5.11"),
    ("x86_64", "futex_waitv", "5.16"),
    ("x86_64", "rseq", "4.18"),
    ("x86_64", "statx", "4.11"),
    ("x86_64", "memfd_create", "3.17"),
    ("x86_64", "getrandom", "3.17"),
    ("x86_64", "seccomp", "3.17"),
    ("x86_64", "bpf", "3.18"),
    ("x86_64", "execveat", "3.19"),
    ("x86_64", "kcmp", "3.5"),
    ("x86_64", "finit_module", "3.8"),
    ("x86_64", "userfaultfd", "4.3"),
    ("x86_64", "copy_file_range", "4.5"),
    ("x86_64", "preadv2", "4.6"),
    ("x86_64", "pkey_mprotect", "4.9"),
    ("x86_64", "process_madvise", "5.10"),
    ("x86_64", "set_mempolicy_home_node", "5.17"),
    ("x86_64", "cachestat", "6.5"),
    ("x86_64", "fchmodat2", "6.6"),
    ("x86_64", "map_shadow_stack", "6.6"),
    ("x86_64", "futex_wake", "6.7"),
    ("x86_64", "listmount", "6.8"),
    ("x86_64", "mseal", "6.10"),
    ("x86_64", "uretprobe", "6.11"),
    ("x86_64", "setxattrat", "6.13"),
    ("i386", "socket", "4.3"),          # before 4.3 only through socketcall
    ("i386", "setsockopt", "4.3"),
    ("i386", "arch_prctl", "4.12"),
    ("i386", "statx", "4.11"),
    ("i386", "clone3", "5.3"),
    ("x32", "kcmp", "3.6"),             # 64-only in 3.5, common in 3.6
    ("x32", "setsockopt", "3.6"),       # x32 compat entry 541
    ("x32", "preadv2", "4.8"),          # 546: v4.7 gave it preadv's 534 by mistake
    ("x32", "map_shadow_stack", "6.10"),
    ("x32", "execveat", "3.19"),
    ("aarch64", "clone3", "5.3"),
    ("aarch64", "preadv2", "4.6"),
    ("aarch64", "rseq", "4.19"),        # asm-generic wired it a release after x86
    ("aarch64", "kexec_file_load", "5.0"),
    ("aarch64", "pkey_mprotect", "4.9"),  # listed by asm-generic; built as ENOSYS before POE
    ("aarch64", "statx", "4.11"),
    ("aarch64", "openat2", "5.6"),
], ids=lambda v: v)
def test_known_introduction(arch, name, release):
    assert table(arch).introduced(name) == release
    assert table(arch).age(name) == Age(release, True)


@pytest.mark.parametrize("arch, name, known, not_in, upper", [
    ("x86_64", "io_uring_setup", "5.1", "5.0", "5.2"),
    ("x86_64", "pidfd_send_signal", "5.1", "5.0", "5.2"),
    ("x86_64", "open_tree", "5.2", "5.0", "5.2"),
    ("i386", "clock_gettime64", "5.1", "5.0", "5.2"),
    ("x86_64", "landlock_create_ruleset", "5.13", "5.12", "5.14"),
    ("x86_64", "memfd_secret", "5.14", "5.12", "5.14"),
    ("x86_64", "open_tree_attr", "6.15", "6.14", "6.17"),
    ("x86_64", "uprobe", "6.16", "6.14", "6.17"),
    ("x86_64", "file_getattr", "6.17", "6.14", "6.17"),
    ("x86_64", "renameat2", "3.15", "3.14", "3.16"),
    ("x32", "io_setup", "3.16", "3.14", "3.16"),
], ids=lambda v: v)
def test_ranges_left_by_releases_not_read_hold_the_known_release(arch, name, known, not_in,
                                                                upper):
    age = table(arch).age(name)
    assert age == Age(upper, False, not_in)
    assert parse_version(not_in) < parse_version(known) <= parse_version(upper)


@pytest.mark.parametrize("arch, floor, exact", [
    ("x86_64", "3.3", False),    # the first release with syscall_64.tbl; older syscalls
    ("i386", "3.3", False),
    ("x32", "3.4", True),        # the x32 ABI was merged in 3.4: 3.3's table has no x32 rows
    ("aarch64", "3.7", True),    # arch/arm64 was merged in 3.7
], ids=str)
def test_history_floor(arch, floor, exact):
    tbl = table(arch)
    assert (tbl.history_floor, tbl.floor_exact) == (floor, exact)
    oldest = [n for n in tbl.by_name if tbl.introduced(n) == floor]
    assert oldest and all(tbl.age(n) == Age(floor, exact) for n in oldest)
    assert all(parse_version(tbl.introduced(n)) >= parse_version(floor) for n in tbl.by_name)


@pytest.mark.parametrize("arch", ARCHES)
def test_every_syscall_has_an_age_within_the_history(arch):
    tbl = table(arch)
    assert set(tbl.ages) == set(tbl.by_name)
    for name in tbl.by_name:
        age = tbl.age(name)
        assert parse_version(tbl.history_floor) <= parse_version(age.release) <= (6, 18)
        if age.not_in is not None:
            assert parse_version(age.not_in) < parse_version(age.release)


def test_release_lines_cover_every_release_in_order():
    lines = _release_lines()
    releases = [line[1] for line in lines]
    assert releases[0] == "3.3" and releases[-1] == "6.18"
    keys = [parse_version(r) for r in releases]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for previous, current in zip(keys, keys[1:]):
        assert current in ((previous[0], previous[1] + 1), (previous[0] + 1, 0))


@pytest.mark.parametrize("arch", ARCHES)
def test_tables_are_monotone(arch):
    """Each release read had exactly the syscalls dated at or before it.

    The counts are the derivation tool's, taken from each release's own table:
    a syscall in a release older than its age, or gone from a release after
    it, would break the equality.
    """
    tbl = table(arch)
    checked = 0
    for line in _release_lines():
        release = line[1]
        if line[2] == "not read":
            for name in tbl.by_name:     # no age may rest on a release not read
                age = tbl.age(name)
                assert age.release != release
            continue
        counts = dict(field.split("=") for field in line[3:])
        if counts[arch] == "-":
            continue
        dated = sum(parse_version(tbl.introduced(n)) <= parse_version(release)
                    for n in tbl.by_name)
        assert int(counts[arch]) == dated, release
        checked += 1
    assert checked > 50


def test_ages_file_keeps_the_kernel_licence_and_names_its_sources():
    lines = AGES.read_text().splitlines()
    assert lines[0] == "# SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note"
    files = [line.split("\t") for line in lines if line.startswith("#@file\t")]
    assert files and all(re.fullmatch(r"[0-9a-f]{40}", f[3]) for f in files)
    read = {line[1] for line in _release_lines() if line[2] != "not read"}
    assert {f[1] for f in files} == read


@pytest.mark.parametrize("arch, baseline, expected", [
    ("x86_64", "6.18", set()),
    ("x86_64", "6.10", {"uretprobe", "setxattrat", "getxattrat", "listxattrat", "removexattrat",
                        "open_tree_attr", "uprobe", "file_getattr", "file_setattr"}),
    ("aarch64", "6.10", {"setxattrat", "getxattrat", "listxattrat", "removexattrat",
                         "open_tree_attr", "file_getattr", "file_setattr"}),
], ids=str)
def test_newer_than_lists_what_a_release_lacks(arch, baseline, expected):
    assert newer_than(arch, baseline) == expected


@pytest.mark.parametrize("arch", ARCHES)
def test_newer_than_switches_at_each_age(arch):
    tbl = table(arch)
    for name in tbl.by_name:
        age = tbl.age(name)
        assert name not in newer_than(arch, age.release)
        if age.not_in is not None:
            assert name in newer_than(arch, age.not_in)
        elif age.exact and age.release != tbl.history_floor:
            major, minor = parse_version(age.release)
            older = f"{major}.{minor - 1}" if minor else {4: "3.19", 5: "4.20", 6: "5.19"}[major]
            assert name in newer_than(arch, older)


def test_newer_than_counts_a_range_that_straddles_the_baseline():
    """io_uring_setup came in 5.1 or 5.2 (5.1 was not read): a 5.1 kernel may lack it."""
    assert "io_uring_setup" in newer_than("x86_64", "5.1")
    assert "io_uring_setup" not in newer_than("x86_64", "5.2")


def test_newer_than_refuses_what_the_history_cannot_tell():
    with pytest.raises(BadVersionError, match="x86_64 syscall ages start at 3.3; 3.2 is older"):
        newer_than("x86_64", "3.2")
    # arm64 began in 3.7: a baseline before it has none of its syscalls
    assert newer_than("aarch64", "3.6") == set(table("aarch64").by_name)
    assert newer_than("x32", "3.3") == set(table("x32").by_name)


@pytest.mark.parametrize("text", ["5", "5.10.1", "v5.10", "", "five.ten", "5.-1"], ids=repr)
def test_bad_release_is_refused(text):
    with pytest.raises(BadVersionError, match="expected MAJOR.MINOR"):
        newer_than("x86_64", text)


def test_parse_version_orders_numerically():
    assert parse_version("5.10") > parse_version("5.9")
    assert parse_version(" 6.1 ") == (6, 1)


GENERATOR = REPO / "tools" / "gen_syscalls.py"


def _tbl_copy(tmp_path: Path) -> Path:
    out = tmp_path / "tbl"
    out.mkdir()
    for path in AGES.parent.iterdir():
        (out / path.name).write_text(path.read_text())
    return out


def _generate(tbl: Path, out: Path, *args: str):
    import subprocess
    import sys
    return subprocess.run([sys.executable, str(GENERATOR), "--tbl", str(tbl), "--out", str(out),
                           *args], capture_output=True, text=True, check=False)


def test_generator_writes_the_ages_and_check_sees_a_changed_one(tmp_path):
    tbl = _tbl_copy(tmp_path)
    ages = tbl / "introduced.tsv"
    ages.write_text(ages.read_text().replace("x86_64\tclone3\t435\t5.3\n",
                                             "x86_64\tclone3\t435\t5.4\n"))
    result = _generate(tbl, REPO / "bpf_filters" / "syscalls", "--check")
    assert result.returncode == 1
    assert "_x86_64.py is out of date" in result.stderr
    assert _generate(tbl, tmp_path / "out").returncode == 0
    assert '    "clone3": "5.4",\n' in (tmp_path / "out" / "_x86_64.py").read_text()


@pytest.mark.parametrize("old, new, message", [
    ("x86_64\tclone3\t435\t5.3\n", "", "x86_64 'clone3' (435) has no age"),
    ("x86_64\tclone3\t435\t5.3\n", "x86_64\tclone3\t436\t5.3\n",
     "x86_64 'clone3' is 436 here but 435 in syscall_64.tbl"),
    ("x86_64\tclone3\t435\t5.3\n", "x86_64\tclone3\t435\t5.3\nx86_64\tclone3\t435\t5.3\n",
     "x86_64 'clone3' already dated at line"),
    ("x86_64\tclone3\t435\t5.3\n", "x86_64\tclone3\t435\tv5.3\n", "bad number or version"),
    ("x86_64\tclone3\t435\t5.3\n", "x86_64\tclone3\t435\t<=5.3\n",
     "only the oldest release (3.3) can be an open bound"),
    ("x86_64\tclone3\t435\t5.3\n", "x86_64\tclone3\t435\t5.3<5.3\n", "5.3 is not older than 5.3"),
    ("x86_64\tclone3\t435\t5.3\n", "x86_64\tclone3\t435\n", "expected 4 tab-separated fields"),
    ("arch\tname\tnr\tintroduced\n", "", "expected the header row"),
    ("x86_64\tclone3\t435\t5.3\n", "sparc\tclone3\t435\t5.3\n", "unknown architecture 'sparc'"),
], ids=["missing", "wrong number", "twice", "bad version", "open bound", "empty range",
        "short row", "no header", "unknown arch"])
def test_generator_reports_bad_ages_with_positions(tmp_path, old, new, message):
    tbl = _tbl_copy(tmp_path)
    ages = tbl / "introduced.tsv"
    assert old in ages.read_text()
    ages.write_text(ages.read_text().replace(old, new, 1))
    result = _generate(tbl, tmp_path / "out")
    assert result.returncode == 1
    assert message in result.stderr
    assert "introduced.tsv" in result.stderr
    assert not (tmp_path / "out").exists()

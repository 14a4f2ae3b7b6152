"""bpf_filters.syscalls.fallbacks: the syscalls libraries probe, checked against the tables."""
import ast
from pathlib import Path

import pytest

from bpf_filters.syscalls import ARCHES, table
from bpf_filters.syscalls.fallbacks import (
    ANY_ERROR, FALLBACKS, for_syscall, needs_enosys, probed,
)

ERRNO_NAMES = {"ENOSYS", "EPERM", "EINVAL", "EXDEV", "EIO", "EOPNOTSUPP"}


@pytest.mark.parametrize("entry", FALLBACKS, ids=lambda f: f"{f.syscall}-{f.library}")
def test_every_probed_syscall_is_in_the_tables_of_its_arches(entry):
    assert entry.arches and set(entry.arches) <= set(ARCHES)
    for arch in entry.arches:
        assert entry.syscall in table(arch), f"{entry.syscall} not on {arch}"
    assert entry.on == (ANY_ERROR,) or set(entry.on) <= ERRNO_NAMES
    assert ": " in entry.source and entry.library and entry.fallback


def test_entries_are_unique_and_grouped_by_syscall():
    keys = [(f.syscall, f.library, f.source) for f in FALLBACKS]
    assert len(keys) == len(set(keys))
    assert {"clone3", "faccessat2", "fchmodat2", "statx", "getrandom", "rseq",
            "close_range", "pidfd_open", "copy_file_range", "preadv2"} <= probed()
    assert [f.library for f in for_syscall("faccessat2")] == [
        "glibc 2.33+", "musl 1.2.2+", "Go golang.org/x/sys/unix"]


@pytest.mark.parametrize("name, expected", [
    ("faccessat2", True),        # glibc returns EPERM to the caller
    ("clone3", True),            # pthread_create, posix_spawn fail on EPERM
    ("fchmodat2", True),
    ("getrandom", True),         # glibc arc4random and Go fall back on ENOSYS only
    ("rseq", False),             # glibc runs without it on any error
    ("close_range", False),
    ("pidfd_open", False),       # Go probes and gives up on any error
    ("copy_file_range", False),  # Go also falls back on EPERM
    ("openat2", False),          # no library here probes it
], ids=str)
def test_needs_enosys(name, expected):
    assert needs_enosys(name) is expected


def test_module_is_pure_data():
    """It imports nothing beyond the standard library and bpf_filters (no sandbox, no os)."""
    source = Path(__import__("bpf_filters.syscalls.fallbacks",
                             fromlist=["x"]).__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {"__future__", "dataclasses"}

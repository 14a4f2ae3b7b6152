"""The generated syscall tables: checked against libseccomp, known facts and the generator."""
import subprocess
import sys
from pathlib import Path

import pyseccomp
import pytest

from bpf_filters import syscalls
from bpf_filters.syscalls import (
    ARCHES, AUDIT_ARCH, X32_SYSCALL_BIT, UnknownArchError, all_names, closest, table,
)
from tests.conftest import REPO

GENERATOR = REPO / "tools" / "gen_syscalls.py"
PKG_DIR = REPO / "bpf_filters" / "syscalls"

SECCOMP_ARCH = {
    "x86_64": pyseccomp.Arch.X86_64,
    "i386": pyseccomp.Arch.X86,
    "x32": pyseccomp.Arch.X32,
    "aarch64": pyseccomp.Arch.AARCH64,
}
# The least number of names libseccomp must resolve exactly as we do.
MIN_AGREEING = {"x86_64": 300, "i386": 300, "x32": 300, "aarch64": 250}

# On i386 libseccomp resolves these names to pseudo numbers (-1xx socketcall,
# -2xx ipc) and emits both the direct call and the multiplexed one; their direct
# numbers are checked number -> name instead.
I386_MULTIPLEXED = {
    "socket", "socketpair", "bind", "connect", "listen", "accept4", "getsockopt",
    "setsockopt", "getsockname", "getpeername", "sendto", "sendmsg", "recvfrom",
    "recvmsg", "shutdown", "recvmmsg", "sendmmsg",
    "semget", "semctl", "shmget", "shmctl", "shmat", "shmdt",
    "msgget", "msgsnd", "msgrcv", "msgctl",
}


def _libseccomp_name(arch: str, nr: int) -> str | None:
    try:
        return pyseccomp.resolve_syscall(SECCOMP_ARCH[arch], nr).decode()
    except ValueError:
        return None


def _newer_than_libseccomp(arch: str, name: str) -> bool:
    """Added in Linux 6.6 or later: map_shadow_stack (453) onwards, uretprobe, uprobe."""
    base = table(arch).nr(name) & ~X32_SYSCALL_BIT
    return base >= 453 or name in ("uretprobe", "uprobe")


def classify(arch: str) -> tuple[list[str], list[str], list[str]]:
    """Split *arch*'s names into (agree, resolved by number only, unknown to libseccomp).

    Raises AssertionError on any disagreement.
    """
    agree, by_number, unknown = [], [], []
    for name, nr in table(arch).by_name.items():
        resolved = pyseccomp.resolve_syscall(SECCOMP_ARCH[arch], name)
        if resolved >= 0:
            assert resolved == nr, f"{arch} {name}: libseccomp {resolved:#x}, ours {nr:#x}"
            agree.append(name)
            continue
        back = _libseccomp_name(arch, nr)
        if back is not None:
            assert back == name, f"{arch} nr {nr:#x}: libseccomp '{back}', ours '{name}'"
            by_number.append(name)
        else:
            unknown.append(name)
    return agree, by_number, unknown


@pytest.mark.parametrize("arch", ARCHES)
def test_every_name_libseccomp_knows_has_the_same_number(arch):
    agree, by_number, _ = classify(arch)
    assert len(agree) > MIN_AGREEING[arch]
    expected_by_number = I386_MULTIPLEXED if arch == "i386" else set()
    assert set(by_number) == expected_by_number


@pytest.mark.parametrize("arch", ARCHES)
def test_every_number_libseccomp_knows_has_the_same_name(arch):
    base = X32_SYSCALL_BIT if arch == "x32" else 0
    tbl = table(arch)
    for nr in range(base, base + 1024):
        theirs = _libseccomp_name(arch, nr)
        if theirs is not None:
            assert tbl.name(nr) == theirs, f"{arch} nr {nr:#x}"


@pytest.mark.parametrize("arch", ARCHES)
def test_names_libseccomp_does_not_know_are_all_newer_syscalls(arch):
    _, _, unknown = classify(arch)
    print(f"{arch}: unknown to libseccomp ({len(unknown)}): {sorted(unknown, key=table(arch).nr)}")
    assert unknown, "libseccomp 2.5.x predates mseal; expected some unknown names"
    old = [name for name in unknown if not _newer_than_libseccomp(arch, name)]
    assert old == []
    assert "mseal" in unknown


@pytest.mark.parametrize("arch, name, nr", [
    ("x86_64", "read", 0),
    ("x86_64", "uretprobe", 335),
    ("x86_64", "uprobe", 336),
    ("x86_64", "statmount", 457),
    ("x86_64", "listmount", 458),
    ("x86_64", "lsm_get_self_attr", 459),
    ("x86_64", "lsm_set_self_attr", 460),
    ("x86_64", "lsm_list_modules", 461),
    ("x86_64", "mseal", 462),
    ("x86_64", "setxattrat", 463),
    ("x86_64", "getxattrat", 464),
    ("x86_64", "listxattrat", 465),
    ("x86_64", "removexattrat", 466),
    ("x86_64", "open_tree_attr", 467),
    ("x86_64", "file_getattr", 468),
    ("x86_64", "file_setattr", 469),
    ("x86_64", "security", 185),
    ("x86_64", "newfstatat", 262),
    ("x86_64", "umount2", 166),
    ("i386", "socketcall", 102),
    ("i386", "ipc", 117),
    ("i386", "_llseek", 140),
    ("i386", "_newselect", 142),
    ("i386", "mmap2", 192),
    ("i386", "socket", 359),
    ("i386", "mseal", 462),
    ("x32", "read", X32_SYSCALL_BIT | 0),
    ("x32", "rt_sigaction", X32_SYSCALL_BIT | 512),
    ("x32", "execve", X32_SYSCALL_BIT | 520),
    ("x32", "mseal", X32_SYSCALL_BIT | 462),
    ("aarch64", "openat", 56),
    ("aarch64", "renameat", 38),
    ("aarch64", "getrlimit", 163),
    ("aarch64", "memfd_secret", 447),
    ("aarch64", "nfsservctl", 42),
    ("aarch64", "newfstatat", 79),
    ("aarch64", "mseal", 462),
    ("aarch64", "file_setattr", 469),
], ids=lambda v: hex(v) if isinstance(v, int) else v)
def test_known_syscall_number(arch, name, nr):
    assert table(arch).nr(name) == nr
    assert table(arch).name(nr) == name


@pytest.mark.parametrize("arch, name", [
    ("x86_64", "socketcall"),     # i386 only
    ("x86_64", "uselib_old"),
    ("i386", "uretprobe"),        # x86_64 ABI only
    ("x32", "rt_sigaction_64"),
    ("aarch64", "open"),          # generic table: openat only
    ("aarch64", "fork"),
    ("aarch64", "fstatat64"),     # stat64 ABI, 32-bit only
    ("aarch64", "fcntl64"),       # 32 ABI
    ("aarch64", "riscv_hwprobe"),  # riscv ABI
    ("aarch64", "listns"),        # Linux 6.19
    ("x86_64", "listns"),
], ids=str)
def test_syscall_absent(arch, name):
    assert table(arch).nr(name) is None
    assert name not in table(arch)


def test_x32_uses_its_own_numbers_for_legacy_calls():
    x32 = table("x32")
    assert x32.name(X32_SYSCALL_BIT | 13) is None   # rt_sigaction is 512 on x32
    assert x32.name(13) is None                     # no number lacks the x32 bit
    assert all(nr & X32_SYSCALL_BIT for nr in x32.by_nr)


@pytest.mark.parametrize("arch, count, max_nr", [
    ("x86_64", 383, 469),
    ("i386", 459, 469),
    ("x32", 372, X32_SYSCALL_BIT | 547),
    ("aarch64", 325, 469),
], ids=str)
def test_table_size_and_highest_number(arch, count, max_nr):
    tbl = table(arch)
    assert len(tbl) == count
    assert tbl.max_nr == max_nr == max(tbl.by_nr)


@pytest.mark.parametrize("arch", ARCHES)
def test_maps_are_inverse_and_read_only(arch):
    tbl = table(arch)
    assert tbl.arch == arch
    assert tbl.audit_arch == AUDIT_ARCH[arch]
    assert len(tbl.by_nr) == len(tbl.by_name)
    assert all(tbl.name(nr) == name for name, nr in tbl.by_name.items())
    with pytest.raises(TypeError):
        tbl.by_name["evil"] = 1  # type: ignore[index]


def test_audit_arch_values():
    assert AUDIT_ARCH == {"x86_64": 0xC000003E, "i386": 0x40000003,
                          "x32": 0xC000003E, "aarch64": 0xC00000B7}
    assert X32_SYSCALL_BIT == 0x40000000


def test_table_is_cached_and_unknown_arch_is_refused():
    assert table("x86_64") is table("x86_64")
    with pytest.raises(UnknownArchError, match=r"did you mean 'x86_64'"):
        table("x86-64")
    with pytest.raises(UnknownArchError):
        closest("open", "sparc")


def test_all_names_is_the_union_over_arches():
    names = all_names()
    assert names == frozenset().union(*(table(a).by_name for a in ARCHES))
    assert {"socketcall", "mseal", "uprobe", "openat", "rt_sigaction"} <= names


@pytest.mark.parametrize("typo, arch, expected", [
    ("opne", None, "open"),
    ("mseel", None, "mseal"),
    ("sockett", "x86_64", "socket"),
    ("execv", "aarch64", "execve"),
    ("open", None, "open"),
    ("zzzzqqqq", None, None),
], ids=str)
def test_closest_suggests_a_known_name(typo, arch, expected):
    assert closest(typo, arch) == expected


def test_closest_only_suggests_names_of_the_given_arch():
    suggestion = closest("opne", "aarch64")
    assert suggestion is not None and suggestion in table("aarch64")
    assert suggestion != "open"


@pytest.mark.parametrize("arch", ARCHES)
def test_generated_module_header_and_order(arch):
    text = (PKG_DIR / f"_{arch}.py").read_text()
    module = __import__(f"bpf_filters.syscalls._{arch}", fromlist=["SYSCALLS"])
    assert text.splitlines()[0] == (
        "# DO NOT EDIT: generated by tools/gen_syscalls.py from Linux v6.18 " + module.SOURCE)
    assert module.KERNEL == syscalls.KERNEL == "6.18"
    numbers = list(module.SYSCALLS.values())
    assert numbers == sorted(numbers)


@pytest.mark.parametrize("tbl", ["syscall_64.tbl", "syscall_32.tbl", "syscall.tbl"])
def test_vendored_table_keeps_kernel_header(tbl):
    lines = (PKG_DIR / "tbl" / tbl).read_text().splitlines()
    assert lines[0] == "# SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note"
    assert any(line.startswith("# sbx: vendored from Linux v6.18 ") for line in lines[:4])


def _generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GENERATOR), *args],
                          capture_output=True, text=True, check=False)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("_[!_]*.py"))}


def test_generator_is_deterministic_and_matches_committed_files(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert _generate("--out", str(first)).returncode == 0
    assert _generate("--out", str(second)).returncode == 0
    assert _snapshot(first) == _snapshot(second)
    assert set(_snapshot(first)) == {f"_{arch}.py" for arch in ARCHES}
    assert _snapshot(first) == _snapshot(PKG_DIR)


def test_generator_check_mode(tmp_path):
    assert _generate("--check").returncode == 0
    assert _generate("--out", str(tmp_path)).returncode == 0
    (tmp_path / "_x86_64.py").write_text("stale\n")
    result = _generate("--check", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "_x86_64.py is out of date" in result.stderr


@pytest.mark.parametrize("bad_line, message", [
    ("12\tcommon\n", ":3: expected '<number> <abi> <name>'"),
    ("x1\tcommon\tfoo\tsys_foo\n", ":3: bad syscall number 'x1'"),
    ("7\tcommon\tread\tsys_read\n", ":3: x86_64: 'read' already defined at line 2"),
    ("0\t64\tother\tsys_other\n", ":3: x86_64: 0 already defined at line 2"),
], ids=["short line", "bad number", "duplicate name", "duplicate number"])
def test_generator_reports_bad_tables_with_positions(tmp_path, bad_line, message):
    for name in ("syscall_64.tbl", "syscall_32.tbl", "syscall.tbl"):
        (tmp_path / name).write_text((PKG_DIR / "tbl" / name).read_text())
    (tmp_path / "syscall_64.tbl").write_text("# header\n0\tcommon\tread\tsys_read\n" + bad_line)
    result = _generate("--tbl", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "syscall_64.tbl" + message in result.stderr
    assert not (tmp_path / "out").exists()


def test_reported_numbers_map_to_table_numbers():
    """The monitor and audit report x32 numbers without the x32 bit; the tables keep it."""
    from bpf_filters.syscalls import X32_SYSCALL_BIT, name_of, reported_nr, seccomp_nr
    assert seccomp_nr("x32", 39) == X32_SYSCALL_BIT | 39
    assert reported_nr("x32", X32_SYSCALL_BIT | 39) == 39
    assert seccomp_nr("x86_64", 39) == reported_nr("x86_64", 39) == 39
    assert name_of("x32", 39) == name_of("x86_64", 39) == "getpid"
    assert name_of("sparc", 39) is None


def test_the_kernel_seams_excerpt_agrees_with_the_tables():
    """sandbox.kernel.sysnos is what a cached sbx run takes its numbers from."""
    from bpf_filters.syscalls import numbers
    from sandbox.kernel.sysnos import NUMBERS
    assert set(NUMBERS) == {"x86_64", "i386", "aarch64"}
    for arch, excerpt in NUMBERS.items():
        assert {"landlock_create_ruleset", "seccomp", "openat2"} <= set(excerpt), arch
        assert excerpt == {name: numbers(arch)[name] for name in excerpt}, arch

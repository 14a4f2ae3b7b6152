"""tools/syscall_history.py and tools/unistd_header.py: deriving ages from release trees.

The history tool runs on real git repositories built here, one tagged commit
per mainline release, whose tables are the vendored v6.18 ones with rows
removed before chosen releases; the header evaluator on small headers written
with the constructs of include/uapi/asm-generic/unistd.h.
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

TOOLS = REPO / "tools"
TBL = REPO / "bpf_filters" / "syscalls" / "tbl"
sys.path.insert(0, str(TOOLS))

import gen_syscalls  # noqa: E402
import syscall_history  # noqa: E402
from unistd_header import HeaderError, arm64_table  # noqa: E402

RELEASES = syscall_history.mainline_releases()
X86 = "arch/x86/entry/syscalls/"


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> None:
    subprocess.run(["git", "-C", str(repo), *args], input=stdin, check=True,
                   capture_output=True)


def _without(text: str, numbers: set[int]) -> str:
    """*text* (a syscall table) without the native rows numbered in *numbers*."""
    keep = []
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0].isdigit() and int(fields[0]) in numbers and fields[1] != "x32":
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


def make_history(root: Path, tables_of, skip=()) -> Path:
    """A git repository with tag vX.Y for every release, its tables from tables_of(release).

    Written with one git fast-import stream: a commit per release, each
    holding that release's whole tree.
    """
    repo = root / "linux"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q")
    stream = []
    for mark, release in enumerate(RELEASES, start=1):
        if release in skip:
            continue
        major, minor = release.split(".")
        files = {"Makefile": f"VERSION = {major}\nPATCHLEVEL = {minor}\nSUBLEVEL = 0\n"
                             "EXTRAVERSION =\nNAME = test\n"}
        files.update(tables_of(release))
        stream.append(f"commit refs/heads/main\nmark :{mark}\n"
                      f"committer t <t@t> {1300000000 + mark} +0000\ndata 0\ndeleteall\n")
        for path, text in files.items():
            data = text.encode()
            stream.append(f"M 100644 inline {path}\ndata {len(data)}\n")
            stream.append(data.decode() + "\n")
        stream.append(f"reset refs/tags/v{release}\nfrom :{mark}\n\n")
    _git(repo, "fast-import", "--quiet", stdin="".join(stream).encode())
    return repo


def vendored(release: str, missing_before: dict[str, set[int]]) -> dict[str, str]:
    """The vendored tables, less the numbers listed for releases before a given one."""
    t64 = (TBL / "syscall_64.tbl").read_text()
    t32 = (TBL / "syscall_32.tbl").read_text()
    gone = set()
    for first, numbers in missing_before.items():
        if syscall_history.parse_version(release) < syscall_history.parse_version(first):
            gone |= numbers
    files = {X86 + "syscall_64.tbl": _without(t64, gone), X86 + "syscall_32.tbl": t32}
    if syscall_history.parse_version(release) >= (3, 7):
        files["scripts/syscall.tbl"] = (TBL / "syscall.tbl").read_text()
        files["arch/arm64/kernel/Makefile.syscalls"] = (
            "syscall_abis_64 += renameat rlimit memfd_secret\n")
    return files


def run_tool(repo: Path, tbl: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / "syscall_history.py"), "--git", str(repo),
                           "--tbl", str(tbl), *extra], capture_output=True, text=True, check=False)


def ages_of(tbl: Path) -> dict[tuple[str, str], str]:
    rows = syscall_history.data_rows((tbl / "introduced.tsv").read_text())[1:]
    return {(r.split("\t")[0], r.split("\t")[1]): r.split("\t")[3] for r in rows}


@pytest.fixture
def tbl(tmp_path):
    out = tmp_path / "tbl"
    out.mkdir()
    for name in ("syscall_64.tbl", "syscall_32.tbl", "syscall.tbl"):
        shutil.copy(TBL / name, out / name)
    return out


CLONE3_LATE = {"5.3": {435}, "6.11": {335}}


def test_ages_come_from_the_first_tag_that_has_the_row(tmp_path, tbl):
    repo = make_history(tmp_path, lambda r: vendored(r, CLONE3_LATE))
    result = run_tool(repo, tbl)
    assert result.returncode == 0, result.stderr
    ages = ages_of(tbl)
    assert ages[("x86_64", "clone3")] == "5.3"
    assert ages[("x86_64", "uretprobe")] == "6.11"
    assert ages[("x32", "clone3")] == "5.3"          # the row is common: x32 too
    assert ages[("x86_64", "read")] == "<=3.3"       # the first release read
    assert ages[("i386", "clone3")] == "<=3.3"       # its table was left whole
    assert ages[("aarch64", "read")] == "3.7"        # arm64 starts in 3.7: exact
    assert len(ages) == sum(len(t) for t in gen_syscalls.read_tables(TBL).values())
    text = (tbl / "introduced.tsv").read_text()
    assert "#@release\t5.3\t5.3.0\tx86_64=" in text
    blob = subprocess.run(["git", "-C", str(repo), "rev-parse", f"v5.3:{X86}syscall_64.tbl"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert f"#@file\t5.3\t{X86}syscall_64.tbl\t{blob}" in text
    assert run_tool(repo, tbl, "--check").returncode == 0


def test_a_release_not_read_leaves_a_range(tmp_path, tbl):
    repo = make_history(tmp_path, lambda r: vendored(r, CLONE3_LATE), skip={"5.2"})
    assert run_tool(repo, tbl).returncode == 0
    ages = ages_of(tbl)
    assert ages[("x86_64", "clone3")] == "5.1<5.3"   # in 5.3; 5.2 could have had it
    assert ages[("x86_64", "uretprobe")] == "6.11"   # the gap is elsewhere
    assert "#@release\t5.2\tnot read" in (tbl / "introduced.tsv").read_text()
    repo2 = make_history(tmp_path / "b", lambda r: vendored(r, CLONE3_LATE), skip={"5.3"})
    assert run_tool(repo2, tbl).returncode == 0
    assert ages_of(tbl)[("x86_64", "clone3")] == "5.2<5.4"


def test_a_row_that_comes_and_goes_is_refused(tmp_path, tbl):
    def tables(release):
        if release == "4.0":
            return vendored(release, {})
        return vendored(release, CLONE3_LATE)
    repo = make_history(tmp_path, tables)
    result = run_tool(repo, tbl)
    assert result.returncode == 1
    assert "x86_64 clone3 (435): in 4.0, gone before 5.3: the tables are not monotone" \
        in result.stderr


def test_the_last_release_must_match_the_vendored_tables(tmp_path, tbl):
    repo = make_history(tmp_path, lambda r: vendored(r, {"7.0": {435}}))
    result = run_tool(repo, tbl)
    assert result.returncode == 1
    assert "x86_64: the v6.18 table of the source differs from" in result.stderr


def test_check_reports_a_changed_age(tmp_path, tbl):
    repo = make_history(tmp_path, lambda r: vendored(r, CLONE3_LATE))
    assert run_tool(repo, tbl).returncode == 0
    path = tbl / "introduced.tsv"
    path.write_text(path.read_text().replace("x86_64\tclone3\t435\t5.3", "x86_64\tclone3\t435\t5.4"))
    result = run_tool(repo, tbl, "--check")
    assert result.returncode == 1
    assert "+ x86_64\tclone3\t435\t5.3" in result.stderr
    assert "- x86_64\tclone3\t435\t5.4" in result.stderr


def test_snapshot_makefile_must_name_its_release(tmp_path, tbl):
    snap = tmp_path / "snap" / "6.18"
    for path, text in vendored("6.18", {}).items():
        (snap / path).parent.mkdir(parents=True, exist_ok=True)
        (snap / path).write_text(text)
    (snap / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 17\nSUBLEVEL = 3\nEXTRAVERSION =\n")
    result = subprocess.run([sys.executable, str(TOOLS / "syscall_history.py"), "--snapshots",
                             str(tmp_path / "snap"), "--tbl", str(tbl)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "6.18:Makefile: says 6.17.3, not 6.18" in result.stderr


def test_mainline_releases_cross_majors():
    assert RELEASES[:2] == ["3.3", "3.4"]
    for last, first in (("3.19", "4.0"), ("4.20", "5.0"), ("5.19", "6.0")):
        assert RELEASES[RELEASES.index(last) + 1] == first
    assert RELEASES[-1] == "6.18" and len(RELEASES) == 77


def test_blob_id_is_gits():
    data = b"hello\n"
    assert syscall_history.blob_id(data) == "ce013625030ba8dba906f756967f9e9ca394464a"


GENERIC = r"""
#ifndef __SYSCALL
#define __SYSCALL(x, y)
#endif
#if __BITS_PER_LONG == 32 || defined(__SYSCALL_COMPAT)
#define __SC_3264(_nr, _32, _64) __SYSCALL(_nr, _32)
#else
#define __SC_3264(_nr, _32, _64) __SYSCALL(_nr, _64)
#endif
#ifdef __SYSCALL_COMPAT
#define __SC_COMP(_nr, _sys, _comp) __SYSCALL(_nr, _comp)
#else
#define __SC_COMP(_nr, _sys, _comp) __SYSCALL(_nr, _sys)
#endif
#define __NR_io_setup 0
__SC_COMP(__NR_io_setup, sys_io_setup, compat_sys_io_setup)
#define __NR3264_fcntl 25
__SC_3264(__NR3264_fcntl, sys_fcntl64, sys_fcntl)
#ifdef __ARCH_WANT_RENAMEAT
#define __NR_renameat 38
__SYSCALL(__NR_renameat, sys_renameat)
#endif /* __ARCH_WANT_RENAMEAT */
#ifdef __ARCH_WANT_SET_GET_RLIMIT
#define __NR_getrlimit 163
__SYSCALL(__NR_getrlimit, sys_getrlimit)
#endif
#define __NR_nfsservctl 42
__SYSCALL(__NR_nfsservctl, sys_ni_syscall)
#define __NR_rt_sigtimedwait 137
__SC_COMP(__NR_rt_sigtimedwait, sys_rt_sigtimedwait, \
	  compat_sys_rt_sigtimedwait)
#if defined(__ARCH_WANT_TIME32_SYSCALLS) || __BITS_PER_LONG != 32
#define __NR_futex 98
__SC_3264(__NR_futex, sys_futex_time32, sys_futex)
#endif
#define __NR_arch_specific_syscall 244
#define __NR_clone3 (__NR_arch_specific_syscall + 191)
__SYSCALL(__NR_clone3,
          sys_clone3)
#undef __NR_syscalls
#define __NR_syscalls 436
#if __BITS_PER_LONG == 64 && !defined(__SYSCALL_COMPAT)
#define __NR_fcntl __NR3264_fcntl
#else
#define __NR_fcntl64 __NR3264_fcntl
#endif
"""


def _headers(**override):
    files = {
        "arch/arm64/include/asm/unistd.h":
            "#ifdef CONFIG_COMPAT\n#define __ARCH_WANT_SET_GET_RLIMIT\n#endif\n"
            "#include <uapi/asm/unistd.h>\n",
        "arch/arm64/include/uapi/asm/unistd.h":
            "#define __ARCH_WANT_RENAMEAT\n#include <linux/types.h>\n"
            "#include <asm-generic/unistd.h>\n",
        "include/uapi/asm-generic/unistd.h": GENERIC,
    }
    files.update(override)
    return files.get


def test_header_table_follows_the_native_64_bit_build():
    assert arm64_table(_headers()) == [
        (0, "io_setup", "sys_io_setup"),
        (25, "fcntl", "sys_fcntl"),              # the 64-bit alias of __NR3264_fcntl
        (38, "renameat", "sys_renameat"),        # __ARCH_WANT_RENAMEAT from uapi/asm
        (42, "nfsservctl", "sys_ni_syscall"),
        (98, "futex", "sys_futex"),
        (137, "rt_sigtimedwait", "sys_rt_sigtimedwait"),
        (435, "clone3", "sys_clone3"),           # arithmetic on another define
    ]                                            # getrlimit: only under CONFIG_COMPAT


@pytest.mark.parametrize("generic, message", [
    ("#ifdef X\n#define __NR_a 1\n", "unterminated #if"),
    ("#endif\n", "#endif without #if"),
    ("#define __NR_a 1\n#define __NR_b 1\n__SYSCALL(1, sys_a)\n",
     "slot 1 (sys_a): expected one __NR_ name, found ['a', 'b']"),
    ("#define __NR_a 1\n__SYSCALL(__NR_a, sys_a)\n__SYSCALL(1, sys_b)\n", "slot 1 filled twice"),
    ("#if FOO(1)\n#endif\n", "unsupported #if expression '0(1)'"),
    ("#if 1 +\n#endif\n", "cannot evaluate #if '1 +'"),
], ids=["unterminated", "stray endif", "two names", "twice", "call in if", "bad if"])
def test_header_errors_say_where(generic, message):
    with pytest.raises(HeaderError, match=re.escape(message)):
        arm64_table(_headers(**{"include/uapi/asm-generic/unistd.h": generic}))


def test_header_missing_is_an_error():
    read = _headers()

    def without_uapi(path):
        return None if path.endswith("uapi/asm/unistd.h") else read(path)
    with pytest.raises(HeaderError, match="arch/arm64/include/uapi/asm/unistd.h: missing"):
        arm64_table(without_uapi)

"""sbx analyze without a kernel: ELF reading, library search, constant propagation, the call
graph on programs compiled here, the cache, the profile it writes and bad input.

The compiled test program makes syscalls in every way the analysis must see
(a constant through syscall(3), an inline ``syscall`` instruction, a function
reached only through a pointer, a dlopen with a constant name), one it cannot
(a number read from argv) and one only from code nothing calls.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bpf_filters import syscalls
from sandbox import trace as tr
from sandbox.analyze import cache as cache_mod
from sandbox.analyze import dataflow
from sandbox.analyze.cache import SummaryCache, analyser_version
from sandbox.analyze.ehframe import fde_ranges
from sandbox.analyze.elf import AnalyzeError, _relr, open_elf
from sandbox.analyze.loader import Loaded, load_order, read_ld_so_cache
from sandbox.analyze.program import analyze_program
from sandbox.analyze.result import observed
from sandbox.checks import check_profile
from sandbox.cli import cli
from sandbox.policy import build_filter, load_profile

NR = syscalls.table("x86_64").nr
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
LDSO = "/lib64/ld-linux-x86-64.so.2"
PROGRAM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((noinline, used)) void never_called(void) { syscall(SYS_acct, 0); }

static long through_pointer(long x) {
    long r;
    __asm__ volatile ("syscall" : "=a"(r) : "a"(SYS_getcpu), "D"(0), "S"(0), "d"(0)
                      : "rcx", "r11", "memory");
    return r + x;
}
long (*volatile fp)(long) = through_pointer;

int main(int argc, char **argv) {
    syscall(SYS_getppid);
    if (argc > 1)
        syscall(atoi(argv[1]));
    if (argc > 2)
        dlopen("libm.so.6", RTLD_NOW);
    return (int) fp(argc) & 0;
}
"""


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("analyze-cache")


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, shared_cache):
    """The analysis cache of these tests (the CLI's included) is a temporary directory:
    summaries are shared between tests, never written to the user's cache."""
    monkeypatch.setattr(cache_mod, "cache_dir", lambda: shared_cache)
    global SHARED
    SHARED = shared_cache


SHARED: Path | None = None
REAL_CACHE_DIR = cache_mod.cache_dir          # before private_cache replaces it


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    if not shutil.which("gcc"):
        pytest.skip("gcc missing (make deps-test installs it)")
    d = tmp_path_factory.mktemp("prog")
    (d / "p.c").write_text(PROGRAM)
    out = {"pie": d / "pie", "static": d / "static", "stripped": d / "stripped"}
    subprocess.run(["gcc", "-O2", "-o", out["pie"], d / "p.c"], check=True)
    subprocess.run(["gcc", "-O2", "-static", "-o", out["static"], d / "p.c"], check=True,
                   capture_output=True)
    subprocess.run(["strip", "-o", out["stripped"], out["static"]], check=True)
    return out


def names(analysis) -> set[str]:
    t = syscalls.table("x86_64")
    return {t.name(n) for n in analysis.all_syscalls()}


def run(path, **kw):
    return analyze_program(str(path), SummaryCache(SHARED), **kw)


# ------------------------------------------------------------------ the compiled program

@pytest.mark.parametrize("kind", ["pie", "static", "stripped"])
def test_a_compiled_program_has_every_reachable_syscall_and_not_its_dead_code(built, kind):
    a = run(built[kind])
    found = names(a)
    assert {"getppid", "getcpu", "exit_group", "write"} <= found
    assert "acct" not in found                      # only never_called() makes it
    assert "reboot" not in found and "init_module" not in found
    sites = a.all_syscalls()[NR("getppid")]
    assert any(via.endswith("(110)") for _, _, via in sites)   # syscall(SYS_getppid)


@pytest.mark.parametrize("kind", ["pie", "stripped"])
def test_a_number_computed_at_run_time_is_reported_as_a_limit(built, kind):
    a = run(built[kind])
    assert any("syscall number computed at run time" in x for x in a.reach.limits), a.reach.limits


def test_a_function_reached_only_through_a_pointer_counts_and_says_so(built):
    a = run(built["pie"])
    (where, node, _), = [s for s in a.all_syscalls()[NR("getcpu")] if s[1][0] == 0]
    hows = [how for _, how in where.reach.chain(node)]
    assert any(h.startswith("called through a pointer") for h in hows), hows
    assert any(w.startswith("indirect calls") for w in a.reach.widened)


def test_dlopen_with_a_constant_name_follows_the_library(built):
    a = run(built["pie"])
    assert any(p.endswith("libm.so.6") for p in a.reach.dlopened)


def test_a_static_program_is_one_object_plus_what_it_dlopens(built):
    a = run(built["static"])
    assert a.kind == "static" and a.stats[0].path == str(built["static"])
    assert {os.path.basename(p) for p in a.reach.dlopened} >= {"libm.so.6"}
    assert "statically linked" in " ".join(observed(a).notes)
    stripped = run(built["stripped"])                  # no names: dlopen cannot be recognized
    assert not stripped.reach.dlopened
    assert any("statically linked and stripped" in x for x in stripped.reach.limits)


ROOTS = r"""
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((constructor)) static void at_start(void) { syscall(SYS_vhangup); }
__attribute__((destructor)) static void at_end(void) { syscall(SYS_syncfs, 0); }
__attribute__((noinline, used)) static void nobody_calls(void) { syscall(SYS_pivot_root, 0, 0); }
int main(void) { return 0; }
"""

# liba's in_a ends in a jump (a tail call) through its PLT to libb's in_b: the edge
# crosses objects without a call instruction
LIB_B = r"""
#include <sys/syscall.h>
#include <unistd.h>
long in_b(long x) { return syscall(SYS_setdomainname, 0, x); }
long unused_b(long x) { return syscall(SYS_sethostname, 0, x); }
"""
LIB_A = "long in_b(long); long in_a(long x) { return in_b(x + 1); }\n"
MAIN_A = "long in_a(long); int main(int c, char **v) { return (int) in_a(c); }\n"


def _chain_words(a, name: str) -> list[str]:
    (where, node, _), *_ = a.all_syscalls()[NR(name)]
    return [how for _, how in where.reach.chain(node)]


def test_init_and_fini_array_functions_are_roots(tmp_path):
    if not shutil.which("gcc"):
        pytest.skip("gcc missing (make deps-test installs it)")
    (tmp_path / "r.c").write_text(ROOTS)
    subprocess.run(["gcc", "-O2", "-o", tmp_path / "r", tmp_path / "r.c"], check=True)
    a = run(tmp_path / "r")
    found = names(a)
    assert {"vhangup", "syncfs"} <= found and "pivot_root" not in found
    # reached as what ld.so runs, not only as pointers stored in data
    assert any(h.startswith("init_array[") and "run by ld.so" in h for h in _chain_words(a, "vhangup")), \
        _chain_words(a, "vhangup")
    assert any(h.startswith("fini_array[") and "run by ld.so" in h for h in _chain_words(a, "syncfs")), \
        _chain_words(a, "syncfs")


def test_a_tail_jump_into_another_object_is_followed(tmp_path):
    if not shutil.which("gcc"):
        pytest.skip("gcc missing (make deps-test installs it)")
    for name, text in (("b.c", LIB_B), ("a.c", LIB_A), ("m.c", MAIN_A)):
        (tmp_path / name).write_text(text)
    gcc = ["gcc", "-O2", "-fPIC"]
    subprocess.run(gcc + ["-shared", "-o", tmp_path / "libb.so", tmp_path / "b.c"], check=True)
    subprocess.run(gcc + ["-shared", "-o", tmp_path / "liba.so", tmp_path / "a.c", "-L", tmp_path,
                          "-lb", "-Wl,-rpath,$ORIGIN"], check=True)
    subprocess.run(gcc + ["-o", tmp_path / "m", tmp_path / "m.c", "-L", tmp_path, "-la",
                          "-Wl,-rpath,$ORIGIN"], check=True)
    # the premise: in_a's last instruction is a jmp to in_b through the PLT, not a call
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", tmp_path / "liba.so"],
                         capture_output=True, text=True, check=True).stdout
    body = dis.split("<in_a>:", 1)[1].split("\n\n", 1)[0]
    assert "jmp" in body and "in_b" in body and "call" not in body, body
    a = run(tmp_path / "m")
    found = names(a)
    assert "setdomainname" in found and "sethostname" not in found
    (where, node, _), *_ = a.all_syscalls()[NR("setdomainname")]
    objects = [os.path.basename(o.name) for o in where.reach.objects]
    (jumper, _), (landed, how) = where.reach.chain(node)[-2:]
    assert (objects[jumper[0]], objects[landed[0]], how) == ("liba.so", "libb.so", "calls in_b")


# ------------------------------------------------------------------ ELF, FDEs, loader

def test_fde_reader_agrees_with_pyelftools_on_libc_and_ld_so():
    from elftools.dwarf.callframe import FDE
    from elftools.elf.elffile import ELFFile
    for path in (LIBC, LDSO):
        elf = open_elf(path)
        mine = [(s, e) for s, e, _ in fde_ranges(*elf.eh_frame)]
        with open(path, "rb") as fh:
            entries = ELFFile(fh).get_dwarf_info().EH_CFI_entries()
            ref = sorted((x.header["initial_location"],
                          x.header["initial_location"] + x.header["address_range"])
                         for x in entries if isinstance(x, FDE))
        assert mine == ref and len(mine) > 200, path


def test_signal_trampolines_are_marked_and_their_number_recovered():
    a = run("/usr/bin/true")
    assert NR("rt_sigreturn") in a.all_syscalls()      # glibc's __restore_rt, FDE one byte early
    libc = next(o for o in a.reach.objects if o.name == "libc.so.6")
    assert not libc.summary.unknown                    # every site in libc has a known number


def test_relr_entries_expand_to_addresses():
    out = {}
    # an address, then a bitmap: bits 1 and 3 -> base + 0 and base + 16 (base = addr + 8)
    _relr(struct.pack("<QQ", 0x1000, (1 << 1 | 1 << 3) << 0 | 1), out)
    assert sorted(out) == [0x1000, 0x1008, 0x1018]


def test_libraries_are_found_as_ldd_finds_them():
    order = load_order(Loaded("/usr/bin/ls", open_elf("/usr/bin/ls", full=False), "program"))
    ldd = subprocess.run(["ldd", "/usr/bin/ls"], capture_output=True, text=True).stdout
    want = {os.path.realpath(w) for line in ldd.splitlines() for w in line.split() if w.startswith("/")}
    assert {os.path.realpath(o.path) for o in order[1:]} == want
    assert any(o.interpreter for o in order)
    assert read_ld_so_cache()["libc.so.6"].endswith("/libc.so.6")


def test_runpath_with_origin_is_searched_before_the_cache(built, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (tmp_path / "l.c").write_text("int answer(void){return 42;}\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libanswer.so", "-o",
                    lib / "libanswer.so", tmp_path / "l.c"], check=True)
    (tmp_path / "m.c").write_text("int answer(void); int main(void){return answer() - 42;}\n")
    subprocess.run(["gcc", "-o", tmp_path / "m", tmp_path / "m.c", f"-L{lib}", "-lanswer",
                    "-Wl,-rpath,$ORIGIN/lib", "-Wl,--enable-new-dtags"], check=True)
    order = load_order(Loaded(str(tmp_path / "m"), open_elf(str(tmp_path / "m"), full=False),
                              "program"), env={})
    found = {o.name: o.how for o in order}
    assert found["libanswer.so"] == "RUNPATH of m"


# ------------------------------------------------------------------ constant propagation

def flow(insns, site):
    return dataflow.propagate(insns, insns[0][0], insns[-1][0] + insns[-1][1], {site})[site]


@pytest.mark.parametrize("insns, want", [
    ([(0, 5, "mov", "eax, 0x27"), (5, 2, "syscall", "")], frozenset({39})),
    ([(0, 3, "mov", "rax, rdi"), (3, 2, "syscall", "")], ("arg", 0)),
    ([(0, 5, "mov", "esi, 0xe7"), (5, 2, "xor", "eax, eax"), (7, 3, "cmove", "eax, esi"),
      (10, 2, "syscall", "")], frozenset({0, 231})),
    ([(0, 5, "mov", "eax, 1"), (5, 5, "call", "0x100"), (10, 2, "syscall", "")], None),
    ([(0, 5, "mov", "eax, 1"), (5, 2, "mov", "eax, dword ptr [rbx]"), (7, 2, "syscall", "")], None),
], ids=["a constant", "an argument forwarded (a wrapper)", "two constants through cmov",
        "a call clobbers rax", "a load from memory is unknown"])
def test_the_number_at_a_syscall(insns, want):
    assert flow(insns, insns[-1][0]).get("rax") == want


def test_a_loop_head_after_padding_keeps_the_constant():
    # glibc's _exit: the constant is set before the loop, a nop pads the loop head
    insns = [(0, 5, "mov", "edx, 0x3c"), (5, 2, "jmp", "0xa"), (7, 3, "nop", "dword ptr [rax]"),
             (10, 2, "mov", "eax, edx"), (12, 2, "syscall", ""), (14, 2, "jmp", "0xa")]
    assert flow(insns, 12).get("rax") == frozenset({60})


def test_a_jump_table_target_gets_the_state_at_the_jump():
    insns = [(0, 5, "mov", "eax, 0x27"), (5, 2, "jmp", "rcx"), (7, 2, "syscall", "")]
    assert flow(insns, 7).get("rax") == frozenset({39})


def test_a_block_nothing_known_reaches_starts_unknown():
    insns = [(0, 5, "mov", "eax, 0x27"), (5, 5, "jmp", "0x100"), (10, 2, "syscall", "")]
    assert flow(insns, 10).get("rax") is None


def test_a_call_that_never_returns_does_not_join_its_state():
    insns = [(0, 5, "mov", "eax, 0x27"), (5, 2, "jne", "0xc"), (7, 5, "call", "0x100"),
             (12, 2, "syscall", "")]
    assert flow(insns, 12).get("rax") is None
    stopped = dataflow.propagate(insns, 0, 14, {12}, stops=frozenset({7}))
    assert stopped[12].get("rax") == frozenset({39})


# ------------------------------------------------------------------ the cache

def test_the_cache_returns_what_was_stored_and_treats_damage_as_a_miss(tmp_path):
    cache = SummaryCache(tmp_path / "c")
    first = analyze_program("/usr/bin/true", cache)
    assert not any(s.cached for s in first.stats)
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    second = analyze_program("/usr/bin/true", SummaryCache(tmp_path / "c"))
    assert all(s.cached for s in second.stats)
    assert second.all_syscalls().keys() == first.all_syscalls().keys()
    for entry in (tmp_path / "c").iterdir():
        entry.write_text('{"analyser": "' + analyser_version() + '", "summary": [')
    third = analyze_program("/usr/bin/true", SummaryCache(tmp_path / "c"))
    assert not any(s.cached for s in third.stats)                 # recomputed, no traceback
    assert third.all_syscalls().keys() == first.all_syscalls().keys()
    assert all(json.loads(e.read_text())["summary"] for e in (tmp_path / "c").iterdir())


@pytest.mark.parametrize("damage", [{"sys": {"0": 5}}, {"calls": {"1": ["x"]}}, {"name": 7},
                                    {"roots": [["entry", 10 ** 9]]}, {"main": "main"},
                                    {"consts": {"0": [["exec", "x", [{}], 1]]}}],
                         ids=["a number for a list", "a string for a region", "a number for a name",
                              "a region out of range", "a string for a region number",
                              "an object for a string"])
def test_a_well_formed_entry_with_wrong_values_is_a_miss(tmp_path, damage):
    cache = SummaryCache(tmp_path / "c")
    first = analyze_program("/usr/bin/true", cache)
    for entry in (tmp_path / "c").iterdir():
        doc = json.loads(entry.read_text())
        doc["summary"].update(damage)
        doc["digest"] = cache_mod._digest(doc["summary"])       # re-sealed: the values decide
        entry.write_text(json.dumps(doc))
    again = SummaryCache(tmp_path / "c")
    second = analyze_program("/usr/bin/true", again)
    assert again.misses == len(first.stats) and again.hits == 0
    assert second.all_syscalls().keys() == first.all_syscalls().keys()


def _summary_sys(entry: Path) -> dict:
    return json.loads(entry.read_text())["summary"]["sys"]


@pytest.mark.parametrize("tamper", ["summary edited", "mode 0644", "too large", "a fifo"])
def test_a_tampered_entry_is_ignored_and_recomputed(tmp_path, monkeypatch, tamper):
    """An entry planted or edited without sbx (a summary that lets a later profile allow
    more) is a miss: the object is analysed again and the entry rewritten."""
    d = tmp_path / "c"
    first = analyze_program("/usr/bin/true", SummaryCache(d))
    entries = sorted(e for e in d.iterdir() if e.name.endswith(".json"))
    good = {e: e.read_bytes() for e in entries}
    for entry in entries:
        if tamper == "summary edited":
            doc = json.loads(entry.read_text())
            doc["summary"]["sys"] = {"0": [NR("ptrace"), NR("mount")]}
            entry.write_text(json.dumps(doc))
            os.chmod(entry, 0o600)
        elif tamper == "mode 0644":
            os.chmod(entry, 0o644)
        elif tamper == "a fifo":
            entry.unlink()
            os.mkfifo(entry, 0o600)
    if tamper == "too large":
        monkeypatch.setattr(cache_mod, "MAX_ENTRY", min(len(b) for b in good.values()) - 1)
    again = SummaryCache(d)
    second = analyze_program("/usr/bin/true", again)        # a FIFO would block a plain open
    assert again.hits == 0 and again.misses == len(first.stats)
    assert names(second) == names(first) and "ptrace" not in names(second)
    if tamper != "too large":
        for entry in entries:
            assert entry.is_file() and entry.stat().st_mode & 0o777 == 0o600
        third = SummaryCache(d)
        analyze_program("/usr/bin/true", third)
        assert third.hits == len(first.stats)                 # rewritten, and trusted again


def test_the_cache_lives_below_the_filter_caches_protected_directory(monkeypatch):
    """Not in $XDG_CACHE_HOME or ~/.cache, which a confined command may be allowed to write:
    beside the compiled filters, where every run's Landlock layer keeps commands out
    (tests/kernel/test_analyze_kernel.py plants an entry from a confined command)."""
    from sandbox import cache
    monkeypatch.setenv("XDG_CACHE_HOME", "/tmp/elsewhere")
    monkeypatch.setenv("HOME", "/tmp/elsewhere")
    for uid in (0, 1000):
        monkeypatch.setattr(os, "geteuid", lambda: uid)
        assert REAL_CACHE_DIR() == Path(cache.location(uid)) / "analyze"


def test_a_cache_directory_others_may_write_is_refused(tmp_path):
    d = tmp_path / "c"
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)
    cache = SummaryCache(d)
    analyze_program("/usr/bin/true", cache)
    assert cache.warning and "writable by group or others" in cache.warning
    assert list(d.iterdir()) == []


def test_a_cache_directory_owned_by_someone_else_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory away")
    d = tmp_path / "c"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    cache = SummaryCache(d)
    analyze_program("/usr/bin/true", cache)
    assert cache.warning and "belongs to uid 65534" in cache.warning


def test_a_symlinked_entry_is_not_followed(tmp_path):
    d = tmp_path / "c"
    cache = SummaryCache(d)
    analyze_program("/usr/bin/true", cache)
    entry = next(d.iterdir())
    target = tmp_path / "elsewhere.json"
    target.write_text(entry.read_text())
    entry.unlink()
    entry.symlink_to(target)
    again = SummaryCache(d)
    analyze_program("/usr/bin/true", again)
    assert again.misses >= 1


# ------------------------------------------------------------------ the profile

def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_the_profile_loads_compiles_and_comments_each_name(tmp_path):
    out = tmp_path / "true.yaml"
    r = invoke("analyze", "/usr/bin/true", "-o", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text()
    prof = load_profile(str(out))
    build_filter(prof, native="x86_64")
    assert "default: errno(EPERM)" in text and "unknown: errno(ENOSYS)" in text
    assert "- errno(ENOSYS): clone3" in text
    assert "      - execve                           # needed: sbx run starts the command" \
        in text or "# static:" in text.split("execve", 1)[1].splitlines()[0]
    assert "# static: libc.so.6" in text and "←" in text


def test_merge_with_a_trace_marks_static_traced_and_both(tmp_path):
    static = tmp_path / "s.yaml"
    invoke("analyze", "/usr/bin/true", "-o", str(static))
    traced = tmp_path / "t.yaml"
    seen = tr.Observed(calls={"read": 3, "personality": 1}, commands=["true"], backends=["ebpf"],
                       open_args={"personality"})
    traced.write_text(tr.write_profile(seen, "trace-true"))
    merged = tmp_path / "m.yaml"
    r = invoke("analyze", "/usr/bin/true", "--merge", str(traced), "-o", str(merged))
    assert r.exit_code == 0, r.output
    lines = {ln.split()[1]: ln for ln in merged.read_text().splitlines() if ln.startswith("      - ")}
    assert "# both: 3 calls; libc.so.6" in lines["read"]
    assert "# traced: 1" in lines["personality"]
    assert "# static: " in lines["mmap"]
    back = tr.observed_from_profile(load_profile(str(merged)), "x86_64")
    assert back.calls["read"] == 3 and back.static["read"].startswith("libc.so.6")
    # and the other way round: sbx trace --merge STATIC keeps the provenance
    again = tr.write_profile(tr.merge([back, tr.Observed(calls={"read": 1}, commands=["x"])]), "x")
    assert "# both: 4 calls; libc.so.6" in again


def test_every_narrowed_rule_of_a_merged_profile_is_tagged(tmp_path):
    af, st = {"AF_INET": 2, "AF_UNIX": 1}, {"SOCK_STREAM": 1, "SOCK_DGRAM": 2}
    obs = tr.Observed(calls={"socket": 4}, commands=["x"], analyzed=["/usr/bin/x"],
                      values={("socket", 0): {af["AF_INET"]: 3, af["AF_UNIX"]: 1},
                              ("socket", 1): {st["SOCK_STREAM"]: 3, st["SOCK_DGRAM"]: 1}},
                      static={"read": "libc.so.6 read ← main"})
    path = tmp_path / "m.yaml"
    path.write_text(tr.write_profile(obs, "m"))
    rules = [ln for ln in path.read_text().splitlines() if ln.startswith("  - allow: socket")]
    assert [ln.rsplit("#", 1)[1] for ln in rules] == [" traced: 3", " traced: 1"], rules
    back = tr.observed_from_profile(load_profile(str(path)), "x86_64")
    assert back.calls["socket"] == 4 and back.static == {"read": "libc.so.6 read ← main"}


def test_check_notes_sensitive_syscalls_found_only_statically(tmp_path):
    obs = tr.Observed(static={"ptrace": "libc.so.6 ptrace ← main", "read": "libc.so.6 read ← main"},
                      calls={"mount": 2}, analyzed=["/usr/bin/x"])
    obs.static["mount"] = "libc.so.6 mount ← main"
    path = tmp_path / "p.yaml"
    path.write_text(tr.write_profile(obs, "p"))
    found = [f for f in check_profile(load_profile(str(path)), "x86_64").findings
             if f.rule_id == "SBX144"]
    assert [f.syscalls for f in found] == [["ptrace"]]          # mount was traced too: both


def test_a_trace_profile_without_provenance_gets_no_note(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(tr.write_profile(tr.Observed(calls={"ptrace": 1}, commands=["x"]), "t"))
    rep = check_profile(load_profile(str(path)), "x86_64")
    assert not [f for f in rep.findings if f.rule_id == "SBX144"]


def test_json_and_explain(tmp_path):
    r = invoke("analyze", "/usr/bin/true", "--json")
    doc = json.loads(r.stdout)                         # the summary line goes to stderr
    assert doc["arch"] == "x86_64" and doc["count"] == len(doc["syscalls"]) > 10
    assert doc["syscalls"]["exit_group"]["chain"][0]["how"].startswith("entry of")
    r = invoke("analyze", "/usr/bin/true", "--explain", "exit_group")
    assert r.exit_code == 0 and r.stdout.startswith("exit_group (231) is reachable")
    assert "entry of true, run by the kernel" in r.output
    r = invoke("analyze", "/usr/bin/true", "--explain", "reboot")
    assert "is not made by any code reachable" in r.output


def test_the_profile_names_the_running_kernels_release_as_its_baseline(tmp_path):
    out = tmp_path / "true.yaml"
    assert invoke("analyze", "/usr/bin/true", "-o", str(out)).exit_code == 0
    assert load_profile(str(out)).baseline.value == tr.kernel_baseline()
    assert "# baseline:" not in out.read_text()              # one source: nothing to explain
    assert invoke("analyze", "/usr/bin/true", "--baseline", "5.10", "-o", str(out)).exit_code == 0
    assert load_profile(str(out)).baseline.value == "5.10"
    r = invoke("analyze", "/usr/bin/true", "--baseline", "5.x", "-o", str(out))
    assert r.exit_code == 2 and "--baseline" in r.output


def test_merge_keeps_the_oldest_baseline_so_faccessat2_still_answers_enosys(tmp_path):
    traced = tmp_path / "tr54.yaml"
    seen = tr.Observed(calls={"read": 3}, commands=["true"], backends=["ebpf"])
    traced.write_text(tr.write_profile(seen, "trace-true", baseline="5.4"))
    merged = tmp_path / "an54.yaml"
    r = invoke("analyze", "/usr/bin/true", "--merge", str(traced), "-o", str(merged))
    assert r.exit_code == 0, r.output
    assert load_profile(str(merged)).baseline.value == "5.4"
    assert f"# baseline: the oldest of this kernel {tr.kernel_baseline()}, tr54.yaml 5.4\n" \
        'baseline: "5.4"\n' in merged.read_text()
    r = invoke("explain", str(merged), "faccessat2")
    assert "decision: errno(ENOSYS)" in r.output and 'baseline: "5.4"' in r.output, r.output


def test_a_device_or_fifo_output_is_written_into(tmp_path):
    import threading
    before = os.stat("/dev/null")
    r = invoke("analyze", "/usr/bin/true", "-o", "/dev/null")
    assert r.exit_code == 0, r.output
    assert "wrote /dev/null" in r.output
    after = os.stat("/dev/null")
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    r = invoke("analyze", "/usr/bin/true", "-o", str(fifo))
    reader.join(10)
    assert r.exit_code == 0, r.output
    assert fifo.is_fifo() and 'name: analyze-true\n' in got[0] and "baseline:" in got[0]
    # sbx trace writes a merged profile the same way
    static = tmp_path / "s.yaml"
    invoke("analyze", "/usr/bin/true", "-o", str(static))
    r = invoke("trace", "--merge", str(static), "-o", "/dev/null")
    assert r.exit_code == 0, r.output
    assert os.stat("/dev/null").st_rdev == before.st_rdev and not os.path.isfile("/dev/null")


# ------------------------------------------------------------------ bad input

def _elf_header(ei_class: int, machine: int) -> bytes:
    return b"\x7fELF" + bytes([ei_class, 1, 1]) + bytes(9) + struct.pack("<HH", 2, machine) + bytes(44)


BAD = {
    "not-elf": (b"hello world\n", "not an ELF file"),
    "empty": (b"", "an empty file"),
    "script": (b"#!/bin/sh\necho hi\n", "a script for /bin/sh"),
    "elf32": (_elf_header(1, 3), "a 32-bit ELF file (i386)"),
    "aarch64": (_elf_header(2, 183), "an ELF file for aarch64; sbx analyze handles x86_64 only"),
    "truncated": (None, "truncated"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, case):
    data, message = BAD[case]
    path = tmp_path / case
    path.write_bytes(data if data is not None else Path("/usr/bin/true").read_bytes()[:3000])
    with pytest.raises(AnalyzeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(path)
    proc = subprocess.run([sys.executable, "-m", "sandbox", "analyze", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and message in proc.stderr, proc.stderr
    assert proc.stderr.startswith("sbx analyze: error: ")


def test_a_shared_library_and_another_arch_request_are_refused():
    r = subprocess.run([sys.executable, "-m", "sandbox", "analyze", "/lib/x86_64-linux-gnu/libz.so.1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "a shared library (libz.so.1), not a program" in r.stderr
    r = subprocess.run([sys.executable, "-m", "sandbox", "analyze", "--arch", "aarch64", "/usr/bin/true"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "x86_64 only" in r.stderr

"""The CLI's pure commands: compile, explain, profiles, on every built-in profile."""
import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bpf_filters.insn import unpack
from bpf_filters.verifier import verify
from sandbox.cli import cli
from sandbox.policy import builtin_names
from tests.conftest import REPO

ROOT = str(REPO)
PROFILES = builtin_names() + ["tests/fixtures/docker-default.yaml"]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("fmt", ["asm", "raw", "c"])
def test_compile_every_builtin_profile(profile, fmt, tmp_path):
    out = tmp_path / "out"
    r = invoke("compile", profile, "--format", fmt, "-o", str(out))
    assert r.exit_code == 0, r.output
    if fmt == "raw":
        verify(unpack(out.read_bytes()))
    elif fmt == "c":
        text = out.read_text()
        assert "struct sock_filter" in text and "struct sock_fprog" in text
    else:
        text = out.read_text()
        assert text.splitlines()[1].startswith("l0000: ld [4]")


def test_c_output_compiles_and_installs(tmp_path):
    if not __import__("shutil").which("gcc"):
        pytest.skip("gcc missing")
    invoke("compile", "default", "--format", "c", "-o", str(tmp_path / "f.h"))
    (tmp_path / "m.c").write_text(
        '#include <stdio.h>\n#include <sys/prctl.h>\n#include <linux/seccomp.h>\n#include "f.h"\n'
        "int main(void){ if (prctl(PR_SET_NO_NEW_PRIVS,1,0,0,0)) return 2;"
        " if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &sbx_default)) return 3; puts(\"confined\"); return 0; }\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "m"), str(tmp_path / "m.c")], check=True)
    r = subprocess.run([str(tmp_path / "m")], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "confined\n"


@pytest.mark.parametrize("profile", PROFILES)
def test_explain_every_builtin_profile(profile):
    r = invoke("explain", profile, "ptrace")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("ptrace (101) on x86_64")
    # Docker allows ptrace since kernel 4.8 (seccomp runs after ptrace); ours never does
    expected = ("allow",) if "docker" in profile else ("errno(EPERM)", "kill-process")
    assert lines[1].split(":", 1)[1].strip() in expected
    assert ".yaml:" in lines[2]
    assert "BPF instructions executed" in lines[-1]


@pytest.mark.parametrize("args,decision,where", [
    (("default", "socket", "AF_INET"), "allow", "default.yaml"),
    (("default", "socket", "AF_VSOCK"), "errno(EAFNOSUPPORT)", "default.yaml"),
    (("default", "clone", "0x10000000"), "errno(EPERM)", "default.yaml"),
    (("default", "ioctl", "0", "TIOCSTI"), "errno(EPERM)", "default.yaml"),
    (("default", "ioctl", "0", "TCGETS"), "allow", "default.yaml"),
    (("default", "1000"), "errno(ENOSYS)", "unknown action"),
    (("default", "getpid", "--arch", "i386"), "kill-process", "bad_arch action"),
], ids=["socket AF_INET is allowed", "AF_VSOCK is refused", "CLONE_NEWUSER is refused",
        "TIOCSTI is refused", "TCGETS is allowed", "numbers above the table get ENOSYS",
        "i386 calls are killed"])
def test_explain_decisions(args, decision, where):
    r = invoke("explain", *args)
    assert r.exit_code == 0, r.output
    assert f"decision: {decision}" in r.output
    assert where in r.output


def test_explain_unknown_syscall_suggests():
    r = CliRunner().invoke(cli, ["explain", "default", "opne"])
    assert r.exit_code == 2 and "did you mean 'open'" in r.output


def test_profiles_list_and_show():
    r = invoke("profiles", "list")
    assert r.exit_code == 0
    assert {l.split()[0] for l in r.output.splitlines()} == set(builtin_names())
    r = invoke("profiles", "show", "web")
    assert r.exit_code == 0
    assert "name: web" in r.output and "extends default" in r.output
    assert "socket" in r.output


def test_shown_profile_loads_again(tmp_path):
    out = tmp_path / "web-resolved.yaml"
    out.write_text(invoke("profiles", "show", "web").output)
    r = invoke("compile", str(out))
    assert r.exit_code == 0, r.output


def test_bad_profile_gives_diagnostics_and_status_2():
    r = subprocess.run([sys.executable, "-m", "sandbox", "compile", "tests/fixtures/bad/typos.yaml"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert "tests/fixtures/bad/typos.yaml:4:13: error: unknown syscall 'opne' (did you mean 'open'?)" in r.stderr
    assert "Traceback" not in r.stderr


GOLDEN_SMALL = """\
l0000: ld [4]        ; arch
l0001: jeq #0xc000003e, l0002, l0007
l0002: ld [0]        ; nr
l0003: jge #0x3c, l0004, l0008
l0004: jge #0x3d, l0005, l0009
l0005: jge #0x40000000, l0006, l0010
l0006: jge #0xffffffff, l0010, l0007
l0007: ret KILL_PROCESS
l0008: ret ALLOW
l0009: ret ERRNO(1)
l0010: ret ERRNO(38)
"""


def test_golden_disassembly_of_a_tiny_policy():
    """Allow 0..59, deny 60, ENOSYS above the table, the x32 half killed but for -1 (ENOSYS):
    shared RETs."""
    from bpf_filters.compiler import compile_policy
    from bpf_filters.disasm import disassemble
    from bpf_filters.ir import Action, ArchPolicy, Policy, Rule
    rules = {nr: (Rule(Action("allow")),) for nr in range(60)}
    ap = ArchPolicy("x86_64", rules, frozenset(range(61)))
    flt = compile_policy(Policy([ap], Action("errno", 1)))
    text = disassemble(flt.insns)
    assert text == GOLDEN_SMALL, text


def test_profiles_show_json_is_the_resolved_yaml_as_data():
    import json
    import yaml
    text = CliRunner().invoke(cli, ["profiles", "show", "web"]).output
    doc = json.loads(CliRunner().invoke(cli, ["profiles", "show", "web", "--json"]).output)
    places = [rule.pop("at") for rule in doc["rules"]]
    assert doc == yaml.safe_load(text)
    assert doc["name"] == "web" and doc["default"] == "errno(EPERM)"
    # each rule's place: the line the YAML's comment names, and the column of its action
    comments = re.findall(r"# (profiles/\S+\.yaml:\d+)$", text, re.M)
    assert [p.rsplit(":", 1)[0] for p in places] == comments and len(places) > 20
    first = places[0]
    file, line, col = first.rsplit(":", 2)
    source = open(os.path.join(ROOT, file)).read().splitlines()[int(line) - 1]
    assert source[int(col) - 1:].startswith(next(iter(doc["rules"][0])).split("(")[0]), (first, source)
    assert text.startswith("# web, resolved from profiles/web.yaml (extends default)\n")
    assert "# profiles/web.yaml:" in text and "site-packages" not in text


@pytest.mark.parametrize("args", [
    ["run", "-o", "", "--", "true"], ["run", "--profile=", "--", "true"],
    ["compile", "default", "-o", ""], ["profile", "build", "-o", "", "rec.jsonl"],
    ["trace", "-o", "", "--", "true"], ["export", "default", "-o", ""]])
def test_an_empty_output_or_profile_is_refused_before_any_work(args, tmp_path):
    """-o '' names no file: once it read as stdout to one step and as the working
    directory to the next (a traceback, found by test_cli_fuzz)."""
    r = subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ROOT})
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert "empty" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []

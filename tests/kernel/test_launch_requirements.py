"""`sbx run` refuses, before forking, a profile under which the command could not start
(execve) or end (exit_group), saying which call is missing and where to allow it.

Without the check these profiles ran into the kernel: denying execve gave a bare
"cannot execute", denying everything made the child die silently with status 139
before exec, and denying exit_group left a program with threads running forever.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import need

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SBX = [sys.executable, "-m", "sandbox"]


@pytest.fixture(autouse=True)
def seccomp_available():
    need(os.path.exists("/proc/self/status") and "Seccomp:" in open("/proc/self/status").read(),
         "no seccomp in this kernel")


def run(profile, *argv, mode=None, timeout=30):
    opts = ["--mode", mode] if mode else []
    return subprocess.run(SBX + ["run", "--profile", str(profile), *opts, "--", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def profile(tmp_path, body: str, name="p.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


def test_a_profile_that_allows_nothing_is_refused_before_the_command_runs(tmp_path):
    p = profile(tmp_path, """\
        name: nothing
        default: errno(EPERM)
        rules: []
        """)
    marker = tmp_path / "ran"
    r = run(p, "/bin/touch", str(marker))
    assert r.returncode == 2, (r.returncode, r.stderr)          # was 139, and no word why
    assert not marker.exists()
    assert f"{p}:2:10: error: sbx run needs execve, and this profile leaves it to default: " \
           "errno(EPERM)" in r.stderr
    assert f"{p}:2:10: error: sbx run needs exit_group" in r.stderr
    assert "add `- allow: [execve, exit_group]` to rules" in r.stderr


@pytest.mark.parametrize("action", ["errno(EPERM)", "kill-process"])
def test_a_rule_denying_execve_is_named_with_its_position(tmp_path, action):
    p = profile(tmp_path, f"""\
        name: noexec
        extends: default
        rules:
          - {action}: [mknod, execve]
        """)
    r = run(p, "/bin/true")
    assert r.returncode == 2, r.stderr
    col = len(f"  - {action}: [mknod, ") + 1
    assert f"{p}:4:{col}: error: sbx run needs execve, and this rule denies it ({action})" in r.stderr
    assert "put `- allow: [execve]` above this rule" in r.stderr
    assert "Traceback" not in r.stderr


def test_denying_exit_group_is_refused(tmp_path):
    p = profile(tmp_path, """\
        name: noexit
        extends: default
        rules:
          - errno(EPERM): exit_group
        """)
    # unchecked, this program printed and then never ended (its thread kept it alive)
    code = "import threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True).start()"
    r = run(p, sys.executable, "-c", code, timeout=30)
    assert r.returncode == 2
    assert f"{p}:4:19: error: sbx run needs exit_group, and this rule denies it" in r.stderr


def test_a_denial_in_a_base_profile_says_to_allow_it_in_this_one(tmp_path):
    base = profile(tmp_path, """\
        name: base
        extends: default
        rules:
          - kill-process: execve
        """, "base.yaml")
    p = profile(tmp_path, f"""\
        name: child
        extends: [{base}]
        rules:
          - allow: read
        """)
    r = run(p, "/bin/true")
    assert r.returncode == 2
    assert f"{base}:4:19: error: sbx run needs execve" in r.stderr
    assert f"add `- allow: [execve]` to the rules of {p}" in r.stderr
    p.write_text(p.read_text() + "  - allow: execve\n")       # this file's rules come first
    assert run(p, "/bin/true").returncode == 0


def test_write_is_not_required(tmp_path):
    p = profile(tmp_path, """\
        name: nowrite
        extends: default
        rules:
          - errno(EPERM): [write, writev]
        """)
    r = run(p, "/bin/true")
    assert r.returncode == 0, r.stderr
    r = run(p, "/bin/echo", "hi")
    assert r.returncode == 1 and r.stdout == ""          # echo's own failure, reported by echo


def test_complain_mode_lets_the_default_through(tmp_path):
    p = profile(tmp_path, """\
        name: nothing
        default: errno(EPERM)
        rules: []
        """)
    r = run(p, "/bin/true", mode="complain")
    assert r.returncode == 0, r.stderr

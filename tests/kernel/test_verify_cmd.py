"""sbx verify on the real kernel: denials read from the audit log fail the run, with the rule.

Each case runs ``python -m sandbox verify`` as a separate process (it takes a
fresh audit session for itself, which must not leak into the test runner).
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

from bpf_filters.syscalls import table as _table

NR = _table("x86_64").by_name

from tests.conftest import need

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = os.path.realpath(sys.executable)
PTRACE = f"import ctypes; ctypes.CDLL(None).syscall({NR['ptrace']}, 0, 0, 0, 0)"          # x86_64 ptrace
CLONE3 = "import ctypes; ctypes.CDLL(None).syscall(435, 0, 0)"                 # x86_64 clone3


def verify(*args, timeout=60, user=None):
    cmd = [sys.executable, "-m", "sandbox", "verify", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True)
def requirements():
    need(os.geteuid() == 0, "sbx verify reads seccomp audit records: needs root")
    need(os.uname().machine == "x86_64", "the syscall numbers below are x86_64's")


def test_denied_syscall_fails_with_the_syscall_and_rule():
    r = verify("--profile", "default", "--", PY, "-c", PTRACE)
    assert r.returncode == 1, r.stderr
    assert re.search(r"^  ptrace \(101\)\s+1  errno\s+profiles/default\.yaml:\d+: - errno\(EPERM\): \"@debug\"$",
                     r.stderr, re.M), r.stderr
    assert "FAIL: 1 denied syscall under profile default" in r.stderr


def test_clean_command_passes():
    r = verify("--profile", "default", "--", "/bin/true")
    assert r.returncode == 0, r.stderr
    assert "OK: true succeeded with no denials" in r.stderr


def test_denial_in_a_grandchild_that_exited_is_counted():
    r = verify("--profile", "default", "--", "/bin/sh", "-c", f"'{PY}' -c '{PTRACE}'; exit 0")
    assert r.returncode == 1, r.stderr
    assert "ptrace (101)" in r.stderr


def test_enosys_fallback_is_listed_but_fails_only_with_strict():
    r = verify("--profile", "default", "--", PY, "-c", CLONE3)
    assert r.returncode == 0, r.stderr
    assert "answered ENOSYS by design" in r.stderr and "clone3 (435)" in r.stderr
    r = verify("--strict", "--profile", "default", "--", PY, "-c", CLONE3)
    assert r.returncode == 1 and "FAIL: 1 denied syscall" in r.stderr


def test_kill_process_denial():
    r = verify("--profile", "default", "--", PY, "-c", f"import ctypes; ctypes.CDLL(None).syscall({NR['init_module']}, 0, 0, 0)")
    assert r.returncode == 1, r.stderr
    assert re.search(r"init_module \(175\)\s+1  kill-process\s+profiles/default\.yaml:\d+", r.stderr)


def test_failing_command_without_denials_keeps_its_status():
    r = verify("--profile", "default", "--", "/bin/sh", "-c", "exit 3")
    assert r.returncode == 3
    assert "exited with status 3 (no denials)" in r.stderr


def test_missing_command_is_127():
    r = verify("--profile", "default", "--", "/nonexistent/cmd")
    assert r.returncode == 127 and "no such file" in r.stderr


def test_timeout_stops_the_command():
    r = verify("--profile", "default", "--timeout", "0.5", "--", "/bin/sleep", "30", timeout=20)
    assert r.returncode == 124, r.stderr
    assert "timed out after 0.5 s" in r.stderr


def test_timeout_kills_a_command_that_ignores_sigterm():
    r = verify("--profile", "default", "--timeout", "0.5", "--",
               PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)",
               timeout=20)
    assert r.returncode == 124, r.stderr


def test_bad_profile_is_2_with_position(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndefault: errno(EPERM)\nrules:\n  - allow: [reed]\n")
    r = verify("--profile", str(bad), "--", "/bin/true")
    assert r.returncode == 2
    assert f"{bad}:4:13: error: unknown syscall 'reed'" in r.stderr and "Traceback" not in r.stderr


def test_unprivileged_cannot_observe_and_says_so():
    need(shutil.which("setpriv") is not None, "setpriv (util-linux) missing")
    r = verify("--profile", "default", "--", "/bin/true", user=65534)
    assert r.returncode == 2, r.stderr
    assert "denials cannot be observed" in r.stderr and "--allow-unobserved" in r.stderr
    r = verify("--allow-unobserved", "--profile", "default", "--", "/bin/true", user=65534)
    assert r.returncode == 0, r.stderr
    assert "denials were not observed" in r.stderr


def test_a_misspelled_option_is_refused_not_run():
    r = verify("--stric", "--profile", "default", "--", "/bin/true")
    assert r.returncode == 2, r.stderr
    assert "No such option '--stric'. Did you mean '--strict'?" in r.stderr
    assert "command not found" not in r.stderr


def test_duration_stops_a_service_and_judges_it_by_its_denials():
    server = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
              "time.sleep(60)")
    r = verify("--profile", "default", "--duration", "1", "--", PY, "-c", server, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "OK: python3" in r.stderr and "ran 1 s and was stopped with no denials" in r.stderr
    # a service that makes a denied call still fails, stopped on time or not
    denying = f"{PTRACE}; import time; time.sleep(60)"
    r = verify("--profile", "default", "--duration", "1", "--", PY, "-c", denying, timeout=30)
    assert r.returncode == 1, r.stderr
    assert "ptrace (101)" in r.stderr and "stopped after 1 s as asked" in r.stderr


def _running(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


def test_duration_stops_what_the_command_left_running():
    # control: what sh starts in the background outlives sh (here, for 60 s)
    marker = f"sbx-verify-left-{os.getpid()}"
    sleeper = f"'{PY}' -c 'import time; time.sleep(60)' {marker}"
    subprocess.run(["sh", "-c", f"{sleeper} & exit 0"], timeout=10)
    try:
        assert len(_running(marker)) == 1
    finally:
        subprocess.run(["pkill", "-f", marker])
    # under verify, a child left behind, and one in a session of its own, are stopped
    r = verify("--profile", "default", "--duration", "1", "--", "/bin/sh", "-c",
               f"{sleeper} & setsid {sleeper} & exit 0", timeout=30)
    assert r.returncode == 0, r.stderr
    # (named as they are when sh exits: setsid may not have started python yet)
    assert re.search(r"note: sh exited and left 2 processes \(\d+ (python\S*|setsid), "
                     r"\d+ (python\S*|setsid)\) running", r.stderr), r.stderr
    assert "--duration 1 s: stopping 2 processes" in r.stderr
    assert "ran 1 s and was stopped with no denials" in r.stderr
    assert _running(marker) == []
    # --timeout stops them too, and running out of time fails
    r = verify("--profile", "default", "--timeout", "1", "--", "/bin/sh", "-c",
               f"{sleeper} & exit 0", timeout=30)
    assert r.returncode == 124, r.stderr
    assert "--timeout 1 s: stopping 1 process" in r.stderr and _running(marker) == []


def test_what_the_command_left_is_followed_and_judged():
    # sh exits at once; its background child makes a denied call half a second later
    late = f"'{PY}' -c 'import time; time.sleep(0.5); {PTRACE}'"
    r = verify("--profile", "default", "--", "/bin/sh", "-c", f"{late} & exit 0", timeout=30)
    assert r.returncode == 1, r.stderr
    assert "following it until it exits (--duration S stops it after S seconds)" in r.stderr
    assert "ptrace (101)" in r.stderr


def test_reopening_stderr_through_proc_is_no_refusal():
    """"> /dev/stderr" opens /proc/self/fd/2 with O_CREAT: the kernel checks the right to
    create in /proc/PID/fd before it finds fd 2 there, and Landlock logs that check
    as a denial although the open goes on and succeeds. It is not a refusal."""
    r = verify("--profile", "default", "--", "/bin/sh", "-c", "echo to-stderr > /dev/stderr")
    assert r.returncode == 0, r.stderr
    assert "to-stderr" in r.stderr and "OK: sh succeeded with no denials" in r.stderr
    assert "refused" not in r.stderr


def test_duration_does_not_hide_an_early_failure():
    r = verify("--profile", "default", "--duration", "5", "--", "/bin/sh", "-c", "exit 3")
    assert r.returncode == 3 and "exited with status 3 (no denials)" in r.stderr


def test_json_verdict():
    import json
    r = verify("--json", "--profile", "default", "--", PY, "-c", PTRACE)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["outcome"] == "denied" and doc["exit_code"] == 1
    assert [(d["syscall"], d["count"], d["action"]) for d in doc["denials"]] == [("ptrace", 1, "errno")]
    assert doc["denials"][0]["decided_by"].startswith("profiles/default.yaml:")
    r = verify("--json", "--profile", "default", "--duration", "0.5", "--", "/bin/sleep", "30")
    doc = json.loads(r.stdout)
    assert (doc["outcome"], doc["mode"], doc["stopped_after"]) == ("ok", "service", 0.5)


def test_timeout_and_duration_exclude_each_other():
    r = verify("--profile", "default", "--timeout", "1", "--duration", "1", "--", "/bin/true")
    assert r.returncode == 2 and "not both" in r.stderr

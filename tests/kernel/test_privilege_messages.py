"""What sbx says when a privilege it needs is out of reach, on the real kernel.

uid 0 is not always root: in a user namespace (``unshare -Ur``) bpf() and the
audit socket still answer EPERM, since the kernel checks CAP_BPF, CAP_PERFMON
and CAP_AUDIT_READ in the initial user namespace; under another ``sbx run``
the bounding set has lost them for good. The message must name that, not
blame the kernel or ask for root.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import need

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SBX = [sys.executable, "-m", "sandbox"]

pytestmark = pytest.mark.kernel


@pytest.fixture(autouse=True)
def as_root():
    need(os.geteuid() == 0, "needs root")


def run(argv, timeout=60):
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def userns_works() -> None:
    need(shutil.which("unshare") is not None, "unshare")
    probe = run(["unshare", "-Ur", "true"])
    need(probe.returncode == 0, f"unprivileged user namespaces: {probe.stderr.strip()}")


def test_monitor_in_a_user_namespace_says_it_lacks_the_capabilities_there():
    userns_works()
    r = run(["unshare", "-Ur", *SBX, "monitor", "--duration", "1"])
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == ("sbx monitor: error: cannot monitor: the eBPF monitor needs CAP_BPF and "
                        "CAP_PERFMON in the initial user namespace; sbx runs in a user namespace "
                        "(uid_map 0 0 1), which cannot grant them (run sbx outside it)\n")


def test_run_monitor_in_a_user_namespace_fails_closed_with_the_same_reason():
    userns_works()
    r = run(["unshare", "-Ur", *SBX, "run", "--monitor", "--", "/bin/sh", "-c", "echo ran"])
    assert r.returncode == 125 and r.stdout == ""
    assert "CAP_BPF and CAP_PERFMON in the initial user namespace" in r.stderr
    assert "kernel" not in r.stderr and "Traceback" not in r.stderr


def test_run_log_in_a_user_namespace_names_the_namespace():
    userns_works()
    r = run(["unshare", "-Ur", *SBX, "run", "--log", "--", "/bin/sh", "-c", "echo ran"])
    assert r.returncode == 0 and r.stdout == "ran\n"
    assert r.stderr == ("sbx: cannot read audit records (the audit socket needs CAP_AUDIT_READ in "
                        "the initial user namespace; sbx runs in a user namespace (uid_map 0 0 1), "
                        "which cannot grant it (run sbx outside it)); denials will not be listed\n")


def test_nested_run_log_says_the_outer_sandbox_dropped_the_capability():
    """sbx under sbx runs as uid 0 with an empty bounding set: not 'needs root'."""
    r = run([*SBX, "run", "--", *SBX, "run", "--log", "--", "/bin/sh", "-c", "echo ran"])
    assert r.returncode == 0 and r.stdout == "ran\n", r.stderr
    assert r.stderr.startswith(
        "sbx: cannot read audit records (the audit socket needs CAP_AUDIT_READ; sbx runs as root, "
        "but under a seccomp filter, with a capability bounding set that lacks it: it was started "
        "inside a sandbox that dropped it (such as another sbx run or a container), where it "
        "cannot be regained); denials will not be listed\n")   # (the outer run may say more)
    assert "needs root" not in r.stderr


def test_nested_monitor_says_the_outer_sandbox_dropped_the_capabilities():
    r = run([*SBX, "run", "--", *SBX, "monitor", "--duration", "1"])
    assert r.returncode == 1
    assert r.stderr.startswith("sbx monitor: error: cannot monitor: the eBPF monitor needs CAP_BPF "
                               "and CAP_PERFMON; sbx runs as root, but under a seccomp filter")
    assert "needs root" not in r.stderr and r.stderr.count("\n") == 1

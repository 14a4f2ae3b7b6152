"""`sbx export --format systemd`: units systemd 252 accepts, that run the workload.

Every built-in profile and a traced one are exported; the unit passes
`systemd-analyze verify` without a word, and the drop-in's settings, rebuilt as
the filters systemd would install (tests/systemd_sim.py), run the workload
under `sbx run`.  Each loosening is named on stderr.
"""
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sandbox.cli import cli
from sandbox.interop import SYSTEMD_DEFAULT
from sandbox.policy import builtin_names
from tests.conftest import need
from tests.systemd_sim import settings, simulated_profile

pytestmark = pytest.mark.system
SBX = os.path.join(os.path.dirname(sys.executable), "sbx")
ANALYZE = shutil.which("systemd-analyze")
WORKLOAD = ["/bin/sh", "-c", "echo hi | cat; ls / > /dev/null && echo listed"]


def export(ref: str) -> tuple[str, str]:
    res = CliRunner().invoke(cli, ["export", ref, "--format", "systemd"])
    assert res.exit_code == 0, res.stderr
    return res.stdout, res.stderr


def verify(dropin: str, tmp_path) -> subprocess.CompletedProcess:
    need(ANALYZE is not None, "systemd-analyze is not installed (systemd)")
    unit = tmp_path / "sbx-test.service"
    body = dropin.replace("[Service]\n", "")
    unit.write_text(f"[Unit]\nDescription=sbx export test\n[Service]\nExecStart=/bin/true\n{body}")
    return subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    need(os.geteuid() == 0, "sbx trace with eBPF needs root")
    out = tmp_path_factory.mktemp("traced") / "traced.yaml"
    res = subprocess.run([SBX, "trace", "-o", str(out), "--", *WORKLOAD], capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    return str(out)


def run_simulated(dropin: str, tmp_path, argv) -> subprocess.CompletedProcess:
    prof = tmp_path / "systemd-sim.yaml"
    prof.write_text(simulated_profile(dropin))
    return subprocess.run([SBX, "run", "--profile", str(prof), "--", *argv], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("ref", builtin_names() + ["traced"])
def test_the_unit_passes_systemd_analyze_verify(ref, tmp_path, request):
    dropin, _ = export(request.getfixturevalue("traced") if ref == "traced" else ref)
    res = verify(dropin, tmp_path)
    assert res.returncode == 0 and res.stdout == "" and res.stderr == "", res.stdout + res.stderr


def test_an_unknown_name_would_be_reported_by_verify(tmp_path):
    """The check above can fail: systemd 252 names what it cannot parse."""
    res = verify("[Service]\nSystemCallFilter=read write mseal\n", tmp_path)
    assert "Failed to parse system call, ignoring: mseal" in res.stderr


@pytest.mark.parametrize("ref", builtin_names() + ["traced"])
def test_the_simulated_unit_runs_what_the_profile_runs(ref, tmp_path, request):
    """The workload under the unit's filters gives what it gives under the profile itself
    (minimal cannot fork: there the shell runs one builtin)."""
    ref = request.getfixturevalue("traced") if ref == "traced" else ref
    argv = ["/bin/sh", "-c", "echo hi"] if ref == "minimal" else WORKLOAD
    dropin, _ = export(ref)
    own = subprocess.run([SBX, "run", "--profile", ref, "--", *argv], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert own.returncode == 0, own.stderr
    res = run_simulated(dropin, tmp_path, argv)
    assert (res.returncode, res.stdout) == (0, own.stdout), res.stderr


def test_the_traced_unit_names_every_loosening(traced):
    dropin, stderr = export(traced)
    assert "warning: systemd allows mmap: any protection" in stderr           # the W^X rule
    assert "warning: systemd always allows its @default set" in stderr
    assert "#   systemd allows mmap: any protection" in dropin
    filters = {w for line in settings(dropin)["SystemCallFilter"] for w in line.split()}
    assert {"mmap", "mprotect", "clone3"} <= filters
    assert settings(dropin)["RestrictNamespaces"] == ["~cgroup ipc mnt net pid time user uts"]


def test_web_keeps_its_families_and_names_what_it_loosens():
    dropin, stderr = export("web")
    s = settings(dropin)
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
    filters = {w for line in s["SystemCallFilter"] for w in line.split()}
    assert {"socket", "socketpair", "ioctl"} <= filters
    for name in ("socket: families AF_UNIX AF_INET AF_INET6 AF_NETLINK with every type", "socketpair",
                 "ioctl"):
        assert f"warning: systemd allows {name}" in stderr


def test_the_simulation_denies_what_the_unit_denies(tmp_path):
    """AF_VSOCK under the default profile's unit: EAFNOSUPPORT, as RestrictAddressFamilies= answers."""
    dropin, _ = export("default")
    assert settings(dropin)["RestrictAddressFamilies"] == ["~AF_VSOCK"]
    code = "import socket,sys\ntry: socket.socket(40, 1)\nexcept OSError as e: sys.exit(e.errno)"
    res = run_simulated(dropin, tmp_path, [sys.executable, "-I", "-S", "-c", code])
    assert res.returncode == 97, res.stderr


def test_systemd_default_set_matches_the_installed_systemd():
    need(ANALYZE is not None, "systemd-analyze is not installed (systemd)")
    out = subprocess.run([ANALYZE, "syscall-filter", "@default"], capture_output=True, text=True).stdout
    names = {w.strip() for w in out.splitlines() if w.startswith("    ") and not w.strip().startswith("#")}
    assert names == SYSTEMD_DEFAULT

"""`sbx export --format systemd`: units systemd 252 accepts, started for real, that confine like `sbx run`.

Every built-in profile's drop-in passes `systemd-analyze verify` without a
word. Then a real service manager (tests/systemd_manager.py) starts a unit
with each drop-in on a probe (tests/kernel/confinement_probe.py) that tries
what the profile decides: the unit starts, its allowed work succeeds, and it
is refused exactly what the same probe is refused under `sbx run` with the
same profile: writes outside the granted paths, reading $HOME/.ssh and paths
no grant reaches, user namespaces, capabilities the profile does not keep,
running what it wrote where it may not execute, writing /proc or /sys. The
work directory lies in
/srv under a name with a space, a colon and a percent sign, which the `web`
unit hides and binds back. What systemd cannot do on this machine (port
rules without BPF_FRAMEWORK) is checked as said.
"""
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest
from click.testing import CliRunner

from sandbox.cli import cli
from sandbox.interop import SYSTEMD_DEFAULT
from sandbox.policy import builtin_names
from tests.conftest import need
from tests.systemd_manager import SystemdManager, available

pytestmark = pytest.mark.system
SBX = os.path.join(os.path.dirname(sys.executable), "sbx")
ANALYZE = shutil.which("systemd-analyze")
PYTHON = "/usr/bin/python3"
PROBE = pathlib.Path(__file__).with_name("confinement_probe.py")
WORKLOAD = ["/bin/sh", "-c", "echo hi | cat; ls / > /dev/null && echo listed"]
KEEPS_CHOWN = "name: keeps-chown\nextends: [default]\ncapabilities: [CHOWN]\n"


def export(ref: str, *args: str) -> tuple[str, str]:
    res = CliRunner().invoke(cli, ["export", ref, "--format", "systemd", *args])
    assert res.exit_code == 0, res.stderr
    return res.stdout, res.stderr


def settings(dropin: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in dropin.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


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


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    why = available()
    need(why is None, why or "")
    with SystemdManager(tmp_path_factory.mktemp("systemd")) as m:
        (m.home / ".ssh").mkdir()
        (m.home / ".ssh" / "id").write_text("secret\n")
        yield m


@pytest.fixture(scope="module")
def area():
    """/srv/sbx-systemd-*/: the work directory (an awkward name) with a file to give away, a file
    beside it, a directory no profile lets a command write."""
    top = pathlib.Path(tempfile.mkdtemp(prefix="sbx-systemd-", dir="/srv"))
    try:
        top.chmod(0o755)
        work = top / "app: 50% x"
        for d in (work, top / "other", top / "outside"):
            d.mkdir()
            d.chmod(0o777)
        (top / "other" / "file").write_text("beside\n")
        (work / "owned").write_text("mine\n")
        shutil.copy(PROBE, work / PROBE.name)
        yield top, work
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run_unit(m: SystemdManager, name: str, argv: list[str], dropin: str, workdir=None, extra: str = "") -> str:
    """Start a oneshot unit running *argv* with *dropin*; its output (stdout and stderr)."""
    out = m.base / f"{name}.out"
    out.unlink(missing_ok=True)
    # dash looks its directory up with getcwd() unless $PWD names it: traced profiles may not allow that
    workdir = workdir or "/"
    cwd = f"WorkingDirectory={str(workdir).replace('%', '%%')}\nEnvironment=\"PWD={str(workdir).replace('%', '%%')}\"\n"
    words = [a.replace("%", "%%").replace("$", "$$") for a in argv]
    exec_line = " ".join(w if " " not in w else '"' + w + '"' for w in words)
    m.install(f"{name}.service", f"[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\n{cwd}"
              f"ExecStart={exec_line}\nStandardOutput=file:{out}\nStandardError=file:{out}\n{extra}", dropin)
    res = m.start_unit(f"{name}.service")
    text = out.read_text() if out.exists() else ""
    assert res.returncode == 0, f"{res.stderr}\n{text}\n{m.unit_log(name)}"
    return text


def probe_under_sbx(ref: str, m: SystemdManager, top, work) -> dict:
    env = {"PATH": os.environ["PATH"], "HOME": str(m.home), "TMPDIR": str(m.tmp), "LANG": "C.UTF-8"}
    res = subprocess.run([SBX, "run", "--profile", ref, "--", PYTHON, "-I", "-S", PROBE.name, str(top)],
                         cwd=work, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def probe_under_unit(ref: str, m: SystemdManager, top, work, name: str) -> dict:
    dropin, _ = export(ref, "--var", f"CWD={work}", "--var", "EXEC_ROOT=/usr")
    return json.loads(run_unit(m, name, [PYTHON, "-I", "-S", PROBE.name, str(top)], dropin, work))


def decided(results: dict) -> dict:
    return {k: v.split(":")[0] for k, v in results.items()}


# ---------------------------------------------------------------- systemd-analyze verify

@pytest.mark.parametrize("ref", builtin_names() + ["traced"])
def test_the_unit_passes_systemd_analyze_verify(ref, tmp_path, request):
    ref = request.getfixturevalue("traced") if ref == "traced" else ref
    for args in ((), ("--var", "CWD=/srv/app: 50% x", "--var", "EXEC_ROOT=/usr", "--var", "PORT=8123")):
        dropin, _ = export(ref, *args)
        res = verify(dropin, tmp_path)
        assert res.returncode == 0 and res.stdout == "" and res.stderr == "", res.stdout + res.stderr


def test_an_unknown_name_would_be_reported_by_verify(tmp_path):
    """The check above can fail: systemd 252 names what it cannot parse."""
    res = verify("[Service]\nSystemCallFilter=read write mseal\n", tmp_path)
    assert "Failed to parse system call, ignoring: mseal" in res.stderr


def test_systemd_default_set_matches_the_installed_systemd():
    need(ANALYZE is not None, "systemd-analyze is not installed (systemd)")
    out = subprocess.run([ANALYZE, "syscall-filter", "@default"], capture_output=True, text=True).stdout
    names = {w.strip() for w in out.splitlines() if w.startswith("    ") and not w.strip().startswith("#")}
    assert names == SYSTEMD_DEFAULT


# ---------------------------------------------------------------- units started for real

EXPECTED = {      # what each built-in decides about the probe's checks, the same under sbx and systemd
    "read /etc/hostname": "ok", "read $HOME/.ssh": "refused", "write outside the granted paths": "refused",
    "write in /root": "refused", "write /proc/self/comm": "refused", "create a cgroup": "refused",
    "write /dev/null": "ok", "create a user namespace": "refused", "give a file to nobody": "refused",
    "open a vsock socket": "refused",
}


# a check whose seccomp decision rests on these arguments: where the export says systemd allows the call
# for every argument, the unit may do what the profile refuses (minimal: openat for writing)
DECIDED_BY_ARGUMENTS = {"write /dev/null": "openat"}


@pytest.mark.parametrize("ref", builtin_names())
def test_the_unit_confines_the_probe_as_sbx_run_does(ref, manager, area):
    top, work = area
    own = probe_under_sbx(ref, manager, top, work)
    unit = probe_under_unit(ref, manager, top, work, f"probe-{ref}")
    _, said = export(ref, "--var", f"CWD={work}", "--var", "EXEC_ROOT=/usr")
    said_loose = {check for check, call in DECIDED_BY_ARGUMENTS.items()
                  if f"warning: systemd allows {call}: for every argument" in said}
    for check in said_loose:
        assert (decided(unit)[check], decided(own)[check]) in (("ok", "ok"), ("ok", "refused"))
    same = {k: v for k, v in decided(unit).items() if k not in said_loose}
    assert same == {k: v for k, v in decided(own).items() if k not in said_loose}, \
        json.dumps({"unit": unit, "sbx run": own}, indent=1)
    # no built-in keeps CAP_CHOWN (Landlock has no right for owners), web included
    assert {k: decided(unit)[k] for k in EXPECTED} == EXPECTED, unit
    writes = "refused" if ref == "minimal" else "ok"           # minimal writes nothing
    assert decided(unit)["write in the working directory"] == writes
    assert decided(unit)["write $TMPDIR"] == writes
    narrow = ref in ("web", "minimal")                       # read and exec narrower than /
    assert decided(unit)["read beside the working directory"] == ("refused" if narrow else "ok")
    assert decided(unit)["run a program copied to $TMPDIR"] == ("refused" if narrow else "ok")


def test_a_kept_capability_is_kept_and_the_rest_dropped(manager, area, tmp_path):
    top, work = area
    prof = tmp_path / "keeps-chown.yaml"
    prof.write_text(KEEPS_CHOWN)
    dropin, _ = export(str(prof))
    assert settings(dropin)["CapabilityBoundingSet"] == ["", "CAP_CHOWN"]
    own = probe_under_sbx(str(prof), manager, top, work)
    unit = probe_under_unit(str(prof), manager, top, work, "probe-keeps-chown")
    assert decided(unit) == decided(own)
    assert decided(unit)["give a file to nobody"] == "ok"          # CAP_CHOWN kept
    assert decided(unit)["create a user namespace"] == "refused"
    status = run_unit(manager, "caps-keeps-chown", ["/bin/grep", "^CapBnd", "/proc/self/status"], dropin)
    assert status.split() == ["CapBnd:", f"{1 << 0:016x}"]             # CAP_CHOWN is capability 0


def test_vsock_gets_eafnosupport_under_the_default_unit(manager, area):
    top, work = area
    unit = probe_under_unit("default", manager, top, work, "probe-vsock")
    assert unit["open a vsock socket"] == "refused: EAFNOSUPPORT"


def test_the_traced_unit_runs_what_the_traced_profile_runs(traced, manager):
    own = subprocess.run([SBX, "run", "--profile", traced, "--", *WORKLOAD], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert own.returncode == 0, own.stderr
    dropin, stderr = export(traced)
    assert "warning: systemd allows mmap: any protection" in stderr           # the W^X rule
    assert run_unit(manager, "traced", WORKLOAD, dropin) == own.stdout == "hi\nlisted\n"


BIND = ("import socket, sys\ns = socket.socket()\ntry:\n    s.bind(('127.0.0.1', int(sys.argv[1])))\n"
        "    print('bound')\nexcept OSError as e:\n    print('refused', e.errno)\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_rules_reach_systemd_and_say_where_they_are_not_enforced(manager, area):
    """SocketBindAllow= is a cgroup BPF program that systemd builds only with BPF_FRAMEWORK. Debian 12's
    systemd 252 lacks it ("-BPF_FRAMEWORK"): the manager reports `Controller 'bpf-socket-bind'
    supported: no` at start-up and ignores the settings. The unit still carries exactly the profile's
    ports (systemd parsed them), the export warns, and on such a systemd the warning is true."""
    top, work = area
    (work / "bind.py").write_text(BIND)
    port, refused_port = _free_port(), _free_port()
    dropin, stderr = export("web", "--var", f"CWD={work}", "--var", f"PORT={port}")
    s = settings(dropin)
    assert s["SocketBindDeny"] == ["tcp"]
    assert s["SocketBindAllow"] == [f"tcp:{p}" for p in (80, 443, 8000, 8080, 8443, port)]
    own = subprocess.run([SBX, "run", "--profile", "web", "--", PYTHON, "-I", "-S", "bind.py", str(refused_port)],
                         cwd=work, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert own.stdout.split()[0] == "refused", own.stdout + own.stderr      # Landlock
    under_unit = run_unit(manager, "bind-web", [PYTHON, "-I", "-S", "bind.py", str(refused_port)], dropin, work)
    shown = manager.show("bind-web.service", "SocketBindAllow", "SocketBindDeny")
    assert shown["SocketBindDeny"] == ["tcpany"]
    assert sorted(shown["SocketBindAllow"]) == sorted(f"tcp{p}" for p in (80, 443, 8000, 8080, 8443, port))
    version = subprocess.run(["systemctl", "--version"], capture_output=True, text=True).stdout
    if "-BPF_FRAMEWORK" in version.split():
        assert "built without BPF_FRAMEWORK: it ignores SocketBindAllow=" in stderr
        assert under_unit.split() == ["bound"]
    else:
        assert under_unit.split()[0] == "refused"

"""A profile's life on the real kernel: a C library upgrade under a baseline, and a fleet merge.

1. ``access_probe.c`` checks a file the way glibc 2.33+'s faccessat does:
   faccessat2 first, faccessat when the kernel answers ENOSYS. A profile traced
   from the program built the old way (faccessat only) with ``baseline`` below
   5.8 runs the new build: faccessat2 gets ENOSYS and it falls back. The same
   profile answering faccessat2 EPERM breaks it, and ``sbx check`` says so.
2. Three workloads of one service, recorded separately (``sbx trace --record``),
   merge into one profile (``sbx profile build``) under which each replays
   with zero denials (``sbx verify``), while a profile of one workload alone
   denies another's calls.
Every step goes through the sbx command line.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need

pytestmark = pytest.mark.kernel
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
TIMEOUT = 120


def sbx(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=cwd, env=ENV, text=True,
                          capture_output=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def access_probe(tmp_path_factory) -> Path:
    need(shutil.which("gcc") is not None, "gcc is needed to build access_probe.c")
    out = tmp_path_factory.mktemp("probe") / "access_probe"
    subprocess.run(["gcc", "-O1", "-Wall", "-Werror", "-o", str(out), str(HERE / "access_probe.c")],
                   check=True, capture_output=True)
    return out


def with_rule(profile: Path, out: Path, rule: str) -> Path:
    """*profile* with *rule* put first among its rules."""
    text = profile.read_text()
    assert "\nrules:\n" in text
    out.write_text(text.replace("\nrules:\n", f"\nrules:\n  {rule}\n", 1))
    return out


def test_a_baseline_below_5_8_lets_the_faccessat2_probe_fall_back_and_eperm_breaks_it(
        access_probe, tmp_path):
    target = "/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/passwd"
    # the kernel has faccessat2: unconfined, the new build uses it
    plain = subprocess.run([str(access_probe), "probe", target], capture_output=True, text=True)
    assert (plain.returncode, plain.stdout) == (0, "faccessat2\n")
    # traced from the old build, for a fleet whose oldest kernel is 5.4
    traced = tmp_path / "traced.yaml"
    res = sbx("trace", "-o", str(traced), "--baseline", "5.4", "--", str(access_probe), "legacy", target)
    assert res.returncode == 0, res.stderr
    assert 'baseline: "5.4"' in traced.read_text() and "faccessat2" not in traced.read_text()
    # the upgraded build under the same profile: ENOSYS, so it falls back to faccessat
    run = sbx("run", "--profile", str(traced), "--", str(access_probe), "probe", target)
    assert (run.returncode, run.stdout) == (0, "faccessat\n"), run.stderr
    explain = sbx("explain", str(traced), "faccessat2")
    assert 'baseline: "5.4"' in explain.stdout and "decision: errno(ENOSYS)" in explain.stdout
    # the same profile answering EPERM: the probe does not fall back
    eperm = with_rule(traced, tmp_path / "eperm.yaml", "- errno(EPERM): faccessat2")
    run = sbx("run", "--profile", str(eperm), "--", str(access_probe), "probe", target)
    assert (run.returncode, run.stdout) == (1, "faccessat2: Operation not permitted\n"), run.stderr
    # ... and the same without the baseline: the default's EPERM
    newest = tmp_path / "newest.yaml"
    newest.write_text(traced.read_text().replace('baseline: "5.4"', 'baseline: "6.18"'))
    run = sbx("run", "--profile", str(newest), "--", str(access_probe), "probe", target)
    assert run.returncode == 1 and "Operation not permitted" in run.stdout
    # sbx check flags the broken ones only
    flagged = {}
    for path in (traced, eperm, newest):
        res = sbx("check", "--format", "json", "--fail-on", "warning", str(path))
        findings = json.loads(res.stdout)["profiles"][0]["findings"]
        flagged[path.name] = [(f["line"], f["message"]) for f in findings
                              if f["rule_id"] == "SBX138" and f["syscalls"] == ["faccessat2"]]
    assert flagged["traced.yaml"] == []
    [(line, message)] = flagged["eperm.yaml"]
    assert eperm.read_text().splitlines()[line - 1].strip() == "- errno(EPERM): faccessat2"
    assert "glibc 2.33+ and musl 1.2.2+ fall back only on ENOSYS" in message
    [(line, _)] = flagged["newest.yaml"]
    assert newest.read_text().splitlines()[line - 1].startswith("default: errno(EPERM)")


def test_run_and_verify_reports_name_the_baseline_when_it_decided(access_probe, tmp_path):
    need(os.geteuid() == 0, "needs root: denials are read from audit records")
    traced = tmp_path / "traced.yaml"
    res = sbx("trace", "-o", str(traced), "--baseline", "5.4", "--", str(access_probe), "legacy",
              "/etc/passwd")
    assert res.returncode == 0, res.stderr
    line = traced.read_text().splitlines().index('baseline: "5.4"') + 1
    rule = f'{traced}:{line}: baseline: "5.4" (a syscall newer than Linux 5.4 answers ENOSYS)'
    run = sbx("run", "--log", "--profile", str(traced), "--", str(access_probe), "probe", "/etc/passwd")
    assert run.returncode == 0 and run.stdout == "faccessat\n"
    row = next(l for l in run.stderr.splitlines() if l.strip().startswith("faccessat2 (439)"))
    assert row.endswith(rule), run.stderr
    verify = sbx("verify", "--profile", str(traced), "--", str(access_probe), "probe", "/etc/passwd")
    assert verify.returncode == 0, verify.stderr
    assert "answered ENOSYS by design" in verify.stderr and rule in verify.stderr


WORKLOADS = ("files", "net", "child")


def _free_port() -> str:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


# the service's port, the same in every run, as a service's is: recordings carry the
# TCP ports a run used into the profile's network: section
PORT = _free_port()


def service_argv(workload: str, d: Path) -> list[str]:
    return [sys.executable, "-I", str(HERE / "lifecycle_service.py"), workload, str(d), PORT]


def test_three_recorded_workloads_merge_into_one_profile_that_replays_each_without_denials(
        tmp_path, capsys):
    need(os.geteuid() == 0, "needs root: denials are read from audit records")
    recs = []
    for w in WORKLOADS:
        d = tmp_path / f"rec-{w}"
        d.mkdir()
        out = tmp_path / f"{w}.jsonl"
        res = sbx("trace", "--record", str(out), "--", *service_argv(w, d))
        assert res.returncode == 0 and out.exists(), res.stderr
        recs.append(out)
    merged = tmp_path / "service.yaml"
    res = sbx("profile", "build", *map(str, recs), "-o", str(merged), "--name", "service")
    assert res.returncode == 0, res.stderr
    assert "learning: 3 recordings from 1 host" in res.stderr
    text = merged.read_text()
    assert "3 recordings, 1 host" in text and "1 recording, 1 host" in text
    assert "\nfilesystem:" in text and f"connect: [{PORT}]" in text      # carried from the recordings
    for w in WORKLOADS:
        d = tmp_path / f"replay-{w}"
        d.mkdir()
        res = sbx("verify", "--profile", str(merged), "--timeout", "60", "--", *service_argv(w, d))
        assert res.returncode == 0, f"{w}:\n{res.stderr}"
        assert "no denials" in res.stderr or "by design" in res.stderr
    # one workload's profile is not enough for another: the merge was needed
    alone = tmp_path / "files-only.yaml"
    assert sbx("profile", "build", str(recs[0]), "-o", str(alone)).returncode == 0
    d = tmp_path / "replay-net-alone"
    d.mkdir()
    res = sbx("verify", "--profile", str(alone), "--timeout", "60", "--", *service_argv("net", d))
    assert res.returncode == 1 and "denied syscall" in res.stderr
    with capsys.disabled():
        allowed = sum(1 for line in text.splitlines() if line.lstrip().startswith("- ") and "#" in line)
        print(f"\n  fleet merge: 3 workloads -> {merged.name}, {allowed} commented names; "
              "each replays with 0 denials")


def test_complain_mode_still_enforces_landlock_and_says_so(tmp_path):
    """Complain mode logs the seccomp default's denials instead of enforcing them; the
    Landlock domain is the same as in enforce mode. The run says so before the command
    starts, and its closing line does not call a run with a Landlock refusal clean."""
    need(os.geteuid() == 0, "Landlock refusals are read from audit records (root)")
    secret = tmp_path / "private"
    secret.mkdir()
    (secret / "key").write_text("k\n")
    prof = tmp_path / "files.yaml"
    prof.write_text(f"name: files\nextends: [default]\nfilesystem:\n  read: [/]\n  deny: [{secret}]\n")
    r = sbx("run", "--profile", str(prof), "--mode", "complain", "--", "cat", str(secret / "key"))
    assert r.returncode != 0 and r.stdout == "", r.stderr
    lines = r.stderr.splitlines()
    # (the secret lies in a directory below /tmp: the profile's first lines say that
    # nothing can be created directly in /tmp now)
    assert ("sbx: complain mode: profile files's default seccomp denial is logged, not "
            "enforced; files, ports, scopes and capabilities stay enforced") in lines[:3], r.stderr
    assert lines.index("sbx: complain mode: profile files's default seccomp denial is logged, not "
                       "enforced; files, ports, scopes and capabilities stay enforced") < \
        next(i for i, line in enumerate(lines) if "was refused" in line)
    assert f"sbx: cat was refused read access to {secret}/key" in r.stderr
    assert "no denials recorded" not in r.stderr
    assert lines[-1] == ("sbx: no seccomp denials recorded under profile files; the Landlock "
                         "refusals above were enforced (complain mode does not relax Landlock)")
    clean = sbx("run", "--profile", str(prof), "--mode", "complain", "--", "true")
    assert clean.returncode == 0 and clean.stderr.splitlines()[-1] == \
        "sbx: no denials recorded under profile files", clean.stderr

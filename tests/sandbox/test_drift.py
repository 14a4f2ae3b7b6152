"""The drift gate: ``sbx check --baseline OLD NEW`` fails a widening and passes a narrowing.

The last test runs the drift job of examples/github-actions.yml itself (its
shell steps, in a git clone with an ``origin``) on a pull request that widens
a profile and on one that narrows it.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from sandbox.cli import cli
from tests.conftest import REPO

ROOT = REPO
SCHEMA = ROOT / "tests" / "fixtures" / "sarif-schema-2.1.0.json"
WORKFLOW = ROOT / "examples" / "github-actions.yml"
PROFILE = """\
name: svc
description: a service
default: errno(EPERM)
unknown: errno(ENOSYS)
arches: [native]
bad_arch: kill-process
rules:
  - errno(ENOSYS): [clone3, faccessat2, fchmodat2, getrandom, preadv2, pwritev2, statx]
  - allow: [read, write, close, exit_group, brk, mmap, munmap]
  - allow: socket
    when: ["arg0 in [AF_UNIX, AF_INET]"]
"""
WIDER = PROFILE.replace("AF_UNIX, AF_INET]", "AF_UNIX, AF_INET, AF_INET6]").replace(
    "munmap]", "munmap, getpid]")
NARROWER = PROFILE.replace(", munmap]", "]").replace("AF_UNIX, AF_INET]", "AF_UNIX]")
ANSWERS = PROFILE.replace("errno(ENOSYS): [clone3, ", "errno(ENOSYS): clone3\n  - errno(EACCES): [")


def check(tmp_path, old_text, new_text, *args):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(old_text)
    new.write_text(new_text)
    return CliRunner().invoke(cli, ["check", "--baseline", str(old), str(new), *args])


def sarif_results(result):
    log = json.loads(result.output)
    jsonschema.validate(log, json.loads(SCHEMA.read_text()))
    return log["runs"][0]["results"]


def test_a_widening_fails_with_a_result_per_widened_syscall_and_region(tmp_path):
    (tmp_path / "alone.yaml").write_text(WIDER)
    alone = CliRunner().invoke(cli, ["check", str(tmp_path / "alone.yaml")])
    assert alone.exit_code == 0, alone.output          # the lint alone has nothing against it
    result = check(tmp_path, PROFILE, WIDER, "--format", "sarif")
    assert result.exit_code == 1
    widened = [r for r in sarif_results(result) if r["ruleId"] == "SBX140"]
    assert sorted(r["properties"]["syscalls"][0] for r in widened) == ["getpid", "socket"]
    socket = next(r for r in widened if r["properties"]["syscalls"] == ["socket"])
    assert "where arg0 (low 32 bits) == 0xa" in socket["message"]["text"]
    loc = socket["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("new.yaml") and loc["region"]["startLine"] == 10
    was = socket["relatedLocations"][0]["physicalLocation"]
    assert was["artifactLocation"]["uri"].endswith("old.yaml") and was["region"]["startLine"] == 3


def test_a_narrowing_passes_and_says_what_narrowed(tmp_path):
    result = check(tmp_path, PROFILE, NARROWER)
    assert result.exit_code == 0, result.output
    narrowed = [l for l in result.output.splitlines() if "[SBX141]" in l]
    assert len(narrowed) == 2
    assert any(l.startswith("munmap narrowed") or " munmap narrowed" in l for l in narrowed)
    assert any("socket narrowed on x86_64 where arg0 (low 32 bits) == 0x2" in l for l in narrowed)


def test_another_answer_is_a_note_and_passes(tmp_path):
    result = check(tmp_path, PROFILE, ANSWERS)
    assert result.exit_code == 0, result.output
    notes = [l for l in result.output.splitlines() if "[SBX142]" in l]
    assert len(notes) == 6 and all("errno(EACCES)" in l and "was errno(ENOSYS)" in l for l in notes)


def test_an_unchanged_profile_has_no_drift_finding(tmp_path):
    result = check(tmp_path, PROFILE, PROFILE)
    assert result.exit_code == 0 and "SBX14" not in result.output


def test_a_baseline_that_does_not_load_is_exit_2(tmp_path):
    result = check(tmp_path, PROFILE.replace("munmap]", "munmpa]"), PROFILE)
    assert result.exit_code == 2
    assert "unknown syscall 'munmpa'" in result.output


# --------------------------------------------------------------------------- the other layers

# (what the old profile adds to PROFILE, what the new one adds, the SBX143 message, a word
# of the line the finding points at: None where the widening is a removal, or "any")
LAYERS = {
    "a capability added": ("", "capabilities: [NET_BIND_SERVICE]\n",
                           "capabilities: +NET_BIND_SERVICE", "NET_BIND_SERVICE"),
    "a port added to bind": ("network:\n  bind: [8080]\n", "network:\n  bind: [8080, 9090]\n",
                             "network bind: +9090", "9090"),
    "connect opened to any": ("network:\n  connect: [443]\n", "network:\n  connect: any\n",
                              "network connect: [443] -> any", None),
    "the network section dropped": ("network:\n  bind: []\n  connect: [443]\n", "",
                                    "network bind: [] -> any", None),
    "a new path": ("filesystem:\n  read: [/usr]\n", "filesystem:\n  read: [/usr, /etc]\n",
                   "filesystem: now grants read_dir, read_file at /etc", "/etc"),
    "a stronger word": ("filesystem:\n  list: [/srv]\n", "filesystem:\n  read: [/srv]\n",
                        "filesystem: now grants read_file at /srv", "/srv"),
    "a deny dropped": ("filesystem:\n  read: [/]\n  deny: [/root]\n", "filesystem:\n  read: [/]\n",
                       "filesystem: now grants read_dir, read_file at /root", None),
    "a grant beneath a deny": ("filesystem:\n  read: [/]\n  deny: [/root]\n",
                               "filesystem:\n  read: [/, /root/src]\n  deny: [/root]\n",
                               "filesystem: now grants read_dir, read_file at /root/src", "/root/src"),
    "the filesystem section dropped": ("filesystem:\n  read: [/usr]\n", "",
                                       "filesystem: now grants", None),
    "inherit turned on": ("extends: [base.yaml]\nfilesystem:\n  read: [/usr]\n  inherit: false\n",
                          "extends: [base.yaml]\nfilesystem:\n  read: [/usr]\n",
                          "at /var/tmp", "/var/tmp"),
    "a scope opened": ("", "scope:\n  signals: any\n", "scoped to the sandbox: -signals", "signals"),
    "Landlock best-effort": ("", "landlock: best-effort\n", "landlock: enforce -> best-effort",
                             "best-effort"),
}
BASE = "name: base\ndefault: errno(EPERM)\nfilesystem:\n  write: [/var/tmp]\nrules: []\n"


@pytest.mark.parametrize("case", list(LAYERS))
def test_a_wider_layer_fails_and_the_narrower_one_passes(tmp_path, case):
    old_extra, new_extra, message, word = LAYERS[case]
    (tmp_path / "base.yaml").write_text(BASE)
    result = check(tmp_path, PROFILE + old_extra, PROFILE + new_extra, "--format", "sarif")
    assert result.exit_code == 1, result.output
    errors = [r for r in sarif_results(result) if r["ruleId"] == "SBX143"]
    hit = [r for r in errors if message in r["message"]["text"]]
    assert hit and all(r["level"] == "error" for r in errors), [r["message"] for r in errors]
    loc = hit[0]["locations"][0]["physicalLocation"]
    where = loc["artifactLocation"]["uri"].rsplit("/", 1)[1]
    assert where == ("base.yaml" if case == "inherit turned on" else "new.yaml"), where
    line = (tmp_path / where).read_text().splitlines()[loc["region"]["startLine"] - 1]
    assert word is None or word in line, line
    back = check(tmp_path, PROFILE + new_extra, PROFILE + old_extra)
    assert back.exit_code == 0, back.output
    assert "[SBX143]" not in back.output and "[SBX141]" in back.output


@pytest.mark.parametrize("old_extra, new_extra", [
    ("filesystem:\n  read: [/usr]\n", "filesystem:\n  read: [/usr/share]\n"),
    ("filesystem:\n  all: [/srv]\n", "filesystem:\n  modify: [/srv]\n  read: [/srv/a]\n"),
    ("", "filesystem:\n  read: [/usr]\n  deny: [/usr/local]\n"),
    ("network:\n  bind: any\n", "network:\n  bind: [8080]\n"),
], ids=["a grant moved deeper", "a weaker word, and a read beneath a write",
        "a filesystem section added", "any narrowed to a port"])
def test_a_grant_the_old_profile_held_beneath_one_of_its_paths_is_no_widening(
        tmp_path, old_extra, new_extra):
    result = check(tmp_path, PROFILE + old_extra, PROFILE + new_extra)
    assert result.exit_code == 0, result.output
    assert "[SBX143]" not in result.output and "[SBX141]" in result.output


# --------------------------------------------------------------------------- the workflow


def _git(cwd, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _drift_steps() -> list[str]:
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["drift"]
    assert job["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert job["steps"][0]["with"]["fetch-depth"] == 0
    return [s["run"] for s in job["steps"] if "run" in s and "pip install" not in s["run"]]


def _pull_request(tmp_path: Path, label: str, text: str) -> tuple[int, str, Path]:
    """A clone whose branch changes profiles/svc.yaml to *text*, then the drift steps."""
    origin, work = tmp_path / label / "origin.git", tmp_path / label / "work"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    _git(tmp_path, "clone", "-q", str(origin), str(work))
    (work / "profiles").mkdir()
    (work / "profiles" / "svc.yaml").write_text(PROFILE)
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "profile")
    _git(work, "push", "-q", "origin", "HEAD:main")
    _git(work, "checkout", "-q", "-b", "pr")
    (work / "profiles" / "svc.yaml").write_text(text)
    _git(work, "commit", "-q", "-am", "change the profile")
    runner = tmp_path / label / "runner"
    runner.mkdir()
    bindir = os.path.dirname(sys.executable)
    assert shutil.which("sbx", path=bindir), "sbx is installed beside the test interpreter"
    env = {**os.environ, "BASE_REF": "main", "RUNNER_TEMP": str(runner),
           "PATH": bindir + os.pathsep + os.environ["PATH"]}
    out, status = [], 0
    for script in _drift_steps():
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env, text=True,
                              capture_output=True)
        out.append(proc.stdout + proc.stderr)
        status = proc.returncode
        if status:
            break
    return status, "\n".join(out), work


@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to make pull requests")
def test_the_example_workflow_fails_a_widening_pull_request_and_passes_a_narrowing_one(tmp_path):
    status, out, work = _pull_request(tmp_path, "wide", WIDER)
    assert status == 1, out
    assert "getpid widened" in out and "socket widened" in out
    results = json.loads((work / "drift-sarif" / "svc.sarif").read_text())["runs"][0]["results"]
    assert sum(r["ruleId"] == "SBX140" for r in results) == 2
    status, out, work = _pull_request(tmp_path, "narrow", NARROWER)
    assert status == 0, out
    assert "narrowed" in out and "widened" not in out

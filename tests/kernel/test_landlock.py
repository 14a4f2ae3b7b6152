"""Landlock in sbx run: what the profiles' file and port rules refuse, said in plain words; and fail closed.

Root runs (the denials are read from audit records, types 1423/1424).
"""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import need

pytestmark = pytest.mark.kernel
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
SBX = [PY, "-m", "sandbox", "run"]


@pytest.fixture(autouse=True)
def root():
    need(os.geteuid() == 0, "needs root")


@pytest.fixture
def home(tmp_path):
    """A home directory with a dummy SSH key, as $HOME of the command."""
    h = tmp_path / "home"
    (h / ".ssh").mkdir(parents=True)
    (h / ".ssh" / "id_rsa").write_text("-----BEGIN DUMMY KEY-----\n")
    return h


@pytest.mark.parametrize("profile", ["web", "default", "build", "python", "minimal", "strict-net"])
def test_a_secret_is_refused_with_the_reason(home, profile):
    key = home / ".ssh" / "id_rsa"
    assert subprocess.run(["cat", str(key)], capture_output=True).returncode == 0     # control
    r = subprocess.run(SBX + ["--profile", profile, "--", "cat", str(key)], cwd=ROOT,
                       env=dict(os.environ, HOME=str(home)), capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr                       # cat's own status
    assert r.stdout == ""
    assert (f"sbx: cat was refused read access to {key}: profile {profile} denies "
            f"{home}/.ssh") in r.stderr, r.stderr


def test_writing_outside_the_working_and_temporary_directories_is_refused(tmp_path, home):
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run(SBX + ["--profile", "web", "--", "sh", "-c",
                              f"echo ok > {work}/out && echo no > {home}/.bashrc"],
                       cwd=work, env=dict(os.environ, HOME=str(home), TMPDIR=str(work)),
                       capture_output=True, text=True, timeout=30)
    assert (work / "out").read_text() == "ok\n" and not (home / ".bashrc").exists()
    assert f"sbx: sh was refused creating a file in {home}: profile web allows" in r.stderr, r.stderr


def test_web_serves_files_from_its_working_directory(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello from the web profile\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(SBX + ["--profile", "web", "--", PY, "-m", "http.server", "--bind",
                                     "127.0.0.1", str(port)],
                              cwd=site, env=dict(os.environ, PORT=str(port)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        body = None
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None and b"hello from the web profile" in body, \
            server.stderr.read1().decode() if server.poll() is not None else "no answer"
        c = subprocess.run(SBX + ["--profile", "web", "--", "curl", "-sf", f"http://127.0.0.1:{port}/"],
                           cwd=site, env=dict(os.environ, PORT=str(port)), capture_output=True,
                           text=True, timeout=30)
        assert "hello from the web profile" in c.stdout, c.stderr
    finally:
        server.terminate()
        server.wait(10)


LANDLOCK_GONE = """name: no-landlock
extends: default
rules:
  - errno(ENOSYS): [landlock_create_ruleset, landlock_add_rule, landlock_restrict_self]
filesystem:
  write: [/]
"""


def test_a_profile_asking_for_landlock_on_a_kernel_without_it_does_not_run(tmp_path):
    """Nested: the outer profile answers landlock_* with ENOSYS, as a kernel without it would."""
    outer = tmp_path / "outer.yaml"
    outer.write_text(LANDLOCK_GONE)
    marker = tmp_path / "ran"
    r = subprocess.run(SBX + ["--profile", str(outer), "--", PY, "-m", "sandbox", "run", "--", "touch",
                              str(marker)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 125, r.stderr
    assert not marker.exists()
    assert "this kernel cannot enforce Landlock itself" in r.stderr
    assert "the command was not run" in r.stderr


def test_best_effort_runs_and_says_exactly_what_was_not_enforced(tmp_path):
    outer = tmp_path / "outer.yaml"
    outer.write_text(LANDLOCK_GONE)
    inner = tmp_path / "inner.yaml"
    inner.write_text("name: relaxed\nextends: web\nlandlock: best-effort\n")
    marker = tmp_path / "ran"
    r = subprocess.run(SBX + ["--profile", str(outer), "--", PY, "-m", "sandbox", "run", "--profile",
                              str(inner), "--", "touch", str(marker)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and marker.exists(), r.stderr
    notes = [line for line in r.stderr.splitlines() if "best-effort" in line]
    assert len(notes) == 1, r.stderr
    assert "not enforced on this kernel: Landlock itself" in notes[0]
    assert "the profile's filesystem and network rules" in notes[0]


def test_verify_fails_on_a_landlock_denial(home):
    r = subprocess.run([PY, "-m", "sandbox", "verify", "--profile", "web", "--", "sh", "-c",
                        f"cat {home}/.ssh/id_rsa > /dev/null; exit 0"],
                       cwd=ROOT, env=dict(os.environ, HOME=str(home)), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stderr
    assert "refused by the profile's Landlock rules" in r.stderr
    assert "fs.read_file" in r.stderr and f"{home}/.ssh/id_rsa" in r.stderr

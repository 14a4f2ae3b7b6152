"""``sbx status`` names the profile a confined process runs, from the record ``sbx run`` keeps
where the command cannot write; a forged record, a reused pid or a finished run name nothing."""
import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from sandbox import cache, running
from sandbox.kernel import landlock
from tests.conftest import need

pytestmark = pytest.mark.kernel
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SBX = [sys.executable, "-m", "sandbox"]


def status(*args):
    return subprocess.run(SBX + ["status", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def started(argv, timeout=10.0):
    """sbx run ARGV in the background; (its Popen, the confined command's pid)."""
    p = subprocess.Popen(SBX + ["run", *argv], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = psutil.Process(p.pid).children()
        if kids and running.profile_of(kids[0].pid) is not None:
            return p, kids[0].pid
        time.sleep(0.05)
    p.kill()
    raise AssertionError(f"no record for the command of {argv}: {p.stderr.read()}")


@pytest.fixture(autouse=True)
def needs_landlock():
    need(landlock.abi() > 0, "the record is kept only where Landlock protects it")


def test_status_names_the_profile_of_the_command_and_its_children():
    p, pid = started(["--profile", "web", "--", "sh", "-c", "trap 'kill $!; exit' TERM; sleep 30 & wait"])
    try:
        time.sleep(0.3)
        grandchild = psutil.Process(pid).children()[0].pid
        rows = json.loads(status("--json", str(pid), str(grandchild)).stdout)
        assert [(r["pid"], r["profile"], r["launched_pid"]) for r in rows] == \
            [(pid, "web", pid), (grandchild, "web", pid)]
        assert rows[0]["profile_path"].endswith("web.yaml") and rows[0]["mode"] == "filter"
        line = status(str(pid)).stdout.splitlines()[1]
        assert line.split()[:5] == [str(pid), "filter", "1", "1", "web"], line
    finally:
        p.terminate()                   # forwarded to the command; sbx run then cleans up
        p.wait(timeout=30)
    assert not os.path.exists(os.path.join(cache.location(), running.DIR, str(pid))), \
        "the record outlived its run"


def test_a_confined_command_cannot_forge_its_record():
    where = os.path.join(cache.location(), running.DIR)
    forge = (f"printf 'start 0\\nprofile none\\npath -\\nmode enforce\\n' > {where}/$$ "
             "&& echo forged; exec sleep 30")
    p, pid = started(["--profile", "default", "--", "sh", "-c", forge])
    try:
        time.sleep(0.5)
        assert json.loads(status("--json", str(pid)).stdout)[0]["profile"] == "default"
    finally:
        p.terminate()
        _out, err = p.communicate(timeout=30)
    assert "Permission denied" in err and "forged" not in err


def test_a_record_for_a_reused_pid_or_another_user_s_directory_names_nothing(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    monkeypatch.setattr(cache, "location", lambda uid=None: str(d / "sbx"))
    me = os.getpid()
    assert running.record(me, "web", "/x/web.yaml", "enforce") is not None
    assert running.profile_of(me)["profile"] == "web"
    with open(d / "sbx" / running.DIR / str(me), "w") as fh:    # an older process of this pid
        fh.write("start 1\nprofile web\npath -\nmode enforce\n")
    assert running.profile_of(me) is None
    running.record(me, "web", None, "enforce")
    os.chmod(d / "sbx" / running.DIR / str(me), 0o644)          # not private: not sbx's own
    assert running.profile_of(me) is None

"""no_new_privs under sbx: a setuid-root program started by an unprivileged user gains nothing.

The test user is ``nobody`` (via ``setpriv``). A control first shows that the
setuid copy does raise nobody's euid to 0 outside the sandbox; under every
profile the same exec must leave the euid at nobody's and show NoNewPrivs: 1.
"""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import need
from tests.escape.harness import REPO, builtin_profiles, run, sbx_argv

PROFILES = builtin_profiles()
NOBODY_PYTHONS = [sys.executable, "/usr/bin/python3"]


def _setpriv(uid: int, gid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]


@pytest.fixture(scope="module")
def suid(workspace):
    """(probe path, nobody's uid, argv prefix running as nobody, python for nobody, env)."""
    need(shutil.which("setpriv") is not None, "setpriv (util-linux) is needed to run as nobody")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        need(False, "no 'nobody' user")
    home = tempfile.mkdtemp(prefix="sbx-escape-nobody-")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    probe = workspace.dir / "euid-probe"
    shutil.copy(workspace.attack, probe)
    os.chown(probe, 0, 0)
    os.chmod(probe, 0o4755)
    as_nobody = _setpriv(nobody.pw_uid, nobody.pw_gid)
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "PYTHONPATH": str(REPO)}
    python = None
    for cand in NOBODY_PYTHONS:
        res = subprocess.run(as_nobody + [cand, "-c", "import sandbox.launcher, sandbox.policy"],
                             cwd=REPO, env=env, capture_output=True)
        if res.returncode == 0:
            python = cand
            break
    try:
        need(python is not None, f"none of {NOBODY_PYTHONS} can import sandbox as nobody")
        yield probe, nobody.pw_uid, as_nobody, python, env
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_setuid_copy_works_unconfined(suid):
    """Control: unconfined, nobody running the setuid-root copy gets euid 0 (the attack is real)."""
    probe, _uid, as_nobody, _py, env = suid
    out = run(as_nobody + [str(probe), "euid"], env=env)
    need(out.stdout.split()[:2] == ["EUID", "0"],
         f"the setuid bit has no effect here (nosuid mount?): {out.describe()}")


@pytest.mark.parametrize("profile", PROFILES)
def test_setuid_exec_gains_no_privileges(suid, profile):
    """nobody runs `sbx run --profile P -- setuid-root-probe`: euid stays nobody, NoNewPrivs is 1."""
    probe, uid, as_nobody, python, env = suid
    out = run(as_nobody + sbx_argv(profile, [str(probe), "euid"], python=python), env=env)
    assert out.status == 0, out.describe()
    assert out.stdout.split() == ["EUID", str(uid), "NNP", "1"], out.describe()

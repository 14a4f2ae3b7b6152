"""The user's own secrets when the environment names another home, or no runtime directory.

A profile denies ``$HOME/.ssh`` and ``$XDG_RUNTIME_DIR/containers``, and the
variables come from sbx's environment. That environment is often not the
login's: a CI job sets ``HOME`` to its workspace, a test harness to a
temporary directory, ``sudo -u`` or ``su`` without ``-`` keep the caller's,
and a session that pam_systemd did not open (cron, ``ssh`` without it, a
container) has no ``XDG_RUNTIME_DIR``. The user's keys are still in the home
the password database gives and in ``/run/user/UID``, readable by the user.

A user made for this module (``useradd``, removed after) keeps a dummy key,
an npm token and a podman login there, runs with ``HOME`` set to a scratch
directory and without ``XDG_RUNTIME_DIR``, opens them unconfined (the
control), and under no built-in profile.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile

import pytest

from tests.conftest import need
from tests.escape.harness import builtin_profiles, run_many
from tests.escape.users import PATH, User, find_python
from tests.escape.harness import REPO

PROFILES = builtin_profiles()
IN_HOME = [".ssh/id_ed25519", ".npmrc", ".aws/credentials"]
IN_RUNTIME = ["containers/auth.json"]
OPEN = "import sys; open(sys.argv[1], 'rb').close(); print('OPENED')"


@pytest.fixture(scope="module")
def elsewhere(workspace):
    """(the user, its password-database home, its runtime directory, the HOME it runs with)."""
    need(shutil.which("useradd") is not None and shutil.which("userdel") is not None,
         "useradd and userdel (passwd) make the user of this test")
    name = "sbxh" + secrets.token_hex(4)
    home = tempfile.mkdtemp(prefix="sbx-escape-pwhome-", dir="/home" if os.path.isdir("/home") else "/var")
    made = [home]
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", home,
                    "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--"]
        scratch = tempfile.mkdtemp(prefix="sbx-escape-scratch-", dir="/var/tmp")
        tmp = tempfile.mkdtemp(prefix="sbx-escape-pwtmp-")
        runtime = f"/run/user/{entry.pw_uid}"
        os.makedirs("/run/user", mode=0o755, exist_ok=True)
        os.mkdir(runtime, 0o700)
        made += [scratch, tmp, runtime]
        user = User(name, entry.pw_uid, entry.pw_gid, prefix, "", scratch, tmp)
        for d in (home, scratch, tmp, runtime):
            user.give(d, 0o700)
        for path in [os.path.join(home, p) for p in IN_HOME] + [os.path.join(runtime, p) for p in IN_RUNTIME]:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                fh.write("SBX-DUMMY-CREDENTIAL\n")
            d = path
            while d not in (home, runtime):
                user.give(d, 0o700 if os.path.isdir(d) else 0o600)
                d = os.path.dirname(d)
        user.python = find_python(prefix, {"PATH": PATH, "HOME": scratch, "PYTHONPATH": str(REPO)}) or ""
        need(bool(user.python), f"no Python that {name} can run sbx with")
        yield user, home, runtime, scratch
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        for d in made:
            shutil.rmtree(d, ignore_errors=True)


def _places(home: str, runtime: str) -> list[str]:
    return [os.path.join(home, p) for p in IN_HOME] + [os.path.join(runtime, p) for p in IN_RUNTIME]


@pytest.fixture(scope="module")
def cells(elsewhere):
    user, home, runtime, scratch = elsewhere
    places = _places(home, runtime)
    jobs = {(i, profile): (profile, i) for profile in [None, *PROFILES] for i in range(len(places))}

    def attempt(profile, i):
        command = ["/usr/bin/python3", "-c", OPEN, places[i]]
        argv = user.confined(profile, command) if profile else user.direct(command)
        # HOME elsewhere, no XDG_RUNTIME_DIR: what a CI job or a cron session gives
        return user.run(argv, {"PATH": PATH, "HOME": scratch, "TMPDIR": user.tmp,
                               "PYTHONPATH": str(REPO)})
    return run_many(jobs, attempt)


WHAT = [f"~/{p}" for p in IN_HOME] + [f"/run/user/UID/{p}" for p in IN_RUNTIME]


@pytest.mark.parametrize("i", range(len(WHAT)), ids=WHAT)
def test_unconfined_the_user_opens_it(cells, i):
    out = cells[(i, None)]
    assert "OPENED" in out.stdout, out.describe()


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("i", range(len(WHAT)), ids=WHAT)
def test_no_profile_lets_it_be_opened_with_home_elsewhere(cells, i, profile):
    out = cells[(i, profile)]
    assert "OPENED" not in out.stdout, f"under {profile}: {out.describe()}"
    assert "PermissionError" in out.stderr, f"under {profile}: {out.describe()}"

"""Another user's secrets and start-up files, reached by a command that may become that user.

web keeps CAP_SETUID and CAP_SETGID (a server started as root drops to
www-data). Run as root, the command may make itself any user, and then reads
and writes as that user: ``~/.ssh``, ``/run/user/UID/containers`` and
``~/.bashrc`` of every user are its own, not only root's. A user made for
this module (``useradd``, removed after) keeps a dummy key, a podman login
and a ``.bashrc``; root, unconfined (the control) and under web, becomes
that user and reads the key and the login, and appends to the ``.bashrc``
from that home as its working directory.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import need
from tests.escape.harness import REPO

ATTEMPTS = {
    "read ~/.ssh/id_ed25519": "open(os.path.join(home, '.ssh/id_ed25519')).read()",
    "read /run/user/UID/containers/auth.json": "open(f'/run/user/{uid}/containers/auth.json').read()",
    "append to ~/.bashrc": "open(os.path.join(home, '.bashrc'), 'a').write('# planted\\n')",
}


@pytest.fixture(scope="module")
def person(workspace):
    need(os.geteuid() == 0, "root becomes the user")
    need(shutil.which("useradd") is not None, "useradd (passwd) makes the user of this test")
    name = "sbxs" + secrets.token_hex(4)
    home = tempfile.mkdtemp(prefix="sbx-escape-person-", dir="/home" if os.path.isdir("/home") else "/var")
    subprocess.run(["useradd", "--user-group", "--no-create-home", "--home-dir", home,
                    "--shell", "/bin/sh", name], check=True, capture_output=True)
    entry = pwd.getpwnam(name)
    runtime = f"/run/user/{entry.pw_uid}"
    try:
        os.makedirs(runtime, mode=0o700)
        for rel, base in ((".ssh/id_ed25519", home), (".bashrc", home), ("containers/auth.json", runtime)):
            path = os.path.join(base, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                fh.write("SBX-DUMMY-CREDENTIAL\n")
        for base in (home, runtime):
            for root, dirs, files in os.walk(base):
                for n in [root] + [os.path.join(root, f) for f in files]:
                    os.chown(n, entry.pw_uid, entry.pw_gid)
                    os.chmod(n, 0o700 if os.path.isdir(n) else 0o600)
        yield entry
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)


def _attempt(entry, what: str, profile: str | None):
    code = (f"import os; uid, gid, home = {entry.pw_uid}, {entry.pw_gid}, {entry.pw_dir!r}; "
            f"os.setgroups([]); os.setgid(gid); os.setuid(uid); {ATTEMPTS[what]}; print('DONE')")
    command = ["/usr/bin/python3", "-c", code]
    argv = command if profile is None else \
        [sys.executable, "-m", "sandbox", "run", "--profile", profile, "--", *command]
    return subprocess.run(argv, cwd=entry.pw_dir, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


@pytest.mark.parametrize("what", list(ATTEMPTS))
def test_root_becoming_the_user_reaches_it_unconfined(person, what):
    r = _attempt(person, what, None)
    assert "DONE" in r.stdout, r.stderr


@pytest.mark.parametrize("what", list(ATTEMPTS))
def test_under_web_becoming_the_user_reaches_nothing_of_it(person, what):
    bashrc = os.path.join(person.pw_dir, ".bashrc")
    with open(bashrc) as fh:
        before = fh.read()
    r = _attempt(person, what, "web")
    assert "DONE" not in r.stdout, r.stderr
    assert "PermissionError" in r.stderr, r.stderr
    with open(bashrc) as fh:
        assert fh.read() == before

"""Credentials a user keeps beside ~/.ssh: what stealers of build machines look for.

Package registry tokens (~/.npmrc: a stolen one publishes the user's packages),
cloud and vault tokens, the browser's saved passwords (Firefox, also as a
Flatpak), shell histories (tokens pasted on command lines), and the
container registry login podman keeps in $XDG_RUNTIME_DIR. Each is put in the
home (or runtime directory) of the user running the attack, where there is
none (a real one is only opened and closed, never read); the user opens it
unconfined (the control), and under no built-in profile.
"""
from __future__ import annotations

import os
import shutil

import pytest

from tests.escape.harness import builtin_profiles, run_many
from tests.escape.users import USERS

PROFILES = builtin_profiles()
IN_HOME = [".npmrc", ".bash_history", ".zsh_history", ".python_history", ".psql_history",
           ".mysql_history", ".vault-token", ".cargo/credentials.toml", ".azure/msal_token_cache.json",
           ".terraform.d/credentials.tfrc.json", ".mozilla/firefox/abc.default/logins.json",
           ".thunderbird/abc.default/logins.json",
           ".var/app/org.mozilla.firefox/.mozilla/firefox/abc.default/logins.json",
           "snap/firefox/common/.mozilla/firefox/abc.default/logins.json",
           ".local/share/fish/fish_history", ".node_repl_history", ".gem/credentials",
           # the X server's cookie: with it, the desktop's keystrokes (a Unix socket Landlock
           # does not rule); and configuration where XDG_CONFIG_HOME puts it (gh's token)
           ".Xauthority", "cfg/gh/hosts.yml"]
IN_RUNTIME = ["containers/auth.json"]
OPEN = "import sys; open(sys.argv[1], 'rb').close(); print('OPENED')"


def _runtime_dir(user) -> str:
    return f"/run/user/{user.uid}"


def _places(user) -> list[str]:
    return ([os.path.join(user.home, p) for p in IN_HOME]
            + [os.path.join(_runtime_dir(user), p) for p in IN_RUNTIME])


@pytest.fixture(scope="module")
def planted(users):
    """Every credential in place for both users, theirs; what was made is removed after."""
    made = []
    try:
        for name in USERS:
            user = users[name]
            if not os.path.isdir(_runtime_dir(user)):
                os.makedirs(_runtime_dir(user), mode=0o700)
                user.give(_runtime_dir(user), 0o700)
                made.append(_runtime_dir(user))
            for path in _places(user):
                top = path
                while not os.path.isdir(os.path.dirname(top)):
                    top = os.path.dirname(top)
                if os.path.lexists(path):
                    continue
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                with open(path, "w") as fh:
                    fh.write("SBX-DUMMY-CREDENTIAL\n")
                made.append(top)
                for p in [path] + [d for d in _parents(path, top)]:
                    user.give(p, 0o700 if os.path.isdir(p) else 0o600)
        yield
    finally:
        for path in reversed(made):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.unlink(path)


def _parents(path: str, top: str):
    d = os.path.dirname(path)
    while len(d) >= len(top):
        yield d
        d = os.path.dirname(d)


@pytest.fixture(scope="module")
def cells(workspace, users, planted):
    jobs = {(i, profile, u): (users[u], profile, i) for u in USERS for profile in [None, *PROFILES]
            for i in range(len(IN_HOME) + len(IN_RUNTIME))}

    def attempt(user, profile, i):
        path = _places(user)[i]
        command = ["/usr/bin/python3", "-c", OPEN, path]
        argv = user.confined(profile, command) if profile else user.direct(command)
        return user.run(argv, {**user.env(), "XDG_RUNTIME_DIR": _runtime_dir(user),
                               "XDG_CONFIG_HOME": os.path.join(user.home, "cfg")})
    return run_many(jobs, attempt)


WHAT = IN_HOME + [f"$XDG_RUNTIME_DIR/{p}" for p in IN_RUNTIME]


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("i", range(len(WHAT)), ids=WHAT)
def test_unconfined_the_user_opens_it(cells, i, user):
    out = cells[(i, None, user)]
    assert "OPENED" in out.stdout, out.describe()


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("i", range(len(WHAT)), ids=WHAT)
def test_no_profile_lets_it_be_opened(cells, i, profile, user):
    out = cells[(i, profile, user)]
    assert "OPENED" not in out.stdout, f"{user} under {profile}: {out.describe()}"
    assert "PermissionError" in out.stderr, f"{user} under {profile}: {out.describe()}"

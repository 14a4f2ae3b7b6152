"""A profile planted where sbx looks for the user's profiles decides what later runs install.

sbx finds `--profile NAME` (and `default`) first in
``$XDG_CONFIG_HOME/sbx/profiles`` (``~/.config/sbx/profiles``). When the
command may write its home (a home below the temporary directory, as for a
service user, or root run from /root) and that directory does not exist
yet, the command could make it and put a ``default.yaml`` there that allows
everything: the next ``sbx run`` would load it. The directory is protected
whether or not it exists: nothing can be added on the way to it.

The control plants the profile unconfined and shows a later sbx run loading
it (its filter lets unshare(CLONE_NEWUSER) through); under every built-in
profile that can write the home, the planting is refused and the later run
keeps the built-in default.
"""
from __future__ import annotations

import os
import shutil

import pytest

from tests.escape.harness import builtin_profiles, run_many
from tests.escape.users import USERS

PROFILES = [p for p in builtin_profiles() if p != "minimal"]   # minimal writes nothing
PLANT = ("mkdir -p \"$HOME/.config/sbx/profiles\" && printf 'name: default\\ndefault: allow\\n' "
         "> \"$HOME/.config/sbx/profiles/default.yaml\" && echo PLANTED")
PROBE = ("import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
         "print('UNSHARE', libc.syscall(272, 0x10000000), ctypes.get_errno())")


@pytest.fixture(scope="module")
def cells(workspace, users):
    jobs = {(profile, u): (users[u], profile) for u in USERS for profile in [None, *PROFILES]}

    def attempt(user, profile):
        home = user.mkdtemp(f"home-{profile}-")           # below TMPDIR: the profile writes it
        env = {**user.env(), "HOME": home}
        env.pop("XDG_CONFIG_HOME", None)
        try:
            plant = ["/bin/sh", "-c", PLANT]
            argv = user.confined(profile, plant) if profile else user.direct(plant)
            planted = user.run(argv, env)
            later = user.run(user.confined("default", ["/usr/bin/python3", "-c", PROBE]), env)
            return planted, later, os.path.exists(os.path.join(home, ".config/sbx/profiles/default.yaml"))
        finally:
            shutil.rmtree(home, ignore_errors=True)
    return run_many(jobs, attempt)


@pytest.mark.parametrize("user", USERS)
def test_unconfined_a_planted_profile_is_what_the_next_run_loads(cells, user):
    planted, later, exists = cells[(None, user)]
    assert "PLANTED" in planted.stdout and exists, planted.describe()
    assert "UNSHARE 0 0" in later.stdout or "UNSHARE -1 22" in later.stdout, later.describe()


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_no_profile_lets_a_user_profile_be_planted(cells, profile, user):
    planted, later, exists = cells[(profile, user)]
    assert "PLANTED" not in planted.stdout and not exists, f"{user} under {profile}: {planted.describe()}"
    assert "UNSHARE -1 1" in later.stdout, f"{user} under {profile}: {later.describe()}"

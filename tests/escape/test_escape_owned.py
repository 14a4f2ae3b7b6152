"""A denied path its user owns but cannot open at the moment: ``~/.ssh`` at mode 000.

A deny of a path the user cannot open needs no Landlock rule (file permissions
keep it closed), but only while the user cannot change that: the owner can
chmod it back, and Landlock does not govern chmod. Shown unconfined first, then
under every built-in profile that denies ``~/.ssh``, as nobody (for root, file
permissions never count).
"""
from __future__ import annotations

import os

import pytest

SECRET = "NOBODY-PRIVATE-KEY"
ATTACK = 'chmod 700 "$HOME/.ssh" && cat "$HOME/.ssh/id_rsa"'
PROFILES = ["default", "web", "build", "python", "minimal", "strict-net"]


@pytest.fixture
def owned_home(users):
    """A home of nobody's own whose .ssh (nobody's too) is at mode 000."""
    nobody = users["nobody"]
    home = nobody.mkdtemp("owned-home-", parent=nobody.home)
    ssh = os.path.join(home, ".ssh")
    os.mkdir(ssh)
    with open(os.path.join(ssh, "id_rsa"), "w") as fh:
        fh.write(SECRET + "\n")
    nobody.give(os.path.join(ssh, "id_rsa"), 0o600)
    nobody.give(ssh, 0)
    return home


def _reset(users, home):
    users["nobody"].give(os.path.join(home, ".ssh"), 0)


def test_unconfined_the_owner_reopens_it(users, owned_home):
    nobody = users["nobody"]
    out = nobody.run(nobody.direct(["sh", "-c", ATTACK]), dict(nobody.env(), HOME=owned_home))
    assert out.status == 0 and SECRET in out.stdout, out.describe()


@pytest.mark.parametrize("profile", PROFILES)
def test_a_denied_path_its_owner_can_chmod_stays_denied(users, owned_home, profile):
    nobody = users["nobody"]
    _reset(users, owned_home)
    env = dict(nobody.env(), HOME=owned_home)
    for run in ("first", "with its plan kept"):
        out = nobody.run(nobody.confined(profile, ["sh", "-c", ATTACK]), env)
        assert SECRET not in out.stdout, (profile, run, out.describe())
        assert out.status != 0, (profile, run, out.describe())
        _reset(users, owned_home)

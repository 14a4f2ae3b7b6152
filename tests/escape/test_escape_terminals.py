"""The user's other terminals: a command that may open one reads what is typed into it.

Every terminal of a user is a /dev/pts/N owned by that user (mode 0620), so
any program of the user opens it, and reading from it takes the keystrokes
meant for the shell there: the password given to sudo or ssh in another
window. The built-in profiles grant the command's own terminal ($TTY) and
/dev/tty, not /dev/pts.

Here the "other terminal" is a fresh pty owned by the user running the
attack, with a line already typed into it; the command gets a second pty, its
own, as standard input. Unconfined, the attack reads the line (the control);
under every built-in profile it is refused, as root and as nobody, while the
command still opens its own terminal by name (``$(tty)``, GPG_TTY).
"""
from __future__ import annotations

import os

import pytest

from tests.escape.harness import builtin_profiles, run_many
from tests.escape.users import USERS

PROFILES = builtin_profiles()
TYPED = b"hunter2-typed-elsewhere\n"

# opens the other terminal by name and reads what was typed there
STEAL = ("import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NOCTTY); "
         "print('READ', os.read(fd, 100))")
# opens its own terminal (standard input's) by name: read-only, as minimal opens
# nothing for writing
OWN = "import os; fd = os.open(os.ttyname(0), os.O_RDONLY | os.O_NOCTTY); print('OWN OK')"


class Pty:
    def __init__(self, user):
        self.master, self.slave = os.openpty()
        self.name = os.ttyname(self.slave)
        os.chown(self.name, user.uid, -1)       # as a login gives it to the user

    def close(self):
        os.close(self.slave)
        os.close(self.master)


@pytest.fixture(scope="module")
def cells(workspace, users):
    jobs = {(kind, profile, u): (kind, users[u], profile)
            for kind in ("steal", "own") for u in USERS for profile in [None, *PROFILES]}

    def attempt(kind, user, profile):
        other, own = Pty(user), Pty(user)
        try:
            os.write(other.master, TYPED)
            command = ["/usr/bin/python3", "-c", STEAL if kind == "steal" else OWN, other.name]
            argv = user.confined(profile, command) if profile else user.direct(command)
            return user.run(argv, user.env(), stdin=own.slave)
        finally:
            other.close()
            own.close()
    return run_many(jobs, attempt)


@pytest.mark.parametrize("user", USERS)
def test_unconfined_the_other_terminal_gives_up_what_was_typed(cells, user):
    out = cells[("steal", None, user)]
    assert f"READ {TYPED!r}" in out.stdout, out.describe()


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_no_profile_lets_another_terminal_be_opened(cells, profile, user):
    out = cells[("steal", profile, user)]
    assert "READ" not in out.stdout, f"{user} under {profile}: {out.describe()}"
    assert "PermissionError" in out.stderr, f"{user} under {profile}: {out.describe()}"


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", [None, *PROFILES])
def test_the_command_opens_its_own_terminal_by_name(cells, profile, user):
    out = cells[("own", profile, user)]
    assert "OWN OK" in out.stdout, f"{user} under {profile}: {out.describe()}"

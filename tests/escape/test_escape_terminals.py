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

The same for /dev/tty: in a session whose controlling terminal has a line
typed into it, a command started with its input and output elsewhere (``sbx
run cmd </dev/null >log``) reads that line unconfined and is refused under
every profile; with the terminal as its input, /dev/tty is its own and opens.
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
# opens the controlling terminal and reads what was typed there
CTTY_STEAL = "import os; fd = os.open('/dev/tty', os.O_RDONLY); print('READ', os.read(fd, 100))"
CTTY_OWN = "import os; os.open('/dev/tty', os.O_RDONLY); print('OWN OK')"


class Pty:
    def __init__(self, user):
        self.master, self.slave = os.openpty()
        self.name = os.ttyname(self.slave)
        os.chown(self.name, user.uid, -1)       # as a login gives it to the user

    def close(self):
        os.close(self.slave)
        os.close(self.master)


KINDS = {"steal": STEAL, "own": OWN, "ctty-steal": CTTY_STEAL, "ctty-own": CTTY_OWN}


@pytest.fixture(scope="module")
def cells(workspace, users):
    jobs = {(kind, profile, u): (kind, users[u], profile)
            for kind in KINDS for u in USERS for profile in [None, *PROFILES]}

    def attempt(kind, user, profile):
        other, own = Pty(user), Pty(user)
        try:
            os.write(other.master, TYPED)
            os.write(own.master, TYPED)
            command = ["/usr/bin/python3", "-c", KINDS[kind], other.name]
            argv = user.confined(profile, command) if profile else user.direct(command)
            if kind.startswith("ctty"):
                # a session whose controlling terminal is *own*, as a login shell's; for
                # ctty-steal the command runs with its input and output elsewhere
                # (sbx run cmd </dev/null >log from that shell)
                redirect = 'exec "$@" </dev/null' if kind == "ctty-steal" else 'exec "$@"'
                argv = ["setsid", "--ctty", "sh", "-c", redirect, "sh", *argv]
            return user.run(argv, user.env(), stdin=own.slave)
        finally:
            other.close()
            own.close()
    return run_many(jobs, attempt)


@pytest.mark.parametrize("kind", ["steal", "ctty-steal"])
@pytest.mark.parametrize("user", USERS)
def test_unconfined_the_other_terminal_gives_up_what_was_typed(cells, user, kind):
    out = cells[(kind, None, user)]
    assert f"READ {TYPED!r}" in out.stdout, out.describe()


@pytest.mark.parametrize("kind", ["steal", "ctty-steal"])
@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_no_profile_lets_another_terminal_be_opened(cells, profile, user, kind):
    out = cells[(kind, profile, user)]
    assert "READ" not in out.stdout, f"{user} under {profile}: {out.describe()}"
    assert "PermissionError" in out.stderr, f"{user} under {profile}: {out.describe()}"


@pytest.mark.parametrize("kind", ["own", "ctty-own"])
@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", [None, *PROFILES])
def test_the_command_opens_its_own_terminal_by_name(cells, profile, user, kind):
    out = cells[(kind, profile, user)]
    assert "OWN OK" in out.stdout, f"{user} under {profile}: {out.describe()}"

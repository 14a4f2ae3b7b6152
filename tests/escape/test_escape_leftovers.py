"""A process the command leaves running reads the terminal once sbx has exited.

The command forks twice (the grandchild in a session of its own, as a daemon
does) and exits at once. The grandchild keeps the terminal it inherited; once
the shell has the terminal back, it reads the next line typed there (a
password given to sudo). Unconfined it gets the line (the control); under
every built-in profile that can fork, sbx kills what the command left running
when it exits, so nothing is read. sbx says what it killed.
"""
from __future__ import annotations

import os
import re
import time

import pytest

from tests.escape.harness import builtin_profiles, run_many
from tests.escape.users import USERS

PROFILES = [p for p in builtin_profiles() if p != "minimal"]   # minimal cannot fork
TYPED = b"typed-after-sbx-exited\n"
ATTACK = r'''
import os, sys, time
log = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_WRONLY)    # nothing that makes the caller wait for it
        os.dup2(null, 1)
        os.dup2(null, 2)
        time.sleep(0.5)                       # sbx has exited by now, the shell reads the terminal
        data = os.read(0, 100)
        with open(log, "ab") as fh:
            fh.write(b"STOLEN " + data)
    os._exit(0)
print("LEFT")
'''


@pytest.fixture(scope="module")
def cells(workspace, users):
    jobs = {(profile, u): (users[u], profile) for u in USERS for profile in [None, *PROFILES]}

    def attempt(user, profile):
        master, slave = os.openpty()
        os.chown(os.ttyname(slave), user.uid, -1)
        log = os.path.join(user.tmp, f"stolen-{profile}")
        try:
            command = ["/usr/bin/python3", "-c", ATTACK, log]
            argv = user.confined(profile, command) if profile else user.direct(command)
            out = user.run(argv, user.env(), stdin=slave)
            os.write(master, TYPED)                  # typed after the command (and sbx) returned
            time.sleep(1.5)
            stolen = open(log, "rb").read() if os.path.exists(log) else b""
            return out, stolen
        finally:
            os.close(slave)
            os.close(master)
            if os.path.exists(log):
                os.unlink(log)
    return run_many(jobs, attempt)


@pytest.mark.parametrize("user", USERS)
def test_unconfined_a_leftover_reads_what_is_typed_next(cells, user):
    out, stolen = cells[(None, user)]
    assert "LEFT" in out.stdout and stolen == b"STOLEN " + TYPED, out.describe()


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_nothing_the_command_left_outlives_sbx_run(cells, profile, user):
    out, stolen = cells[(profile, user)]
    assert "LEFT" in out.stdout, f"{user} under {profile}: {out.describe()}"
    assert stolen == b"", f"{user} under {profile}: {out.describe()}"
    # the grandchild, and the child too if it had not finished exiting
    assert re.search(r"left [12] process(es)? running; killed", out.stderr), out.describe()

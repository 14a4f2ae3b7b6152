"""A file lease holds back other processes' opens of a file outside the sandbox.

``fcntl(F_SETLEASE)`` needs only to own the file (root owns the system); while
a lease is held, an open for writing by any other process waits until the
holder lets go (up to /proc/sys/fs/lease-break-time, 45 s, and the lease can
be taken again). The attack takes a read lease on a file of its user's and
holds it for 2 s; a process outside opens the file for writing meanwhile.
Unconfined that open waits (the control); every built-in profile refuses the
lease, as root and as nobody, and the open is immediate.
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.escape.harness import builtin_profiles
from tests.escape.users import USERS

PROFILES = builtin_profiles()
ATTACK = r'''
import fcntl, os, signal, sys, time
signal.signal(signal.SIGIO, signal.SIG_IGN)        # the lease-break notice would end us
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.fcntl(fd, 1024, fcntl.F_RDLCK)          # F_SETLEASE
    print("LEASE TAKEN", flush=True)
    time.sleep(2)
except OSError as e:
    print("lease refused", e.errno, flush=True)
'''


def _attempt(user, profile):
    path = os.path.join(user.tmp, f"leased-{profile}")
    with open(path, "w") as fh:
        fh.write("x\n")
    user.give(path, 0o644)
    command = ["/usr/bin/python3", "-c", ATTACK, path]
    argv = user.confined(profile, command) if profile else user.direct(command)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=user.env(), cwd=user.tmp)
    try:
        first = proc.stdout.readline()
        began = time.monotonic()
        os.close(os.open(path, os.O_WRONLY))          # the victim outside
        waited = time.monotonic() - began
        rest, err = proc.communicate(timeout=30)
        return first + rest, err, waited
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(path)


@pytest.mark.parametrize("user", USERS)
def test_unconfined_a_lease_holds_back_another_process(workspace, users, user):
    out, err, waited = _attempt(users[user], None)
    assert "LEASE TAKEN" in out, err
    assert waited > 1.0, waited


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_no_profile_lets_a_lease_be_taken(workspace, users, profile, user):
    out, err, waited = _attempt(users[user], profile)
    assert "lease refused 1" in out, f"{user} under {profile}: {out} {err}"
    assert waited < 1.0, waited

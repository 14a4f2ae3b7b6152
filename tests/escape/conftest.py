"""Fixtures for the escape suite: the compiled attacks, the users who run them (root, nobody),
a sibling victim, a pty, and the run matrix of test_escape_syscalls.py.

Every confined run of the suite is started once, concurrently, the first time
a test asks for an outcome; each test then judges its own cell.
"""
import os
import platform
import pwd
import shutil

import pytest

from tests.conftest import need
from tests.escape.attacks import ATTACKS, applies
from tests.escape.harness import Victim, Workspace, builtin_profiles, run, run_chain, run_many, sbx_argv
from tests.escape.users import Users


@pytest.fixture(scope="session")
def workspace():
    need(os.geteuid() == 0, "the escape suite needs root (attacks must be able to succeed when allowed)")
    need(platform.machine() == "x86_64", "the escape attacks are x86_64 programs (x32, int 0x80)")
    need(shutil.which("gcc") is not None, "gcc is needed to build the attack programs")
    ws = Workspace()
    try:
        ws.build()
        yield ws
    finally:
        ws.remove()


@pytest.fixture(scope="session")
def users(workspace):
    """root and nobody (see tests/escape/users.py), with their directories and test profiles."""
    need(shutil.which("setpriv") is not None, "setpriv (util-linux) is needed to run as nobody")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        need(False, "no 'nobody' user")
    u = Users()
    try:
        need(bool(u.nobody.python), "no Python that nobody can run imports sandbox (PYTHONPATH=REPO)")
        yield u
    finally:
        u.close()


@pytest.fixture(scope="session")
def sbx_env(workspace):
    return dict(os.environ)


@pytest.fixture(scope="session")
def victim(workspace):
    v = Victim(workspace)
    yield v
    v.stop()


@pytest.fixture(scope="session")
def tty():
    """The slave side of a fresh pty, handed to tty attacks as their stdin."""
    master, slave = os.openpty()
    yield slave
    os.close(slave)
    os.close(master)


class Matrix:
    """Outcomes of every (profile, attack) cell, run together on first use.

    Per profile the attacks run as ``attack chain`` runs (see run_chain); the
    profiles run concurrently.
    """

    def __init__(self, workspace, env, victim, tty):
        self.ws, self.env, self.victim, self.tty = workspace, env, victim, tty
        self.noop = {}
        self.cells = None

    def _run_profile(self, profile):
        attacks = [a for a in ATTACKS if applies(a, profile)]
        chained = [a.name for a in attacks if a.program == "attack"]
        command = sbx_argv(profile, [str(self.ws.attack), "chain", str(self.victim.pid),
                                     hex(self.victim.addr)])
        results = run_chain(command, chained, stdin=self.tty, env=self.env)
        for a in attacks:
            if a.program != "attack":
                results[a.name] = run(sbx_argv(profile, self.ws.argv(a, None)), env=self.env)
        return results

    def _fill(self):
        if self.cells is not None:
            return
        for profile in builtin_profiles():       # serially first: also fills the filter cache
            self.noop[profile] = run(sbx_argv(profile, [str(self.ws.attack), "noop"]), env=self.env)
        per_profile = run_many({p: (p,) for p in builtin_profiles()}, self._run_profile)
        self.cells = {(p, name): out for p, res in per_profile.items() for name, out in res.items()}

    def outcome(self, profile, attack):
        self._fill()
        return self.cells[(profile, attack.name)]

    def noop_outcome(self, profile):
        self._fill()
        return self.noop[profile]


@pytest.fixture(scope="session")
def matrix(workspace, sbx_env, victim, tty):
    return Matrix(workspace, sbx_env, victim, tty)

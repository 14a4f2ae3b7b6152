"""Other processes reniced a group at a time: setpriority and ioprio_set for a process group.

A victim outside the sandbox, a process of the user running the attack in a
process group of its own, sits at nice 0 and no I/O class. The attack asks
for nice 19 and the idle I/O class for the victim's whole process group
(PRIO_PGRP, IOPRIO_WHO_PGRP). Unconfined both reach the victim (the control);
every built-in profile refuses them, as root and as nobody. As root the
kernel refuses it too (commoncap: a process may not renice one holding
capabilities it lacks, and sbx dropped them), so nobody's cells are the ones
that show the profiles' rule, which refuses every form but PRIO_PROCESS and IOPRIO_WHO_PROCESS, so the
user-wide forms too; those are not tried here, since unconfined, as root,
they would renice every root process of the host. (One pid at a time stays
possible: docs/security.md.)
"""
from __future__ import annotations

import subprocess

import pytest

from tests.escape.harness import builtin_profiles, run_many
from tests.escape.users import USERS

PROFILES = builtin_profiles()
ATTACK = r'''
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
group = int(sys.argv[1])
r = libc.setpriority(1, group, 19)                                     # PRIO_PGRP
print("setpriority", "ok" if r == 0 else ctypes.get_errno())
r = libc.syscall(251, 2, group, 3 << 13)                               # ioprio_set WHO_PGRP, IDLE
print("ioprio_set", "ok" if r == 0 else ctypes.get_errno())
'''
IOPRIO_GET = 252


def _nice(pid: int) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])


def _ioprio_class(pid: int) -> int:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(IOPRIO_GET, 1, pid) >> 13                        # IOPRIO_WHO_PROCESS


@pytest.fixture(scope="module")
def cells(workspace, users):
    jobs = {(profile, u): (users[u], profile) for u in USERS for profile in [None, *PROFILES]}

    def attempt(user, profile):
        victim = subprocess.Popen(user.direct(["sleep", "60"]), start_new_session=True)
        try:
            pid = victim.pid                         # setpriv execs: the sleep has its pid
            command = ["/usr/bin/python3", "-c", ATTACK, str(pid)]
            argv = user.confined(profile, command) if profile else user.direct(command)
            out = user.run(argv, user.env())
            return out, _nice(pid), _ioprio_class(pid)
        finally:
            victim.kill()
            victim.wait()
    return run_many(jobs, attempt)


@pytest.mark.parametrize("user", USERS)
def test_unconfined_another_process_group_is_reniced(cells, user):
    out, nice, ioclass = cells[(None, user)]
    assert "setpriority ok" in out.stdout and "ioprio_set ok" in out.stdout, out.describe()
    assert (nice, ioclass) == (19, 3), out.describe()


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_no_profile_renices_another_process_group(cells, profile, user):
    out, nice, ioclass = cells[(profile, user)]
    assert "setpriority 1\n" in out.stdout and "ioprio_set 1\n" in out.stdout, \
        f"{user} under {profile}: {out.describe()}"
    assert (nice, ioclass) == (0, 0), f"{user} under {profile}: {out.describe()}"

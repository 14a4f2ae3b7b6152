"""System V IPC of other processes: numbers, not paths, so no file rule confines them.

A victim outside the sandbox (the test, for the user running the attack: it
gives its objects to that user, as that user's own program would own them)
holds a shared memory segment with a marker in it and a message queue with a
message waiting. The attack finds their numbers in /proc/sysvipc, as any
process may, attaches the segment and takes the message. Unconfined it reads
both (the control); every built-in profile refuses System V IPC (ENOSYS, or
minimal's EPERM), as root and as nobody.
"""
from __future__ import annotations

import ctypes
import secrets

import pytest

from tests.escape.harness import builtin_profiles, run_many
from tests.escape.users import USERS

PROFILES = builtin_profiles()
IPC_CREAT, IPC_RMID, IPC_SET = 0o1000, 0, 1
MARKER = b"SBX-SYSV-MARKER"

ATTACK = r'''
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
key = int(sys.argv[1])
def number(table):
    for line in open(f"/proc/sysvipc/{table}").read().splitlines()[1:]:
        f = line.split()
        if int(f[0]) == key:
            return int(f[1])
shm, msq = number("shm"), number("msg")
print("FOUND", shm is not None and msq is not None)
addr = libc.shmat(shm, None, 0)
if addr in (None, ctypes.c_void_p(-1).value):
    print("shm refused", ctypes.get_errno())
else:
    print("SHM", ctypes.string_at(addr, 15))
buf = ctypes.create_string_buffer(8 + 64)
n = libc.msgrcv(msq, buf, 64, 0, 0o4000)        # IPC_NOWAIT
print("MSG", buf.raw[8:8 + n]) if n >= 0 else print("msg refused", ctypes.get_errno())
'''


class _Ipc_perm(ctypes.Structure):          # struct ipc64_perm, x86_64
    _fields_ = [("key", ctypes.c_int), ("uid", ctypes.c_uint), ("gid", ctypes.c_uint),
                ("cuid", ctypes.c_uint), ("cgid", ctypes.c_uint), ("mode", ctypes.c_ushort),
                ("pad1", ctypes.c_ushort), ("seq", ctypes.c_ushort), ("pad2", ctypes.c_ushort),
                ("unused", ctypes.c_ulong * 2)]


class Victim:
    """A segment holding MARKER and a queue holding it as a message, both owned by *user*."""

    def __init__(self, user):
        self.libc = libc = ctypes.CDLL(None, use_errno=True)
        libc.shmat.restype = ctypes.c_void_p
        self.key = 0x5B000000 | secrets.randbits(20)
        self.shm = libc.shmget(self.key, 4096, IPC_CREAT | 0o600)
        self.msq = libc.msgget(self.key, IPC_CREAT | 0o600)
        assert self.shm >= 0 and self.msq >= 0, ctypes.get_errno()
        addr = libc.shmat(self.shm, None, 0)
        ctypes.memmove(addr, MARKER, len(MARKER))
        libc.shmdt(ctypes.c_void_p(addr))
        msg = ctypes.create_string_buffer(ctypes.c_long(1).value.to_bytes(8, "little") + MARKER)
        assert libc.msgsnd(self.msq, msg, len(MARKER), 0) == 0, ctypes.get_errno()
        for ctl, ident, size in ((libc.shmctl, self.shm, 112), (libc.msgctl, self.msq, 120)):
            ds = ctypes.create_string_buffer(size)        # shmid_ds / msqid_ds: ipc_perm first
            perm = _Ipc_perm.from_buffer(ds)
            perm.uid, perm.gid, perm.mode = user.uid, user.gid, 0o600
            assert ctl(ident, IPC_SET, ds) == 0, ctypes.get_errno()

    def close(self):
        self.libc.shmctl(self.shm, IPC_RMID, None)
        self.libc.msgctl(self.msq, IPC_RMID, None)


@pytest.fixture(scope="module")
def cells(workspace, users):
    jobs = {(profile, u): (users[u], profile) for u in USERS for profile in [None, *PROFILES]}

    def attempt(user, profile):
        victim = Victim(user)
        try:
            command = ["/usr/bin/python3", "-c", ATTACK, str(victim.key)]
            argv = user.confined(profile, command) if profile else user.direct(command)
            return user.run(argv, user.env())
        finally:
            victim.close()
    return run_many(jobs, attempt)


@pytest.mark.parametrize("user", USERS)
def test_unconfined_another_process_s_segment_and_queue_are_read(cells, user):
    out = cells[(None, user)]
    assert f"SHM {MARKER!r}" in out.stdout and f"MSG {MARKER!r}" in out.stdout, out.describe()


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_no_profile_reaches_system_v_objects(cells, profile, user):
    out = cells[(profile, user)]
    assert "SHM" not in out.stdout and "MSG" not in out.stdout, f"{user} under {profile}: {out.describe()}"
    # found where any process finds them, then refused by the filter: ENOSYS from
    # the profiles that extend default, EPERM from minimal, which allows none of it
    errno = 1 if profile == "minimal" else 38
    assert "FOUND True" in out.stdout, f"{user} under {profile}: {out.describe()}"
    assert f"shm refused {errno}\n" in out.stdout and f"msg refused {errno}\n" in out.stdout, \
        f"{user} under {profile}: {out.describe()}"

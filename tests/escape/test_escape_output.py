"""sbx run -o FILE: the unconfined launcher must not write through a link the command left.

The command writes its working directory, where the output file is. Before it
exits it makes a denied call (so there is something to write, as root) and
replaces the output file with a symbolic link to a file it may not write (a
file of its user's, outside every write grant). sbx opened the output file
after the command exited, following the link: the target was overwritten
with denial records whose ``comm`` field the command chooses (an earlier
review made that a root shell script run on the next login). The target
holds ``ORIGINAL`` before; the command is refused writing it itself (the
control that it is out of reach); after the run it must still hold
``ORIGINAL``, and the file sbx opened holds sbx's records only, not lines
the command wrote into it meanwhile. A link that is already there when sbx starts (left by an
earlier run), at the file or at a directory on the way, makes sbx refuse to
run (125), and the target is untouched.
"""
from __future__ import annotations

import os

import pytest

from tests.escape.harness import builtin_profiles, run_many
from tests.escape.users import USERS

PROFILES = [p for p in builtin_profiles() if p != "minimal"]   # minimal cannot create a link
ATTACK = r'''
import ctypes, os, sys
target = sys.argv[1]
try:
    open(target, "a").close()
    print("DIRECT WRITE OK")
except PermissionError:
    print("direct write refused")
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall(272, 0x10000000)                 # unshare(CLONE_NEWUSER): denied, recorded
with open("out.jsonl", "w") as fh:           # forged records, in the file sbx writes
    fh.write('{"forged": true}\n' * 100)
os.rename("out.jsonl", "kept.jsonl")
os.symlink(target, "out.jsonl")
print("LINKED")
'''


@pytest.fixture(scope="module")
def cells(workspace, users):
    jobs = {(profile, u, when): (users[u], profile, when)
            for u in USERS for profile in PROFILES for when in ("during", "before", "parent")}

    def attempt(user, profile, when):
        work = user.mkdtemp(f"out-{profile}-{when}-")
        target = os.path.join(user.home, f"target-{profile}-{when}")
        with open(target, "w") as fh:
            fh.write("ORIGINAL\n")
        user.give(target, 0o644)
        out = os.path.join(work, "out.jsonl")
        name = "out.jsonl"
        if when == "before":
            os.symlink(target, out)
        elif when == "parent":                  # a directory on the way is a link, to the home
            os.symlink(user.home, os.path.join(work, "logs"))
            name = f"logs/{os.path.basename(target)}"
        try:
            command = ["/usr/bin/python3", "-c", ATTACK, target]
            argv = user.confined(profile, command)
            i = argv.index("run")
            argv[i + 1:i + 1] = ["-o", name]
            env = user.env()
            res = _run_in(user, argv, env, work)
            kept = os.path.join(work, "kept.jsonl")
            forged = os.path.exists(kept) and "forged" in open(kept).read()
            with open(target) as fh:
                return res, fh.read(), forged
        finally:
            os.unlink(target)
    return run_many(jobs, attempt)


def _run_in(user, argv, env, cwd):
    from pathlib import Path
    from tests.escape.harness import run
    return run(argv, env=env, cwd=Path(cwd))


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_a_link_left_during_the_run_is_not_written_through(cells, profile, user):
    res, content, forged = cells[(profile, user, "during")]
    assert "direct write refused" in res.stdout and "LINKED" in res.stdout, res.describe()
    assert content == "ORIGINAL\n", f"{user} under {profile}: {res.describe()}"
    # the file sbx opened (moved aside by the command) holds sbx's records only
    assert not forged, f"{user} under {profile}: {res.describe()}"
    assert "out.jsonl was moved or replaced while the command ran" in res.stderr, res.describe()


@pytest.mark.parametrize("when", ["before", "parent"])
@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_a_link_already_there_stops_the_run(cells, profile, user, when):
    res, content, _forged = cells[(profile, user, when)]
    assert res.status == 125 and "symbolic link" in res.stderr, res.describe()
    assert "LINKED" not in res.stdout
    assert content == "ORIGINAL\n", f"{user} under {profile}: {res.describe()}"

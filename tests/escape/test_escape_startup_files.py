"""Code planted where the user's next login, shell or tool runs it, unconfined.

The built-in profiles let a command write its working directory, and people
run commands from their home directory (a new terminal opens there; ``sudo
-i`` starts root in /root). There the command could append to ``~/.bashrc``,
create a ``~/.bash_profile`` that bash then reads instead of ``~/.profile``,
drop a program into ``~/.local/bin`` (early on PATH), a ``.pth`` file into
the Python user site (every later ``python3`` runs it), or point git at a
fsmonitor program in ``~/.gitconfig``, or rewrite any dotfile a start-up
file sources (``~/.cargo/env``, ``~/.nvm/nvm.sh``) or a tool runs
(``~/.ipython``, ``~/.gdbinit``): each runs outside the sandbox the next time
the user logs in, opens a shell or uses the tool.

Each user (root and nobody) runs from a scratch home (below /home, like a
real one; HOME names it) and writes each place unconfined (the control), then
under every built-in profile, where none may be written. What the same
profile lets the command write in a directory of the home (its work) still is.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.escape.harness import builtin_profiles, run, run_many
from tests.escape.users import USERS

PROFILES = builtin_profiles()
# (path below the home, whether it is there before the run)
PLACES = [(".bashrc", True), (".profile", True), (".bash_profile", False), (".zshrc", False),
          (".gitconfig", True), (".local/bin/ls", False),
          (".local/lib/python3/site-packages/evil.pth", False), (".ssh/authorized_keys", False),
          # dotfiles of no list: .bashrc sources ~/.cargo/env and ~/.nvm/nvm.sh; ipython runs
          # its startup scripts, gdb its .gdbinit
          (".cargo/env", True), (".nvm/nvm.sh", True), (".ipython/profile_default/startup/x.py", False),
          (".gdbinit", True),
          # a directory the environment puts on PATH (~/miniconda3/bin, ~/google-cloud-sdk/bin)
          ("tools/bin/ls", False)]
WRITE = ("import os, sys; p = sys.argv[1]; os.makedirs(os.path.dirname(p), exist_ok=True); "
         "open(p, 'a').write('# planted\\n'); print('WROTE')")


@pytest.fixture(scope="module")
def homes(users):
    """A scratch home per user, with the files a home has and a work directory."""
    made = {}
    try:
        for name in USERS:
            user = users[name]
            home = tempfile.mkdtemp(prefix=f"sbx-escape-{name}-home-",
                                    dir="/home" if os.path.isdir("/home") else "/var")
            made[name] = home
            for rel, there in PLACES + [(".local/bin", None), ("tools/bin", None), ("work/keep", True)]:
                path = os.path.join(home, rel)
                if there is None:
                    os.makedirs(path, exist_ok=True)
                elif there:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "w") as fh:
                        fh.write("# the user's own\n")
            for root, dirs, files in os.walk(home):
                for n in dirs + files:
                    p = os.path.join(root, n)
                    user.give(p, 0o700 if os.path.isdir(p) else 0o600)
            user.give(home, 0o700)
        yield made
    finally:
        for home in made.values():
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def cells(workspace, users, homes):
    targets = [rel for rel, _there in PLACES] + ["work/out"]
    jobs = {(i, profile, u): (users[u], profile, i) for u in USERS for profile in [None, *PROFILES]
            for i in range(len(targets))}

    def attempt(user, profile, i):
        home = homes[user.name]
        path = os.path.join(home, targets[i])
        command = ["/usr/bin/python3", "-c", WRITE, path]
        argv = user.confined(profile, command) if profile else user.direct(command)
        env = user.env()
        env.update(HOME=home, PATH=env["PATH"] + ":" + os.path.join(home, "tools", "bin"))
        return run(argv, env=env, cwd=home)
    controls = run_many({k: v for k, v in jobs.items() if k[1] is None}, attempt)
    # what the controls planted is taken back before the confined runs
    for name in USERS:
        home = homes[name]
        for rel, there in PLACES:
            path = os.path.join(home, rel)
            if there:
                with open(path, "w") as fh:
                    fh.write("# the user's own\n")
                users[name].give(path, 0o600)
            elif os.path.lexists(path):
                os.unlink(path)
    confined = run_many({k: v for k, v in jobs.items() if k[1] is not None}, attempt)
    return {**controls, **confined}, targets


WHAT = [rel for rel, _there in PLACES]


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("i", range(len(WHAT)), ids=WHAT)
def test_unconfined_the_user_plants_it(cells, i, user):
    out = cells[0][(i, None, user)]
    assert "WROTE" in out.stdout, out.describe()


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("i", range(len(WHAT)), ids=WHAT)
def test_no_profile_lets_it_be_planted_from_the_home(cells, i, profile, user):
    out = cells[0][(i, profile, user)]
    assert "WROTE" not in out.stdout, f"{user} under {profile}: {out.describe()}"
    assert "PermissionError" in out.stderr, f"{user} under {profile}: {out.describe()}"


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", [p for p in PROFILES if p != "minimal"])
def test_the_work_in_the_home_is_still_written(cells, profile, user):
    """Run from the home, a profile that grants $CWD still lets the command write
    in a directory of it (minimal grants no working directory)."""
    table, targets = cells
    out = table[(len(targets) - 1, profile, user)]
    assert "WROTE" in out.stdout, f"{user} under {profile}: {out.describe()}"

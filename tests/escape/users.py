"""Who runs the escape attempts: root, and ``nobody`` (an unprivileged user, through setpriv).

Every escape class is tried as both, confined and unconfined. nobody runs sbx
with a Python it can start (sys.executable or /usr/bin/python3) and
PYTHONPATH=REPO, in a home (below /home, outside every write grant, like a
real one) and a temporary directory of its own; root keeps
HOME=/root, where root's secrets are. sbx keeps nobody's filter cache in
/run/user/65534/sbx (``sandbox.cache.location``): that runtime directory is
made for the session (nobody's, mode 0700) when it is missing, and removed
afterwards. Test profiles live in a directory both users can read.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.escape.harness import REPO, Attack, Outcome, judge_unconfined, run, run_chain, sbx_argv

USERS = ("root", "nobody")
NOBODY_PYTHONS = (sys.executable, "/usr/bin/python3")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class User:
    """One user's way of running sbx and the attack programs, and its directories."""

    def __init__(self, name: str, uid: int, gid: int, prefix: list[str], python: str, home: str,
                 tmp: str):
        self.name, self.uid, self.gid, self.prefix = name, uid, gid, prefix
        self.python, self.home, self.tmp = python, home, tmp

    @property
    def privileged(self) -> bool:
        return self.uid == 0

    @property
    def cache(self) -> str:
        from sandbox import cache
        return cache.location(self.uid)

    def env(self, **params) -> dict:
        """The environment of a run: PATH, HOME, TMPDIR, PYTHONPATH and SBX_ESCAPE_<param>s."""
        env = {"PATH": PATH, "HOME": self.home, "TMPDIR": self.tmp, "PYTHONPATH": str(REPO)}
        env.update({f"SBX_ESCAPE_{k}": str(v) for k, v in params.items()})
        return env

    def confined(self, profile: str, command: list[str]) -> list[str]:
        return self.prefix + sbx_argv(profile, command, python=self.python)

    def direct(self, command: list[str]) -> list[str]:
        return self.prefix + command

    def run(self, argv: list[str], env: dict, **kw) -> Outcome:
        return run(argv, env=env, cwd=Path(self.tmp), **kw)

    def chain(self, program: Path, profile: str | None, names: list[str], env: dict,
              **kw) -> dict[str, Outcome]:
        """``program chain NAMES``, under sbx with *profile*, or unconfined (None)."""
        command = [str(program), "chain"]
        argv = self.confined(profile, command) if profile else self.direct(command)
        return run_chain(argv, names, env=env, cwd=Path(self.tmp), **kw)

    def give(self, path, mode: int) -> None:
        """Make *path* this user's, with *mode*."""
        os.lchown(path, self.uid, self.gid)
        if not os.path.islink(path):
            os.chmod(path, mode)

    def mkdtemp(self, prefix: str, parent: str | None = None) -> str:
        path = tempfile.mkdtemp(prefix=prefix, dir=parent or self.tmp)
        self.give(path, 0o700)
        return path

    def __repr__(self) -> str:
        return self.name


def judge_control(attack: Attack, out: Outcome, user: User) -> str | None:
    """None if the unconfined run shows what it must: the attack working (or the
    kernel's own answer to its harmless arguments), or, for an unprivileged user
    where ``attack.unprivileged`` says it cannot work, that it fails there too."""
    if not user.privileged and attack.unprivileged:
        kind, _err = out.result()
        if kind == "BLOCKED":
            return None
        return (f"expected to fail for {user} even unconfined ({attack.unprivileged}), "
                f"but: {out.describe()}")
    return judge_unconfined(attack, out)


def find_python(prefix: list[str], env: dict) -> str | None:
    for cand in NOBODY_PYTHONS:
        res = subprocess.run(prefix + [cand, "-c", "import sandbox.launcher, sandbox.policy"],
                             cwd=REPO, env=env, capture_output=True)
        if res.returncode == 0:
            return cand
    return None


class Users:
    """Sets up root and nobody for a session; ``close`` removes what it made."""

    def __init__(self):
        self.made: list[str] = []
        self.run_user: str | None = None
        nobody = pwd.getpwnam("nobody")
        root_tmp = tempfile.mkdtemp(prefix="sbx-escape-root-")
        self.made.append(root_tmp)
        self.root = User("root", 0, 0, [], sys.executable, "/root", root_tmp)
        prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]
        # not below /tmp: a home must lie outside the profiles' write grants, as a real one does
        home = tempfile.mkdtemp(prefix="sbx-escape-nobody-", dir="/home" if os.path.isdir("/home") else "/var")
        tmp = tempfile.mkdtemp(prefix="sbx-escape-nobody-tmp-")
        self.made += [home, tmp]
        self.nobody = User("nobody", nobody.pw_uid, nobody.pw_gid, prefix, "", home, tmp)
        for d in (home, tmp):
            self.nobody.give(d, 0o700)
        run_dir = f"/run/user/{nobody.pw_uid}"
        if not os.path.lexists(run_dir):
            os.makedirs("/run/user", mode=0o755, exist_ok=True)
            os.mkdir(run_dir, 0o700)
            self.nobody.give(run_dir, 0o700)
            self.run_user = run_dir
        self.nobody.python = find_python(prefix, self.nobody.env()) or ""
        self.profiles = Path(tempfile.mkdtemp(prefix="sbx-escape-profiles-"))
        os.chmod(self.profiles, 0o755)
        self.made.append(str(self.profiles))

    def __getitem__(self, name: str) -> User:
        return {"root": self.root, "nobody": self.nobody}[name]

    def profile(self, name: str, text: str) -> str:
        """A test profile file both users can read; its cache entries are removed by ``close``."""
        path = self.profiles / f"{name}.yaml"
        path.write_text(text)
        os.chmod(path, 0o644)
        return str(path)

    def close(self) -> None:
        from sandbox import cache
        for prof in self.profiles.glob("*.yaml"):
            for user in (self.root, self.nobody):
                entry = os.path.join(user.cache, cache._entry_name(f"{prof}\0enforce\0x86_64"))
                if os.path.lexists(entry):
                    os.unlink(entry)
        for d in self.made:
            shutil.rmtree(d, ignore_errors=True)
        if self.run_user:
            shutil.rmtree(self.run_user, ignore_errors=True)


def free_port(avoid=(53, 80, 443, 8000, 8080, 8443)) -> int:
    """A TCP port nobody listens on and no built-in profile lists."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


def token() -> str:
    return secrets.token_hex(8)

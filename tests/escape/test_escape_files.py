"""Files and ports: the roads around the profiles' filesystem: and network: rules (Landlock).

Class 11 of the escape suite (issue 12). The secret is a dummy key made for
each cell below $HOME/.ssh (/root/.ssh for root: created if missing, and only
what the test made is removed), which every built-in profile denies; it is
read directly, through a symbolic link, a new hard link or a rename into
$TMPDIR, /proc/self/root, a descriptor of $HOME with openat, an O_PATH
descriptor reopened through /proc/self/fd, and openat2 with RESOLVE_* flags.
Writes go outside the write grants ($HOME, /etc) or truncate a file there;
/etc/shadow is read as root. TCP connects to a listener on a port no profile
lists, and binds another, under the profiles that have a network: section.
Device nodes in $TMPDIR, abstract Unix sockets and signals outside are tried
in test_escape_root.py and test_escape_reach.py. Every attempt works
unconfined (nobody cannot write /etc or read /etc/shadow at all: asserted) and
fails under every built-in profile, for root and for nobody.

What Landlock does not cover is asserted separately, as documented limits:
descriptors opened before the sandbox, hard links that existed before it
inside a readable tree, and chmod outside the write grants.
"""
import os
import socket

import pytest

from tests.escape.harness import Attack, builtin_profiles, judge, run_many
from tests.escape.users import USERS, free_port, judge_control, token

PROFILES = builtin_profiles()
NETWORK = ("web", "minimal", "strict-net")      # the profiles with a network: section
READ = ("EACCES",)
REFER = ("EXDEV", "EACCES", "EPERM")            # REFER is always handled; minimal has no link/rename
OPENAT2 = ("EACCES", "ENOSYS")                  # minimal answers openat2 with ENOSYS (callers fall back)

ATTACKS = [
    Attack("fs-read-direct", "open and read the secret", program="escape", expect=READ),
    Attack("fs-read-symlink", "read it through a symbolic link in $TMPDIR", program="escape", expect=READ),
    Attack("fs-read-hardlink", "link(2) it into $TMPDIR, read the link", program="escape", expect=REFER),
    Attack("fs-rename-refer", "rename it into $TMPDIR, read it there (moved back)", program="escape",
           expect=REFER),
    Attack("fs-proc-root", "read it as /proc/self/root/...", program="escape", expect=READ),
    Attack("fs-openat-home-opath", "open $HOME O_PATH, openat(dirfd, .ssh/...)", program="escape", expect=READ),
    Attack("fs-openat-home-dir", "open $HOME O_DIRECTORY, openat(dirfd, .ssh/...)", program="escape",
           expect=READ),
    Attack("fs-opath-reopen", "open it O_PATH, reopen /proc/self/fd/N for reading", program="escape",
           expect=READ),
    Attack("fs-openat2-beneath", "openat2($HOME fd, .ssh/..., RESOLVE_BENEATH)", program="escape",
           expect=OPENAT2),
    Attack("fs-openat2-in-root", "openat2($HOME fd, /.ssh/..., RESOLVE_IN_ROOT)", program="escape",
           expect=OPENAT2),
    Attack("fs-openat2-no-links", "openat2(path, RESOLVE_NO_SYMLINKS|NO_MAGICLINKS|NO_XDEV)", program="escape",
           expect=OPENAT2),
    Attack("fs-truncate-outside", "truncate a file in $HOME, outside the write grants (to its own size)",
           program="escape", expect=("EACCES", "EPERM")),
    Attack("fs-write-home", "create a file in $HOME", program="escape", expect=READ),
    Attack("fs-write-etc", "create a file in /etc (uid 0 owns it)", program="escape", expect=READ,
           unprivileged="/etc is root's, mode 0755"),
    Attack("fs-read-shadow", "read /etc/shadow (uid 0 owns it)", program="escape", expect=READ,
           unprivileged="/etc/shadow is root's, mode 0640, group shadow"),
    Attack("tcp-connect", "TCP connect to a listener on a port the profile does not list", program="escape",
           expect=READ, only=NETWORK),
    Attack("tcp-bind", "TCP bind to a port the profile does not list", program="escape", expect=READ,
           only=NETWORK),
]
# what Landlock does not cover (docs/profiles.md, the profiles' comments): asserted as limits
LIMITS = ["fs-read-inherited", "fs-read-old-hardlink", "fs-chmod-outside"]


def applies(attack, profile):
    return attack.only is None or profile is None or profile in attack.only


class Secret:
    """A dummy key below the user's ~/.ssh, and the links and files the attempts need."""

    def __init__(self, user, ssh_dir):
        self.text = f"sbx-escape-secret-{token()}"
        self.path = os.path.join(ssh_dir, f"sbx-escape-key-{token()}")
        self.symlink = os.path.join(user.tmp, f"symlink-{token()}")
        self.hardlink = os.path.join(user.tmp, f"hardlink-{token()}")
        self.outside = os.path.join(user.home, f"sbx-escape-outside-{token()}")
        with open(self.path, "w") as fh:
            fh.write(self.text + "\n")
        user.give(self.path, 0o600)
        os.symlink(self.path, self.symlink)
        os.link(self.path, self.hardlink)
        with open(self.outside, "w") as fh:
            fh.write("outside\n")
        user.give(self.outside, 0o644)

    def remove(self):
        for p in (self.path, self.symlink, self.hardlink, self.outside):
            if os.path.lexists(p):
                os.unlink(p)


@pytest.fixture(scope="module")
def ssh_dirs(users):
    """{user: ~/.ssh}; root's is /root/.ssh, made (and removed again) only if missing."""
    made = []
    dirs = {}
    for name in USERS:
        user = users[name]
        d = os.path.join(user.home, ".ssh")
        if not os.path.isdir(d):
            os.mkdir(d, 0o700)
            user.give(d, 0o700)
            made.append(d)
        dirs[name] = d
    yield dirs
    for d in made:
        os.rmdir(d)                      # only what the test created, and it must be empty again


def _cell(ws, user, profile, ssh_dir, port):
    secret = Secret(user, ssh_dir)
    fd = os.open(secret.path, os.O_RDONLY)
    try:
        env = user.env(SECRET=secret.path, SECRET_TEXT=secret.text, SYMLINK=secret.symlink,
                       HARDLINK=secret.hardlink, OUTSIDE=secret.outside, FD=fd, PORT=port,
                       BINDPORT=free_port(), KEEP_GOING=1)     # no attempt here changes the process
        names = [a.name for a in ATTACKS if applies(a, profile)] + LIMITS
        results = user.chain(ws.escape, profile, names, env, pass_fds=(fd,))
        results["moved back"] = os.path.isfile(secret.path)
        return results
    finally:
        os.close(fd)
        secret.remove()


@pytest.fixture(scope="module")
def cells(workspace, users, ssh_dirs):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen(64)
        port = listener.getsockname()[1]
        jobs = {(p, u): (workspace, users[u], p, ssh_dirs[u], port) for u in USERS for p in [None, *PROFILES]}
        return run_many(jobs, _cell)


@pytest.mark.parametrize("user, attack", [pytest.param(u, a, id=f"{u}:{a.name}") for u in USERS
                                          for a in ATTACKS])
def test_unconfined_attack_works(cells, users, user, attack):
    verdict = judge_control(attack, cells[(None, user)][attack.name], users[user])
    assert verdict is None, f"{attack.doc}: {verdict}"
    assert cells[(None, user)]["moved back"], "the renamed secret was not put back"


@pytest.mark.parametrize("user, profile, attack", [pytest.param(u, p, a, id=f"{u}:{p}:{a.name}")
                                                   for u in USERS for p in PROFILES for a in ATTACKS
                                                   if applies(a, p)])
def test_attack_is_contained(cells, user, profile, attack):
    verdict = judge(attack, cells[(profile, user)][attack.name])
    assert verdict is None, f"{user}, {profile}: {attack.doc}: {verdict}"


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_documented_limits_of_landlock(cells, user, profile):
    """Limits, not escapes: Landlock checks a path when it is opened, so a descriptor the
    command inherited and a hard link that already existed in a readable directory read the
    secret under every profile; and it has no right for file modes, so chmod outside the write
    grants works wherever the profile allows chmod (setuid and setgid bits are denied by
    seccomp: test_escape_root.py, test_escape_profiles.py; minimal allows no chmod)."""
    results = cells[(profile, user)]
    for name in ("fs-read-inherited", "fs-read-old-hardlink"):
        assert results[name].result()[0] == "ESCAPED", f"{name}: {results[name].describe()}"
    chmod = results["fs-chmod-outside"]
    expected = ("BLOCKED", "EPERM") if profile == "minimal" else ("ESCAPED", "")
    assert chmod.result() == expected, chmod.describe()

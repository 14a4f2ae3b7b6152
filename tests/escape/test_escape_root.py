"""Root without capabilities: what uid 0 could still do, and what only capabilities give.

Classes 2 (capabilities) and 3 (SOCK_PACKET) of the escape suite. Dropping
capabilities does not de-root a process: uid 0 still owns /proc/sys, the
disk devices and root's files, so a confined root command must be stopped by
the profile's Landlock rules and its seccomp filter as well. Each attempt is
shown working unconfined as root, then tried under every built-in profile as
root and as nobody. For nobody most of these cannot work even unconfined (no
capability, not the owner): that fact is asserted instead, so a confined
failure for nobody is never mistaken for containment.
"""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from tests.conftest import need
from tests.escape.harness import Attack, builtin_profiles, judge, run_many
from tests.escape.users import USERS, judge_control

PROFILES = builtin_profiles()
DENIED = ("EACCES", "EPERM")
NET_BIND_SERVICE = 1 << 10

ATTACKS = [
    Attack("cap-eff", "CapEff in /proc/self/status holds a capability the profile does not grant",
           program="escape", expect=("NONE",),
           unprivileged="nobody holds no capability: CapEff is 0"),
    Attack("mknod-block", "mknod of a block device (7:0) in $TMPDIR", program="escape", expect=DENIED,
           unprivileged="mknod of a device needs CAP_MKNOD"),
    Attack("mknod-char", "mknod of a character device (1:3) in $TMPDIR", program="escape", expect=DENIED,
           unprivileged="mknod of a device needs CAP_MKNOD"),
    Attack("core-pattern-open", "open /proc/sys/kernel/core_pattern O_WRONLY (uid 0 owns it: no capability "
           "needed; closed unwritten)", program="escape", expect=DENIED,
           unprivileged="core_pattern is root's, mode 0644"),
    Attack("blockdev-rdwr", "open a root-owned block device (a loop device) O_RDWR (closed unwritten)",
           program="escape", expect=DENIED, unprivileged="the loop device is root's, mode 0660"),
    Attack("blockdev-read", "open a root-owned block device (a loop device) O_RDONLY and read its "
           "first bytes: a raw disk holds every file, denied ones included", program="escape",
           expect=DENIED, unprivileged="the loop device is root's, mode 0660"),
    Attack("chown-foreign", "chown root's file in a directory no profile lets the command write to "
           "nobody (Landlock has no right for owners)", program="escape", expect=DENIED,
           unprivileged="giving a file to another user needs CAP_CHOWN"),
    Attack("chmod-setuid", "chmod 04755 of a file of one's own in $TMPDIR (root may, without a capability)",
           program="escape", expect=DENIED),
    Attack("sock-packet", "socket(AF_INET, SOCK_PACKET, htons(ETH_P_ALL)): an AF_PACKET socket in disguise",
           program="escape", expect=DENIED + ("EAFNOSUPPORT",), unprivileged="needs CAP_NET_RAW"),
]


@pytest.fixture(scope="module")
def loop_device():
    """A loop device bound to a scratch file (/dev/vda is refused even to root on this VM)."""
    need(shutil.which("losetup") is not None, "losetup (util-linux) is needed for a block device")
    backing = tempfile.NamedTemporaryFile(prefix="sbx-escape-loop-", delete=False)
    backing.write(b"SBX-LOOP-MARKER\n".ljust(1 << 20, b"\0"))
    backing.close()
    res = subprocess.run(["losetup", "-f", "--show", backing.name], capture_output=True, text=True)
    try:
        need(res.returncode == 0, f"no loop device can be set up: {res.stderr.strip()}")
        yield res.stdout.strip()
    finally:
        if res.returncode == 0:
            subprocess.run(["losetup", "-d", res.stdout.strip()], capture_output=True)
        os.unlink(backing.name)


@pytest.fixture(scope="module")
def chown_file():
    """root's file in a directory of root's that no built-in profile lets a command write."""
    where = tempfile.mkdtemp(prefix="sbx-escape-chown-", dir="/var/lib")
    os.chmod(where, 0o755)
    path = os.path.join(where, "owned-by-root")
    with open(path, "w") as fh:
        fh.write("root's\n")
    os.chmod(path, 0o644)
    try:
        yield path
    finally:
        shutil.rmtree(where)


def granted(profile: str | None) -> int:
    """The capability mask *profile*'s capabilities: keeps (0 unconfined: the control
    shows root's full set as the attack working)."""
    if profile is None:
        return 0
    from sandbox.kernel.caps import number
    from sandbox.policy import load_profile
    return sum(1 << number(n) for n in load_profile(profile).capabilities.value or ())


def _cell(ws, user, profile, loop, owned):
    suid = os.path.join(user.tmp, f"suid-{profile or 'unconfined'}")
    with open(suid, "w") as fh:
        fh.write("#!/bin/sh\n")
    user.give(suid, 0o755)
    env = user.env(LOOPDEV=loop, SUIDFILE=suid, CHOWNFILE=owned, CAPS_GRANTED=hex(granted(profile)))
    try:
        return user.chain(ws.escape, profile, [a.name for a in ATTACKS], env)
    finally:
        os.unlink(suid)


@pytest.fixture(scope="module")
def cells(workspace, users, loop_device, chown_file):
    jobs = {(p, u): (workspace, users[u], p, loop_device, chown_file) for u in USERS
            for p in [None, *PROFILES]}
    return run_many(jobs, _cell)


@pytest.mark.parametrize("user, attack", [pytest.param(u, a, id=f"{u}:{a.name}") for u in USERS
                                          for a in ATTACKS])
def test_unconfined_attack_works(cells, users, user, attack):
    """Control: unconfined, root gets through (nobody only where it owns the target)."""
    verdict = judge_control(attack, cells[(None, user)][attack.name], users[user])
    assert verdict is None, f"{attack.doc}: {verdict}"


@pytest.mark.parametrize("user, profile, attack", [pytest.param(u, p, a, id=f"{u}:{p}:{a.name}")
                                                   for u in USERS for p in PROFILES for a in ATTACKS])
def test_attack_is_contained(cells, user, profile, attack):
    verdict = judge(attack, cells[(profile, user)][attack.name])
    assert verdict is None, f"{user}, {profile}: {attack.doc}: {verdict}"


def _caps(out: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", out, re.M)}


@pytest.fixture(scope="module")
def cap_lines(users):
    """`grep Cap /proc/self/status` under each built-in profile and a profile that keeps
    NET_BIND_SERVICE, as root and as nobody."""
    kept = users.profile("keep-net-bind", "name: keep-net-bind\nextends: [default]\n"
                                          "capabilities: [NET_BIND_SERVICE]\n")
    jobs = {(p, u): (p, users[u]) for u in USERS for p in PROFILES}
    jobs[(kept, "root")] = (kept, users["root"])

    def grep(profile, user):
        return user.run(user.confined(profile, ["/bin/grep", "Cap", "/proc/self/status"]), user.env())
    return kept, run_many(jobs, grep)


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_builtin_profiles_keep_only_what_they_grant(cap_lines, users, user, profile):
    """Inside, root holds exactly what the profile's capabilities: keeps (none but web's
    four), in the effective, permitted and bounding sets, nothing more inheritable and
    nothing ambient; nobody holds nothing and cannot shrink its bounding set (no CAP_SETPCAP)
    and needs not: no_new_privs keeps execve from granting anything."""
    out = cap_lines[1][(profile, user)]
    caps = _caps(out.stdout)
    assert out.status == 0 and len(caps) == 5, out.describe()
    want = granted(profile) if users[user].privileged else 0
    assert caps["CapEff"] == caps["CapPrm"] == want, f"{profile}: {out.stdout}"
    # inheritable may hold what is kept (root's execve gives inheritable | bounding anyway)
    assert caps["CapInh"] & ~want == 0 and caps["CapAmb"] == 0, f"{profile}: {out.stdout}"
    if users[user].privileged:
        assert caps["CapBnd"] == want, f"{profile}: {out.stdout}"
    assert profile == "web" or want == 0, "only web keeps capabilities"


def test_profile_keeps_exactly_the_capabilities_it_grants(cap_lines):
    """Root under `capabilities: [NET_BIND_SERVICE]` has exactly that bit in CapEff, CapPrm and CapBnd."""
    kept, outs = cap_lines
    out = outs[(kept, "root")]
    caps = _caps(out.stdout)
    assert out.status == 0 and len(caps) == 5, out.describe()
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == NET_BIND_SERVICE, out.stdout
    assert caps["CapAmb"] == 0, out.stdout

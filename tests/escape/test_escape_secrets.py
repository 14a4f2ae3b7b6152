"""Secrets a Debian host keeps outside the home directory, and the raw devices.

The built-in profiles read (almost) everything, so each secret a host keeps
must be denied by name. Each secret here is put where Debian keeps it (with
its owner and mode, and only if the host has none: what the test made is
removed, a real one is only opened and closed, never read), opened by root
unconfined (the control), then under every built-in profile whose grants reach
it, as root and, for the control's sake, as nobody (for whom file permissions
keep every one of them closed already).
"""
from __future__ import annotations

import os
import shutil

import pytest

from tests.escape.harness import builtin_profiles, run_many
from tests.escape.users import USERS

PROFILES = builtin_profiles()

# (path, mode, the directories Debian makes for it, with their modes)
SECRETS = [
    ("/var/backups/shadow.bak", 0o600, []),     # the daily passwd cron job's copy
    ("/var/backups/gshadow.bak", 0o600, []),
    ("/etc/security/opasswd", 0o600, []),            # pam_pwhistory's old hashes
    ("/etc/krb5.keytab", 0o600, []),
    ("/etc/letsencrypt/keys/0000_key-certbot.pem", 0o600,
     [("/etc/letsencrypt", 0o755), ("/etc/letsencrypt/keys", 0o700)]),
    ("/etc/NetworkManager/system-connections/wifi.nmconnection", 0o600,
     [("/etc/NetworkManager", 0o755), ("/etc/NetworkManager/system-connections", 0o700)]),
    ("/etc/dropbear/dropbear_ed25519_host_key", 0o600, [("/etc/dropbear", 0o755)]),
    ("/etc/wireguard/wg0.conf", 0o600, [("/etc/wireguard", 0o700)]),
    ("/var/cache/debconf/passwords.dat", 0o600, [("/var/cache/debconf", 0o755)]),
    ("/run/credentials/sbx-test.service/token", 0o400,
     [("/run/credentials", 0o755), ("/run/credentials/sbx-test.service", 0o500)]),
    ("/root/.git-credentials", 0o600, []),
]


@pytest.fixture(scope="module")
def secrets():
    """Each secret in place; a host's own is left as it is."""
    made_files, made_dirs = [], []
    try:
        for path, mode, dirs in SECRETS:
            for d, dmode in dirs:
                if not os.path.isdir(d):
                    os.mkdir(d, dmode)
                    made_dirs.append(d)
            if not os.path.lexists(path):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                os.write(fd, b"SBX-DUMMY-SECRET\n")
                os.close(fd)
                os.chmod(path, mode)
                made_files.append(path)
        yield
    finally:
        for path in made_files:
            os.unlink(path)
        for d in reversed(made_dirs):
            shutil.rmtree(d, ignore_errors=True)


# opened and closed, nothing read: only whether it could be
OPEN = "import sys; open(sys.argv[1], 'rb').close(); print('OPENED')"


@pytest.fixture(scope="module")
def cells(workspace, users, secrets):
    jobs = {(path, profile, u): (users[u], profile, path) for path, *_ in SECRETS
            for u in USERS for profile in [None, *PROFILES]}

    def attempt(user, profile, path):
        command = ["/usr/bin/python3", "-c", OPEN, path]
        argv = user.confined(profile, command) if profile else user.direct(command)
        return user.run(argv, user.env())
    return run_many(jobs, attempt)


@pytest.mark.parametrize("path", [s[0] for s in SECRETS])
def test_unconfined_root_opens_it_and_nobody_cannot(cells, path):
    root, nobody = cells[(path, None, "root")], cells[(path, None, "nobody")]
    assert "OPENED" in root.stdout, root.describe()
    assert "OPENED" not in nobody.stdout and "PermissionError" in nobody.stderr, nobody.describe()


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", [s[0] for s in SECRETS])
def test_no_profile_lets_it_be_opened(cells, path, profile, user):
    out = cells[(path, profile, user)]
    assert "OPENED" not in out.stdout, f"{user} under {profile}: {out.describe()}"
    assert "PermissionError" in out.stderr, f"{user} under {profile}: {out.describe()}"

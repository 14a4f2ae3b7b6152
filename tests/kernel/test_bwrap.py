"""`sbx compile --format raw` is the program bubblewrap's `--seccomp FD` installs.

bwrap reads an array of `struct sock_filter` from FD and installs it right
before exec: the same bytes sbx installs itself, so a profile's denials and
errno values reach a program sandboxed by bwrap.
"""
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import need

BWRAP = shutil.which("bwrap")
SBX = os.path.join(os.path.dirname(sys.executable), "sbx")


@pytest.fixture
def bwrap(tmp_path):
    need(BWRAP is not None, "bubblewrap is not installed (apt-get install bubblewrap)")

    def run(profile: str, script: str) -> subprocess.CompletedProcess:
        prog = tmp_path / "filter.bpf"
        subprocess.run([SBX, "compile", profile, "--format", "raw", "-o", str(prog)], check=True)
        # as documented: the program is opened on descriptor 3 by the shell
        cmd = (f'exec {BWRAP} --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --seccomp 3 '
               f'-- sh -c "$1" 3< "$0"')
        return subprocess.run(["sh", "-c", cmd, str(prog), script], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    return run


def test_bwrap_installs_the_raw_program_and_its_errno_reaches_the_program(bwrap, tmp_path):
    prof = tmp_path / "no-mkdir.yaml"
    prof.write_text("name: no-mkdir\nextends: [default]\nrules:\n  - errno(EACCES): [mkdir, mkdirat]\n")
    res = bwrap(str(prof), "echo ok; mkdir /tmp/d")
    assert res.stdout == "ok\n" and "Permission denied" in res.stderr and res.returncode != 0, res
    res = bwrap("default", "mkdir /tmp/d && echo made")
    assert (res.returncode, res.stdout) == (0, "made\n"), res.stderr


def test_bwrap_with_the_default_profile_refuses_user_namespaces(bwrap):
    res = bwrap("default", "unshare -U true")
    assert res.returncode != 0 and "Operation not permitted" in res.stderr, res
    res = bwrap("default", "echo piped | cat")
    assert (res.returncode, res.stdout) == (0, "piped\n"), res.stderr

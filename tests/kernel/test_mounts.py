"""kernel.mounts mounts cgroup v2 where the host has not: the mount(2) call through the one libc binding.

Run in a private mount namespace (util-linux unshare), with the host's cgroup2
mount hidden from ensure_cgroup2, so that it mounts one at a scratch directory;
the namespace and its mount go with the child.
"""
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import need

pytestmark = pytest.mark.kernel
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = """
import os, sys
from sandbox.kernel import mounts
from sandbox.kernel.libbpf import BpfError
def none():
    raise BpfError("no cgroup v2 hierarchy is mounted", 2)
mounts.cgroup2_root = none
where, now = mounts.ensure_cgroup2((sys.argv[1] + "/full", sys.argv[1] + "/empty"))
print(where == sys.argv[1] + "/empty", now, os.path.exists(where + "/cgroup.procs"))
try:
    mounts.ensure_cgroup2((sys.argv[1] + "/full",))
except mounts.MountError as err:
    print(err.strerror)
"""


def test_cgroup2_is_mounted_at_the_first_usable_candidate(tmp_path):
    need(os.geteuid() == 0 and shutil.which("unshare") is not None, "root and unshare(1)")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    (tmp_path / "empty").mkdir()
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", CHILD,
                        str(tmp_path)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["True True True", f"{tmp_path}/full is not empty"]
    assert not os.path.exists(tmp_path / "empty" / "cgroup.procs")     # gone with the namespace

"""``make install`` gives an sbx that every user of the machine can run.

The install is staged with DESTDIR below a temporary directory, moved to the
PREFIX it was made for (so nothing in it may name the staging path), and then
run as ``nobody``: ``sbx --version`` and ``sbx run -- true``. A venv made from
a Python under root's 0700 home, or a launcher that imports the source tree
from there, fails this as nobody with "Permission denied".
Never installs into /usr/local: the developers' machines share it.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def installed():
    need(os.geteuid() == 0, "needs root (to run the result as nobody)")
    need(shutil.which("make") is not None and shutil.which("setpriv") is not None, "make, setpriv")
    need(subprocess.run([SYSTEM_PYTHON, "-c", "import ensurepip, venv"]).returncode == 0,
         f"{SYSTEM_PYTHON} with venv and ensurepip (Debian: python3-venv)")
    top = Path(tempfile.mkdtemp(prefix="sbx-install-", dir="/tmp"))   # not pytest's 0700 tmp
    try:
        top.chmod(0o755)
        prefix, stage = top / "opt" / "sbx", top / "stage"
        r = subprocess.run(["make", "-C", str(ROOT), "install", f"PREFIX={prefix}",
                            f"DESTDIR={stage}"], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        staged = Path(f"{stage}{prefix}")
        assert (staged / "bin" / "sbx").is_file() and not prefix.exists()
        prefix.parent.mkdir(parents=True)
        staged.rename(prefix)
        shutil.rmtree(stage)
        yield prefix
    finally:
        shutil.rmtree(top, ignore_errors=True)


def as_nobody(argv: list[str]) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    return subprocess.run(NOBODY + argv, cwd="/", env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_launcher_starts_the_system_python_on_the_installed_copy(installed):
    text = (installed / "bin" / "sbx").read_text()
    first, *rest = text.splitlines()
    assert first == f"#!{SYSTEM_PYTHON} -IS"
    assert str(installed / "lib" / "sbx") in text and "stage" not in text
    assert str(ROOT) not in text                     # a copy of sbx, not the source tree
    cfg = (installed / "lib" / "sbx" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg


def test_everything_installed_is_readable_by_every_user(installed):
    for path in [installed, *installed.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        assert mode & stat.S_IROTH, path
        if path.is_dir() or mode & stat.S_IXUSR:
            assert mode & stat.S_IXOTH, path


def test_nobody_runs_the_installed_sbx(installed):
    sbx = str(installed / "bin" / "sbx")
    r = as_nobody([sbx, "--version"])
    assert r.returncode == 0 and r.stdout == f"sbx, version {version('sbx')}\n", r.stderr
    r = as_nobody([sbx, "run", "--", "true"])
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    r = as_nobody([sbx, "run", "--", "sh", "-c", "exit 7"])
    assert r.returncode == 7, r.stderr

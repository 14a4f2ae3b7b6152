"""Real files from Debian packages for tests: ``apt-get download`` + ``dpkg-deb -x``.

Each package is fetched once per test session into a temporary directory;
without apt-get (or without the archive) the calling test skips through
``need`` (a failure in CI, where system tests are required).
"""
import atexit
import functools
import os
import shutil
import subprocess
import tempfile

from tests.conftest import need

_ROOT = tempfile.mkdtemp(prefix="sbx-debs-")
atexit.register(shutil.rmtree, _ROOT, True)


@functools.lru_cache(maxsize=None)
def _extract(package: str) -> str | None:
    out = os.path.join(_ROOT, package)
    os.makedirs(out, exist_ok=True)
    got = subprocess.run(["apt-get", "download", package], cwd=out, capture_output=True, text=True)
    debs = [f for f in os.listdir(out) if f.endswith(".deb")]
    if got.returncode != 0 or not debs:
        return None
    subprocess.run(["dpkg-deb", "-x", os.path.join(out, debs[0]), os.path.join(out, "root")], check=True)
    return os.path.join(out, "root")


def package_file(package: str, path: str) -> str:
    """The absolute path of *path* (as installed, e.g. /usr/share/containers/seccomp.json) in *package*."""
    need(shutil.which("apt-get") is not None and shutil.which("dpkg-deb") is not None,
         "needs apt-get and dpkg-deb (Debian) to fetch real profiles")
    root = _extract(package)
    need(root is not None, f"apt-get download {package} failed (no package archive?)")
    full = os.path.join(root, path.lstrip("/"))
    need(os.path.isfile(full), f"{package} has no {path}")
    return full

"""Shared test fixtures.

Kernel tests (real seccomp filters, real eBPF, audit netlink) need root, and
system tests (marked ``system``) need Debian's tools and packages (apt-get,
systemd-analyze, runc). On a user's laptop they skip with a reason; in CI
``SBX_REQUIRE_KERNEL=1`` turns every such skip into a failure, so neither can
pass by not running.
"""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent      # the checkout: profiles/, docs/, tests/fixtures/


def _scratch_outside_the_checkout() -> None:
    """Every sbx run keeps the directories above its own code closed to new entries
    (a command must not move sbx's code aside and put its own in place), so with the
    checkout in /tmp no confined command could create a file directly in /tmp. The
    tests' scratch files and TMPDIR then go to a temporary directory that is not
    above the checkout: what a command writes to $TMPDIR stays writable."""
    import tempfile
    try:
        with open("/proc/self/status") as fh:
            if "\nSeccomp:\t2" in fh.read():
                return              # already confined (the CI example's tests): its TMPDIR is fixed
    except OSError:
        pass
    tmp = os.path.realpath(tempfile.gettempdir())
    if not str(REPO).startswith(tmp.rstrip("/") + "/"):
        return
    for base in ("/dev/shm", "/var/tmp", "/tmp"):    # /dev/shm: no unit makes it private
        real = os.path.realpath(base)
        if os.path.isdir(real) and not str(REPO).startswith(real.rstrip("/") + "/"):
            scratch = tempfile.mkdtemp(prefix="sbx-tests-", dir=real)
            os.chmod(scratch, 0o1777)       # like /tmp: the tests run commands as nobody too
            os.environ["TMPDIR"] = scratch
            tempfile.tempdir = None
            return


_scratch_outside_the_checkout()

REQUIRE_KERNEL = os.environ.get("SBX_REQUIRE_KERNEL") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip the calling test with *reason* unless *condition* holds.

    With SBX_REQUIRE_KERNEL=1 a missing kernel feature is a failure instead.
    """
    if condition:
        return
    if REQUIRE_KERNEL:
        pytest.fail(f"kernel test required in CI but cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture
def root():
    """The test needs uid 0 (installing filters is fine unprivileged, but eBPF,
    audit and the escape suite are not)."""
    need(os.geteuid() == 0, "needs root")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/kernel/" in str(item.fspath) or "/escape/" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI, a kernel test that skipped for any reason (not only via need()) fails.

    An expected failure (``xfail(strict=True)``: a known escape kept visible) is
    reported as skipped too, but it did run: it stays as it is."""
    outcome = yield
    report = outcome.get_result()
    required = item.get_closest_marker("kernel") or item.get_closest_marker("system")
    if REQUIRE_KERNEL and report.skipped and not hasattr(report, "wasxfail") and required is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"kernel test skipped but SBX_REQUIRE_KERNEL=1: {reason}"


@pytest.fixture
def where(tmp_path, monkeypatch):
    """This process's sbx cache location (sandbox.cache), redirected to a fresh
    private directory; its path."""
    from sandbox import cache
    d = str(tmp_path / "cache" / "sbx")
    os.makedirs(os.path.dirname(d), mode=0o700)
    monkeypatch.setattr(cache, "location", lambda uid=None: d)
    return d


def in_child(fn):
    """fn() in a forked child, for what must not happen to the test process itself
    (a Landlock domain, another uid); its JSON-able result, or its traceback raised
    here as an AssertionError."""
    import json
    import traceback
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                out = {"result": fn()}
            except BaseException:                 # noqa: BLE001 - reported to the parent
                out = {"error": traceback.format_exc()}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
    out = json.loads(data)
    if "error" in out:
        raise AssertionError(f"in the child:\n{out['error']}")
    return out["result"]

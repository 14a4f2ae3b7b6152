"""Landlock rule plans kept between runs (``sandbox.plan_cache``): a kept plan is
the plan, and whatever would change the plan makes it a miss.

Each test plans a spec over a real tree in tmp_path with the cache redirected
to a private directory, changes one thing a plan depends on, and checks that
the next plan is planned afresh and says what a fresh plan says.

A plan records every directory above tmp_path too (/tmp among them): another
test session writing in /tmp at the same time keeps plans from being kept
(``_keep`` tries three times), as it would for a real run.
"""
import importlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from sandbox import cache, confine, plan_cache
from sandbox.confine import Spec
from tests.conftest import in_child


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "t"
    for d in ("etc/ssl", "data/sub", "other"):
        (root / d).mkdir(parents=True)
    for f in ("etc/passwd", "etc/shadow", "etc/hosts", "data/sub/f", "other/g"):
        (root / f).write_text("x\n")
    (root / "link").symlink_to("data")           # a relative link
    (root / "via").symlink_to(root / "link")      # a chain: via -> link -> data
    return root


@pytest.fixture(autouse=True)
def quick_ticks(monkeypatch):
    """The trees here are on a file system with nanosecond times: half a second
    of settling is plenty (RACY_NS covers whole-second file systems)."""
    monkeypatch.setattr(plan_cache, "RACY_NS", 500_000_000)


def _settle(*paths):
    """Make the tree's ctimes older than the racy window (a plan is kept only then)."""
    time.sleep(plan_cache.RACY_NS / 1e9 + 0.05)


def _keep(spec, env, notes=None):
    """Plan until the plan is kept: every directory above tmp_path is recorded too,
    and another process (a second test session) may have just changed one."""
    for _ in range(3):
        plan_cache.plan(spec, env, None, (), [] if notes is None else notes)
        if plan_cache.lookup(spec, env, None, ())[1] is not None:
            return
        _settle()
    raise AssertionError("the plan was never kept")


def _spec(tree):
    return Spec(fs=[("read", str(tree), False), ("deny", str(tree / "etc" / "shadow"), False),
                    ("write", str(tree / "via" / "sub"), False), ("read", "${EXTRA}", True)])


def _both(spec, env):
    """(what plan_cache.plan returns, whether it came from a kept plan, what planning now says)."""
    _key, kept, _notes = plan_cache.lookup(spec, env, None, ())
    got = plan_cache.plan(spec, env, None, (), [])
    fresh = confine.plan_rules(spec, env, None, (), [])
    return sorted(got), kept is not None, sorted(fresh)


def test_a_kept_plan_is_what_planning_says(where, tree):
    spec, env = _spec(tree), {"EXTRA": str(tree / "other")}
    _settle()
    got, was_kept, fresh = _both(spec, env)
    assert not was_kept and got == fresh
    _keep(spec, env)
    got, was_kept, fresh = _both(spec, env)
    assert was_kept and got == fresh
    assert any(p == str(tree / "etc" / "passwd") for p, _, _ in got)      # the split happened
    assert not any(p == str(tree / "etc" / "shadow") for p, _, _ in got)
    assert any(p == str(tree / "data" / "sub") for p, _, _ in got)        # the chain resolved


@pytest.mark.parametrize("change", [
    "a new file in a split directory", "a file removed from a split directory",
    "a link of a chain pointed elsewhere", "a granted directory replaced by a link",
    "the denied file removed"])
def test_a_change_a_plan_depends_on_is_a_miss(where, tree, change):
    spec, env = _spec(tree), {"EXTRA": str(tree / "other")}
    _settle()
    _keep(spec, env)
    if change == "a new file in a split directory":
        (tree / "etc" / "new").write_text("x\n")
    elif change == "a file removed from a split directory":
        (tree / "etc" / "hosts").unlink()
    elif change == "a link of a chain pointed elsewhere":
        (tree / "link").unlink()
        (tree / "link").symlink_to("other")
        (tree / "other" / "sub").mkdir()
    elif change == "a granted directory replaced by a link":
        os.rename(tree / "data" / "sub", tree / "moved")
        (tree / "data" / "sub").symlink_to(tree / "etc")
    else:
        (tree / "etc" / "shadow").unlink()
    got, was_kept, fresh = _both(spec, env)
    assert not was_kept, change
    assert got == fresh


def test_an_environment_variable_the_plan_read_is_checked(where, tree):
    spec = _spec(tree)
    _settle()
    _keep(spec, {"EXTRA": str(tree / "other")})
    assert plan_cache.lookup(spec, {"EXTRA": str(tree / "other"), "UNREAD": "1"}, None, ())[1] is not None
    for env in ({"EXTRA": str(tree / "etc")}, {}):
        got, was_kept, fresh = _both(spec, env)
        assert not was_kept and got == fresh, env


def test_the_notes_of_a_plan_are_said_again(where, tree):
    spec = Spec(fs=[("read", str(tree / "missing"), False), ("read", "${UNSET}", False)])
    _settle()
    first, second = [], []
    _keep(spec, {}, first)
    plan_cache.plan(spec, {}, None, (), second)
    assert first[-2:] == second and len(second) == 2, (first, second)


def test_a_plan_made_while_its_paths_change_is_not_kept(where, tree):
    spec, env = _spec(tree), {}
    (tree / "etc" / "just-now").write_text("x\n")      # /etc's ctime is this tick's
    plan_cache.plan(spec, env, None, (), [])
    assert plan_cache.lookup(spec, env, None, ())[1] is None


def test_a_path_realpath_must_resolve_makes_the_plan_uncacheable(where, tree):
    (tree / "up").symlink_to("data/../other")
    spec = Spec(fs=[("read", str(tree / "up"), False)])
    _settle()
    rules = plan_cache.plan(spec, {}, None, (), [])
    assert rules == confine.plan_rules(spec, {}, None, (), [])
    assert [p for p, _, _ in rules] == [str(tree / "other")]
    assert plan_cache.lookup(spec, {}, None, ())[1] is None


def test_a_damaged_plan_is_a_miss(where, tree):
    spec, env = _spec(tree), {}
    _settle()
    _keep(spec, env)
    key = plan_cache.lookup(spec, env, None, ())[0]
    path = os.path.join(where, f"plan-{key[:41]}")
    text = open(path).read()
    for damaged in (text.replace("\nrule ", "\nrule 1", 1),        # the digest no longer matches
                    text[: len(text) // 2]):
        with open(path, "w") as fh:
            fh.write(damaged)
        assert plan_cache.lookup(spec, env, None, ())[1] is None
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o644)                                 # not private: not ours to trust
    assert plan_cache.lookup(spec, env, None, ())[1] is None


@pytest.fixture
def shared():
    """A directory another user can reach (tmp_path lies below a private one)."""
    d = tempfile.mkdtemp(dir="/var/tmp")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _as_nobody(fn):
    """fn() as nobody, in a forked child; its JSON-able result. What planning
    imports is imported first: nobody may not read this Python's modules."""
    importlib.import_module("sandbox.kernel.landlock")

    def become():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        return fn()
    return in_child(become)


def test_a_permission_change_of_a_denied_path_is_a_miss_for_a_user(shared):
    """For a user, a deny of a file the user cannot open, and cannot chmod (root's,
    in root's directory), needs no rule (``_out_of_reach``): once root makes it
    readable, a kept plan without that rule would let it be read."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    base = shared / "u"
    base.mkdir()
    (base / "secret").write_text("s\n")
    (base / "open").write_text("o\n")
    os.chmod(base / "secret", 0)
    cache_dir = shared / "c"
    cache_dir.mkdir(mode=0o700)
    os.chown(cache_dir, 65534, 65534)
    time.sleep(plan_cache.RACY_NS / 1e9 + 0.05)
    spec = Spec(fs=[("read", str(base), False), ("deny", str(base / "secret"), False)])

    def planned():
        cache.location = lambda uid=None: str(cache_dir / "sbx")
        hit = plan_cache.lookup(spec, {}, None, ())[1] is not None
        rules = plan_cache.plan(spec, {}, None, (), [])
        return hit, sorted(p for p, _, _ in rules), plan_cache.lookup(spec, {}, None, ())[1] is not None

    hit, before, kept = _as_nobody(planned)
    assert [hit, before, kept] == [False, [str(base)], True]   # out of reach: no split, kept
    os.chmod(base / "secret", 0o644)                             # root opens it
    hit, after, _kept = _as_nobody(planned)
    assert not hit                                               # its ctime changed
    assert after == [str(base), str(base / "open")]              # the deny takes a split now:
    #                                                             base keeps only its listing


def test_a_deny_of_a_path_the_user_owns_always_takes_its_rules(shared):
    """Mode 000 does not keep a file's owner out: chmod gives it back (and Landlock does
    not govern chmod), so such a deny is planned as rules from the first run."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    home = shared / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("k\n")
    (home / "notes").write_text("n\n")
    for p in (home, home / ".ssh", home / ".ssh" / "id_rsa", home / "notes"):
        os.chown(p, 65534, 65534)
    os.chmod(home / ".ssh", 0)
    spec = Spec(fs=[("read", str(home), False), ("deny", str(home / ".ssh"), False)])
    rules = _as_nobody(lambda: sorted(p for p, _, _ in confine.plan_rules(spec, {}, None, (), [])))
    assert rules == [str(home), str(home / "notes")], rules


def test_a_profile_keeps_at_most_sixteen_plans(where, tree, monkeypatch):
    spec = Spec(fs=[("read", "$CWD", False)])
    for i in range(40):
        (tree / "other" / f"d{i}").mkdir()
    _settle()
    for i in range(40):
        monkeypatch.chdir(tree / "other" / f"d{i}")
        _keep(spec, {})
    assert 8 <= len([n for n in os.listdir(where) if n.startswith("plan-")]) <= 16


def test_names_beyond_ascii_are_kept_as_the_file_system_spells_them(where, tree):
    """A home with translated folder names (or bytes that are no UTF-8) is common."""
    (tree / "data" / "Téléchargements").mkdir()
    (tree / "data" / "Музыка").mkdir()
    os.mkdir(os.fsencode(tree / "data") + b"/raw-\xff")
    spec = Spec(fs=[("read", str(tree / "data"), False), ("deny", str(tree / "data" / "Музыка"), False)])
    _settle()
    _keep(spec, {})
    got, was_kept, fresh = _both(spec, {})
    assert was_kept and got == fresh
    assert str(tree / "data" / "Téléchargements") in [p for p, _, _ in got]
    assert os.fsdecode(os.fsencode(tree / "data") + b"/raw-\xff") in [p for p, _, _ in got]


def test_a_plan_with_nothing_to_plan_is_not_written(where, tree):
    _settle()
    assert plan_cache.plan(Spec(fs=[]), {}, None, (), []) == []
    assert not [n for n in os.listdir(where) if n.startswith("plan-")] if os.path.isdir(where) else True


class _Std:
    """Standard input, output and error replaced by *fds* for the block ($TTY reads
    fds 0-2, whatever pytest's capture makes of 1 and 2)."""

    def __init__(self, *fds):
        self.fds, self.saved = fds, []

    def __enter__(self):
        self.saved = [os.dup(n) for n in (0, 1, 2)]
        for n, fd in enumerate(self.fds):
            os.dup2(fd, n)

    def __exit__(self, *exc):
        for n, fd in enumerate(self.saved):
            os.dup2(fd, n)
            os.close(fd)


def test_a_plan_is_kept_per_terminal_and_grants_that_one(where, tree):
    """$TTY is the terminal the command inherits: a plan kept under one terminal
    is a miss under another, and grants the other one, not the first."""
    spec = Spec(fs=[("read", str(tree), False), ("modify", "$TTY", True)])
    (m1, s1), (m2, s2) = os.openpty(), os.openpty()
    null = os.open(os.devnull, os.O_RDWR)
    try:
        one, two = os.ttyname(s1), os.ttyname(s2)
        _settle()
        with _Std(s1, null, null):
            assert confine.terminals() == (one,)       # no controlling terminal: no /dev/tty
            _keep(spec, {})
            assert one in [p for p, _, _ in plan_cache.lookup(spec, {}, None, ())[1]]
        with _Std(s2, null, null):
            got, was_kept, fresh = _both(spec, {})
        assert not was_kept and got == fresh
        assert two in [p for p, _, _ in got] and one not in [p for p, _, _ in got]
        with _Std(null, null, null):                    # no terminal: nothing granted
            rules = plan_cache.plan(spec, {}, None, (), [])
        assert not [p for p, _, _ in rules if p.startswith("/dev/pts/")]
    finally:
        for fd in (m1, s1, m2, s2, null):
            os.close(fd)


def test_a_deny_is_recorded_itself_only_where_its_directory_cannot_tell(tree, monkeypatch):
    """A kept plan notices a name appearing or going at a denied path through the
    directory's ctime, recorded on the way (real_path): on a file system that
    keeps it (ext4, tmpfs: tmp_path) the deny adds no stat of its own to every
    launch. Where the directory cannot tell (/proc: /proc/PID comes and goes
    unseen) it is recorded itself, and so it is everywhere if the file system
    is not known to keep ctimes."""
    gone = str(tree / "etc" / "gone")
    spec = Spec(fs=[("read", str(tree), False), ("deny", str(tree / "etc" / "shadow"), False),
                    ("deny", gone, False), ("read", "/proc", False),
                    ("deny", "/proc/4194304", False)])

    def recorded():
        seen = set()
        confine.plan_rules(spec, {}, None, (), [], seen=seen)
        return seen

    seen = recorded()
    assert confine._ctime_tracker()(str(tree)) and not confine._ctime_tracker()("/proc/self")
    assert "/proc/4194304" in seen and "/proc" in seen
    assert str(tree / "etc") in seen
    shadow_recorded = str(tree / "etc" / "shadow") in seen
    # root may open it whatever its mode: its mode decides nothing, so it is not recorded
    assert shadow_recorded == (os.geteuid() != 0)
    assert gone not in seen
    monkeypatch.setattr(confine, "CTIME_TRACKED", frozenset())
    seen = recorded()
    assert gone in seen and str(tree / "etc" / "shadow") in seen


def test_a_deny_appearing_in_a_split_directory_is_a_miss(where, tree):
    """The deny not recorded itself: its creation is seen through its directory."""
    spec = Spec(fs=[("read", str(tree), False), ("deny", str(tree / "etc" / "shadow"), False),
                    ("deny", str(tree / "other" / "later"), False)])
    _settle()
    _keep(spec, {})
    (tree / "other" / "later").write_text("secret\n")
    got, was_kept, fresh = _both(spec, {})
    assert not was_kept and got == fresh
    paths = [p for p, _, _ in got]
    assert str(tree / "other" / "g") in paths and str(tree / "other" / "later") not in paths

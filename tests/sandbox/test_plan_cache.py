"""Landlock rule plans kept between runs (``sandbox.plan_cache``): a kept plan is
the plan, and whatever would change the plan makes it a miss.

Each test plans a spec over a real tree in tmp_path with the cache redirected
to a private directory, changes one thing a plan depends on, and checks that
the next plan is planned afresh and says what a fresh plan says.

A plan records every directory above tmp_path too (/tmp among them): another
test session writing in /tmp at the same time keeps plans from being kept
(``_keep`` tries three times), as it would for a real run.
"""
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from sandbox import cache, confine, plan_cache
from sandbox.confine import Spec


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


def test_a_permission_change_of_a_denied_path_is_a_miss_for_a_user(shared):
    """For a user, a deny of a file the user cannot open needs no rule (``_out_of_reach``):
    once the file is made readable, a kept plan without that rule would let it be read."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    tmp_path = shared
    base = tmp_path / "u"
    base.mkdir()
    (base / "secret").write_text("s\n")
    (base / "open").write_text("o\n")
    os.chmod(base / "secret", 0)
    for p in (base, base / "secret", base / "open"):
        os.chown(p, 65534, 65534)
    cache_dir = tmp_path / "c"
    cache_dir.mkdir(mode=0o700)
    os.chown(cache_dir, 65534, 65534)
    time.sleep(plan_cache.RACY_NS / 1e9 + 0.05)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            cache.location = lambda uid=None: str(cache_dir / "sbx")
            spec = Spec(fs=[("read", str(base), False), ("deny", str(base / "secret"), False)])
            before = plan_cache.plan(spec, {}, None, (), [])
            kept = plan_cache.lookup(spec, {}, None, ())[1] is not None
            os.chmod(base / "secret", 0o644)
            after_lookup = plan_cache.lookup(spec, {}, None, ())[1]
            after = plan_cache.plan(spec, {}, None, (), [])
            os.write(w, repr((sorted(p for p, _, _ in before), kept, after_lookup is None,
                              sorted(p for p, _, _ in after))).encode())
        except BaseException as err:        # noqa: BLE001 - said to the parent
            os.write(w, repr(("error", repr(err), None, None)).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        before, kept, missed, after = eval(fh.read())        # noqa: S307 - our own child's repr
    os.waitpid(pid, 0)
    assert before == [str(base)] and kept                     # out of reach: no split
    assert missed                                             # chmod changed its ctime
    assert after == [str(base), str(base / "open")]           # the deny now takes a split:
    #                                                          base keeps only its listing


def test_a_profile_keeps_at_most_sixteen_plans(where, tree, monkeypatch):
    spec = Spec(fs=[("read", "$CWD", False)])
    for i in range(40):
        (tree / "other" / f"d{i}").mkdir()
    _settle()
    for i in range(40):
        monkeypatch.chdir(tree / "other" / f"d{i}")
        _keep(spec, {})
    assert 8 <= len([n for n in os.listdir(where) if n.startswith("plan-")]) <= 16

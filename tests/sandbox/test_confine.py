"""The non-seccomp part of a profile: its text form, variable expansion, and the Landlock rules
that spell "the most specific path decides" with allow-only rules.

``fs_rules`` is checked against the meaning it must have, over random trees,
grants and denies (hypothesis): for every path and right, the rules Landlock
would apply (a rule holds beneath its path) allow exactly what the most
specific grant or deny says.
"""
import os

import pytest
from hypothesis import given, settings, strategies as st

from sandbox.confine import (ALL_RIGHTS, UNCACHEABLE, Spec, expand, expand_all, expand_deny, expand_ports, exec_roots,
                             fs_rules, keeps_out_of_writes, own_places, real_path, rights_at)
from sandbox.kernel.landlock import FS_RIGHTS, WRITE_RIGHTS

READ_FILE, READ_DIR = FS_RIGHTS["read_file"][0], FS_RIGHTS["read_dir"][0]
WRITE_FILE = FS_RIGHTS["write_file"][0]


def test_spec_lines_round_trip():
    spec = Spec(["NET_BIND_SERVICE"], ["signals"], "best-effort",
                [("read", "/usr", True), ("deny", "$HOME/.ssh", False)],
                {"bind": ["8000", "${PORT}"], "connect": "any"}, net_quiet=["${PORT}"])
    assert Spec.from_lines(spec.lines()) == spec
    assert Spec.from_lines(Spec().lines()) == Spec()


@pytest.mark.parametrize("lines", [
    ["caps -", "scope -"], ["caps BOGUS", "scope -", "landlock enforce"],
    ["caps -", "scope -", "landlock sometimes"], ["caps -", "scope -", "landlock enforce", "fs read /x"],
    ["caps -", "caps -", "scope -", "landlock enforce"]])
def test_a_damaged_spec_is_refused(lines):
    with pytest.raises(ValueError):
        Spec.from_lines(lines)


def test_variables_expand_from_the_environment():
    env = {"HOME": "/home/u", "PORT": "8080"}
    assert expand("$HOME/.ssh", env) == ("/home/u/.ssh", None)
    assert expand("${HOME}x", env) == ("/home/ux", None)
    assert expand("$TMPDIR", env) == ("/tmp", None)
    assert expand("$CWD/a", env) == (os.getcwd() + "/a", None)
    assert expand("${PORT}", env) == ("8080", None)
    assert expand("$NOPE/x", env) == (None, "$NOPE is not set")
    assert expand("/plain/path", {}) == ("/plain/path", None)
    assert expand("$CWD/a", env, cwd="/srv/app") == ("/srv/app/a", None)     # the run a denial came from


def test_a_deny_under_home_holds_for_the_users_own_home_too(monkeypatch):
    """HOME and XDG_RUNTIME_DIR come from the environment, which may name another
    home (a CI workspace, sudo keeping the caller's) or none: a deny beneath them
    also takes the same away beneath the user's own (the password database's
    home, /run/user/UID). Grants follow the environment alone."""
    from sandbox import paths

    def expand_deny_here(template, env):
        return expand_deny(template, env, own_places())
    monkeypatch.setattr(paths, "_PASSWD_HOME", {os.geteuid(): "/home/alice"})
    runtime = f"/run/user/{os.geteuid()}"
    elsewhere = {"HOME": "/work/ci", "XDG_RUNTIME_DIR": "/tmp/rt"}
    assert expand_deny_here("$HOME/.ssh", elsewhere) == (["/work/ci/.ssh", "/home/alice/.ssh"], None)
    assert expand_all("$HOME/.gitconfig", elsewhere) == (["/work/ci/.gitconfig"], None)
    assert expand_deny_here("$HOME/.ssh", {"HOME": "/home/alice"}) == (["/home/alice/.ssh"], None)
    assert expand_deny_here("$HOME/.ssh", {}) == (["/home/alice/.ssh"], None)
    assert expand_deny_here("$XDG_RUNTIME_DIR/containers", elsewhere) == \
        (["/tmp/rt/containers", f"{runtime}/containers"], None)
    assert expand_deny_here("$XDG_RUNTIME_DIR/containers", {}) == ([f"{runtime}/containers"], None)
    assert expand_deny_here("/etc/shadow", elsewhere) == (["/etc/shadow"], None)
    monkeypatch.setattr(paths, "_PASSWD_HOME", {os.geteuid(): ""})             # no home in the database
    assert expand_deny_here("$HOME/.ssh", {}) == ([], "$HOME is not set")


def test_variable_names_are_ascii_as_the_profile_checker_reads_them():
    assert expand("$HOMEé/x", {"HOME": "/home/u"}) == ("/home/ué/x", None)
    assert expand("${PORT}1", {"PORT": "80"}) == ("801", None)


def test_ports_expand_and_the_unreadable_ones_are_said():
    notes = []
    assert expand_ports(["80", "${PORT}", "${NOPE}", "x1"], {"PORT": "8080"}, notes) == [80, 8080]
    assert notes == ["port ${NOPE} skipped: $NOPE is not set", "port x1 skipped: 'x1' is not a TCP port"]
    quiet = []
    assert expand_ports(["${NOPE}"], {}, quiet, quiet=True) == [] and quiet == []
    some = []
    assert expand_ports(["${PORT}", "${NOPE}"], {}, some, quiet={"${PORT}"}) == []
    assert some == ["port ${NOPE} skipped: $NOPE is not set"]


def test_a_built_ins_port_variable_stays_quiet_in_a_profile_that_extends_it(tmp_path):
    """web lists ${PORT}: unset, it is skipped without a word, also under a profile of one's own
    that extends web and adds ports; a variable one lists oneself is said when unset."""
    from sandbox.policy import load_profile
    from sandbox.policy.profile import confinement
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: mine\nextends: [web]\nnetwork:\n  bind: [9443, \"${MYPORT}\"]\n")
    spec = Spec.from_lines(confinement(load_profile(str(mine))).lines())
    notes = []
    assert 9443 in expand_ports(spec.net["bind"], {}, notes, spec.net_quiet)
    assert notes == ["port ${MYPORT} skipped: $MYPORT is not set"]
    notes = []
    assert 8123 in expand_ports(spec.net["bind"], {"PORT": "8123"}, notes, spec.net_quiet)


def test_exec_root_names_the_installation_of_the_command(tmp_path):
    real = tmp_path / "opt" / "py" / "bin" / "python3"
    real.parent.mkdir(parents=True)
    real.write_text("")
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(real)
    assert exec_roots(str(venv / "python")) == [str(tmp_path / "venv"), str(tmp_path / "opt" / "py")]
    assert exec_roots("/bin/true") != ["/"] and "/" not in exec_roots("/true")
    assert expand_all("$EXEC_ROOT/lib", {}, str(real)) == ([str(tmp_path / "opt" / "py") + "/lib"], None)


def test_a_variable_is_replaced_where_it_is_one_and_only_there(monkeypatch):
    """$TTY and $EXEC_ROOT are replaced as the expansion reads names: $TTY_X is
    another variable, ${TTY} the same one."""
    from sandbox import confine
    monkeypatch.setattr(confine, "terminals", lambda: ("/dev/pts/7",))
    env = {"TTY_X": "/x"}
    assert expand_all("$TTY_X/$TTY", env) == (["/x//dev/pts/7"], None)
    assert expand_all("${TTY}", env) == (["/dev/pts/7"], None)
    assert expand_all("/a/$EXEC_ROOTS", {"EXEC_ROOTS": "b"}, "/usr/bin/python3") == (["/a/b"], None)
    monkeypatch.setattr(confine, "terminals", lambda: ())
    assert expand_all("$TTY", env) == ([], "$TTY: sbx runs without a terminal")
    monkeypatch.setattr(confine, "terminals", lambda: ("/dev/odd$HOME",))   # never read again
    assert expand_all("$TTY", {"HOME": "/root"}) == ([], "$TTY: sbx runs without a terminal")


# -- the rules, against their meaning ---------------------------------------------------

NAMES = ("a", "b", "c")


def tree_paths(depth=3):
    out = ["/"]
    frontier = ["/"]
    for _ in range(depth):
        frontier = [os.path.join(p, n) for p in frontier for n in NAMES]
        out += frontier
    return out


PATHS = tree_paths()


FILES = [p for p in PATHS if p.count("/") == 3]


def listdir(path):
    """Directories down to depth 2, files at depth 3."""
    if path in FILES:
        return []
    return [(n, path.count("/") < 2 or path == "/") for n in NAMES]


def meaning(entries, denies, path, right):
    """The most specific grant or deny at or above *path* that speaks of *right* decides."""
    best, allowed = -1, False
    for rights, p in entries:
        if (path == p or path.startswith(p.rstrip("/") + "/")) and rights & right:
            depth = 0 if p == "/" else p.count("/")
            if depth > best:
                best, allowed = depth, True
    for p, mask in denies.items():
        if (path == p or path.startswith(p.rstrip("/") + "/")) and mask & right:
            depth = 0 if p == "/" else p.count("/")
            if depth >= best:                # a deny at the same path as a grant wins
                best, allowed = depth, False
    return allowed


def landlock(rules, path, right):
    return any((path == p or path.startswith(p.rstrip("/") + "/")) and r & right for p, r, _ in rules)


def _exists(monkeypatch):
    monkeypatch.setattr(os.path, "isdir", lambda p: p in PATHS and p not in FILES)
    monkeypatch.setattr(os.path, "exists", lambda p: p in PATHS)


rights = st.sampled_from([READ_FILE | READ_DIR, WRITE_RIGHTS, READ_FILE | WRITE_FILE, ALL_RIGHTS])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(rights, st.sampled_from(PATHS)), max_size=4),
       st.dictionaries(st.sampled_from(PATHS), st.sampled_from([ALL_RIGHTS, WRITE_RIGHTS]), max_size=3))
def test_rules_allow_exactly_what_the_most_specific_path_says(entries, denies):
    with pytest.MonkeyPatch.context() as mp:
        _exists(mp)
        rules = fs_rules(entries, denies, listdir)
    for path in FILES:
        for right in (READ_FILE, WRITE_FILE):
            want = meaning(entries, denies, path, right)
            assert landlock(rules, path, right) == want, (path, right, entries, denies, rules)


def test_a_deny_keeps_the_way_down_listable(monkeypatch):
    _exists(monkeypatch)
    rules = fs_rules([(READ_FILE | READ_DIR, "/")], {"/a/b": ALL_RIGHTS}, listdir)
    assert landlock(rules, "/a", READ_DIR) and landlock(rules, "/a/c/a", READ_FILE)
    assert not landlock(rules, "/a/b/c", READ_FILE)
    assert landlock(rules, "/a/b", READ_DIR)       # names below a denied path stay listable


def test_a_write_deny_leaves_reading_alone(monkeypatch):
    _exists(monkeypatch)
    rules = fs_rules([(READ_FILE | WRITE_RIGHTS, "/a")], {"/a/b": WRITE_RIGHTS}, listdir)
    assert landlock(rules, "/a/b/c", READ_FILE) and not landlock(rules, "/a/b/c", WRITE_FILE)
    assert landlock(rules, "/a/c", WRITE_FILE)
    # the price: nothing is created directly in /a (that could replace /a/b)
    assert not any(p == "/a" and r & FS_RIGHTS["make_reg"][0] for p, r, _ in rules)


def test_rights_at_a_path_are_those_of_the_rules_on_it_and_above_it():
    rules = [("/a", READ_DIR, True), ("/a/b", WRITE_FILE, True), ("/a/bc", READ_FILE, True),
             ("/a/f", READ_FILE, False)]
    assert rights_at(rules, "/a/b/c") == READ_DIR | WRITE_FILE
    assert rights_at(rules, "/a/bc") == READ_DIR | READ_FILE          # /a/b is no parent of /a/bc
    assert rights_at(rules, "/a/f") == READ_DIR | READ_FILE
    assert rights_at(rules, "/a/f/x") == READ_DIR                      # a file's rule is its own
    assert rights_at([("/", READ_FILE, True)], "/x") == READ_FILE


CACHE = "/nonexistent-sbx-test/var/cache/sbx"


@pytest.mark.parametrize("rules, keeps", [
    pytest.param([("/", READ_FILE | READ_DIR, True)], True, id="read everywhere"),
    pytest.param([("/nonexistent-sbx-test/var/tmp", WRITE_RIGHTS, True)], True, id="write beside"),
    pytest.param([(CACHE + "x", WRITE_RIGHTS, True)], True, id="write on a name that only starts alike"),
    pytest.param([("/nonexistent-sbx-test/var", WRITE_RIGHTS, True)], False, id="write on a parent"),
    pytest.param([("/", FS_RIGHTS["make_dir"][0], True)], False, id="create at /"),
    pytest.param([(CACHE, FS_RIGHTS["truncate"][0], True)], False, id="truncate on the cache"),
    pytest.param([(CACHE + "/entry", WRITE_FILE, False)], False, id="write on an entry"),
    pytest.param([("/nonexistent-sbx-test/var", FS_RIGHTS["refer"][0], True)], False, id="refer above"),
])
def test_a_layer_keeps_the_cache_only_without_writes_at_above_or_below_it(rules, keeps):
    assert keeps_out_of_writes(rules, CACHE) is keeps


def test_two_splits_at_one_path_make_one_rule(monkeypatch):
    _exists(monkeypatch)
    rules = fs_rules([(READ_DIR, "/"), (READ_FILE | READ_DIR, "/a")], {"/a/b/c": ALL_RIGHTS}, listdir)
    paths = [p for p, _, _ in rules]
    assert len(paths) == len(set(paths)), rules
    assert landlock(rules, "/a/c/a", READ_FILE) and not landlock(rules, "/a/b/c", READ_FILE)


def test_real_paths_resolved_part_by_part_are_what_realpath_says(tmp_path):
    """One plan resolves each leading directory once; links (absolute, relative,
    to links, in loops), missing parts, "." and ".." resolve as realpath does."""
    d = str(tmp_path)
    os.makedirs(d + "/a/b/c")
    os.symlink(d + "/a/b", d + "/l")
    os.symlink("../a", d + "/a/b/up")
    os.symlink("c/../..", d + "/a/b/rel")
    os.symlink(d + "/loop2", d + "/loop1")
    os.symlink(d + "/loop1", d + "/loop2")
    paths = [d + p for p in ("/a", "/a/b/c", "/l/c", "/l/c/x/y", "/a/b/up/b", "/a/b/rel/b/c", "/nope/x",
                             "/l", "/loop1/x", "/a/./b", "/a/b/../b", "/l/../a")] + ["/", "/proc/self/fd"]
    known = {"/": "/"}
    for p in paths + paths[::-1]:
        assert real_path(p, known) == os.path.realpath(p), p
    # recording what they depend on (plan_cache) resolves links itself: the same answers
    os.symlink("a/b", d + "/rel2")
    os.symlink(d + "/rel2", d + "/chain")
    paths += [d + "/rel2/c", d + "/chain/c"]
    for p in paths + paths[::-1]:
        seen: set[str] = set()
        assert real_path(p, {"/": "/"}, seen) == os.path.realpath(p), p
    seen = set()
    real_path(d + "/chain/c", {"/": "/"}, seen)
    assert {d, d + "/a", d + "/a/b"} <= seen and UNCACHEABLE not in seen
    seen = set()
    real_path(d + "/a/b/up/b", {"/": "/"}, seen)       # a target that goes up: left to realpath
    assert UNCACHEABLE in seen


def test_a_write_grant_with_a_denied_path_below_says_it_loses_new_entries(tmp_path, monkeypatch):
    """$HOME below /tmp (or below the working directory) with a .config in it: the
    grant keeps its rights only below, and the plan says so once, naming a denied
    path that is there; an absent deny, and sbx's own protected directories, say nothing."""
    from sandbox import paths
    from sandbox.confine import fs_plan
    monkeypatch.setattr(paths, "installation_dirs", lambda: (str(tmp_path / "own"),))
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (tmp_path / "own").mkdir()
    spec = Spec(fs=[("write", str(tmp_path), False), ("deny", "$HOME/.config", False),
                    ("deny", "$HOME/.ssh", False)])
    notes: list[str] = []
    fs_plan(spec, {"HOME": str(home)}, notes=notes, protected=(str(tmp_path / "own"),))
    assert notes == [f"nothing can be created, removed or renamed directly in {tmp_path}, only "
                     f"below it: {home}/.config inside it is denied"]
    (home / ".config").rmdir()
    notes = []
    fs_plan(spec, {"HOME": str(home)}, notes=notes, protected=(str(tmp_path / "own"),))
    assert notes == []
    # the user's start-up files (paths.startup_places) close the directories above them too
    fs_plan(spec, {"HOME": str(home)}, notes=notes,
            protected=(str(tmp_path / "own"), f"{home}/.bashrc", f"{home}/.profile"))
    assert notes == [f"nothing can be created, removed or renamed directly in {tmp_path}, only "
                     f"below it: {home}/.bashrc (and 1 more) inside it is kept out of writes (the "
                     "user's start-up files: sbx keeps them so)"]


def test_the_directories_the_environment_puts_on_path_are_start_up_places(monkeypatch):
    """A PATH directory (~/miniconda3/bin), a PYTHONUSERBASE and a ZDOTDIR are kept out of
    writes like ~/.bashrc; not in a temporary directory, nor a project's own bin below
    the working directory, unless that is the home."""
    from sandbox import paths
    monkeypatch.setattr(paths, "_PASSWD_HOME", {os.geteuid(): "/home/alice"})
    monkeypatch.setattr(os, "getcwd", lambda: "/srv/proj")
    env = {"HOME": "/home/alice", "TMPDIR": "/var/tmp/x", "ZDOTDIR": "/home/alice/zsh",
           "PATH": "/home/alice/miniconda3/bin:bin:/usr/bin:/srv/proj/node_modules/.bin:/tmp/x/bin:"
                   "/home/alice/tools/bin", "PYTHONUSERBASE": "/opt/pyuser"}
    places = paths.startup_places(env)
    assert {"/home/alice/.bashrc", "/home/alice/.*", "/home/alice/miniconda3/bin", "/usr/bin",
            "/home/alice/zsh", "/opt/pyuser/lib", "/opt/pyuser/bin", "/home/alice/tools/bin"} <= set(places)
    assert "/srv/proj/node_modules/.bin" not in places and "/tmp/x/bin" not in places
    assert not any(p.endswith("/bin") and not p.startswith("/") for p in places)
    monkeypatch.setattr(os, "getcwd", lambda: "/home/alice")          # run from the home
    assert "/home/alice/tools/bin" in paths.startup_places(env)

"""sbx refine for Landlock denials, without a kernel: which path or port, under which word, and the edit
of the profile's own text.

Every plan is applied to real profile text, loaded by the real loader, and
checked with the real planner (``confine.fs_plan``/``fs_rules``) on a real
directory tree, as the refused run would have expanded it. The kernel round
trip (refused, refined, then allowed) is in tests/kernel/test_landlock.py.
"""
from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from sandbox import refine_fs as rff
from sandbox.cli import cli
from sandbox.confine import expand_ports
from sandbox.denials import Denial, RunContext
from sandbox.policy import load_profile
from sandbox.policy.profile import confinement
from sandbox.refine import RefineError

PROFILE = """\
# A test profile: files and ports.
name: files
default: errno(EPERM)
rules:
  - allow: [read, write]
filesystem:
  read: [/usr, $CWD]       # the system and the work
  write: [$CWD]
  deny: [$HOME/.ssh]
network:
  connect: [53]            # DNS
"""


@pytest.fixture
def tree(tmp_path):
    """A run's places: work (its $CWD), home with a secret, data, a cache."""
    t = tmp_path / "t"
    for d in ("work", "home/.ssh", "data", "many", "tmpdir", "cache/sbx"):
        (t / d).mkdir(parents=True)
    for f in ("data/a.txt", "home/notes.txt", "home/.ssh/id", "work/in.txt", "cache/sbx/entry"):
        (t / f).write_text("x\n")
    for i in range(17):
        (t / "many" / f"f{i:02}").write_text("x\n")
    return t


def ctx_of(t, known=True) -> RunContext:
    return RunContext(str(t / "work"), {"HOME": str(t / "home"), "TMPDIR": str(t / "tmpdir")}, None,
                      str(t / "cache" / "sbx"), known)


def fs(right, target, count=1):
    return Denial("", -1, "landlock", blockers=tuple(right.split("+")), target=str(target), count=count)


def refined(tmp_path, t, denials, text=PROFILE, broad=False, name="p.yaml"):
    """(plan, new text, new spec) after planning, applying and checking."""
    src = tmp_path / name
    src.write_text(text)
    ctx = ctx_of(t)
    plan = rff.plan_grants(confinement(load_profile(str(src))), denials, ctx, broad)
    new_text = rff.apply_grants(text, plan, "d.jsonl")
    out = tmp_path / f"new-{name}"
    out.write_text(new_text)
    spec = confinement(load_profile(str(out)))
    rff.check_grants(spec, plan, ctx)
    return plan, new_text, spec


def entries(spec, word):
    return [p for w, p, _o in spec.fs if w == word]


def test_a_file_read_is_granted_on_the_file_itself_in_the_existing_list(tmp_path, tree):
    plan, text, spec = refined(tmp_path, tree, [fs("fs.read_file", tree / "data" / "a.txt", 2)])
    assert [(g.key, g.value, g.denials) for g in plan.grants] == [("read", str(tree / "data/a.txt"), 2)]
    assert f"  read: [/usr, $CWD, {tree}/data/a.txt]       # the system and the work\n" in text
    assert "  # added by sbx refine from d.jsonl: " in text
    assert entries(spec, "read") == ["/usr", "$CWD", str(tree / "data/a.txt")]
    assert text.startswith("# A test profile: files and ports.\n")


def test_paths_are_written_with_the_deepest_variable_holding_them(tmp_path, tree):
    (tree / "tmpdir" / "tool").write_text("#!/bin/sh\n")
    plan, _text, spec = refined(tmp_path, tree, [fs("fs.read_file", tree / "home" / "notes.txt"),
                                                 fs("fs.execute+fs.read_file", tree / "tmpdir" / "tool")])
    assert "$HOME/notes.txt" in entries(spec, "read")
    assert "$TMPDIR/tool" in entries(spec, "exec") and "$TMPDIR/tool" in entries(spec, "read")


def test_each_right_gets_the_narrowest_word(tmp_path, tree):
    d = tree / "data"
    plan, _text, spec = refined(tmp_path, tree, [
        fs("fs.write_file", d / "a.txt"), fs("fs.make_reg", d), fs("fs.remove_file", d),
        fs("fs.read_dir", d), fs("fs.truncate", d / "a.txt")])
    words = {g.key: g.value for g in plan.grants}
    assert words == {"modify": str(d / "a.txt"), "create": str(d), "remove": str(d), "list": str(d),
                     "truncate": str(d / "a.txt")}
    assert entries(spec, "write") == ["$CWD"]            # never the wide word


def test_a_file_gone_since_is_granted_on_its_directory(tmp_path, tree):
    plan, _text, _spec = refined(tmp_path, tree, [fs("fs.read_file", tree / "data" / "tmp-123")])
    assert [(g.key, g.value) for g in plan.grants] == [("read", str(tree / "data"))]


def test_more_files_of_one_directory_than_the_limit_become_the_directory(tmp_path, tree):
    many = [fs("fs.read_file", tree / "many" / f"f{i:02}") for i in range(17)]
    plan, _text, _spec = refined(tmp_path, tree, many)
    assert [(g.key, g.value, g.denials) for g in plan.grants] == [("read", str(tree / "many"), 17)]
    plan, _text, _spec = refined(tmp_path, tree, many[:rff.READ_LIMIT], name="q.yaml")
    assert len(plan.grants) == rff.READ_LIMIT


def test_a_denied_path_needs_broad_and_then_only_the_file_is_granted(tmp_path, tree):
    key = tree / "home" / ".ssh" / "id"
    plan, text, _spec = refined(tmp_path, tree, [fs("fs.read_file", key)])
    assert not plan.grants and text == PROFILE
    assert [(s.name, s.needs_broad) for s in plan.skipped] == [(str(key), True)]
    assert "deny: $HOME/.ssh" in plan.skipped[0].reason
    plan, text, spec = refined(tmp_path, tree, [fs("fs.read_file", key)], broad=True)
    assert entries(spec, "read")[-1] == "$HOME/.ssh/id"
    assert "--broad: overrides deny: $HOME/.ssh" in text


def test_nothing_is_proposed_beside_a_denied_path(tmp_path, tree):
    """$HOME holds .ssh, which the profile denies: an entry created in $HOME
    could replace it, so no grant on $HOME gives make_reg there."""
    plan, text, _spec = refined(tmp_path, tree, [fs("fs.make_reg", tree / "home")], broad=True)
    assert not plan.grants and text == PROFILE
    assert "holds $HOME/.ssh" in plan.skipped[0].reason


def test_what_no_profile_can_allow_is_said_and_left_out(tmp_path, tree):
    cache = tree / "cache" / "sbx"
    plan, text, _spec = refined(tmp_path, tree, [
        fs("fs.write_file", cache / "entry"), fs("fs.make_reg", tree / "cache"),
        fs("fs.read_file", tree / "work" / "in.txt"),
        Denial("", -1, "landlock", blockers=("ptrace",), target="pid 2")], broad=True)
    assert not plan.grants and text == PROFILE
    reasons = {s.name: s.reason for s in plan.skipped}
    assert "filter cache out of every command's reach" in reasons[str(cache / "entry")]
    assert "directories above its filter cache" in reasons[str(tree / "cache")]
    assert reasons[str(tree / "work" / "in.txt")].startswith("already allowed")
    assert "no filesystem: or network:" in reasons["pid 2"]


SIGNAL = Denial("", -1, "landlock", blockers=("scope.signal",), target="pid 1 (init)", count=2)
ABSTRACT = Denial("", -1, "landlock", blockers=("scope.abstract_unix_socket",), target="@/tmp/.X11-unix/X0")


def test_a_scope_is_lifted_only_with_broad_and_whole(tmp_path, tree):
    plan, text, spec = refined(tmp_path, tree, [SIGNAL])
    assert not plan.grants and text == PROFILE and "signals" in spec.scoped
    assert plan.skipped[0].needs_broad and "scope: {signals: any}" in plan.skipped[0].reason
    plan, text, spec = refined(tmp_path, tree, [SIGNAL, ABSTRACT], broad=True)
    assert text.startswith(PROFILE) and text.endswith("scope:\n  signals: any\n  abstract-unix: any\n")
    assert "# added by sbx refine from d.jsonl: signals: any: 2 denials (scope.signal); --broad" in text
    assert spec.scoped == ()


@pytest.mark.parametrize("scope, expect", [
    ("scope:\n  signals: sandbox   # kept in\n", "  signals: any   # kept in\n"),
    ("scope:\n  abstract-unix: sandbox\n", "  abstract-unix: sandbox\n  # added"),
    ("scope: {abstract-unix: sandbox}\n", "scope: {abstract-unix: sandbox, signals: any}\n"),
    ("scope: {signals: sandbox}\n", "scope: {signals: any}\n")])
def test_a_lifted_scope_is_written_into_the_profiles_own_scope_section(tmp_path, tree, scope, expect):
    plan, text, spec = refined(tmp_path, tree, [SIGNAL], text=PROFILE + scope, broad=True)
    assert expect in text, text
    assert "signals" not in spec.scoped and len(plan.grants) == 1


def test_ports_go_to_their_list_or_a_new_key(tmp_path, tree):
    plan, text, spec = refined(tmp_path, tree, [
        Denial("", -1, "landlock", blockers=("net.connect_tcp",), target="port 8080", count=3),
        Denial("", -1, "landlock", blockers=("net.bind_tcp",), target="port 7000"),
        Denial("", -1, "landlock", blockers=("net.connect_tcp",), target="port 53")])
    assert "  connect: [53, 8080]            # DNS\n" in text
    assert expand_ports(spec.net["connect"], {}, []) == [53, 8080]
    assert [s.name for s in plan.skipped] == ["port 7000", "port 53"]     # bind: any; 53 listed


BASE = """\
name: base
default: errno(EPERM)
rules:
  - allow: [read]
filesystem:
  read: [/usr]
network:
  connect: [53]
"""


def test_a_profile_without_the_sections_gets_them_added_to_its_bases(tmp_path, tree):
    (tmp_path / "base.yaml").write_text(BASE)
    child = "name: child   # mine\nextends: [base.yaml]\n"
    plan, text, spec = refined(tmp_path, tree, [
        fs("fs.read_file", tree / "data" / "a.txt"),
        Denial("", -1, "landlock", blockers=("net.connect_tcp",), target="port 9")], text=child)
    assert text.startswith(child)
    assert set(entries(spec, "read")) == {"/usr", str(tree / "data/a.txt")}
    assert sorted(expand_ports(spec.net["connect"], {}, [])) == [9, 53]


SHAPES = {
    "block list": "filesystem:\n  read:\n    - /usr        # system\n    - $CWD\n  write: [$CWD]\n",
    "one path": "filesystem:\n  read: /usr\n  write: [$CWD]\n",
    "quoted path": 'filesystem:\n  read: "/usr"\n',
    "empty list": "filesystem:\n  read: []\n  write: [$CWD]\n",
    "no read key": "filesystem:\n  write: [$CWD]   # work\n\n# trailing comment\n",
    "flow section": "filesystem: {write: [$CWD]}\n",
    "flow section with read": "filesystem: {read: [/usr], write: [$CWD]}\n",
    "wrapped flow list": "filesystem:\n  read: [/usr,\n         $CWD]\n  write: [$CWD]\n",
    "no final newline": "filesystem:\n  read: [/usr]",
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_of_section_is_extended_and_the_rest_kept(tmp_path, tree, shape):
    text = "name: s\ndefault: errno(EPERM)\nrules:\n  - allow: [read]\n" + SHAPES[shape]
    plan, new, spec = refined(tmp_path, tree, [fs("fs.read_file", tree / "data" / "a.txt")], text=text)
    assert str(tree / "data/a.txt") in entries(spec, "read")
    edited = [ln for ln in text.splitlines() if ln not in new.splitlines()]
    assert all("read" in ln or "{" in ln or ln.endswith("$CWD]") for ln in edited), (edited, new)
    added = [ln for ln in new.splitlines() if ln not in text.splitlines()]
    assert all("sbx refine" in ln or str(tree) in ln for ln in added), (added, new)


def test_a_section_that_is_no_mapping_is_refused_clearly(tmp_path, tree):
    text = "name: s\ndefault: errno(EPERM)\nrules:\n  - allow: [read]\nfilesystem:\n  read: [/usr]\nnetwork: [53]\n"
    src = tmp_path / "bad.yaml"
    src.write_text(text.replace("network: [53]\n", ""))
    plan = rff.plan_grants(confinement(load_profile(str(src))),
                           [fs("fs.read_file", tree / "data" / "a.txt")], ctx_of(tree))
    with pytest.raises(RefineError, match="filesystem: is not a mapping"):
        rff.apply_grants("name: s\nfilesystem: [/usr]\n", plan)


# -- the command line -----------------------------------------------------------------

def _write_jsonl(path, ctx, denials):
    with open(path, "w") as fh:
        if ctx is not None:
            fh.write(json.dumps(ctx.to_json()) + "\n")
        for d in denials:
            fh.write(json.dumps(d.to_json()) + "\n")


def test_cli_refines_files_ports_and_syscalls_from_sbx_run_output(tmp_path, tree):
    src = tmp_path / "p.yaml"
    src.write_text(PROFILE)
    jsonl = tmp_path / "d.jsonl"
    uname = Denial("x86_64", 63, "errno")
    _write_jsonl(jsonl, ctx_of(tree), [fs("fs.read_file", tree / "home" / "notes.txt"), uname,
                                       Denial("", -1, "landlock", blockers=("net.connect_tcp",),
                                              target="port 8080")])
    out = tmp_path / "p2.yaml"
    r = CliRunner().invoke(cli, ["refine", str(src), "--from", str(jsonl), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "+  read: [/usr, $CWD, $HOME/notes.txt]" in r.stdout
    assert "+  - allow: uname" in r.stdout and "8080]" in r.stdout
    assert "allows 3 of the 3 denials" in r.stderr
    spec = confinement(load_profile(str(out)))
    assert "$HOME/notes.txt" in entries(spec, "read")


def test_cli_reads_kernel_audit_lines_and_says_the_context_is_guessed(tmp_path, tree):
    src = tmp_path / "p.yaml"
    src.write_text(PROFILE)
    log = tmp_path / "audit.log"
    target = tree / "data" / "a.txt"
    log.write_text(
        f'type=LANDLOCK_ACCESS msg=audit(1796405853.771:5235947): domain=1d174ce15 '
        f'blockers=fs.read_file path="{target}" dev="vda" ino=2818152\n'
        'type=LANDLOCK_DOMAIN msg=audit(1796405853.771:5235947): domain=1d174ce15 status=allocated '
        'mode=enforcing pid=12850 uid=0 exe="/usr/bin/cat" comm="cat"\n')
    r = CliRunner().invoke(cli, ["refine", str(src), "--from", str(log)])
    assert r.exit_code == 0, r.output
    assert "came without their run's context" in r.stderr
    assert "/t/data/a.txt]" in r.stdout          # (written with $TMPDIR: the guessed context is here)


def test_cli_reports_a_bad_context_line_with_its_position(tmp_path):
    src = tmp_path / "p.yaml"
    src.write_text(PROFILE)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"context": {"cwd": "relative"}}\n')
    r = CliRunner().invoke(cli, ["refine", str(src), "--from", str(jsonl)])
    assert r.exit_code == 2 and "d.jsonl:1:2: error: context needs an absolute cwd" in r.output


def test_the_context_names_only_the_variables_the_profile_uses():
    from sandbox.confine import Spec
    spec = Spec(fs=[("read", "$HOME/x", False), ("write", "${WORK}/y", False), ("read", "$CWD", False)],
                net={"bind": ["${PORT}", "80"], "connect": "any"})
    ctx = RunContext.of_run(spec, {"HOME": "/h", "WORK": "/w", "PORT": "1", "SECRET": "s"}, "/bin/true",
                            "/var/cache/sbx")
    assert ctx.env == {"HOME": "/h", "PORT": "1", "WORK": "/w"} and ctx.cwd == os.getcwd()
    back = RunContext.from_json(json.loads(json.dumps(ctx.to_json())))
    assert (back.cwd, back.env, back.exe, back.cache_dir) == (ctx.cwd, ctx.env, "/bin/true", "/var/cache/sbx")


# -- sbx run's plain words for the same denials -----------------------------------------

def test_a_refusal_beside_a_denied_path_is_explained_as_such(tmp_path, tree):
    """$HOME is granted (under $CWD's parent here) but holds .ssh, which is denied:
    creating a file directly in $HOME is refused for that reason, not for a
    missing grant; a refusal elsewhere still names the grants."""
    from sandbox.denials import explain_landlock
    from sandbox.confine import Spec
    spec = Spec(fs=[("read", "/usr", False), ("write", str(tree), False), ("deny", "$HOME/.ssh", False)])
    env = {"HOME": str(tree / "home")}
    said = explain_landlock(("fs.make_reg",), str(tree / "home"), spec, "p", env, None, None, ())
    assert said == (f"was refused creating a file in {tree}/home: profile p denies {tree}/home/.ssh "
                    "inside it, and nothing may be created, removed or renamed directly in a "
                    "directory above a denied path")
    said = explain_landlock(("fs.make_reg",), "/var/tmp", spec, "p", env, None, None, ())
    assert said == f"was refused creating a file in /var/tmp: profile p allows create only under {tree}"


def test_a_refusal_in_the_users_own_home_names_the_deny_when_home_is_elsewhere(monkeypatch, tree):
    """Run with HOME set to a workspace, the user's own ~/.ssh is denied all the
    same (confine.expand_deny), and the refusal says which deny decided."""
    from sandbox import paths
    from sandbox.confine import Spec
    from sandbox.denials import explain_landlock
    monkeypatch.setattr(paths, "_PASSWD_HOME", {os.geteuid(): str(tree / "alice")})
    spec = Spec(fs=[("read", "/", False), ("deny", "$HOME/.ssh", False)])
    said = explain_landlock(("fs.read_file",), str(tree / "alice" / ".ssh" / "id_rsa"), spec, "p",
                            {"HOME": str(tree / "ci")}, None, None, ())
    assert said == f"was refused read access to {tree}/alice/.ssh/id_rsa: profile p denies {tree}/alice/.ssh"


def test_a_refused_write_of_a_dotfile_says_sbx_keeps_it(tree):
    """A dotfile of a home (paths.startup_places: HOME/.*) is kept out of every write,
    whatever the profile grants: said as such, and sbx refine proposes nothing."""
    from sandbox.confine import Spec
    from sandbox.denials import explain_landlock
    from sandbox.paths import kept_by
    home = tree / "home"
    spec = Spec(fs=[("read", "/", False), ("write", str(home), False)])
    protected = (f"{home}/.*", f"{home}/bin")
    said = explain_landlock(("fs.write_file",), f"{home}/.cargo/env", spec, "p", {}, None, None,
                            protected)
    assert said.startswith(f"was refused write access to {home}/.cargo/env: sbx keeps the user's "
                           "start-up files and dotfiles out of every command's writes"), said
    assert kept_by(f"{home}/bin/ls", protected) == (f"{home}/bin", True)
    assert kept_by(f"{home}/notes", protected) is None
    assert kept_by(f"{home}/proj/.git/config", protected) is None


def test_a_refusal_in_a_directory_holding_what_sbx_keeps_says_so(tree):
    """The working directory below a deny (build denies /root; $CWD /root/proj gives
    writes back) holds sbx's virtualenv or a home: creating a file there is refused
    for that, and said so; not blamed on the deny above, which the grant overrides."""
    from sandbox.confine import Spec
    from sandbox.denials import explain_landlock
    proj = tree / "proj"
    spec = Spec(fs=[("read", "/", False), ("deny", str(tree), False), ("write", str(proj), False)])
    said = explain_landlock(("fs.make_reg",), str(proj), spec, "build", {}, None, None,
                            (str(proj / ".bashrc"),))
    assert said.startswith(f"was refused creating a file in {proj}: sbx keeps the user's start-up "
                           f"files and dotfiles ({proj}/.bashrc) inside it out of every command's "
                           "writes"), said
    said = explain_landlock(("fs.make_reg",), str(proj), spec, "build", {}, None, None,
                            (f"{proj}/.*",))
    assert f"({proj}) inside it" in said, said
    said = explain_landlock(("fs.make_reg",), str(tree / "other"), spec, "build", {}, None, None, ())
    assert said == f"was refused creating a file in {tree}/other: profile build denies {tree}", said


def test_the_run_s_own_terminal_is_granted_as_tty_and_the_context_keeps_it(tmp_path, tree):
    """A refused read of the terminal the run had (the context's "tty") becomes
    $TTY, which a later run expands to its own terminal; the context line of
    sbx run -o carries the terminals through JSON."""
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        ctx = RunContext(str(tree / "work"), {"HOME": str(tree / "home")}, None, None, ttys=(name,))
        again = RunContext.from_json(json.loads(json.dumps(ctx.to_json())))
        assert again.ttys == (name,)
        src = tmp_path / "p.yaml"
        src.write_text(PROFILE)
        plan = rff.plan_grants(confinement(load_profile(str(src))), [fs("fs.read_file", name)], again)
        assert [(g.key, g.value) for g in plan.grants] == [("read", "$TTY")]
        other = RunContext(str(tree / "work"), {"HOME": str(tree / "home")}, None, None,
                           ttys=("/dev/pts/999",))
        plan = rff.plan_grants(confinement(load_profile(str(src))), [fs("fs.read_file", name)], other)
        assert [(g.key, g.value) for g in plan.grants] == [("read", name)]   # not this run's: exact
    finally:
        os.close(slave)
        os.close(master)


@pytest.mark.parametrize("tty", [["relative/pts"], ["/dev/pts/$HOME"], "/dev/pts/1"])
def test_a_context_with_a_bad_terminal_is_refused(tty):
    with pytest.raises(ValueError):
        RunContext.from_json({"context": {"cwd": "/", "tty": tty}})

"""The profile search path: $XDG_CONFIG_HOME/sbx/profiles, then /etc/sbx/profiles, then the
built-in profiles; never the current directory; never a profile others could have written.

Every case runs the real command line (``sbx explain``, ``sbx profiles list``, the fast
path of ``sbx run``) with a private XDG_CONFIG_HOME; the system directory is redirected
in-process only (tests must not write /etc)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import paths, search
from sandbox.policy import PolicyError, load_profile
from tests.conftest import need
from tests.conftest import REPO

ROOT = REPO
DENY_UNAME = "name: {name}\ndescription: {what}\nextends: [{base}]\nrules:\n  - errno(EXDEV): uname\n"


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    d = tmp_path / "config" / "sbx" / "profiles"
    d.mkdir(parents=True)
    for p in (d, d.parent, d.parent.parent):
        os.chmod(p, 0o700)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(d.parent.parent))
    return d


def sbx(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def decision(*args: str, cwd: Path = ROOT) -> str:
    out = sbx("explain", "--json", *args, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["decision"]


def test_a_user_profile_is_found_by_name_and_shadows_the_built_in(xdg):
    assert decision("web", "uname") == "allow"
    (xdg / "web.yaml").write_text(DENY_UNAME.format(name="web", what="mine", base="web"))
    assert decision("web", "uname") == "errno(EXDEV)"      # extends [web]: the built-in below it
    assert decision("web", "ptrace") == "errno(EPERM)"     # the built-in's rules still hold
    listed = json.loads(sbx("profiles", "list", "--json").stdout)
    webs = [(r["origin"], r["shadowed_by"], r["description"]) for r in listed if r["name"] == "web"]
    assert webs == [("user", None, "mine"), ("built-in", "user", None)]
    text = sbx("profiles", "list").stdout
    assert f"web          user     mine  [{xdg / 'web.yaml'}]" in text
    assert "web          built-in (shadowed by the user web)  [profiles/web.yaml]" in text


def test_the_system_directory_comes_after_the_user_s(xdg, tmp_path, monkeypatch):
    system = tmp_path / "etc-sbx"
    system.mkdir(mode=0o755)
    monkeypatch.setattr(paths, "SYSTEM_DIR", str(system))     # where search_dirs reads it
    (system / "site.yaml").write_text(DENY_UNAME.format(name="site", what="system", base="default"))
    assert load_profile("site").description == "system"
    (xdg / "site.yaml").write_text(DENY_UNAME.format(name="site", what="user", base="default"))
    assert load_profile("site").description == "user"
    assert [(n, o) for n, o, _p, _s in search.listing() if n == "site"] == [("site", "user"),
                                                                            ("site", "system")]


def test_a_name_is_never_taken_from_the_current_directory(xdg, tmp_path):
    (tmp_path / "web.yaml").write_text("name: web\ndefault: allow\nrules: []\n")
    (tmp_path / "mine.yaml").write_text("name: mine\ndefault: allow\nrules: []\n")
    assert decision("web", "ptrace", cwd=tmp_path) == "errno(EPERM)"
    out = sbx("explain", "mine", "ptrace", cwd=tmp_path)
    assert out.returncode == 2 and "no profile 'mine'" in out.stderr
    assert decision("./mine.yaml", "ptrace", cwd=tmp_path) == "allow"     # a path is a path


@pytest.mark.parametrize("what", ["file mode 666", "file mode 620", "directory mode 777",
                                  "file of another user", "directory of another user"])
def test_a_profile_others_could_write_is_refused(xdg, what):
    need(os.geteuid() == 0 or "mode" in what, "chown needs root")
    prof = xdg / "web.yaml"
    prof.write_text(DENY_UNAME.format(name="web", what="mine", base="web"))
    target = prof if what.startswith("file") else xdg
    if "mode" in what:
        os.chmod(target, int(what.split()[-1], 8))
    else:
        os.chown(target, 65534, 65534)
    for cmd in (["explain", "web", "uname"], ["run", "--profile", "web", "--", "/bin/true"]):
        out = sbx(*cmd)
        assert out.returncode == 2, (cmd, out.stderr)
        assert f"refusing profile {prof}: {target} is " in out.stderr, out.stderr
        assert ("writable by group or others" if "mode" in what else "owned by uid 65534") in out.stderr
        assert "Traceback" not in out.stderr


def test_a_base_others_could_write_is_refused_at_its_extends(xdg):
    (xdg / "base.yaml").write_text(DENY_UNAME.format(name="base", what="b", base="default"))
    os.chmod(xdg / "base.yaml", 0o666)
    (xdg / "app.yaml").write_text("name: app\nextends: [base]\nrules: []\n")
    with pytest.raises(PolicyError) as err:
        load_profile("app")
    d = err.value.diagnostics[0]
    assert (d.pos.file, d.pos.line) == (str(xdg / "app.yaml"), 2)
    assert "refusing profile" in d.message and "writable by group or others" in d.message


def test_a_built_in_means_the_built_in_inside_built_in_profiles(xdg):
    (xdg / "default.yaml").write_text("name: default\ndefault: allow\nrules: []\n")
    web = load_profile("web")                    # the built-in web extends the built-in default
    assert all(not f.startswith(str(xdg)) for f in web.files)


@pytest.mark.kernel
def test_a_confined_command_cannot_write_the_profiles_a_later_run_loads(xdg, tmp_path):
    from sandbox.kernel import landlock
    need(landlock.abi() > 0, "needs Landlock")
    work = tmp_path / "work"
    work.mkdir()
    prof = tmp_path / "writes-here.yaml"
    prof.write_text(f"name: w\nextends: [default]\nfilesystem:\n  read: [/]\n  exec: [/]\n"
                    f"  write: [{tmp_path}]\n")
    script = f"echo ok > {work}/a && echo 'default: allow' > {xdg}/default.yaml"
    out = sbx("run", "--profile", str(prof), "--", "/bin/sh", "-c", script)
    assert (work / "a").read_text() == "ok\n", out.stderr         # the grant holds elsewhere
    assert out.returncode != 0 and not (xdg / "default.yaml").exists(), out.stderr

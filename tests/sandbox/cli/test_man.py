"""The man page is generated from the click commands and checked in: regenerating it gives the
same bytes, it documents every command, it renders without roff warnings, and `make install`
puts it where man finds it. Shell completion comes from click: the script is produced and
completes sbx's commands."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from sandbox.cli import COMMANDS
from tests.conftest import need
from tests.conftest import REPO

ROOT = REPO
PAGE = ROOT / "man" / "sbx.1"


def test_regenerating_the_man_page_gives_the_checked_in_file(tmp_path):
    out = tmp_path / "sbx.1"
    subprocess.run([sys.executable, "tools/gen_man.py", "-o", str(out)], cwd=ROOT, check=True)
    assert out.read_bytes() == PAGE.read_bytes(), "man/sbx.1 is stale: run python3 tools/gen_man.py"
    check = subprocess.run([sys.executable, "tools/gen_man.py", "--check"], cwd=ROOT)
    assert check.returncode == 0


def test_the_man_page_has_every_command_and_option():
    text = PAGE.read_text()
    for name in COMMANDS:
        assert f'.SS "sbx {name} ' in text, name
    for sub in ("profiles list", "profiles show", "profile build"):
        assert f'.SS "sbx {sub} ' in text
    assert "\\-\\-duration S" in text and "\\-\\-color, \\-\\-colour auto|always|never" in text


def test_the_man_page_renders_without_warnings():
    need(shutil.which("groff") is not None, "groff is needed to render the page")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-P-cbou", str(PAGE)], capture_output=True,
                       text=True)         # -P-cbou: plain text, no overstriking
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "sbx verify [OPTIONS] COMMAND..." in r.stdout


def test_make_install_man_puts_it_under_mandir(tmp_path):
    need(shutil.which("make") is not None, "make is needed")
    r = subprocess.run(["make", "-s", "install-man", f"MANDIR={tmp_path}"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "man1" / "sbx.1").read_bytes() == PAGE.read_bytes()


def sbx_env(**env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandbox"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **env), timeout=60)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_script_is_produced(shell):
    r = sbx_env(_SBX_COMPLETE=f"{shell}_source")
    assert r.returncode == 0 and "_SBX_COMPLETE" in r.stdout, r.stderr
    assert f"{shell}_complete" in r.stdout


def test_bash_completion_completes_commands_and_options():
    r = sbx_env(_SBX_COMPLETE="bash_complete", COMP_WORDS="sbx pro", COMP_CWORD="1")
    assert r.stdout.split() == ["plain,profile", "plain,profiles"], r.stdout
    r = sbx_env(_SBX_COMPLETE="bash_complete", COMP_WORDS="sbx verify --dur", COMP_CWORD="2")
    assert r.stdout.split() == ["plain,--duration"], r.stdout


def test_the_bash_script_loads_in_bash():
    need(shutil.which("bash") is not None, "bash is needed")
    script = sbx_env(_SBX_COMPLETE="bash_source").stdout
    r = subprocess.run(["bash", "-c", script + "\ncomplete -p sbx"], capture_output=True, text=True)
    assert r.returncode == 0 and "_sbx_completion" in r.stdout, r.stderr

"""What the command line prints, as a person sees it: inherited info findings folded, severity
words coloured on a terminal (and not elsewhere, nor under NO_COLOR), JSON where asked."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import REPO

ROOT = REPO
RED_ERROR = "\033[1;31merror\033[0m"


def sbx(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))


def on_a_terminal(*args: str, env: dict | None = None) -> str:
    """sbx ARGS with stdout and stderr on a pseudo-terminal; what the terminal shows."""
    pid, fd = pty.fork()
    if pid == 0:
        full = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm")
        full.pop("NO_COLOR", None)
        full.update(env or {})
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "sandbox", *args], full)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    return out.decode()


@pytest.fixture
def bad(tmp_path) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\ndefault: errno(EPERM)\nrules:\n  - allow: [reed]\n")
    return p


# -- inherited info findings ---------------------------------------------------------------------

def test_info_findings_inherited_from_a_base_are_one_line_unless_verbose():
    report = json.loads(sbx("check", "--format", "json", "profiles/web.yaml").stdout)
    inherited = [f for f in report["profiles"][0]["findings"]
                 if f["severity"] == "info" and f["file"] != "profiles/web.yaml"]
    assert inherited, "web inherits info findings from default"
    text = sbx("check", "profiles/web.yaml").stdout
    assert f"{len(inherited)} info finding{'s' if len(inherited) != 1 else ''} inherited from " \
           "default; --verbose to list" in text
    assert not any(f"{f['file']}:{f['line']}:{f['col']}: info:" in text for f in inherited)
    verbose = sbx("check", "--verbose", "profiles/web.yaml").stdout
    assert all(f"{f['file']}:{f['line']}:{f['col']}: info:" in verbose for f in inherited)
    assert "inherited from default" not in verbose


def test_findings_of_the_checked_file_itself_are_never_folded(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: mine\nextends: [default]\nrules:\n  - errno(EPERM): getpid\n"
                    "  - allow: getpid\n")
    text = sbx("check", str(mine)).stdout
    assert f"{mine}:5:12: info:" in text or f"{os.path.relpath(mine, ROOT)}:5:12: info:" in text


# -- colour --------------------------------------------------------------------------------------

def test_severity_words_are_coloured_on_a_terminal(bad):
    shown = on_a_terminal("check", str(bad))
    assert f"{bad}:4:13: {RED_ERROR}: unknown syscall 'reed'" in shown
    assert "    - allow: [reed]" in shown                       # the source line is left alone


@pytest.mark.parametrize("how", ["NO_COLOR", "--color=never", "TERM=dumb"])
def test_no_colour_when_told(bad, how):
    env = {"NO_COLOR": "1"} if how == "NO_COLOR" else {"TERM": "dumb"} if how == "TERM=dumb" else {}
    args = (["--color=never"] if how.startswith("--") else []) + ["check", str(bad)]
    shown = on_a_terminal(*args, env=env)
    assert "\033[" not in shown and f"{bad}:4:13: error: unknown syscall" in shown


def test_no_colour_into_a_pipe_unless_always(bad):
    assert "\033[" not in sbx("check", str(bad)).stderr
    assert RED_ERROR in sbx("--color=always", "check", str(bad)).stderr


def test_a_report_written_to_a_file_is_never_coloured(tmp_path):
    out = tmp_path / "report.txt"
    sbx("--color=always", "check", "--verbose", "-o", str(out), "profiles/web.yaml")
    assert "info:" in out.read_text() and "\033[" not in out.read_text()

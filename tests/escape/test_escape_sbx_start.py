"""What starts sbx, rewritten by the command it confined: the next sbx runs it unconfined.

The installed launcher runs an isolated Python from root's directories. sbx
installed with pip into a project's virtualenv is started by ``.venv/bin/sbx``
(and ``.venv/bin/python``), inside the working directory the profiles let a
command write; and with ``PYTHONPATH=.`` the interpreter runs a
``sitecustomize.py`` from the working directory before sbx does anything.
``python -m sandbox`` looks modules up in the working directory first.

Each attack plants a line that writes a marker, from the project directory:
unconfined (the control: the next sbx run writes the marker), then under
every built-in profile, where it must be refused and no later run may write
the marker.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

import pytest

from tests.escape.harness import REPO, builtin_profiles

PROFILES = builtin_profiles()
SITE = sysconfig.get_paths()["purelib"]          # the test venv's click, yaml ...


def _project(tmp_path, how: str):
    """(project directory, argv that starts sbx the way *how* says, env, file the attack rewrites)."""
    proj = tmp_path / "proj"
    proj.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    if how == "venv script":
        venv = proj / ".venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        script = venv / "bin" / "sbx"
        script.write_text(f"#!{venv}/bin/python\nimport sys\nsys.path[:0] = [{str(REPO)!r}, {SITE!r}]\n"
                          "from sandbox.entry import main\nsys.exit(main())\n")
        script.chmod(0o755)
        return proj, [str(script)], env, script
    if how == "PYTHONPATH=.":
        env["PYTHONPATH"] = os.pathsep.join([".", str(REPO), SITE])
        return proj, [sys.executable, "-m", "sandbox"], env, proj / "sitecustomize.py"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), SITE])       # python -m sandbox
    return proj, [sys.executable, "-m", "sandbox"], env, proj / "struct.py"


HOWS = ["venv script", "PYTHONPATH=.", "python -m sandbox"]


# the line planted goes first (after a #! line): a script's last line is sys.exit(main())
PLANT = ("import os, sys; p, line = sys.argv[1], sys.argv[2]; "
         "old = open(p).read() if os.path.exists(p) else ''; "
         "head, _, rest = old.partition('\\n') if old.startswith('#!') else ('', '', old); "
         "open(p, 'w').write((head + '\\n' if head else '') + line + rest); print('PLANTED')")


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("profile", [None, *PROFILES])
def test_what_starts_sbx_is_not_the_commands_to_rewrite(tmp_path, how, profile):
    if os.geteuid() != 0:
        pytest.skip("the escape suite runs as root")
    proj, sbx, env, target = _project(tmp_path, how)
    marker = tmp_path / "marker"
    plant = ["/usr/bin/python3", "-c", PLANT, str(target), f"open({str(marker)!r}, 'w').write('ran')\n"]
    argv = plant if profile is None else sbx + ["run", "--profile", profile, "--", *plant]
    first = subprocess.run(argv, cwd=proj, env=env, capture_output=True, text=True, timeout=120)
    if profile is None and how == "python -m sandbox":
        # the control: python -m looks the planted module up in the working directory
        # first (base64 imports struct) ...
        subprocess.run([sys.executable, "-m", "base64", "-d"], cwd=proj, env=env, input="",
                       capture_output=True, text=True, timeout=60)
        assert "PLANTED" in first.stdout and marker.exists(), first.stderr
        marker.unlink()
    # the next run of sbx, by the user, as usual
    subprocess.run(sbx + ["run", "--", "/bin/true"], cwd=proj, env=env, capture_output=True,
                   text=True, timeout=120)
    if how == "python -m sandbox":
        # ... and sbx, started so, does not: planted or not, it never runs
        assert not marker.exists(), f"{how} under {profile}: the next sbx ran what was planted"
    elif profile is None:
        assert "PLANTED" in first.stdout and marker.exists(), first.stderr   # the control
    else:
        assert "PLANTED" not in first.stdout, f"{how} under {profile}: {first.stdout} {first.stderr}"
        assert not marker.exists(), f"{how} under {profile}: the next sbx ran what was planted"

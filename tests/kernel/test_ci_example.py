"""examples/github-actions.yml, run as written from a plain (non-editable) install.

The workflow's ``run:`` steps are executed in order, in a copy of the
checkout, with ``python``/``sbx`` from a fresh venv where ``pip install .``
put them, exactly as the runner would (``uses:`` steps are GitHub's: checkout
is the copy, setup-python is the venv, upload-sarif is replaced by a check of
the SARIF file against the SARIF 2.1.0 schema).  ``verify`` runs the tests
under the python profile and needs root (audit log): a kernel test.
"""
import json
import os
import pathlib
import tempfile
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import need

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKFLOW = os.path.join(ROOT, "examples", "github-actions.yml")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(checkout copy, PATH with a fresh venv first): the workflow's own steps install sbx into it."""
    tmp = tmp_path_factory.mktemp("ci")
    src = tmp / "repo"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", "build", ".hypothesis", ".pytest_cache"))
    # The venv lives outside /tmp, the checkout and $TMPDIR, like a runner's Python: sbx
    # keeps its own installation read-only for the commands it confines, and a write
    # grant above it (the profiles' /tmp, or $TMPDIR when the checkout is in /tmp) loses
    # the right to create entries directly in that directory.
    venv = pathlib.Path(tempfile.mkdtemp(prefix="sbx-ci-venv-",
                                         dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    shim = tmp / "shim"
    shim.mkdir()
    if shutil.which("sudo") is None:        # runners have sudo; as root here it is the identity
        (shim / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
        (shim / "sudo").chmod(0o755)
    yield src, f"{bin_dir}:{shim}:{os.environ['PATH']}"
    shutil.rmtree(venv, ignore_errors=True)


def steps(job: str) -> list[dict]:
    with open(WORKFLOW) as fh:
        return yaml.safe_load(fh)["jobs"][job]["steps"]


def run_step(step: dict, cwd, path: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = path
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1500, stdin=subprocess.DEVNULL)


def test_the_check_job_passes_from_a_plain_install(installed):
    src, path = installed
    ran = []
    for step in steps("check"):
        if "run" not in step:
            continue
        res = run_step(step, src, path)
        assert res.returncode == 0, f"{step.get('name')}: {res.stdout}\n{res.stderr}"
        ran.append(step["run"])
        if "sbx check" in step["run"]:
            assert "groups.yaml: syscall group definitions, not a profile; skipped" in res.stderr
            assert "profile has no 'name'" not in res.stderr
    assert any("pip install ." in r for r in ran) and sum("sbx check" in r for r in ran) == 2
    import jsonschema
    with open(os.path.join(ROOT, "tests", "fixtures", "sarif-schema-2.1.0.json")) as fh:
        schema = json.load(fh)
    with open(src / "sbx-check.sarif") as fh:
        sarif = json.load(fh)
    jsonschema.validate(sarif, schema)
    assert sarif["runs"][0]["results"] is not None
    # the sbx that ran is the installed one, not the checkout
    where = subprocess.run([os.path.join(path.split(":")[0], "python"), "-c",
                            "import sandbox; print(sandbox.__file__)"], cwd="/", capture_output=True,
                           text=True, check=True).stdout
    assert "site-packages" in where
    # package data beyond the built-in profiles: the OCI runtime preset ships too
    export = subprocess.run([os.path.join(path.split(":")[0], "sbx"), "export", "web", "--format", "oci"],
                            cwd="/", capture_output=True, text=True)
    assert export.returncode == 0 and "added the OCI runtime preset" in export.stderr, export.stderr


def test_the_verify_job_passes_from_a_plain_install(installed):
    need(os.geteuid() == 0, "sbx verify reads the audit log: needs root")
    src, path = installed
    for step in steps("verify"):
        if "run" in step:
            res = run_step(step, src, path)
            assert res.returncode == 0, f"{step.get('name')}: {res.stdout}\n{res.stderr}"
    assert "0 denials" in res.stderr or "passed" in res.stdout, res.stdout + res.stderr

"""sbx run says what a command left in its project's .git that git runs later, outside any sandbox.

The profiles let a command write its working directory, .git included: a hook
added there, or a core.fsmonitor set in .git/config, runs at the user's next
git command, unconfined. Each test runs a real command under the default
profile in a fresh repository, shows that git would run what it planted
(unconfined, the control), and checks what sbx run says; ordinary work in the
repository (a commit) is said nothing about.
"""
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import need

pytestmark = pytest.mark.kernel
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SBX = [sys.executable, "-m", "sandbox", "run", "--"]
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


@pytest.fixture
def repo(tmp_path):
    need(shutil.which("git") is not None, "git makes the repository")
    r = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(r)], check=True)
    (r / "a").write_text("a\n")
    subprocess.run(GIT + ["-C", str(r), "add", "a"], check=True)
    subprocess.run(GIT + ["-C", str(r), "commit", "-qm", "a"], check=True)
    return r


def _run(repo, script: str, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT, TMPDIR=str(repo.parent))
    return subprocess.run(SBX + ["sh", "-c", script], cwd=cwd or repo, env=env, capture_output=True,
                          text=True, timeout=60)


def test_a_planted_hook_and_fsmonitor_are_said(repo):
    marker = repo.parent / "ran-outside"
    script = (f"printf '#!/bin/sh\\ntouch {marker}\\n' > .git/hooks/pre-commit && "
              "chmod +x .git/hooks/pre-commit && "
              f"git config core.fsmonitor 'touch {marker}-fsmonitor; false'")
    r = _run(repo, script)
    assert r.returncode == 0, r.stderr
    # the control: git, unconfined, runs both
    subprocess.run(GIT + ["-C", str(repo), "status", "--short"], capture_output=True)
    (repo / "b").write_text("b\n")
    subprocess.run(GIT + ["-C", str(repo), "add", "b"], capture_output=True)
    subprocess.run(GIT + ["-C", str(repo), "commit", "-qm", "b"], capture_output=True)
    assert marker.exists() and (repo.parent / "ran-outside-fsmonitor").exists()
    said = [line for line in r.stderr.splitlines() if line.startswith("sbx: the command")]
    assert said == [
        f"sbx: the command changed {repo}/.git/config: git runs the programs it names outside any "
        "sandbox (core.fsmonitor on every git status, core.hooksPath, aliases, filters); review it "
        "with git config --list --show-origin",
        f"sbx: the command added the git hook {repo}/.git/hooks/pre-commit: git runs it, outside "
        "any sandbox, at the next commit, checkout, merge or push; review or remove it"], r.stderr


def test_work_in_the_repository_is_said_nothing_about(repo):
    os.mkdir(repo / "sub")
    r = _run(repo, "echo c > c && " + " ".join(GIT) + " add c && " + " ".join(GIT) +
             " commit -qm c --no-verify", cwd=repo / "sub")
    assert r.returncode == 0, r.stderr
    assert "sbx: the command" not in r.stderr, r.stderr


def test_a_git_file_pointed_elsewhere_is_said(repo, tmp_path):
    """A worktree's .git is a file naming the repository: pointed at another one
    (with hooks of the command's choosing), git takes that one's hooks."""
    work = tmp_path / "work"
    subprocess.run(GIT + ["-C", str(repo), "worktree", "add", "-q", str(work)], check=True)
    other = tmp_path / "other"
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    r = _run(repo, f"echo 'gitdir: {other}/.git' > .git", cwd=work)
    assert r.returncode == 0, r.stderr
    assert f"sbx: the command replaced {work}/.git: git now takes the repository" in r.stderr, r.stderr


def test_a_hook_in_core_hookspath_a_submodule_s_config_and_a_new_repository_are_said(repo, tmp_path):
    """husky's core.hooksPath (.husky/_, set before the run), a submodule's own
    repository (git status runs its core.fsmonitor), and a repository made where
    the command works with a hook in it: each is said."""
    subprocess.run(GIT + ["-C", str(repo), "config", "core.hooksPath", ".husky/_"], check=True)
    os.makedirs(repo / ".husky" / "_")
    os.makedirs(repo / ".git" / "modules" / "sub")
    (repo / ".git" / "modules" / "sub" / "config").write_text("[core]\n")
    r = _run(repo, "echo 'exit 0' > .husky/_/pre-commit && "
                   "printf '[core]\\n\\tfsmonitor = touch x\\n' > .git/modules/sub/config")
    assert f"sbx: the command added the git hook {repo}/.husky/_/pre-commit" in r.stderr, r.stderr
    assert f"sbx: the command changed {repo}/.git/modules/sub/config" in r.stderr, r.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    r = _run(repo, "git init -q . && echo 'exit 0' > .git/hooks/post-checkout", cwd=plain)
    assert f"sbx: the command made the git repository {plain}/.git where it works" in r.stderr, r.stderr
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    r = _run(repo, "git init -q .", cwd=fresh)                     # samples only: nothing runs
    assert "sbx: the command" not in r.stderr, r.stderr


def test_a_fifo_left_as_git_config_does_not_hold_sbx(repo):
    """What sbx reads after the run is the command's to make: a FIFO in place of
    .git/config (and of a .git pointer) would block an open for ever, and sbx
    with it, after the command exited. It is said as a change, and sbx returns."""
    r = _run(repo, "rm .git/config && mkfifo .git/config")
    assert r.returncode == 0, r.stderr
    assert f"sbx: the command changed {repo}/.git/config" in r.stderr, r.stderr

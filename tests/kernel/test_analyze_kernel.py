"""sbx analyze against the real kernel: a static profile must cover what the program does.

For a few programs (the full fifteen are in bench/bench_analyze.py): every
syscall ``sbx trace`` records during a realistic workload is allowed by the
profile ``sbx analyze`` derives from the binary, and the workload runs under
that profile with zero denials (``sbx verify``).  Each sbx command runs as its
own process, as a user would run it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import trace as tr
from sandbox.trace import allowed_syscalls
from sandbox.policy import load_profile, lower
from tests.conftest import need

ROOT = Path(__file__).resolve().parent.parent.parent


def sbx(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(autouse=True)
def requirements():
    need(os.geteuid() == 0, "sbx trace (eBPF) and sbx verify (audit) need root")
    need(os.uname().machine == "x86_64", "sbx analyze handles x86_64")


def workloads(tmp: Path) -> dict[str, tuple[str, list[str]]]:
    (tmp / "f.txt").write_text("".join(f"{i}\n" for i in range(5000)))
    return {
        "ls -la": ("/usr/bin/ls", ["ls", "-la", "/usr/share/doc"]),
        "cat": ("/usr/bin/cat", ["cat", "/etc/services", str(tmp / "f.txt")]),
        "sqlite3": ("/usr/bin/sqlite3", ["sqlite3", str(tmp / "db"), "drop table if exists t; "
                                         "create table t(a); insert into t values (1), (2); "
                                         "select sum(a) from t;"]),
        "python3 -c": ("/usr/bin/python3.11", ["python3", "-c", "import json, os; "
                                               "print(json.dumps(sorted(os.listdir('/etc'))[:3]))"]),
    }


@pytest.mark.parametrize("name", ["ls -la", "cat", "sqlite3", "python3 -c"])
def test_the_static_profile_covers_the_trace_and_runs_the_workload(tmp_path, name):
    binary, argv = workloads(tmp_path)[name]
    need(os.path.exists(binary), f"{binary} is not installed (make deps-test installs it)")
    static, traced = tmp_path / "static.yaml", tmp_path / "traced.yaml"
    r = sbx("analyze", binary, "--no-cache", "-o", str(static))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    r = sbx("trace", "-o", str(traced), "--", *argv)
    assert r.returncode == 0, r.stderr
    seen = {n for n, c in tr.observed_from_profile(load_profile(str(traced)), "x86_64").calls.items()
            if c > 0}
    allowed = allowed_syscalls(lower(load_profile(str(static)), "x86_64"), "x86_64")
    assert len(seen) > 10
    assert seen - allowed <= {"clone3"}, f"traced but not found statically: {sorted(seen - allowed)}"
    r = sbx("verify", "--profile", str(static), "--", *argv)
    assert r.returncode == 0, r.stderr
    assert "no denials" in r.stderr
    # and the merge keeps where each rule came from
    merged = tmp_path / "merged.yaml"
    r = sbx("trace", "--merge", str(static), "-o", str(merged), "--", *argv)
    assert r.returncode == 0, r.stderr
    text = merged.read_text()
    assert "# both: " in text and "# static: " in text


def test_a_confined_command_cannot_plant_an_analysis_summary(tmp_path):
    """The per-library cache is below the filter cache, which every run's Landlock layer
    keeps out of the command's writes: even a profile that grants writing everywhere
    cannot create, replace or remove an entry there."""
    from sandbox.analyze.cache import cache_dir
    assert sbx("analyze", "/bin/true", "-o", str(tmp_path / "true.yaml")).returncode == 0
    d = cache_dir()
    entries = sorted(p for p in d.iterdir() if p.name.endswith(".json"))
    assert entries, f"sbx analyze stored nothing in {d}"
    before = {p: p.read_bytes() for p in entries}
    prof = tmp_path / "everywhere.yaml"
    prof.write_text("name: everywhere\nextends: [default]\nfilesystem:\n  all: [/]\n")
    for script in (f"echo planted > {d}/planted.json", f"echo x > {entries[0]}",
                   f"rm {entries[0]}", f"mv {entries[0]} {d}/moved.json"):
        r = sbx("run", "--profile", str(prof), "--", "sh", "-c", script)
        assert r.returncode != 0, (script, r.stderr)
    assert not (d / "planted.json").exists() and not (d / "moved.json").exists()
    assert {p: p.read_bytes() for p in entries} == before
    # the control: the same profile does write elsewhere
    r = sbx("run", "--profile", str(prof), "--", "sh", "-c", f"echo ok > {tmp_path}/w")
    assert r.returncode == 0 and (tmp_path / "w").read_text() == "ok\n", r.stderr

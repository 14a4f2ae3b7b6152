"""Section 8: the profile life cycle, timed: semantic diffs and fleet builds (pure, no kernel).

``sbx diff`` / ``sbx check --baseline`` on pairs of real profiles (the time
to lower both and split every ABI's syscalls into argument regions, and the
number of changes found); ``sbx profile build`` on synthetic recordings (a
service's calls spread over many hosts) from reading the files to the
profile text, and the convergence summary.
"""
from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from bench_markdown import Section

ROOT = Path(__file__).resolve().parents[1]
PAIRS = (("default", "web"), ("default", "minimal"), ("python", "build"),
         (str(ROOT / "tests" / "fixtures" / "docker-default.yaml"), "default"))
FLEETS = (3, 30, 300)                 # recordings per build
CALLS_PER_RECORDING = 60


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _recordings(directory: Path, n: int) -> list[str]:
    """*n* recordings of one service on n // 3 + 1 hosts: a common core and a random tail each."""
    from bpf_filters import syscalls
    from sandbox.policy import load_profile, lower
    from sandbox.recording import Provenance, write_recording
    rng = random.Random(n)
    table = syscalls.table("x86_64")
    policy = lower(load_profile("default"), "x86_64")
    pool = sorted(nr for nr, rules in policy.arch("x86_64").rules.items()
                  if rules and not rules[0].conds and rules[0].action.kind == "allow")
    core = pool[:30]
    out = []
    for i in range(n):
        calls = {("x86_64", nr): rng.randint(1, 5000)
                 for nr in core + rng.sample(pool[30:], CALLS_PER_RECORDING - len(core))}
        prov = Provenance(f"host-{i % (n // 3 + 1)}", "6.1.0-18-amd64", "glibc 2.36", "x86_64",
                          ["/srv/app", str(i)], f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:"
                          f"{i % 60:02d}Z", 60.0, "ebpf", 0, 0)
        path = directory / f"r{i}.jsonl"
        write_recording(str(path), prov, calls, {})
        out.append(str(path))
    assert all(table.name(nr) for _a, nr in calls)
    return out


def lifecycle(args, settings, state) -> Section:
    from sandbox import diff, drift, fleet
    from sandbox.policy import load_profile
    from sandbox.recording import read_recording
    from bench_report import TITLES
    sec = Section(8, TITLES[8])
    runs = settings.compile_runs
    sec.text(f"Median of {runs} runs, ms, profiles already loaded. diff = lower both profiles and "
             "split every syscall number of the four ABIs into exact argument regions; "
             "drift = the same plus the findings of `sbx check --baseline`.")
    rows, data = [], {"runs": runs, "diff": {}, "build": {}}
    for a, b in PAIRS:
        old, new = load_profile(a), load_profile(b)
        d = diff.diff_profiles(old, new)
        t_diff = _median_ms(lambda: diff.diff_profiles(old, new), runs)
        t_drift = _median_ms(lambda: drift.findings(diff.diff_profiles(old, new)), runs)
        label = f"{Path(a).stem} -> {Path(b).stem}"
        names = len({c.name for c in d.changes})
        rows.append([label, len(d.changes), names, t_diff, t_drift])
        data["diff"][label] = {"changes": len(d.changes), "syscalls": names, "diff_ms": t_diff,
                               "drift_ms": t_drift}
    sec.table(["pair", "changes", "syscalls", "diff ms", "drift ms"], rows)
    sec.text(f"`sbx profile build` on synthetic recordings ({CALLS_PER_RECORDING} syscalls each, "
             "a shared core of 30): read and check every file, merge, write the profile; "
             "convergence summary timed apart.")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in FLEETS:
            d = Path(tmp) / str(n)
            d.mkdir()
            paths = _recordings(d, n)
            files = [read_recording(p) for p in paths]
            t_read = _median_ms(lambda: [read_recording(p) for p in paths], max(1, runs // 3))
            t_build = _median_ms(lambda: fleet.build_profile(files, "app"), max(1, runs // 3))
            t_conv = _median_ms(lambda: fleet.convergence(files, "x86_64"), max(1, runs // 3))
            rows.append([n, t_read, t_build, t_conv])
            data["build"][n] = {"read_ms": t_read, "build_ms": t_build, "convergence_ms": t_conv}
    sec.table(["recordings", "read ms", "build ms", "convergence ms"], rows)
    sec.data = data
    return sec

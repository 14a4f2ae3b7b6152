"""Benchmark: what recording a workload costs with each of sbx trace's recorders, beside strace.

Each workload runs untraced (the launcher's own fork/exec, no filter), under
the eBPF tracer (``sandbox.trace.record.record_ebpf``: total, and the command's own
run once the probe is loaded and attached), under seccomp user notification
(``record_notify``) and under ``strace -f -c -o /dev/null``.  Reports the
median wall time of N runs (after one warm-up) and the syscall count.

Usage: python3 bench/bench_trace.py [--runs N] [--json FILE]
Needs root for the eBPF tracer (its columns are left empty otherwise).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import importlib  # noqa: E402
# the module, not the package's re-exported record() function of the same name
_recorders = importlib.import_module("sandbox.trace.record")
record_ebpf, record_notify = _recorders.record_ebpf, _recorders.record_notify
from sandbox.kernel import spawn  # noqa: E402
from sandbox.ebpf.probe import available  # noqa: E402

MODES = ("untraced", "ebpf", "ebpf_run", "notify", "strace")


def make_repo(root: Path, files: int = 2000) -> Path:
    """A git repository with *files* committed files and one modified."""
    repo = root / "repo"
    (repo / "src").mkdir(parents=True)
    for i in range(files):
        (repo / "src" / f"f{i}.txt").write_text(f"{i}\n")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
    subprocess.run(["git", "init", "-q"], cwd=repo, **quiet)
    subprocess.run(["git", "add", "."], cwd=repo, **quiet)
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b", "commit", "-qm", "x"],
                   cwd=repo, **quiet)
    (repo / "src" / "f0.txt").write_text("changed\n")
    return repo


def workloads(root: Path) -> dict[str, tuple[list[str], Path]]:
    repo = make_repo(root)
    return {
        "tar czf doc/git": (["tar", "czf", str(root / "git.tgz"), "-C", "/usr/share/doc", "git"],
                            root),
        "tar cf doc": (["tar", "cf", str(root / "doc.tar"), "-C", "/usr/share", "doc"], root),
        "git status (2000 files)": (["git", "status", "--porcelain"], repo),
        "python3 -c pass": ([sys.executable, "-c", "pass"], root),
    }


def run_untraced(argv: list[str]) -> float:
    started = time.perf_counter()
    child = spawn.start(spawn.prepare(argv))
    child.wait_exec()
    spawn.wait(child.pid)
    return time.perf_counter() - started


def run_strace(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(["strace", "-f", "-c", "-o", "/dev/null", *argv], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(argv: list[str], cwd: Path, runs: int, ebpf_ok: bool) -> dict:
    old = os.getcwd()
    os.chdir(cwd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)             # the workloads' own output
    try:
        times: dict[str, list[float]] = {m: [] for m in MODES}
        calls = 0
        for i in range(runs + 1):
            sample = {"untraced": run_untraced(argv)}
            if ebpf_ok:
                started = time.perf_counter()
                rec = record_ebpf(argv)
                sample["ebpf"] = time.perf_counter() - started
                sample["ebpf_run"] = rec.seconds
            started = time.perf_counter()
            rec = record_notify(argv)
            sample["notify"] = time.perf_counter() - started
            calls = sum(rec.calls.values())
            if shutil.which("strace"):
                sample["strace"] = run_strace(argv)
            if i:                   # the first round warms caches
                for mode, value in sample.items():
                    times[mode].append(value)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
        os.chdir(old)
    result = {m: round(statistics.median(v) * 1000, 2) for m, v in times.items() if v}
    result["syscalls"] = calls
    return result


def table(results: dict[str, dict]) -> str:
    head = f"{'workload':26} {'syscalls':>8} " + " ".join(f"{m + ' ms':>12}" for m in MODES)
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        cells = " ".join(f"{r[m]:>12.1f}" if m in r else f"{'-':>12}" for m in MODES)
        lines.append(f"{name:26} {r['syscalls']:>8} {cells}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="measured runs per mode (median)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    ebpf_ok, why = available()
    if not ebpf_ok:
        print(f"bench_trace: eBPF tracer unavailable ({why}); its columns stay empty",
              file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="sbx-bench-trace-") as tmp:
        results = {name: measure(argv, cwd, args.runs, ebpf_ok)
                   for name, (argv, cwd) in workloads(Path(tmp)).items()}
    doc = {"runs": args.runs, "unit": "ms (median wall time)",
           "modes": {"untraced": "launcher fork/exec, no filter",
                     "ebpf": "record_ebpf: probe load + attach + run",
                     "ebpf_run": "record_ebpf: the command alone, probe attached",
                     "notify": "record_notify: seccomp user notification",
                     "strace": "strace -f -c -o /dev/null"},
           "results": results}
    print(json.dumps(doc, indent=2))
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""`make bench`: measure sbx beside its peers in one run and write a Markdown report.

Sections: 1 filter cost (executed BPF instructions per syscall), 2 action-cache
coverage, 3 compile time, 4 start-up, 5 real syscall cost in ns, 6 monitor
overhead (bench/bench_monitor.py), 7 trace overhead (bench/bench_trace.py), 8 the profile
life cycle: semantic diff and fleet build (bench/bench_lifecycle.py), 9 static analysis of
15 Debian programs (bench/bench_analyze.py), 10 exported systemd units under a real service
manager (bench/bench_systemd.py), 11 Landlock: openat under a domain and the launch time it adds
(bench/bench_landlock.py).
Every comparison is measured in the same run; the report gives ratios.
The table goes to stdout and to <out>/latest.md, the numbers to <out>/latest.json.

Usage: python3 bench/run.py [--quick] [--sections 1,2,3] [--out DIR] [--mix FILE] [--record-mix]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from bench_markdown import Section  # noqa: E402
import bench_report as report  # noqa: E402

ALL_SECTIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)


class Settings:
    """Iteration counts: full (the published figures) or quick (a smoke run)."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.compile_runs = 3 if quick else 15
        self.startup_runs, self.startup_warmup = (5, 1) if quick else (100, 3)
        self.loop_iterations, self.loop_repeat = (200_000, 1) if quick else (2_000_000, 9)
        self.monitor_iterations, self.monitor_repeat = (200_000, 1) if quick else (1_000_000, 5)
        self.flood_seconds = 3 if quick else 10     # sbx monitor under a denial flood


def _tool_version(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    proc = subprocess.run(argv, capture_output=True, text=True)
    out = (proc.stdout or proc.stderr).strip().splitlines()
    return out[0] if out else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tracing_programs() -> int | None:
    """eBPF tracing programs loaded now (others' probes slow every syscall: a noise source)."""
    if os.geteuid() != 0 or not shutil.which("bpftool"):
        return None
    proc = subprocess.run(["bpftool", "-j", "prog", "list"], capture_output=True, text=True)
    try:
        progs = json.loads(proc.stdout or "[]")
    except ValueError:
        return None
    return sum(p.get("type") in ("tracepoint", "raw_tracepoint", "tracing", "kprobe", "perf_event")
               for p in progs)


def header(settings: Settings) -> dict:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or None
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True,
                           env=dict(os.environ, GIT_OPTIONAL_LOCKS="0")).stdout.strip()
    libseccomp = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libseccomp2"],
                                capture_output=True, text=True).stdout.strip() if shutil.which("dpkg-query") else ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "kernel": platform.release(), "cpu": _cpu_model(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "libseccomp": libseccomp or None,
        "gcc": _tool_version(["gcc", "--version"]), "hyperfine": _tool_version(["hyperfine", "--version"]),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "tracing_programs_at_start": tracing_programs(),
        "commit": f"{commit}{'+dirty' if dirty else ''}" if commit else None,
        "uid": os.geteuid(), "mode": "quick" if settings.quick else "full",
    }


def render_header(h: dict) -> str:
    lines = ["# sbx benchmarks", "",
             f"- date: {h['date']}, mode: {h['mode']}, commit: {h['commit']}",
             f"- kernel: {h['kernel']}; CPU: {h['cpu']} ({h['cpus']} cpus); "
             f"load average at start: {' '.join(h['loadavg_at_start'])}; eBPF tracing programs "
             f"loaded at start: {h['tracing_programs_at_start']}",
             f"- Python {h['python']}; libseccomp {h['libseccomp']}; {h['gcc']}; {h['hyperfine']}",
             "- ratios compare figures measured in this same run; absolute numbers depend on the machine",
             ""]
    return "\n".join(lines)


def run_section(number: int, args, settings: Settings, state: dict) -> Section:
    builders = {1: report.filter_cost, 2: report.cacheability, 3: report.compile_time,
                4: report.startup, 5: report.syscall_cost, 6: report.monitor_overhead,
                7: report.trace_overhead, 8: report.lifecycle, 9: report.static_analysis,
                10: report.systemd_units, 11: report.landlock}
    try:
        return builders[number](args, settings, state)
    except Exception as err:            # one broken section must not hide the others
        sec = Section(number, report.TITLES[number])
        sec.text(f"**error**: {type(err).__name__}: {err}")
        sec.data = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        state["failed"] = True
        return sec


def jsonable(value):
    if isinstance(value, dict):
        return {("/".join(map(str, k)) if isinstance(k, tuple) else str(k)): jsonable(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations: a smoke run")
    parser.add_argument("--sections", default=",".join(map(str, ALL_SECTIONS)),
                        help="comma-separated section numbers (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="directory for latest.md and latest.json")
    parser.add_argument("--mix", type=Path, default=HERE / "results" / "mix.json",
                        help="recorded syscall mix (recorded there if missing)")
    parser.add_argument("--record-mix", action="store_true", help="record the mix again")
    args = parser.parse_args(argv)
    try:
        args.sections = sorted({int(s) for s in args.sections.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sections takes numbers from {ALL_SECTIONS}")
    if not set(args.sections) <= set(ALL_SECTIONS):
        parser.error(f"--sections takes numbers from {ALL_SECTIONS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(args.quick)
    started = time.perf_counter()
    head = header(settings)
    print(render_header(head), flush=True)
    state: dict = {"failed": False}
    sections = []
    for number in args.sections:
        t0 = time.perf_counter()
        sec = run_section(number, args, settings, state)
        sec.data["seconds"] = round(time.perf_counter() - t0, 2)
        sections.append(sec)
        print(sec.render(), flush=True)
    head["seconds"] = round(time.perf_counter() - started, 1)
    footer = f"_whole run: {head['seconds']} s_\n"
    print(footer)
    args.out.mkdir(parents=True, exist_ok=True)
    text = render_header(head) + "\n" + "\n".join(s.render() for s in sections) + "\n" + footer
    (args.out / "latest.md").write_text(text)
    data = {"header": head, "sections": {str(s.number): {"title": s.title, **s.data} for s in sections}}
    (args.out / "latest.json").write_text(json.dumps(jsonable(data), indent=1) + "\n")
    print(f"written {args.out / 'latest.md'} and {args.out / 'latest.json'}")
    return 1 if state["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

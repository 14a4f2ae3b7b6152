"""Benchmark: added cost per syscall of the attached eBPF monitor/tracer.

A small C program (built with the system C compiler in a temp dir) calls
getppid() N times and prints ns per call.  It runs with no probe (baseline),
then with a probe attached while it is untracked (the cost every process on
the machine pays) and tracked (the sandboxed program's cost), for each
program family and mode.  Prints a table and writes JSON.

With --flood S it also measures `sbx monitor` itself under a denial flood:
bench/loop.c installs the default profile's filter and calls the denied
syslog() as fast as it can for S seconds while `sbx monitor --json --pid`
watches it (output to a file); the monitor's RSS is sampled every 0.5 s and
its peak is its own VmHWM, and the rate is the loop's own call count.

Usage: python3 bench/bench_monitor.py [--iterations N] [--repeat R] [--flood S] [--json FILE]
Needs root.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from sandbox.ebpf.probe import FAMILIES, Probe, ProbeUnavailable  # noqa: E402

LOOP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct timespec a, b;
    for (long i = 0; i < n / 10; i++) syscall(SYS_getppid);   /* warm up */
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.2f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
"""


def build_loop(workdir: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        sys.exit("bench_monitor: needs a C compiler (cc/gcc)")
    src, exe = workdir / "loop.c", workdir / "loop"
    src.write_text(LOOP_C)
    subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def run_loop(exe: Path, iterations: int, probe: Probe | None = None) -> float:
    """ns per getppid(); if *probe* is given the loop process is tracked."""
    read_fd, write_fd = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: wait until tracked, then exec the loop
        os.close(write_fd)
        os.close(out_r)
        os.read(read_fd, 1)
        os.dup2(out_w, 1)
        os.execv(str(exe), [str(exe), str(iterations)])
    os.close(read_fd)
    os.close(out_w)
    if probe is not None:
        probe.track_pid(pid)
    os.write(write_fd, b"go")
    os.close(write_fd)
    with os.fdopen(out_r) as out:
        text = out.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"loop exited with status {status}")
    return float(text)


def best(exe: Path, iterations: int, repeat: int, probe: Probe | None = None) -> float:
    return statistics.median(run_loop(exe, iterations, probe) for _ in range(repeat))


def measure(iterations: int, repeat: int) -> dict:
    results: dict = {"iterations": iterations, "repeat": repeat, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_loop(Path(tmp))
        baselines = []
        for family in FAMILIES:
            for mode in ("monitor", "trace"):
                baseline = best(exe, iterations, repeat)   # re-measured: VMs drift
                baselines.append(baseline)
                started = time.perf_counter()
                try:
                    probe = Probe(mode, family=family)
                except ProbeUnavailable as err:
                    results[f"{family}/{mode}"] = {"unavailable": err.reason}
                    continue
                with probe:
                    wall = time.perf_counter() - started
                    untracked = best(exe, iterations, repeat)
                    tracked = best(exe, iterations, repeat, probe)
                    counted = sum(probe.counters()["calls"].values())
                results[f"{family}/{mode}"] = {
                    "load_attach_ms": round(wall * 1e3, 2), "baseline_ns": baseline,
                    "untracked_ns": untracked, "tracked_ns": tracked,
                    "untracked_added_ns": round(untracked - baseline, 2),
                    "tracked_added_ns": round(tracked - baseline, 2),
                    "calls_counted": counted,
                }
        results["baseline_ns"] = statistics.median(baselines)
    return results


def _memory_kib(pid: int) -> tuple[int | None, int | None]:
    """(VmRSS, VmHWM) of *pid* itself; wait4's ru_maxrss would also count reaped children."""
    found = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    found[line[:5]] = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return found.get("VmRSS"), found.get("VmHWM")


def measure_flood(seconds: int) -> dict:
    """`sbx monitor --json --pid` on bench/loop.c denied for *seconds*: its RSS
    over time and at peak, the denial rate, and what it delivered and counted."""
    import re
    from sandbox.policy import build_filter, load_profile
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        sys.exit("bench_monitor: needs a C compiler (cc/gcc)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        loop, flt = work / "loop", work / "default.bpf"
        subprocess.run([cc, "-O2", "-o", str(loop), str(HERE / "loop.c")], check=True)
        flt.write_bytes(build_filter(load_profile("default")).encode())
        flood = subprocess.Popen(["sh", "-c", 'read go; exec "$@"', "sh", str(loop), str(flt),
                                  "syslog", f"{seconds}s"], text=True, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
        out, err = open(work / "out", "w"), open(work / "err", "w+")
        mon = subprocess.Popen([sys.executable, "-m", "sandbox", "monitor", "--json", "--pid",
                                str(flood.pid)], cwd=ROOT, stdout=out, stderr=err)
        while "watching" not in (work / "err").read_text():
            if mon.poll() is not None:
                raise RuntimeError("sbx monitor ended: " + (work / "err").read_text())
            time.sleep(0.05)
        idle = _memory_kib(mon.pid)[0]
        flood.stdin.write("go\n")
        flood.stdin.close()
        samples, peak, started = [], 0, time.monotonic()
        while flood.poll() is None:
            rss, hwm = _memory_kib(mon.pid)
            if rss is not None:
                samples.append((round(time.monotonic() - started, 1), rss))
                peak = max(peak, hwm or 0)
            time.sleep(0.5)
        ns, _first, _errno, calls = flood.stdout.read().split()
        while mon.poll() is None:                 # the monitor drains the buffer, then ends
            peak = max(peak, _memory_kib(mon.pid)[1] or 0)
            time.sleep(0.05)
        text = (work / "err").read_text()
        delivered = sum(1 for _ in open(work / "out"))
    m = re.search(r"(\d+) denials in .*; (\d+) events delivered, (\d+) dropped", text)
    if mon.returncode != 0 or not m:
        raise RuntimeError(f"sbx monitor exited {mon.returncode}: {text[-400:]}")
    calls = int(calls)
    return {"seconds": seconds, "calls": calls, "denials_per_s": round(1e9 / float(ns)),
            "counted": int(m.group(1)), "delivered": delivered, "dropped": int(m.group(3)),
            "delivered_per_s": round(delivered / seconds), "exact": int(m.group(1)) == calls
            and delivered + int(m.group(3)) == calls,
            "rss_idle_kib": idle, "rss_peak_kib": peak,
            "rss_first_kib": samples[0][1] if samples else None,
            "rss_last_kib": samples[-1][1] if samples else None, "rss_samples": samples}


def print_table(results: dict) -> None:
    print(f"getppid x {results['iterations']}, median of {results['repeat']} runs; "
          f"baseline (no probe) {results['baseline_ns']:.1f} ns/call")
    print(f"{'probe':<18}{'load+attach ms':>16}{'baseline ns':>13}"
          f"{'untracked +ns':>15}{'tracked +ns':>13}")
    for key, row in results.items():
        if not isinstance(row, dict):
            continue
        if "unavailable" in row:
            print(f"{key:<18}unavailable: {row['unavailable']}")
            continue
        print(f"{key:<18}{row['load_attach_ms']:>16.1f}{row['baseline_ns']:>13.1f}"
              f"{row['untracked_added_ns']:>15.1f}{row['tracked_added_ns']:>13.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--flood", type=int, metavar="S",
                        help="also run sbx monitor for S seconds of a denial flood")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_monitor: needs root")
    results = measure(args.iterations, args.repeat)
    print_table(results)
    if args.flood:
        flood = results["flood"] = measure_flood(args.flood)
        print(f"sbx monitor under {flood['denials_per_s'] / 1e6:.2f} M denials/s for "
              f"{flood['seconds']} s: RSS idle {flood['rss_idle_kib'] // 1024} MiB, peak "
              f"{flood['rss_peak_kib'] // 1024} MiB; {flood['delivered']} of {flood['calls']} "
              f"delivered, counts exact: {flood['exact']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

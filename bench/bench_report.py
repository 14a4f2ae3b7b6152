"""The report's sections: run each benchmark and turn its numbers into tables.

Every builder takes (args, settings, state) and returns a ``Section``;
``state`` carries what several sections share (the compiled profiles, the mix).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_markdown import Section, ratio, trio, verdict

HERE = Path(__file__).resolve().parent
TITLES = {
    1: "Filter cost: executed BPF instructions per syscall",
    2: "Allowed syscalls the kernel's action cache can skip",
    3: "Compile time",
    4: "Start-up",
    5: "Real syscall cost (ns per call)",
    6: "Monitor overhead (eBPF, ns per syscall)",
    7: "Trace overhead",
    8: "Profile life cycle: semantic diff, drift gate, fleet build",
    9: "Static analysis (sbx analyze) on 15 Debian programs",
    10: "Exported systemd units under a real service manager",
    11: "Landlock: openat under a domain, and the launch time it adds",
}
TARGET = 0.7            # sbx mean and max <= 0.7 x libseccomp's binary tree on Docker's default
STARTUP_TARGET_MS = 5.0


def mix_for(args, state: dict):
    """The recorded syscall mix (recorded now if missing), or None with a reason."""
    if "mix" in state:
        return state["mix"]
    from bench_mix import load_mix, record_mix, save_mix
    from bench_filters import profile_refs
    mix = None if args.record_mix else load_mix(args.mix)
    state["mix_note"] = f"mix: {args.mix.name}"
    if mix is None:
        try:
            mix = record_mix([ref for _, ref, _ in profile_refs()])
            save_mix(mix, args.mix)
            state["mix_note"] = f"mix: recorded now into {args.mix}"
        except Exception as err:            # noqa: BLE001 - reported in the table instead
            state["mix_note"] = f"no mix (cannot record one: {err}): weighted columns are n/a"
    state["mix"] = mix
    return mix


def profiles(args, state: dict) -> list[dict]:
    if "profiles" not in state:
        from bench_filters import measure_profile, profile_refs
        mix = mix_for(args, state)
        state["profiles"] = [measure_profile(label, ref, only, mix)
                             for label, ref, only in profile_refs()]
    return state["profiles"]


def _p(row: dict, prog: str, key: str):
    return row["programs"][prog].get(key)


def _changes(notes: dict) -> str:
    parts = []
    if notes["complemented"]:
        parts.append("as allow-when-not: " + ", ".join(notes["complemented"]))
    if notes["dropped"]:
        parts.append("arg checks dropped: " + ", ".join(notes["dropped"]))
    if notes["unnamed"]:
        parts.append(f"{len(notes['unnamed'])} left to default (libseccomp cannot name them: "
                     + ", ".join(notes["unnamed"]) + ")")
    return "; ".join(parts) or "none (unknown = default only)"


def filter_cost(args, settings, state) -> Section:
    from bench_filters import NR_MAX
    rows = profiles(args, state)
    mix = state["mix"]
    sec = Section(1, TITLES[1])
    sec.text(f"sbx / libseccomp linear (optimize=1) / libseccomp binary tree (optimize=2), all three "
             f"compiled from the same policy (the profile reduced to what libseccomp can express, see "
             f"the last table) and run in sbx's interpreter. Uniform: nr 0..{NR_MAX}, x86_64, args 0. "
             f"'agree' = numbers where all three match the policy's meaning (of {NR_MAX + 1}).")
    sec.table(["profile", "insns sbx / lin / tree", "mean sbx / lin / tree", "max sbx / lin / tree",
               "mean sbx/tree", "max sbx/tree", "agree"],
              [[r["label"], trio(*(_p(r, k, "insns") for k in ("sbx", "lin", "tree"))),
                trio(*(_p(r, k, "mean") for k in ("sbx", "lin", "tree"))),
                trio(*(_p(r, k, "max") for k in ("sbx", "lin", "tree"))),
                ratio(_p(r, "sbx", "mean"), _p(r, "tree", "mean")),
                ratio(_p(r, "sbx", "max"), _p(r, "tree", "max")),
                NR_MAX + 1 - r["disagreements"]] for r in rows])
    if mix is not None:
        sec.text(f"Weighted by a recorded mix of {mix.total} x86_64 syscalls "
                 f"({'; '.join(mix.workload)}), arguments as recorded. 'After cache': a syscall the "
                 f"kernel's action cache serves costs 0 instructions.")
    else:
        sec.text(state["mix_note"])
    sec.table(["profile", "weighted sbx / lin / tree", "sbx/tree", "after cache sbx / lin / tree",
               "sbx/tree"],
              [[r["label"], trio(*(_p(r, k, "weighted") for k in ("sbx", "lin", "tree"))),
                ratio(_p(r, "sbx", "weighted"), _p(r, "tree", "weighted")),
                trio(*(_p(r, k, "weighted_after_cache") for k in ("sbx", "lin", "tree"))),
                ratio(_p(r, "sbx", "weighted_after_cache"), _p(r, "tree", "weighted_after_cache"))]
               for r in rows])
    sec.text("sbx on the profile as written (what `sbx run` installs), and how the shared policy differs:")
    sec.table(["profile", "insns", "mean", "max", "weighted", "after cache", "shared policy changes"],
              [[r["label"], _p(r, "written", "insns"), _p(r, "written", "mean"), _p(r, "written", "max"),
                _p(r, "written", "weighted"), _p(r, "written", "weighted_after_cache"),
                _changes(r["notes"])] for r in rows], align="lrrrrrl")
    targets = {}
    for r in rows:
        if not r["label"].startswith("docker-default"):
            continue
        tree_mean, tree_max = _p(r, "tree", "mean"), _p(r, "tree", "max")
        line = []
        for key, what in (("written", "as written"), ("sbx", "same policy")):
            rm, rx = _p(r, key, "mean") / tree_mean, _p(r, key, "max") / tree_max
            ok = rm <= TARGET and rx <= TARGET
            targets[f"{r['label']}/{key}"] = {"mean_ratio": rm, "max_ratio": rx, "pass": ok}
            line.append(f"sbx {what}: mean {rm:.2f}x, max {rx:.2f}x -> {verdict(ok)}")
        sec.text(f"**Target on {r['label']}** (mean and max <= {TARGET}x libseccomp tree): " + "; ".join(line)
                 + f" (max at: sbx {_p(r, 'written', 'max_at')}, libseccomp tree {_p(r, 'tree', 'max_at')})")
    sec.data = {"mix": state["mix_note"], "targets": targets,
                "profiles": [{k: v for k, v in r.items() if k not in ("policy", "shared")} for r in rows]}
    return sec


def cacheability(args, settings, state) -> Section:
    rows = profiles(args, state)
    sec = Section(2, TITLES[2])
    sec.text("Arg-free allows of the shared policy (x86_64) that the kernel's action cache would skip "
             "(bpf_filters.action_cache emulates seccomp_is_const_allow), and the share of the mix's calls "
             "that skip the filter.")
    out = []
    for r in rows:
        share = [_p(r, k, "cacheable_share") for k in ("sbx", "lin", "tree")]
        mixed = [_p(r, k, "mix_calls_cached") for k in ("sbx", "lin", "tree")]
        out.append([r["label"], _p(r, "sbx", "arg_free_allows"),
                    trio(*(_p(r, k, "cacheable") for k in ("sbx", "lin", "tree"))),
                    trio(*(f"{s:.1%}" if s is not None else None for s in share)),
                    trio(*(f"{m:.1%}" if m is not None else None for m in mixed)),
                    f"{_p(r, 'written', 'cacheable')}/{_p(r, 'written', 'arg_free_allows')}"])
    sec.table(["profile", "arg-free allows", "cacheable sbx / lin / tree", "share sbx / lin / tree",
               "mix calls cached sbx / lin / tree", "sbx as written"], out)
    sec.data = {"profiles": {r["label"]: {k: {f: r["programs"][k].get(f) for f in
                                              ("arg_free_allows", "cacheable", "cacheable_share",
                                               "mix_calls_cached")} for k in r["programs"]}
                             for r in rows}}
    return sec


def compile_time(args, settings, state) -> Section:
    from bench_filters import compile_times
    rows = profiles(args, state)
    sec = Section(3, TITLES[3])
    sec.text(f"Median of {settings.compile_runs} runs, ms. sbx YAML->bytes = load + lower + compile "
             f"(what a cold `sbx run` pays; a warm one reads its cache); the other columns compile the "
             f"shared policy IR to bytes.")
    out, data = [], {}
    for r in rows:
        t = compile_times(r["ref"], r["only_arch"], r["shared"], settings.compile_runs)
        data[r["label"]] = t
        out.append([r["label"], t["sbx_from_yaml"], t["sbx"], t["lin"], t["tree"], ratio(t["sbx"], t["tree"])])
    sec.table(["profile", "sbx YAML->bytes", "sbx IR->bytes", "libseccomp lin", "libseccomp tree",
               "sbx/tree"], out)
    sec.data = {"runs": settings.compile_runs, "ms": data, "generated": generated_profiles(sec, settings)}
    return sec


def generated_profiles(sec: Section, settings) -> dict:
    """Rows for bench_scale's generated profiles of 1k, 4k and 10k rules."""
    import bench_scale
    runs = 1 if settings.quick else 3
    res = bench_scale.measure(bench_scale.SIZES, runs)
    sec.text(f"Generated profiles (bench/bench_scale.py), median of {runs}, ms: load = read, parse "
             "(PyYAML), resolve, lower; compile = code, optimize, verify, encode. 'mixed': every "
             "kind of condition, past ~1,000 rules too large for the kernel (timed to the "
             "positioned error); 'values': one value per rule, in runs (merged into ranges).")
    rows = []
    for shape, by_size in res.items():
        for n, r in by_size.items():
            size = f"{r['insns']} insns" if r["insns"] else "too large: " + r["error"].split(";")[0] \
                .removeprefix("the filter is too large for the kernel: ")
            rows.append([shape, n, round(r["yaml_bytes"] / 1024), r["load_ms"], r["compile_ms"],
                         r["compile_ms"] * 1000 / n, size])
    sec.table(["shape", "rules", "YAML KiB", "load ms", "compile ms", "compile us/rule", "program"],
              rows, "lrrrrrl")
    return res


def startup(args, settings, state) -> Section:
    import bench_startup
    res = bench_startup.measure(settings.startup_runs, settings.startup_warmup)
    sec = Section(4, TITLES[4])
    sec.text(f"{res['tool']}, {res['runs']} runs after {res['warmup']} warm-up runs each, "
             f"warm filter cache. " + (res["note"] or ""))
    r = res["results"]
    base = r.get("/bin/true", {}).get("mean_ms")
    sec.table(["command", "mean ± stddev ms", "median ms", "min ms", "x /bin/true"],
              [[label, f"{v['mean_ms']:.2f} ± {v['stddev_ms']:.2f}", v["median_ms"], v["min_ms"],
                ratio(v["mean_ms"], base)] for label, v in r.items()])
    for label, err in res["errors"].items():
        sec.text(f"- {label}: not measured: {err}")
    if res["installed"]:
        sec.text(f"- installed for this run: {', '.join(res['installed'])}")
    if res["missing"]:
        sec.text(f"- missing (install as root: apt-get install -y bubblewrap firejail hyperfine): "
                 f"{', '.join(res['missing'])}")
    floor = r.get("python3 -I -S -c pass")
    summary = {}
    for label in ("sbx run -- /bin/true", "sbx run --profile web -- /bin/true"):
        if label not in r or floor is None:
            continue
        over = r[label]["mean_ms"] - floor["mean_ms"]
        over_median = r[label]["median_ms"] - floor["median_ms"]
        summary[label] = {"overhead_over_python_ms": over, "overhead_median_ms": over_median,
                          "pass": over <= STARTUP_TARGET_MS}
        peers = [f"{ratio(r[label]['mean_ms'], r[p]['mean_ms']):.2f}x {p.split()[0]}"
                 for p in ("bwrap --seccomp (web filter)", "firejail --noprofile --seccomp") if p in r]
        sec.text(f"**{label}**: {over:+.2f} ms over `python3 -I -S -c pass` (medians: {over_median:+.2f}; "
                 f"target <= {STARTUP_TARGET_MS:.0f} ms: {verdict(over <= STARTUP_TARGET_MS)}); "
                 + ", ".join(peers))
    sec.data = {**res, "summary": summary}
    return sec


def syscall_cost(args, settings, state) -> Section:
    import bench_syscall
    res = bench_syscall.measure(settings.loop_iterations, settings.loop_repeat)
    sec = Section(5, TITLES[5])
    sec.text(f"bench/loop.c, {res['iterations']} calls per run, median of {res['repeat']} interleaved "
             f"runs; filter = Docker's default (x86_64 + i386 + x32) compiled by sbx and libseccomp. "
             f"In brackets: instructions the filter executes (0 = skipped via the action cache).")
    ns, interp = res["ns"], res["interp"]
    names = {"none": "no filter", "sbx": "sbx", "tree": "libseccomp tree", "lin": "libseccomp linear"}
    cases = {"getppid": "getppid (arg-free allow)", "syslog": "syslog (denied, errno)",
             "personality": "personality(0xffffffff) (arg-checked allow)"}
    rows, per_insn = [], []
    for case, text in cases.items():
        row = [text]
        for f in bench_syscall.FILTERS:
            cost = f" [{interp[(f, case)]['executed']}]" if (f, case) in interp else ""
            row.append(f"{ns[(f, case)]:.1f}{cost}")
        row.append(ns[("sbx", case)] - ns[("tree", case)])
        rows.append(row)
        extra = interp[("lin", case)]["executed"] - interp[("sbx", case)]["executed"]
        if extra > 0:
            per_insn.append((ns[("lin", case)] - ns[("sbx", case)]) / extra)
    sec.table(["syscall"] + [names[f] for f in bench_syscall.FILTERS] + ["sbx - tree ns"], rows)
    if per_insn:
        res["ns_per_insn"] = sum(per_insn) / len(per_insn)
        sec.text(f"Cost of one executed filter instruction, from the linear filter's extra instructions "
                 f"over sbx's on the uncached calls: {res['ns_per_insn']:.3f} ns. A denied call skips "
                 f"the syscall's own work, so its 'no filter' figure is the call itself, not a base.")
    for err in res["errors"]:
        sec.text(f"- **unexpected result**: {err}")
    res = dict(res)
    res["interp"] = {f"{k[0]}/{k[1]}": v for k, v in interp.items()}
    sec.data = res
    return sec


def monitor_overhead(args, settings, state) -> Section:
    sec = Section(6, TITLES[6])
    script = HERE / "bench_monitor.py"
    if os.geteuid() != 0:
        sec.text("skipped: bench/bench_monitor.py needs root (eBPF)")
        sec.data = {"skipped": "needs root"}
        return sec
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "monitor.json"
        proc = subprocess.run([sys.executable, str(script), "--iterations", str(settings.monitor_iterations),
                               "--repeat", str(settings.monitor_repeat),
                               "--flood", str(settings.flood_seconds), "--json", str(out)],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"bench_monitor.py exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
        data = json.loads(out.read_text())
    sec.text(f"getppid x {data['iterations']}, median of {data['repeat']} runs; baseline without a probe "
             f"{data['baseline_ns']:.1f} ns/call. Untracked: a process the probe ignores (every process "
             f"on the host pays this); tracked: the sandboxed process.")
    rows = []
    for key, row in data.items():
        if not isinstance(row, dict) or key == "flood":
            continue
        if "unavailable" in row:
            rows.append([key, None, None, None, None, f"unavailable: {row['unavailable']}"])
            continue
        rows.append([key, row["load_attach_ms"], row["baseline_ns"], row["untracked_added_ns"],
                     row["tracked_added_ns"], ""])
    sec.table(["probe", "load+attach ms", "baseline ns", "untracked +ns", "tracked +ns", "note"], rows)
    sec.text("Added ns are differences of medians; a negative one is below this run's noise.")
    f = data.get("flood")
    if f:
        mib = lambda kib: None if kib is None else round(kib / 1024, 1)   # noqa: E731
        sec.text(f"`sbx monitor --json --pid` on bench/loop.c, denied syslog() by the default "
                 f"profile's filter as fast as it calls, for {f['seconds']} s (output to a file). "
                 "RSS in MiB: before the flood, at the first and last 0.5 s sample, and the peak "
                 "(the monitor's VmHWM). 'exact': the in-kernel count equals the loop's calls and delivered + "
                 "dropped equals it too.")
        sec.table(["denials/s", "seconds", "calls", "delivered/s", "dropped", "RSS idle",
                   "RSS first", "RSS last", "RSS peak", "exact"],
                  [[f["denials_per_s"], f["seconds"], f["calls"], f["delivered_per_s"], f["dropped"],
                    mib(f["rss_idle_kib"]), mib(f["rss_first_kib"]), mib(f["rss_last_kib"]),
                    mib(f["rss_peak_kib"]), f["exact"]]])
    sec.data = data
    return sec


def trace_overhead(args, settings, state) -> Section:
    sec = Section(7, TITLES[7])
    script = HERE / "bench_trace.py"
    if not script.exists():
        sec.text("bench/bench_trace.py is not present: no trace measurement in this run")
        sec.data = {"skipped": "bench/bench_trace.py absent"}
        return sec
    helptext = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "trace.json"
        argv = [sys.executable, str(script)]
        if "--json" in helptext:
            argv += ["--json", str(out)]
        if settings.quick and "--runs" in helptext:
            argv += ["--runs", "1"]
        proc = subprocess.run(argv, capture_output=True, text=True)
        data = json.loads(out.read_text()) if out.exists() else None
    if proc.returncode != 0:
        raise RuntimeError(f"bench_trace.py exited {proc.returncode}: "
                           f"{(proc.stderr.strip() or proc.stdout.strip())[-400:]}")
    results = data.get("results") if isinstance(data, dict) else None
    if isinstance(results, dict) and all(isinstance(v, dict) for v in results.values()):
        cols = list(dict.fromkeys(k for row in results.values() for k in row))
        sec.text(f"bench/bench_trace.py: {data.get('unit', '')}"
                 + (f", {data['runs']} runs" if "runs" in data else ""))
        sec.table(["workload"] + cols, [[name] + [row.get(c) for c in cols] for name, row in results.items()])
        modes = data.get("modes") or {}
        if modes:
            sec.text("\n".join(f"- {mode}: {text}" for mode, text in modes.items()))
    else:
        sec.text("```\n" + proc.stdout.rstrip() + "\n```")
    sec.data = {"json": data, "stdout": None if data else proc.stdout}
    return sec


def lifecycle(args, settings, state) -> Section:
    from bench_lifecycle import lifecycle as measure
    return measure(args, settings, state)


def landlock(args, settings, state) -> Section:
    from bench_landlock import section
    return section(settings)


def systemd_units(args, settings, state) -> Section:
    from bench_systemd import systemd_units as measure
    return measure(args, settings, state)


def static_analysis(args, settings, state) -> Section:
    sec = Section(9, TITLES[9])
    script = HERE / "bench_analyze.py"
    if os.geteuid() != 0:
        sec.text("skipped: bench/bench_analyze.py needs root (sbx trace with eBPF, sbx verify)")
        sec.data = {"skipped": "needs root"}
        return sec
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "analyze.json"
        argv = [sys.executable, str(script), "--json", str(out)]
        if settings.quick:
            argv += ["--only", "ls,cat,sqlite3"]
        else:
            argv += ["--runs", "3"]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if not out.exists():
            raise RuntimeError(f"bench_analyze.py exited {proc.returncode}: "
                               f"{(proc.stderr.strip() or proc.stdout.strip())[-400:]}")
        data = json.loads(out.read_text())
    default = data["default"]
    rows = []
    for name, r in data["results"].items():
        if "error" in r:
            rows.append([name, None, None, default, None, None, None, r["error"][:80]])
            continue
        sound = "yes" if not r["misses"] else "missed " + ", ".join(r["misses"])
        rows.append([name, r["static"], r["traced"], default, r["cold_s"], r["warm_s"], sound,
                     "0 denials" if r["verify_status"] == 0 else r["verify"][:80]])
    sec.text(f"Syscalls each profile allows (the launcher's needs included), the time to analyse "
             f"the program and its libraries (cold: nothing cached; warm: the libraries from the "
             f"per-build-id cache, the program itself analysed), whether every syscall the "
             f"traced workload made is in the static profile, and `sbx verify` of the workload "
             f"under the static profile. Median over the programs: static "
             f"{data['median_static']}, traced {data['median_traced']}, default {default}.")
    sec.table(["program", "static", "traced", "default", "cold s", "warm s", "trace within static",
               "verify under static"], rows, "lrrrrrll")
    sec.data = data
    return sec

"""Real cost of a syscall under each filter, in ns per call (bench/loop.c).

Docker's default profile (all three x86 ABIs, as runc installs it) is
compiled by sbx and by libseccomp (binary tree and linear); bench/loop.c,
built here with the system C compiler, installs one filter and times one
syscall in a loop: an arg-free allow (getppid, skipped through the kernel's
action cache), a denial (syslog, errno) and an allow decided by an argument
(personality(0xffffffff)). Runs of the configurations are interleaved and
the median of the repeats is kept, so slow drift hits all of them alike.
The interpreter's count of executed instructions is shown beside each.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from bpf_filters import insn as I
from bpf_filters.action_cache import is_const_allow
from bpf_filters.interp import SeccompData, run
from bpf_filters.syscalls import AUDIT_ARCH, table

from bench_filters import DOCKER, ROOT, compile_all, load_policy

HERE = Path(__file__).resolve().parent
X86_64 = AUDIT_ARCH["x86_64"]
# case -> (syscall name, args, expected errno under Docker's default: 0 = allowed)
CASES = {"getppid": ("getppid", (0,) * 6, 0),
         "syslog": ("syslog", (10, 0, 0, 0, 0, 0), 1),
         "personality": ("personality", (0xFFFFFFFF, 0, 0, 0, 0, 0), 0)}
FILTERS = ("none", "sbx", "tree", "lin")


class SyscallBenchError(Exception):
    pass


def build_loop(work: Path) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise SyscallBenchError("no C compiler (gcc/cc) to build bench/loop.c")
    exe = work / "loop"
    subprocess.run([cc, "-O2", "-Wall", "-o", str(exe), str(HERE / "loop.c")], check=True)
    return exe


def docker_filters(work: Path) -> dict[str, Path | None]:
    """The raw filter files: sbx, libseccomp tree, libseccomp linear."""
    # the policy both compilers can express (bench_filters.compile_all: the i386
    # multiplexers' first-match guards have no libseccomp form), compiled by each
    _, _, progs = compile_all(load_policy(str(ROOT / DOCKER), None))
    blobs = {name: I.pack(progs[name]) for name in ("sbx", "tree", "lin")}
    out: dict[str, Path | None] = {"none": None}
    for name, blob in blobs.items():
        out[name] = work / f"{name}.bpf"
        out[name].write_bytes(blob)
    return out


def interp_costs(files: dict[str, Path | None]) -> dict:
    """(filter, case) -> executed instructions, whether cached, expected errno."""
    t = table("x86_64")
    out = {}
    for name, path in files.items():
        if path is None:
            continue
        prog = I.unpack(path.read_bytes())
        for case, (sysname, args, _) in CASES.items():
            nr = t.nr(sysname)
            res = run(prog, SeccompData(nr, X86_64, args), trace=False)
            cached = is_const_allow(prog, X86_64, nr)
            out[(name, case)] = {"executed": 0 if cached else res.executed,
                                 "interp_executed": res.executed, "cached": cached,
                                 "ret": res.value}
    return out


def run_once(exe: Path, filt: Path | None, case: str, iterations: int) -> tuple[float, int, int]:
    proc = subprocess.run([str(exe), str(filt) if filt else "-", case, str(iterations)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SyscallBenchError(f"loop {case} under {filt}: {proc.stderr.strip() or proc.returncode}")
    ns, ret, err = proc.stdout.split()
    return float(ns), int(ret), int(err)


def measure(iterations: int, repeat: int) -> dict:
    """{"ns": {(filter, case): median}, "runs": ..., "interp": ..., "errors": [...]}."""
    with tempfile.TemporaryDirectory(prefix="sbx-bench-") as tmp:
        work = Path(tmp)
        exe = build_loop(work)
        files = docker_filters(work)
        samples: dict[tuple[str, str], list[float]] = {}
        errors = []
        for _ in range(repeat):
            for case in CASES:
                for name in FILTERS:
                    ns, ret, err = run_once(exe, files[name], case, iterations)
                    samples.setdefault((name, case), []).append(ns)
                    want = CASES[case][2] if name != "none" else None
                    if want is not None and err != want:
                        errors.append(f"{case} under {name}: errno {err}, expected {want}")
        costs = interp_costs(files)
    ns = {k: statistics.median(v) for k, v in samples.items()}
    return {"ns": ns, "samples": samples, "interp": costs, "errors": sorted(set(errors)),
            "iterations": iterations, "repeat": repeat, "cpus": os.cpu_count()}

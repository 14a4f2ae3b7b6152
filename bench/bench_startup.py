"""Start-up time of ``sbx run`` next to its peers, measured in one run.

Commands: bare /bin/true, the Python floor (``python3 -I -S -c pass``), the
installed launcher with a warm filter cache (default and web profiles),
bubblewrap given a real filter (sbx's web profile, raw bytes on fd 9) and
firejail with its seccomp filter. hyperfine measures them when installed
(no shell; bwrap's filter file stays open on fd 9 and is rewound before each
run); otherwise a Python loop times spawn-to-exit. A peer
that is missing or fails is reported with its error instead of a number.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_filters import ROOT

FD = 9
APT_PEERS = {"bwrap": "bubblewrap", "firejail": "firejail", "hyperfine": "hyperfine"}


@dataclass
class Command:
    label: str
    argv: list[str]
    fd_file: Path | None = None       # opened on fd FD for every run

    def shell(self) -> str:
        text = shlex.join(self.argv)
        return f"{text} {FD}< {shlex.quote(str(self.fd_file))}" if self.fd_file else text


def install_peers() -> tuple[list[str], list[str]]:
    """Install missing peers with apt-get when root; returns (installed, still missing)."""
    missing = [tool for tool in APT_PEERS if not shutil.which(tool)]
    installed = []
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-qq"] + [APT_PEERS[t] for t in missing]
        proc = subprocess.run(install, env=env, capture_output=True, text=True)
        if proc.returncode != 0:        # stale package lists: refresh once and retry
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            proc = subprocess.run(install, env=env, capture_output=True, text=True)
        if proc.returncode == 0:
            installed = [t for t in missing if shutil.which(t)]
    return installed, [t for t in APT_PEERS if not shutil.which(t)]


def sbx_launcher() -> tuple[str, str]:
    """The installed launcher, else the venv's entry point (and a note saying so)."""
    if os.access("/usr/local/bin/sbx", os.X_OK):
        return "/usr/local/bin/sbx", ""
    venv = ROOT / ".venv" / "bin" / "sbx"
    return str(venv), "/usr/local/bin/sbx is not installed: timed the venv's entry point. "


def launcher_python(launcher: str) -> str:
    """The interpreter the launcher's #! line names: the Python floor must be the same one
    (a `python3` found on PATH may be a wrapper script, e.g. a pyenv shim)."""
    try:
        with open(launcher, "rb") as fh:
            first = fh.readline().decode(errors="replace")
    except OSError:
        first = ""
    if first.startswith("#!"):
        words = first[2:].split()
        if words and os.access(words[0], os.X_OK) and "python" in os.path.basename(words[0]):
            return words[0]
    return sys.executable


def commands(work: Path) -> tuple[list[Command], str]:
    from sandbox.policy import build_filter, load_profile
    web = work / "web.bpf"
    web.write_bytes(build_filter(load_profile("web")).encode())
    sbx, note = sbx_launcher()
    python = launcher_python(sbx)
    note += f"Python floor: {python} (the launcher's interpreter)."
    return [
        Command("/bin/true", ["/bin/true"]),
        Command("python3 -I -S -c pass", [python, "-I", "-S", "-c", "pass"]),
        Command("sbx run -- /bin/true", [sbx, "run", "--", "/bin/true"]),
        Command("sbx run --profile web -- /bin/true", [sbx, "run", "--profile", "web", "--", "/bin/true"]),
        Command("bwrap --seccomp (web filter)", ["bwrap", "--dev-bind", "/", "/", "--seccomp", str(FD),
                                                 "/bin/true"], web),
        Command("firejail --noprofile --seccomp", ["firejail", "--quiet", "--noprofile", "--seccomp",
                                                   "/bin/true"]),
    ], note


def check(cmd: Command) -> str | None:
    """None if the command runs and exits 0 (this also warms sbx's filter cache)."""
    if not shutil.which(cmd.argv[0]):
        return f"{cmd.argv[0]} is not installed"
    proc = subprocess.run(["sh", "-c", cmd.shell()], capture_output=True, text=True)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        return f"exit {proc.returncode}: {err[-1] if err else 'no message'}"
    return None


def with_hyperfine(cmds: list[Command], runs: int, warmup: int, work: Path) -> dict:
    """hyperfine without a shell (-N). A command reading a file on fd FD gets one open file
    shared by all its runs; a --prepare step rewinds it before each run."""
    out = work / "hyperfine.json"
    argv = ["hyperfine", "-N", "--style", "none", "--warmup", str(warmup), "--runs", str(runs),
            "--export-json", str(out)]
    rewind = f"{shlex.quote(sys.executable)} -I -S -c 'import os; os.lseek({FD}, 0, 0)'"
    for c in cmds:
        argv += ["--prepare", rewind if c.fd_file else "true"]
    for c in cmds:
        argv += ["--command-name", c.label, shlex.join(c.argv)]
    files = [c.fd_file for c in cmds if c.fd_file]
    fd = os.open(files[0], os.O_RDONLY) if files else -1
    if len(set(files)) > 1:
        raise ValueError("one fd file per hyperfine run")
    try:
        if fd >= 0 and fd != FD:
            os.dup2(fd, FD, inheritable=True)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       pass_fds=(FD,) if fd >= 0 else ())
    finally:
        if fd >= 0:
            os.close(fd)
            if fd != FD:
                os.close(FD)
    results = {}
    for row in json.loads(out.read_text())["results"]:
        results[row["command"]] = {"mean_ms": row["mean"] * 1e3, "stddev_ms": (row["stddev"] or 0) * 1e3,
                                   "median_ms": row["median"] * 1e3, "min_ms": row["min"] * 1e3,
                                   "runs": len(row["times"])}
    return results


def time_once(cmd: Command) -> float:
    fd = os.open(cmd.fd_file, os.O_RDONLY) if cmd.fd_file else -1
    try:
        if fd >= 0 and fd != FD:
            os.dup2(fd, FD, inheritable=True)
        t0 = time.perf_counter()
        subprocess.run(cmd.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       pass_fds=(FD,) if fd >= 0 else (), check=False)
        return (time.perf_counter() - t0) * 1e3
    finally:
        if fd >= 0:
            os.close(fd)
            if fd != FD:
                os.close(FD)


def with_python_loop(cmds: list[Command], runs: int, warmup: int) -> dict:
    """Interleaved runs, spawn to exit, as a fallback for hyperfine."""
    times: dict[str, list[float]] = {c.label: [] for c in cmds}
    for i in range(warmup + runs):
        for c in cmds:
            t = time_once(c)
            if i >= warmup:
                times[c.label].append(t)
    return {label: {"mean_ms": statistics.mean(ts), "stddev_ms": statistics.stdev(ts) if len(ts) > 1 else 0.0,
                    "median_ms": statistics.median(ts), "min_ms": min(ts), "runs": len(ts)}
            for label, ts in times.items()}


def measure(runs: int, warmup: int) -> dict:
    installed, missing = install_peers()
    with tempfile.TemporaryDirectory(prefix="sbx-startup-") as tmp:
        work = Path(tmp)
        cmds, note = commands(work)
        errors = {c.label: e for c in cmds if (e := check(c)) is not None}
        ok = [c for c in cmds if c.label not in errors]
        tool = "hyperfine" if shutil.which("hyperfine") else "python loop"
        results = (with_hyperfine(ok, runs, warmup, work) if tool == "hyperfine"
                   else with_python_loop(ok, runs, warmup))
    return {"tool": tool, "runs": runs, "warmup": warmup, "results": results, "errors": errors,
            "installed": installed, "missing": missing, "note": note,
            "commands": {c.label: c.shell() for c in cmds}}

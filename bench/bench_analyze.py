"""Benchmark: sbx analyze on 15 Debian programs, beside sbx trace and the default profile.

For each program: the static profile (``sbx analyze``; cold = every object analysed,
warm = libraries from the per-build-id cache), a traced profile of a realistic
workload (``sbx trace``, eBPF), how many syscalls each allows and ``default``
allows, whether every syscall the trace saw is in the static profile
(soundness), and whether the workload runs under the static profile with zero
denials (``sbx verify``).  Needs root (eBPF tracing, audit).

Usage: python3 bench/bench_analyze.py [--only ls,cat] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.analyze.cache import SummaryCache  # noqa: E402
from sandbox.analyze.program import analyze_program, object_key, open_program  # noqa: E402
from sandbox.trace import allowed_syscalls  # noqa: E402
from sandbox.policy import load_profile, lower  # noqa: E402

SBX = [sys.executable, "-m", "sandbox"]
CC1 = "/usr/lib/gcc/x86_64-linux-gnu/12/cc1"
NGINX_CONF = """worker_processes 1;
error_log {t}/nginx/error.log;
pid {t}/nginx/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log {t}/nginx/access.log;
  client_body_temp_path {t}/nginx/body; proxy_temp_path {t}/nginx/proxy;
  fastcgi_temp_path {t}/nginx/fastcgi; uwsgi_temp_path {t}/nginx/uwsgi;
  scgi_temp_path {t}/nginx/scgi;
  server {{ listen 127.0.0.1:{port}; root {t}/www; location / {{ }} }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(t: Path, port: int) -> None:
    """Files the workloads read and write."""
    (t / "out").mkdir()
    (t / "nums.txt").write_text("".join(f"{(i * 7919) % 10007}\n" for i in range(20000)))
    shutil.copytree("/usr/share/doc/git", t / "doc", symlinks=True)
    (t / "big.txt").write_text(Path("/etc/services").read_text() * 40)
    repo = t / "repo"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
    subprocess.run(["git", "init", "-q", str(repo)], **quiet)
    for i in range(50):
        (repo / f"f{i}.txt").write_text(f"line {i}\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], **quiet)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@x", "commit",
                    "-qm", "first"], **quiet)
    (repo / "f0.txt").write_text("changed\n")
    (t / "hello.c").write_text("#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n")
    (t / "mk").mkdir()
    (t / "mk" / "Makefile").write_text("all: b.txt\nb.txt: a.txt\n\tcat a.txt > b.txt && test -s b.txt\n"
                                       "a.txt:\n\techo made > a.txt\n")
    (t / "www").mkdir()
    (t / "www" / "index.html").write_text("<h1>hello</h1>\n" * 100)
    (t / "nginx").mkdir()
    (t / "nginx" / "nginx.conf").write_text(NGINX_CONF.format(t=t, port=port))


def programs(t: Path, port: int) -> list[dict]:
    """name, binary, workload argv, programs it runs (--exec), server (stopped by pid file)."""
    url = f"http://127.0.0.1:{port}/index.html"
    return [
        {"name": "ls", "binary": "/usr/bin/ls", "argv": ["ls", "-la", "--color=always", "/usr/share/doc"]},
        {"name": "cat", "binary": "/usr/bin/cat", "argv": ["cat", "/etc/services", str(t / "big.txt")]},
        {"name": "cp", "binary": "/usr/bin/cp", "argv": ["cp", "-a", str(t / "doc"), str(t / "out/doc")]},
        {"name": "sort", "binary": "/usr/bin/sort",
         "argv": ["sort", "-n", "--parallel=2", "-S", "1M", str(t / "nums.txt"), "-o", str(t / "out/s")]},
        {"name": "tar", "binary": "/usr/bin/tar", "execs": ["gzip"],
         "argv": ["tar", "czf", str(t / "out/doc.tgz"), "-C", str(t), "doc"]},
        {"name": "gzip", "binary": "/usr/bin/gzip", "argv": ["gzip", "-kf9", str(t / "big.txt")]},
        {"name": "git", "binary": "/usr/bin/git",
         "argv": ["git", "-C", str(t / "repo"), "-c", "core.pager=cat", "log", "-p", "--stat"]},
        {"name": "curl", "binary": "/usr/bin/curl", "server": True,
         "argv": ["curl", "-s", "-o", str(t / "out/page"), url]},
        {"name": "sqlite3", "binary": "/usr/bin/sqlite3",
         "argv": ["sqlite3", str(t / "out/db.sqlite"), "drop table if exists t; create table t(a, b); "
                  "insert into t select value, value * 2 from generate_series(1, 5000); "
                  "create index i on t(b); select count(*), sum(b) from t where a > 100;"]},
        {"name": "python3", "binary": "/usr/bin/python3.11",
         "argv": ["python3", "-c", "import json, hashlib, sqlite3, zlib; "
                  "d = [{'k': i} for i in range(1000)]; s = json.dumps(d); "
                  "hashlib.sha256(zlib.compress(s.encode())).hexdigest(); "
                  "sqlite3.connect(':memory:').execute('select 1').fetchall()"]},
        {"name": "nginx", "binary": "/usr/sbin/nginx", "nginx": True,
         "argv": ["nginx", "-p", str(t / "nginx"), "-c", str(t / "nginx/nginx.conf"),
                  "-g", "daemon off;"]},
        {"name": "gcc", "binary": "/usr/bin/gcc", "execs": [CC1, "/usr/bin/as"],
         "argv": ["gcc", "-O2", "-c", str(t / "hello.c"), "-o", str(t / "out/hello.o")]},
        {"name": "make", "binary": "/usr/bin/make", "execs": ["/bin/sh", "cat"],
         "argv": ["make", "-B", "-C", str(t / "mk")]},
        {"name": "openssl", "binary": "/usr/bin/openssl",
         "argv": ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                  str(t / "out/k.pem"), "-out", str(t / "out/c.pem"), "-subj", "/CN=bench",
                  "-days", "1"]},
        {"name": "busybox", "binary": "/bin/busybox",
         "argv": ["busybox", "sh", "-c", f"ls -l {t}/doc | wc -l; echo hi | sed s/h/H/; "
                  f"find {t}/doc -name '*.gz' | sort | head -n 3"]},
    ]


def run_workload(sbx_args: list[str], prog: dict, t: Path, port: int) -> subprocess.CompletedProcess:
    """Run ``sbx ... -- workload``; a server is exercised, then stopped by its pid file."""
    argv = SBX + sbx_args + ["--"] + prog["argv"]
    if not prog.get("nginx"):
        server = _http_server(t, port) if prog.get("server") else None
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=t, timeout=300)
        finally:
            if server is not None:
                server.terminate()
                server.wait()
    pidfile = t / "nginx/nginx.pid"
    pidfile.unlink(missing_ok=True)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=t)
    try:
        _wait_port(port, 20)
        import urllib.request
        for _ in range(5):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5).read()
    except OSError:                            # the verdict (status, denials) shows it
        pass
    finally:
        try:
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGQUIT)   # graceful stop
        except (OSError, ValueError):
            proc.terminate()
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _http_server(t: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                             "--directory", str(t / "www"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, 10)
    return proc


def _wait_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def allowed(path: Path) -> set[str]:
    return allowed_syscalls(lower(load_profile(str(path)), "x86_64"), "x86_64")


def traced_names(path: Path) -> set[str]:
    """The syscalls the trace saw (not the launcher's needs it adds unseen)."""
    from sandbox import trace as tr
    obs = tr.observed_from_profile(load_profile(str(path)), "x86_64")
    return {n for n, c in obs.calls.items() if c > 0}


def measure(prog: dict, t: Path, port: int, cache_dir: Path, runs: int) -> dict:
    """Times are for the program and its libraries alone (programs it runs are analysed
    for the profile, not timed: gcc's cc1 is 33 MB of code)."""
    execs = prog.get("execs", [])
    cold = [analyze_program(prog["binary"], SummaryCache(enabled=False),
                            follow_execs=False).seconds for _ in range(runs)]
    warm = []
    own = object_key(open_program(prog["binary"]))
    for _ in range(runs):
        shutil.rmtree(cache_dir, ignore_errors=True)
        analyze_program(prog["binary"], SummaryCache(cache_dir), follow_execs=False)  # fills it
        for entry in cache_dir.glob(f"{own}-*.json"):
            entry.unlink()              # warm: the libraries cached, the program itself not
        warm.append(analyze_program(prog["binary"], SummaryCache(cache_dir),
                                    follow_execs=False).seconds)
    static = t / f"{prog['name']}.static.yaml"
    traced = t / f"{prog['name']}.traced.yaml"
    a = subprocess.run(SBX + ["analyze", prog["binary"], "-o", str(static)]
                       + [x for e in execs for x in ("--exec", e)], capture_output=True, text=True)
    if a.returncode != 0:
        raise RuntimeError(f"sbx analyze {prog['binary']}: {a.stderr.strip()[-300:]}")
    tr = run_workload(["trace", "-o", str(traced), "--backend", "ebpf"], prog, t, port)
    if tr.returncode != 0 or not traced.exists():
        raise RuntimeError(f"sbx trace {prog['name']}: {tr.stderr.strip()[-300:]}")
    ver = run_workload(["verify", "--profile", str(static), "--timeout", "120"], prog, t, port)
    seen, mine = traced_names(traced), allowed(static)
    misses = sorted(seen - mine - {"clone3"})          # clone3 -> ENOSYS by design
    header = [line[2:].strip() for line in static.read_text().splitlines()
              if line.startswith(("# limit:", "# widened:"))]
    return {"static": len(mine), "traced": len(allowed(traced)), "traced_seen": len(seen),
            "cold_s": round(statistics.median(cold), 2), "warm_s": round(statistics.median(warm), 3),
            "misses": misses, "verify_status": ver.returncode,
            "verify": (ver.stderr.strip().splitlines() or [""])[-1][:200],
            "limits": sum(1 for h in header if h.startswith("limit:")), "header": header}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated program names")
    ap.add_argument("--runs", type=int, default=1, help="timed analyses per program (median)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_analyze: needs root (sbx trace with eBPF, sbx verify)", file=sys.stderr)
        return 2
    default = len(allowed_syscalls(lower(load_profile("default"), "x86_64"), "x86_64"))
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="sbx-bench-analyze-") as tmp:
        t = Path(tmp)
        port = free_port()
        setup(t, port)
        wanted = set(args.only.split(",")) if args.only else None
        for prog in programs(t, port):
            if wanted and prog["name"] not in wanted:
                continue
            if not os.path.exists(prog["binary"]):
                results[prog["name"]] = {"error": f"{prog['binary']} is not installed"}
                continue
            try:
                results[prog["name"]] = measure(prog, t, port, t / "cache", args.runs)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as err:
                results[prog["name"]] = {"error": str(err)}
            print(prog["name"], json.dumps(results[prog["name"]]), flush=True)
    ok = [r for r in results.values() if "static" in r]
    doc = {"default": default, "results": results,
           "median_static": statistics.median(r["static"] for r in ok) if ok else None,
           "median_traced": statistics.median(r["traced"] for r in ok) if ok else None}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0 if ok and all(not r["misses"] and r["verify_status"] == 0 for r in ok) else 1


if __name__ == "__main__":
    sys.exit(main())

"""``sbx trace`` on real programs: the generated profile runs the same workload with
zero denials (checked through audit records and the eBPF monitor) and allows far
fewer syscalls than ``default``.  Both recorders, eBPF and seccomp user
notification, are exercised; sizes are printed with the results."""
from __future__ import annotations

import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sandbox import trace as tr
from sandbox.trace import count_allowed, verify_profile
from sandbox.denials import Denial, judge, summarize
from sandbox.policy import build_filter, load_profile, lower
from sandbox.ebpf.probe import available
from tests.conftest import need

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
SQLITE = ("import sqlite3; c = sqlite3.connect('t.db'); c.execute('create table t (x, y)'); "
          "c.executemany('insert into t values (?, ?)', [(i, str(i)) for i in range(100)]); "
          "c.commit(); assert c.execute('select count(*), sum(x) from t').fetchone() == (100, 4950)")
HELLO = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'


@pytest.fixture(params=["ebpf", "notify"])
def backend(request):
    need(os.geteuid() == 0, "needs root: eBPF tracing, and audit records to verify")
    if request.param == "ebpf":
        ok, reason = available()
        need(ok, reason)
    return request.param


def fresh(tmp_path: Path, label: str) -> Path:
    d = tmp_path / label
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def record_in(cwd: Path, argv: list[str], backend: str) -> tr.Observed:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        rec = tr.record(argv, backend)
    finally:
        os.chdir(old)
    assert os.waitstatus_to_exitcode(rec.exit_status) == 0, f"{argv} failed while traced"
    return tr.observe(rec)


def verify_in(cwd: Path, argv: list[str], profile: Path) -> tuple[list, list]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        code, denials = verify_profile(argv, str(profile))
    finally:
        os.chdir(old)
    assert code == 0, f"{argv} failed under the generated profile"
    return judged(denials, profile)


def judged(denials: list, profile: Path) -> tuple[list, list]:
    """(failing, fallback) rows as (label, count, action, rule), the verdict of sbx verify."""
    failing, fallbacks = judge(summarize(denials, lower(load_profile(str(profile))), "x86_64"))
    as_tuples = lambda rows: [(r.label, r.count, r.action, r.rule) for r in rows]  # noqa: E731
    return as_tuples(failing), as_tuples(fallbacks)


def report(capsys, workload: str, backend: str, profile: Path, denials: list, by_design: list):
    n, m = count_allowed(str(profile), "x86_64"), count_allowed("default", "x86_64")
    with capsys.disabled():
        print(f"\n  trace {workload} [{backend}]: {n} syscalls allowed (default {m}); "
              f"verify: {sum(r[1] for r in denials)} denials, "
              f"{sum(r[1] for r in by_design)} ENOSYS by design ({', '.join(r[0] for r in by_design)})")
    assert not denials, denials
    assert n < m


def write(obs: tr.Observed, path: Path, name: str) -> Path:
    path.write_text(tr.write_profile(obs, name, "x86_64"))
    build_filter(load_profile(str(path)), native="x86_64")
    return path


def git_argv() -> list[str]:
    return ["sh", "-c", "git init -q repo && cd repo && "
            "git -c user.name=a -c user.email=b commit -q --allow-empty -m x"]


def tar_tree(tmp_path: Path) -> Path:
    src = fresh(tmp_path, "tar") / "src"
    shutil.copytree("/usr/share/doc/tar", src / "doc", symlinks=True)
    for i in range(50):
        (src / f"file{i}.txt").write_text(f"line {i}\n" * (i * 20))
    return src.parent


@pytest.mark.parametrize("workload, argv, setup", [
    ("git init && git commit", git_argv(), None),
    ("python sqlite3", [sys.executable, "-c", SQLITE], None),
    ("gcc hello.c -o hello", ["gcc", "hello.c", "-o", "hello"], HELLO),
], ids=["git", "sqlite3", "gcc"])
def test_the_profile_runs_the_workload_again_with_zero_denials(tmp_path, capsys, backend,
                                                               workload, argv, setup):
    need(shutil.which(argv[0]) is not None or os.path.isabs(argv[0]), f"{argv[0]} missing")

    def workdir(label: str) -> Path:
        d = fresh(tmp_path, label)
        if setup:
            (d / "hello.c").write_text(setup)
        return d
    profile = write(record_in(workdir("traced"), argv, backend), tmp_path / "p.yaml", "trace-t")
    denials, by_design = verify_in(workdir("verified"), argv, profile)
    report(capsys, workload, backend, profile, denials, by_design)


def test_tar_create_and_extract_merged_run_with_zero_denials(tmp_path, capsys, backend):
    work = tar_tree(tmp_path)
    create, extract = ["tar", "czf", "a.tgz", "src"], ["tar", "xzf", "a.tgz", "-C", "out"]
    first = write(record_in(work, create, backend), tmp_path / "tar.yaml", "trace-tar")
    (work / "out").mkdir()
    both = tr.merge([tr.observed_from_profile(load_profile(str(first))),
                     record_in(work, extract, backend)])
    profile = write(both, tmp_path / "tar.yaml", "trace-tar")
    assert "#   $ tar czf a.tgz src\n#   $ tar xzf a.tgz -C out\n" in profile.read_text()
    shutil.rmtree(work / "out")
    (work / "out").mkdir()
    os.unlink(work / "a.tgz")
    denials, by_design = verify_in(work, create, profile)
    more, more_by_design = verify_in(work, extract, profile)
    assert sorted(os.listdir(work / "out" / "src")) == sorted(os.listdir(work / "src"))
    report(capsys, "tar czf + tar xzf (merged)", backend, profile, denials + more,
           by_design + more_by_design)


# -- python3 -m http.server, stopped by SIGTERM ----------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_once(cmd: list[str], port: int, cwd: Path) -> subprocess.CompletedProcess:
    """Start *cmd* (which runs the server), fetch / once, SIGTERM *cmd*, wait for it."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline, body = time.monotonic() + 30, None
        while body is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    body = resp.read()
            except OSError:
                time.sleep(0.05)
        assert body is not None and b"index.txt" in body, "the server never answered"
        time.sleep(0.5)                      # let the handler thread finish and exit
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


VERIFY_SNIPPET = """
import json, sys
from sandbox.trace import verify_profile
code, denials = verify_profile(sys.argv[2:], sys.argv[1])
print(json.dumps({"code": code, "denials": [[d.arch, d.nr, d.action, d.comm] for d in denials]}))
"""


def test_http_server_with_one_request_then_sigterm(tmp_path, capsys, backend):
    site = fresh(tmp_path, "site")
    (site / "index.txt").write_text("hi\n")
    profile = tmp_path / "http.yaml"
    port = free_port()
    server = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    traced = serve_once([sys.executable, "-m", "sandbox", "trace", "-o", str(profile),
                         "--backend", backend, "--", *server], port, site)
    assert traced.returncode == 0, traced.stderr
    assert "exited with status 143" in traced.stderr           # 128 + SIGTERM, forwarded
    build_filter(load_profile(str(profile)), native="x86_64")
    assert load_profile(str(profile)).net["bind"][0][0] == str(port)    # the port it bound
    # the same port again (http.server sets SO_REUSEADDR): the profile binds only it
    ran = serve_once([sys.executable, "-c", VERIFY_SNIPPET, str(profile), *server], port, site)
    result = json.loads(ran.stdout.splitlines()[-1])
    assert result["code"] == 128 + signal.SIGTERM
    denials = [Denial(arch, nr, action, comm=comm) for arch, nr, action, comm in result["denials"]]
    failing, fallbacks = judged(denials, profile)
    report(capsys, "python3 -m http.server + 1 request", backend, profile, failing, fallbacks)


# -- the recorders agree; output is deterministic ---------------------------------------------

def test_ebpf_recording_minus_the_launcher_preamble_equals_the_notify_recording():
    need(os.geteuid() == 0, "needs root")
    ok, reason = available()
    need(ok, reason)
    ebpf = tr.record(["/bin/true"], "ebpf").calls
    notify = tr.record(["/bin/true"], "notify").calls
    assert ebpf == notify


@pytest.mark.parametrize("which", ["ebpf", "notify"])
def test_tracing_the_same_program_twice_writes_identical_bytes(tmp_path, which):
    need(os.geteuid() == 0 or which == "notify", "eBPF needs root")
    if which == "ebpf":
        need(*available())
    texts = {tr.write_profile(tr.observe(tr.record(["/bin/true"], which)), "t") for _ in range(3)}
    assert len(texts) == 1


# -- the command line ---------------------------------------------------------------------------

def sbx(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=120)


def test_cli_traces_writes_summarizes_and_verifies(tmp_path):
    need(os.geteuid() == 0, "needs root for --verify")
    ok, reason = available()
    need(ok, reason)
    work = fresh(tmp_path, "w")
    out = sbx("trace", "-o", "git.yaml", "--verify", "--", *git_argv()[:2],
              "git init -q r$$ && cd r$$ && git -c user.name=a -c user.email=b commit -q "
              "--allow-empty -m x", cwd=work)
    assert out.returncode == 0, out.stderr
    assert "sbx: tracing with eBPF (tracepoints)\n" in out.stderr
    assert "syscalls allowed (default allows " in out.stderr
    assert "sbx: verify: 0 denials" in out.stderr
    assert load_profile(str(work / "git.yaml")).name == "trace-sh"


def test_cli_verify_fails_when_the_second_run_does_something_new(tmp_path):
    need(os.geteuid() == 0, "needs root for --verify")
    work = fresh(tmp_path, "w")
    out = sbx("trace", "-o", "p.yaml", "--backend", "notify", "--verify", "--",
              "sh", "-c", "if [ -e seen ]; then mkdir d; fi; : > seen", cwd=work)
    assert out.returncode == 1, out.stderr
    assert "sbx: tracing with seccomp user notification (requested)" in out.stderr
    assert "  vfork (58): 1 x errno (default action, p.yaml:" in out.stderr   # sh starting mkdir


def test_cli_extends_and_merge(tmp_path):
    need(os.geteuid() == 0, "needs root for --verify")
    work = fresh(tmp_path, "w")
    first = sbx("trace", "-o", "p.yaml", "--backend", "notify", "--", "ls", "-l", cwd=work)
    assert first.returncode == 0, first.stderr
    merged = sbx("trace", "-o", "p.yaml", "--merge", "p.yaml", "--backend", "notify", "--verify",
                 "--", "cat", "p.yaml", cwd=work)
    assert merged.returncode == 0, merged.stderr
    text = (work / "p.yaml").read_text()
    assert "#   $ ls -l\n#   $ cat p.yaml\n" in text and "name: trace-ls" in text
    ext = sbx("trace", "-o", "x.yaml", "--extends", "default", "--backend", "notify",
              "--verify", "--", "ls", "-l", cwd=work)
    assert ext.returncode == 0, ext.stderr
    assert "extends: [default]" in (work / "x.yaml").read_text()
    assert "(default allows " in ext.stderr


def test_an_unprivileged_user_traces_with_seccomp_user_notification():
    need(os.geteuid() == 0, "needs root to become another user")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # the child drops to nobody, then traces
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            backend, why = tr.choose_backend("auto")
            obs = tr.observe(tr.record(["/bin/ls", "/"], backend))
            os.write(w, f"{backend}\n{why}\n".encode() + tr.write_profile(obs, "t").encode())
            code = 0
        except BaseException:                     # noqa: BLE001 - report, never return
            import traceback
            os.write(w, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, data
    backend, why, text = data.split("\n", 2)
    assert (backend, why) == ("notify", "not root")
    assert "# recorded with: seccomp user notification\n" in text and "getdents64" in text
    assert "\nfilesystem:\n  list: [/]\n" in text      # its files, read from its memory


# -- a command that daemonizes: its descendants outlive it ---------------------------------------

# The shell exits at once; the work (sched_getaffinity, which sh never makes) is done
# half a second later by a process it left running.
DAEMON = ["sh", "-c", f"'{sys.executable}' -c 'import os, time; time.sleep(0.5); "
          "os.sched_getaffinity(0)' & exit 0"]


@pytest.mark.parametrize("which", ["ebpf", "notify"])
def test_a_daemon_is_said_and_followed_until_it_exits(tmp_path, which):
    need(os.geteuid() == 0 or which == "notify", "eBPF needs root")
    if which == "ebpf":
        need(*available())
    out = sbx("trace", "--backend", which, "-o", "d.yaml", "--", *DAEMON, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert re.search(r"note: sh exited and left 1 process \(\d+ \S+\) running \(it daemonized\); "
                     r"following it until it exits", out.stderr), out.stderr
    prof = load_profile(str(tmp_path / "d.yaml"))
    assert any(n == "sched_getaffinity" for r in prof.rules for n, _ in r.names)
    assert "# note: sh left 1 process running; it was traced until it exited" in \
        (tmp_path / "d.yaml").read_text()


@pytest.mark.parametrize("which", ["ebpf", "notify"])
def test_duration_stops_what_the_command_left_running(tmp_path, which):
    need(os.geteuid() == 0 or which == "notify", "eBPF needs root")
    if which == "ebpf":
        need(*available())
    marker = f"sbx-trace-{os.getpid()}-{which}"
    began = time.monotonic()
    out = sbx("trace", "--backend", which, "--duration", "1", "-o", "s.yaml", "--",
              "sh", "-c", f"'{sys.executable}' -c 'import time; time.sleep(60)' {marker} & exit 0",
              cwd=tmp_path)
    took = time.monotonic() - began
    assert out.returncode == 0, out.stderr
    assert "--duration 1 s: stopping 1 process" in out.stderr, out.stderr
    assert took < 30, took                       # not the sleep's 60 s
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1
    assert load_profile(str(tmp_path / "s.yaml")).name == "trace-sh"


def test_a_misspelled_option_is_refused_not_traced(tmp_path):
    out = sbx("trace", "--verfy", "-o", "x.yaml", "--", "true", cwd=tmp_path)
    assert out.returncode == 2
    assert "No such option '--verfy'. Did you mean '--verify'?" in out.stderr
    assert not (tmp_path / "x.yaml").exists() and "tracing with" not in out.stderr


# -- --merge keeps a narrowed kill as a union with the signals traced ------------------------------

@pytest.mark.parametrize("which", ["ebpf", "notify"])
def test_merge_unites_a_narrowed_kill_with_the_signal_the_trace_saw(tmp_path, which):
    need(os.geteuid() == 0 or which == "notify", "eBPF needs root")
    if which == "ebpf":
        need(*available())
    send = ("import os, signal; signal.signal(signal.SIG{0}, lambda *a: None); "
            "os.kill(os.getpid(), signal.SIG{0})")
    first = sbx("trace", "--backend", which, "-o", "k.yaml", "--", sys.executable, "-c",
                send.format("USR1"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    hand = (tmp_path / "k.yaml").read_text()
    hand = re.sub(r"\n      - kill +# \d+", "", hand)
    hand = hand.replace("  # allows\n", '  # allows\n  - allow: kill\n    when: ["arg1 in [SIGUSR1]"]\n')
    (tmp_path / "k.yaml").write_text(hand)
    out = sbx("trace", "--backend", which, "--merge", "k.yaml", "-o", "k2.yaml", "--",
              sys.executable, "-c", send.format("TERM"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "warning" not in out.stderr
    assert re.search(r'"arg1 in \[SIGUSR1, SIGTERM\]" +# SIGUSR1 0, SIGTERM 1',
                     (tmp_path / "k2.yaml").read_text())


def test_children_the_tracing_process_already_had_are_not_waited_for():
    """sbx as a library (or a test runner) may have children of its own: tracing a command
    follows what the command leaves, not them."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        began = time.monotonic()
        rec = tr.record(["/bin/true"], "notify")
        assert os.waitstatus_to_exitcode(rec.exit_status) == 0
        assert time.monotonic() - began < 20 and other.poll() is None
    finally:
        other.kill()
        other.wait()

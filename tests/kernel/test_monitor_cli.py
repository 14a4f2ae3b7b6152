"""`sbx run --monitor`, `sbx monitor` and `sbx refine` on the real kernel.

Programs make known denied syscalls under built-in profiles; the commands run
as subprocesses, as a user would run them, and their output is checked to
the exact count, rule line and argument.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from bpf_filters import syscalls
from sandbox.policy import build_filter, builtin_dir, load_profile
from tests.conftest import need

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
SBX = [PY, "-m", "sandbox"]
X86 = syscalls.table("x86_64")
TOKEN = syscalls.AUDIT_ARCH["x86_64"]
DEFAULT_YAML = os.path.join(builtin_dir(), "default.yaml")

pytestmark = pytest.mark.kernel


@pytest.fixture(autouse=True)
def ebpf():
    need(os.geteuid() == 0, "needs root")
    need(os.uname().machine == "x86_64", "x86_64 syscall numbers")
    from sandbox.ebpf.probe import available
    ok, reason = available()
    need(ok, reason)


def env(cache: str | None = None) -> dict:
    return dict(os.environ)


def sbx(*args, timeout=60, **kw):
    return subprocess.run(SBX + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env(), **kw)


# A program making known denied calls; argv[1] names the set, optional argv[2]
# is a pipe to wait on before starting.
PROGRAM = textwrap.dedent(r'''
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    call = lambda nr, *a: libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])
    if len(sys.argv) > 2:
        os.read(int(sys.argv[2]), 1)
    which = sys.argv[1]
    if which == "default":
        for _ in range(5): call(101, 16, 1, 0, 0)             # ptrace(PTRACE_ATTACH, 1)
        for _ in range(2): call(41, 40, 1, 0)                 # socket(AF_VSOCK, SOCK_STREAM)
        for _ in range(3): call(16, 1, 0x5412, 0)             # ioctl(1, TIOCSTI)
        call(435, 0, 0)                                       # clone3(NULL, 0)
    elif which == "kill":                                     # a marker: other processes on
        call(101, 16, 0xC0FFEE, 0, 0)                         # the host deny ptrace too
        call(175, 0xC0FFEE, 0, 0)                             # init_module
    elif which == "pause":
        call(101, 16, 1, 0, 0)
        call(16, 1, 0x5412, 0)
        os.read(int(sys.argv[2]), 1)
    elif which == "secret":                                   # a Landlock refusal, then seccomp
        try:
            open("/etc/shadow").close()
        except PermissionError:
            pass
        call(101, 16, 1, 0, 0)
    elif which == "burst":
        s, nr = libc.syscall, ctypes.c_long(101)
        for _ in range(100_000): s(nr, 16, 1, 0, 0)
    elif which == "minimal":
        fd = os.open("/dev/null", os.O_RDONLY)
        for _ in range(2): call(157, 3)                       # prctl(PR_GET_DUMPABLE)
        call(157, 7)                                          # prctl(PR_GET_KEEPCAPS)
        call(16, fd, 0x541E, 0)                               # ioctl(TIOCGSERIAL)
        call(41, 1, 1, 0)                                     # socket(AF_UNIX): denied on purpose
    print("done", flush=True)
''')


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    p = tmp_path_factory.mktemp("prog") / "prog.py"
    p.write_text(PROGRAM)
    os.chmod(p.parent, 0o755)
    os.chmod(p, 0o644)
    return str(p)


def rule_line(pattern: str, then: str | None = None) -> int:
    """The 1-based line of default.yaml matching *pattern* (and *then* on the next line)."""
    lines = open(DEFAULT_YAML).read().splitlines()
    for i, line in enumerate(lines):
        if re.search(pattern, line) and (then is None or then in lines[i + 1]):
            return i + 1
    raise AssertionError(f"no line matching {pattern!r} in default.yaml")


DEBUG_LINE = rule_line(r'"@debug"')
MODULE_LINE = rule_line(r'kill-process: \["@module"')


def table_rows(stderr: str) -> dict[str, list[str]]:
    """SYSCALL -> the rest of its row, from the summary table."""
    rows, inside = {}, False
    for line in stderr.splitlines():
        if line.strip().startswith("SYSCALL"):
            inside = True
            continue
        if inside and re.match(r"^  \S+ \(\d+\)", line):
            rows[line.split()[0]] = line.split(None, 2)[2]
        elif inside:
            inside = line.startswith("   ")
    return rows


# -- sbx run --monitor ------------------------------------------------------------------

def test_run_monitor_lists_exact_counts_rules_and_allow_lines(program):
    r = sbx("run", "--monitor", "--profile", "default", "--", PY, program, "default")
    assert r.returncode == 0 and r.stdout == "done\n", r.stderr
    assert "sbx: 11 syscalls denied under profile default (counted in the kernel; " \
           "every event delivered):" in r.stderr
    rows = table_rows(r.stderr)
    expected = {
        "ptrace": ("5", "errno(EPERM)", "0x10, 0x1, 0x0, 0x0", DEBUG_LINE),
        "ioctl": ("3", "errno(EPERM)", "0x1, 0x5412, 0x0", rule_line(r"- errno\(EPERM\): ioctl$", "TIOCSTI")),
        "socket": ("2", "errno(EAFNOSUPPORT)", "0x28, 0x1, 0x0", rule_line(r"EAFNOSUPPORT\): socket")),
        "clone3": ("1", "errno(ENOSYS)", "0x0, 0x0", rule_line(r"ENOSYS\): clone3")),
    }
    assert set(rows) == set(expected), r.stderr
    for name, (count, action, args, line) in expected.items():
        row = rows[name]
        assert row.split()[0] == count and row.split()[1] == action, row
        assert args in row and f"profiles/default.yaml:{line}: " in row, row
    # the suggestions are sbx refine's: deliberate denials are not undone without --broad
    assert "to allow them" not in r.stderr
    assert f"  ptrace: not suggested: denied on purpose by profiles/default.yaml:{DEBUG_LINE} " \
        in r.stderr
    assert "  clone3: not suggested: denied on purpose by profiles/default.yaml:" in r.stderr
    assert "`sbx refine --broad` writes rules that override deliberate denials" in r.stderr


def test_run_monitor_counts_a_burst_exactly_and_says_what_was_dropped(program):
    r = sbx("run", "--monitor", "--", PY, program, "burst", timeout=120)
    assert r.returncode == 0, r.stderr
    m = re.search(r"sbx: 100000 syscalls denied under profile default \(counted in the kernel; "
                  r"(\d+) of 100000 events dropped", r.stderr)
    assert m and int(m.group(1)) > 0, r.stderr
    assert table_rows(r.stderr)["ptrace"].split()[0] == "100000"


def test_run_monitor_explains_a_kill_with_its_rule(program):
    r = sbx("run", "--monitor", "--", PY, program, "kill")
    assert r.returncode == 128 + signal.SIGSYS
    assert f"was killed: syscall init_module (175) is not allowed by profile default " \
           f"(profiles/default.yaml:{MODULE_LINE}: " in r.stderr
    rows = table_rows(r.stderr)
    assert rows["init_module"].split()[:2] == ["1", "kill-process"]
    assert rows["ptrace"].split()[0] == "1"


def test_run_monitor_in_complain_mode_adds_the_logged_calls(program, tmp_path):
    """What the default would deny is logged (audit) and allowed; deliberate
    denials stay denied and come from the probe, with their arguments."""
    prof = tmp_path / "mini.yaml"
    shutil.copy(os.path.join(builtin_dir(), "minimal.yaml"), prof)
    r = sbx("run", "--monitor", "--mode", "complain", "--profile", str(prof), "--", PY, program, "minimal")
    assert r.returncode == 0 and r.stdout == "done\n", r.stderr
    rows = table_rows(r.stderr)
    assert rows["prctl"].split()[:3] == ["3", "log", "-"]
    assert rows["ioctl"].split()[:3] == ["1", "log", "-"]
    assert rows["socket"].split()[:3] == ["1", "errno(EACCES)", "0x1,"]
    assert "- allow: [prctl, ioctl]" in r.stderr.split("to allow them", 1)[1]


# -- sbx monitor ---------------------------------------------------------------------------

def start_monitor(*args, wait_for="watching"):
    """Start `sbx monitor`; return it once it says it is watching."""
    mon = subprocess.Popen(SBX + ["monitor", *args], cwd=ROOT, env=env(), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = []
    while True:
        line = mon.stderr.readline()
        seen.append(line)
        if not line:
            pytest.fail(f"sbx monitor ended before watching: {''.join(seen)}")
        if wait_for in line:
            return mon, "".join(seen)


def sandboxed_helper(program, which="default", profile="default"):
    """`sbx run` of the program, blocked on a pipe; returns (process, release)."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(SBX + ["run", "--profile", profile, "--", PY, program, which,
                                   str(read_fd)], cwd=ROOT, env=env(), pass_fds=(read_fd,),
                            stdout=subprocess.PIPE, text=True)
    os.close(read_fd)

    def release(close=True):
        os.write(write_fd, b"g")
        if close:
            os.close(write_fd)
    time.sleep(0.3)          # let it reach the read (the monitor seeds a task blocked there)
    return proc, release


def test_monitor_json_follows_a_sandboxed_process_tree(program):
    helper, release = sandboxed_helper(program)
    mon, _ = start_monitor("--json", "--pid", str(helper.pid), "--profile", "default")
    release()
    assert helper.wait(30) == 0
    out, err = mon.communicate(timeout=30)      # ends by itself: every watched task exited
    assert mon.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    child = records[0]["pid"]
    assert child != helper.pid                   # the confined program, a descendant of sbx run
    assert [(r["syscall"], r["nr"], r["args"][:2], r["action"], r["errno"]) for r in records] == \
        [("ptrace", 101, [16, 1], "errno", 1)] * 5 + [("socket", 41, [40, 1], "errno", 97)] * 2 + \
        [("ioctl", 16, [1, 0x5412], "errno", 1)] * 3 + [("clone3", 435, [0, 0], "errno", 38)]
    assert all(set(r) == {"time", "pid", "tid", "comm", "arch", "nr", "syscall", "action", "errno",
                          "args", "rule"} for r in records)
    assert {(r["pid"], r["tid"], r["arch"]) for r in records} == {(child, child, "x86_64")}
    assert records[0]["rule"] == f"profiles/default.yaml:{DEBUG_LINE}"
    assert abs(records[0]["time"] - time.time()) < 30
    assert "sbx monitor: 11 denials in" in err and "11 events delivered, 0 dropped" in err
    assert re.search(r"\n\s+5  ptrace \(101\)\s+x86_64  errno\n", err), err


def test_monitor_streams_landlock_refusals_beside_seccomp_denials(program, tmp_path):
    from sandbox.denials import Denial
    helper, release = sandboxed_helper(program, "secret")
    mon, _ = start_monitor("--json", "--pid", str(helper.pid))
    release()
    assert helper.wait(30) == 0
    out, err = mon.communicate(timeout=30)
    assert mon.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    seccomp = [r for r in records if r["action"] != "landlock"]
    refused = [r for r in records if r["action"] == "landlock"]
    assert [r["syscall"] for r in seccomp] == ["ptrace"]
    assert [(r["blockers"], r["target"]) for r in refused] == [(["fs.read_file"], "/etc/shadow")]
    # the domain was made by the command's process (before its exec), the one seccomp names
    assert refused[0]["pid"] == seccomp[0]["pid"] and set(refused[0]) == \
        {"time", "pid", "comm", "action", "blockers", "target", "domain"}
    assert abs(refused[0]["time"] - time.time()) < 30
    back = Denial.from_json(refused[0])                # what sbx refine --from reads
    assert back.landlock and back.target == "/etc/shadow"
    assert "sbx monitor: 1 denial in" in err and "1 Landlock refusal (audit records)" in err
    assert re.search(r"\n\s+1  fs\.read_file\s+/etc/shadow\n", err), err


def test_monitor_human_line_of_a_landlock_refusal(program):
    mon, _ = start_monitor("--duration", "3")
    r = sbx("run", "--", PY, program, "secret")
    assert r.returncode == 0, r.stderr
    out, err = mon.communicate(timeout=30)
    assert mon.returncode == 0, err
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} domain of pid \d+ landlock: fs\.read_file refused on "
                     r"/etc/shadow$", out, re.M), out


def test_monitor_human_lines_stop_on_sigterm_with_the_counters(program):
    helper, release = sandboxed_helper(program, "pause")
    mon, _ = start_monitor("--pid", str(helper.pid), "--profile", "default")
    release(close=False)        # two denials, then the helper waits for a second byte
    lines = [mon.stdout.readline().rstrip("\n") for _ in range(2)]
    mon.send_signal(signal.SIGTERM)
    out, err = mon.communicate(timeout=30)
    assert mon.returncode == 0 and out == "", err
    stamp = r"\d\d:\d\d:\d\d\.\d{3} python\[\d+\] "
    assert re.fullmatch(stamp + r"ptrace\(0x10, 0x1, 0x0, 0x0\) = -1 EPERM  <- profiles/default\.yaml:"
                        + str(DEBUG_LINE), lines[0]), lines
    assert re.fullmatch(stamp + r"ioctl\(0x1, 0x5412, 0x0\) = -1 EPERM  <- profiles/default\.yaml:\d+",
                        lines[1]), lines
    assert "sbx monitor: 2 denials in" in err and "ioctl (16)" in err and "ptrace (101)" in err
    release()
    assert helper.wait(30) == 0


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """bench/loop.c (a C loop of one syscall for N calls or N seconds) and the
    default profile's filter for it to install (raw bytes, as `sbx compile` writes)."""
    need(shutil.which("gcc") is not None, "gcc is needed to build bench/loop.c")
    work = tmp_path_factory.mktemp("loop")
    subprocess.run(["gcc", "-O2", "-o", str(work / "loop"), os.path.join(ROOT, "bench", "loop.c")],
                   check=True)
    (work / "default.bpf").write_bytes(build_filter(load_profile("default")).encode())
    return str(work / "loop"), str(work / "default.bpf")


def gated_flood(loop, seconds: str):
    """The loop denied syslog by the default profile's filter for SECONDS,
    started by a shell that waits for a line first: track its pid, then
    release().  (Not under `sbx run`: as root it asks the kernel to audit every
    denial, which makes each one cost ~8 us instead of ~0.2.)"""
    exe, flt = loop
    proc = subprocess.Popen(["sh", "-c", 'read go; exec "$@"', "sh", exe, flt, "syslog", seconds],
                            cwd=ROOT, env=env(), text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)

    def release():
        proc.stdin.write("go\n")
        proc.stdin.close()
    return proc, release


def wait_peak_rss(proc: subprocess.Popen) -> tuple[int, list[int]]:
    """Wait for *proc*, reading its own VmHWM (peak resident set, KiB) every
    0.1 s (wait4's ru_maxrss would also count any child it ever reaped);
    (the last reading, every reading of VmRSS)."""
    peak, rss = 0, []
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            peak = int(fields["VmHWM"].split()[0])
            rss.append(int(fields["VmRSS"].split()[0]))
        except (OSError, KeyError, ValueError):
            pass                                  # exiting
        time.sleep(0.1)
    return peak, rss


def test_monitor_memory_stays_flat_and_counts_stay_exact_under_a_denial_flood(loop, tmp_path):
    """A C loop denied as fast as it can call (over 1 M/s) for 3 s: the monitor
    reads what it can, keeps no event, and its counts add up to the loop's calls."""
    flood, release = gated_flood(loop, "3s")
    out, err = open(tmp_path / "out", "w"), open(tmp_path / "err", "w")
    mon = subprocess.Popen(SBX + ["monitor", "--json", "--pid", str(flood.pid)], cwd=ROOT,
                           env=env(), text=True, stdout=out, stderr=err)
    while "watching" not in (tmp_path / "err").read_text():
        assert mon.poll() is None, (tmp_path / "err").read_text()
        time.sleep(0.05)
    release()
    ns, first, first_errno, calls = flood.stdout.read().split()
    assert flood.wait(60) == 0 and (first, first_errno) == ("-1", str(errno.EPERM))
    peak_kib, rss = wait_peak_rss(mon)
    assert peak_kib < 64 * 1024, f"monitor peak RSS {peak_kib} KiB for {calls} denials; RSS {rss}"
    text = (tmp_path / "err").read_text()
    assert mon.returncode == 0, text
    delivered = sum(1 for _ in open(tmp_path / "out"))
    m = re.search(r"(\d+) denials in .*; (\d+) events delivered, (\d+) dropped", text)
    assert m, text
    assert int(m.group(1)) == int(calls) and int(m.group(2)) == delivered
    assert delivered + int(m.group(3)) == int(calls)
    assert re.search(rf"\n\s+{delivered}  loop\[\d+\]\s+syslog \(103\)\s+errno\s+0xa, 0x0, 0x0\n",
                     text), text
    print(f"{calls} denials in 3 s ({1e3 / float(ns):.2f} M/s), {delivered} delivered; "
          f"monitor peak RSS {peak_kib // 1024} MiB")


def test_monitor_duration_ends_the_monitor_during_a_denial_flood(loop):
    flood, release = gated_flood(loop, "20s")
    mon, _ = start_monitor("--json", "--pid", str(flood.pid), "--duration", "1")
    release()
    try:
        out, err = mon.communicate(timeout=15)
        assert mon.returncode == 0 and flood.poll() is None, err
        assert re.search(r"\d+ events delivered, (\d+ left in the buffer at the end, )?\d+ dropped",
                         err), err
    finally:
        mon.kill()
        flood.terminate()
        flood.wait(30)


def test_monitor_duration_watches_the_whole_host(program):
    mon, head = start_monitor("--json", "--duration", "3", "--profile", "default")
    t0 = time.monotonic()
    r = sbx("run", "--", PY, program, "kill")
    assert r.returncode == 128 + signal.SIGSYS
    out, err = mon.communicate(timeout=30)
    assert mon.returncode == 0 and time.monotonic() - t0 < 30
    assert "watching every process" in head
    mine = [json.loads(line) for line in out.splitlines()]
    mine = [m for m in mine if 0xC0FFEE in m.get("args", [])[:2]]
    if int(re.search(r"(\d+) dropped", err).group(1)):
        # the whole host shares the buffer: a flood elsewhere may push ours out; not the counters
        assert re.search(r"\n\s+\d+  init_module \(175\)\s+x86_64  kill\n", err), err
        return
    assert [(m["syscall"], m["action"]) for m in mine] == [("ptrace", "errno"), ("init_module", "kill")]
    assert mine[0]["pid"] == mine[1]["pid"]
    assert mine[-1]["rule"] == f"profiles/default.yaml:{MODULE_LINE}"


def test_monitor_cgroup_mounts_the_hierarchy_when_it_is_missing(program):
    need(shutil.which("unshare") is not None and shutil.which("mount") is not None, "unshare, mount")
    from sandbox.kernel.libbpf import cgroup2_root
    root = cgroup2_root()
    group = f"/sbx-monitor-test-{os.getpid()}"
    os.mkdir(root + group)
    try:
        shell = (f"umount {root} && ! grep -q ' cgroup2 ' /proc/self/mountinfo && "
                 f"exec {' '.join(SBX)} monitor --json --cgroup {group}")
        mon = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", shell],
                               cwd=ROOT, env=env(), text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        head = ""
        while "watching" not in head:
            line = mon.stderr.readline()
            assert line, head + mon.stderr.read()
            head += line
        assert "mounted the cgroup v2 hierarchy at" in head
        outside = sbx("run", "--", PY, program, "kill")     # not in the cgroup: not reported
        assert outside.returncode == 128 + signal.SIGSYS
        outside = sbx("run", "--", PY, program, "secret")   # its Landlock refusal neither
        assert outside.returncode == 0, outside.stderr
        for which in ("default", "secret"):
            inside = subprocess.Popen(["sh", "-c", f"echo $$ > {root}{group}/cgroup.procs && "
                                       f"exec {' '.join(SBX)} run -- {PY} {program} {which}"],
                                      cwd=ROOT, env=env(), stdout=subprocess.PIPE, text=True)
            assert inside.wait(30) == 0
        time.sleep(0.5)
        mon.send_signal(signal.SIGINT)
        out, err = mon.communicate(timeout=30)
    finally:
        os.rmdir(root + group)
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["syscall"] for r in records if "syscall" in r] == \
        ["ptrace"] * 5 + ["socket"] * 2 + ["ioctl"] * 3 + ["clone3"] + ["ptrace"]
    assert [(r["blockers"], r["target"]) for r in records if r["action"] == "landlock"] == \
        [(["fs.read_file"], "/etc/shadow")]
    assert "12 denials in" in err and "1 Landlock refusal (audit records)" in err


# -- without root ---------------------------------------------------------------------------

SETPRIV = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture(scope="module")
def as_nobody():
    """A command prefix running the sbx sources as nobody: the venv's python if
    nobody can run it, else the system python of the same version with the
    venv's packages on the path. The repository must be readable by others."""
    need(shutil.which("setpriv") is not None, "setpriv (util-linux)")
    for path in (ROOT, os.path.join(ROOT, "sandbox"), os.path.join(ROOT, "bpf_filters"),
                 os.path.join(ROOT, "profiles")):
        mode = os.stat(path).st_mode
        if mode & 0o005 != 0o005:
            os.chmod(path, mode | 0o005)
    cache = tempfile.mkdtemp(prefix="sbx-nobody-")
    os.chmod(cache, 0o777)
    site = next(p for p in sys.path if p.endswith("site-packages"))
    extra = ["env", f"PYTHONPATH={ROOT}:{site}"]
    check = "import ctypes, click, yaml, psutil, sandbox.cli, sandbox.ebpf"
    candidates = [PY, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"]
    for py in candidates:
        prefix = SETPRIV + extra + [py]
        if subprocess.run(prefix + ["-c", check], cwd=ROOT, capture_output=True).returncode == 0:
            yield prefix
            shutil.rmtree(cache, ignore_errors=True)
            return
    need(False, f"no python that nobody can run among {candidates}")


def test_without_root_monitor_says_why_in_one_line_and_run_fails_closed(as_nobody):
    r = subprocess.run(as_nobody + ["-m", "sandbox", "monitor", "--duration", "1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "sbx monitor: error: cannot monitor: the eBPF monitor needs root\n"
    r = subprocess.run(as_nobody + ["-m", "sandbox", "run", "--", "/bin/echo", "plain"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "plain\n", "")
    # monitoring was asked for and cannot be set up: the command does not start
    r = subprocess.run(as_nobody + ["-m", "sandbox", "run", "--monitor", "--", "/bin/sh", "-c",
                                    "echo monitored; exit 3"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 125 and r.stdout == ""
    assert r.stderr == ("sbx: cannot start the eBPF monitor: the eBPF monitor needs root; the command "
                        "was not run (run without --monitor, or with --log to read audit records "
                        "instead)\n")


# -- sbx refine, end to end ---------------------------------------------------------------------

def test_refine_allows_exactly_the_recorded_denials(program, tmp_path):
    """Record a program's denials under minimal, refine a copy of minimal, and
    check the new profile in the interpreter and on the kernel."""
    prof = tmp_path / "mini.yaml"
    shutil.copy(os.path.join(builtin_dir(), "minimal.yaml"), prof)
    helper, release = sandboxed_helper(program, "minimal", str(prof))
    mon, _ = start_monitor("--json", "--pid", str(helper.pid))
    release()
    assert helper.wait(30) == 0
    out, _ = mon.communicate(timeout=30)
    denials = tmp_path / "denials.jsonl"
    denials.write_text(out)
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["syscall"], r["args"][0] if r["syscall"] != "ioctl" else r["args"][1]) for r in records] \
        == [("prctl", 3), ("prctl", 3), ("prctl", 7), ("ioctl", 0x541E), ("socket", 1)]

    new = tmp_path / "mini2.yaml"
    r = sbx("refine", str(prof), "--from", str(denials), "-o", str(new))
    assert r.returncode == 0, r.stderr
    assert "warning: socket (1 denial) not added: denied on purpose by" in r.stderr
    assert '+  - allow: prctl\n+    when: ["arg0 in [PR_GET_DUMPABLE, PR_GET_KEEPCAPS]"]' in r.stdout
    assert '+  - allow: ioctl\n+    when: ["arg1 in [TIOCGSERIAL]"]' in r.stdout
    old_f, new_f = build_filter(load_profile(str(prof))), build_filter(load_profile(str(new)))
    for rec in records:
        args = tuple(rec["args"])
        allowed = new_f.explain(TOKEN, rec["nr"], args).action.kind == "allow"
        assert allowed == (rec["syscall"] != "socket"), rec
        assert old_f.explain(TOKEN, rec["nr"], args).action.kind != "allow"
    for nr in range(X86.max_nr + 16):
        if X86.name(nr) not in ("prctl", "ioctl"):
            assert old_f.explain(TOKEN, nr).action == new_f.explain(TOKEN, nr).action, X86.name(nr)
    assert new_f.explain(TOKEN, X86.nr("prctl"), (4,) + (0,) * 5).action.kind == "errno"  # SET_DUMPABLE

    rerun = sbx("run", "--monitor", "--profile", str(new), "--", PY, program, "minimal")
    assert rerun.returncode == 0, rerun.stderr
    assert set(table_rows(rerun.stderr)) == {"socket"}, rerun.stderr


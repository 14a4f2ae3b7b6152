"""The command behaves under sbx as it would without it: signals, exit status, and what sbx reports.

Each case runs the real ``sbx run`` (as root: the audit records that let a
plain run count its denials need it).
"""
import json
import re
import os
import signal
import subprocess
import sys
import time

import pytest

from bpf_filters.syscalls import table as _table

NR = _table("x86_64").by_name

from tests.conftest import need

pytestmark = pytest.mark.kernel
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
SBX = [PY, "-m", "sandbox", "run"]


def sh(script: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kw)


SBX_SH = " ".join([PY, "-m", "sandbox", "run", "--"])


@pytest.fixture(autouse=True)
def root():
    need(os.geteuid() == 0, "needs root")


def test_sigpipe_is_default_inside_so_yes_into_head_ends_quietly():
    r = sh(f"{SBX_SH} sh -c 'yes | head -1; echo \"status $?\"; grep SigIgn /proc/self/status'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["y", "status 0"]
    # what the command ignores is what it would ignore unconfined: sbx undoes its
    # own Python's SIG_IGN of SIGPIPE/SIGXFSZ and keeps whatever the caller set
    # (a CI runner may hand down ignored signals of its own)
    outside = sh("grep SigIgn /proc/self/status").stdout.split()
    inside = r.stdout.splitlines()[2].split()
    assert inside == outside
    ignored = int(inside[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))
    assert "Broken pipe" not in r.stderr


def test_a_writer_into_a_closed_pipe_dies_of_sigpipe_instead_of_looping():
    r = sh(f"{SBX_SH} sh -c 'while :; do echo x; done' | head -1", timeout=20)
    assert r.stdout == "x\n"


def test_the_signal_mask_is_restored():
    # the launcher blocks signals while it waits; the command must not inherit that
    r = subprocess.run(SBX + ["--", "grep", "SigBlk", "/proc/self/status"], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.split() == ["SigBlk:", "0000000000000000"], r.stdout + r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP,
                                 signal.SIGUSR1])
def test_a_signal_sent_to_sbx_reaches_the_command(sig):
    """A supervisor's kill goes through sbx to the command, whose status sbx returns."""
    p = subprocess.Popen(SBX + ["--", "sleep", "30"], cwd=ROOT, stderr=subprocess.PIPE,
                         restore_signals=True)
    time.sleep(0.8)
    p.send_signal(sig)
    assert p.wait(10) == 128 + sig


def test_the_command_dies_with_sbx():
    p = subprocess.Popen(SBX + ["--", "sleep", "30"], cwd=ROOT)
    time.sleep(0.8)
    import psutil
    (child,) = psutil.Process(p.pid).children()
    p.kill()
    p.wait(10)
    child.wait(10)            # no longer running (psutil also reaps nothing: just waits)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("redirect", [">&-", "2>&-", ">&- 2>&-"])
def test_the_commands_status_survives_closed_stdout_or_stderr(redirect):
    r = sh(f"{SBX_SH} sh -c 'exit 5' {redirect}; echo \"status $?\"")
    assert r.stdout.strip().endswith("status 5"), r.stdout + r.stderr


def test_the_commands_status_survives_a_failing_report():
    # --log with no descriptors left for the audit reader after the command ran
    r = sh(f"ulimit -n 9; {PY} -m sandbox run --log -- sh -c 'exit 7'; echo \"status $?\"")
    assert r.stdout.strip().endswith("status 7"), r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_log_in_another_network_namespace_keeps_the_status_and_says_why():
    need(os.path.exists("/usr/bin/unshare"), "unshare (util-linux) is needed")
    r = sh(f"unshare -n {PY} -m sandbox run --log -- sh -c 'exit 6'; echo \"status $?\"")
    assert r.stdout.strip().endswith("status 6"), r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "initial network namespace" in r.stderr


def test_a_plain_run_with_denials_says_how_many_in_one_line():
    code = f"import ctypes; [ctypes.CDLL(None).syscall({NR['ptrace']}, 16, 1, 0, 0) for _ in range(3)]"  # ptrace
    r = subprocess.run(SBX + ["--", PY, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("sbx:")]
    assert lines == ["sbx: 3 syscalls were denied under profile default; rerun with --log (or "
                     "--monitor) to list them, or -o FILE to save them for `sbx refine`"], r.stderr


def test_a_fallback_by_design_is_not_counted_as_a_denial():
    """Every thread glibc starts tries clone3 first, which default answers errno(ENOSYS)
    on purpose: glibc falls back to clone, and the one-line count leaves it out, from
    a freshly compiled filter and from the cache alike (audit records carry no errno:
    the compiler lists such syscalls beside the filter)."""
    threads = "import threading; t = threading.Thread(target=print); t.start(); t.join()"
    ptrace = f"import ctypes; ctypes.CDLL(None).syscall({NR['ptrace']}, 16, 1, 0, 0); "
    for run in ("compiled", "cached"):
        clean = subprocess.run(SBX + ["--", PY, "-c", threads], cwd=ROOT, capture_output=True,
                               text=True, timeout=30)
        assert (clean.returncode, clean.stderr) == (0, ""), (run, clean.stderr)
        mixed = subprocess.run(SBX + ["--", PY, "-c", ptrace + threads], cwd=ROOT,
                               capture_output=True, text=True, timeout=30)
        assert mixed.stderr.startswith("sbx: 1 syscall was denied under profile default"), \
            (run, mixed.stderr)
    logged = subprocess.run(SBX + ["--log", "--", PY, "-c", threads], cwd=ROOT, capture_output=True,
                            text=True, timeout=30)
    assert re.search(r"clone3 \(435\)\s+1\s+errno\(ENOSYS\)", logged.stderr), logged.stderr


def test_a_plain_run_without_denials_says_nothing():
    r = subprocess.run(SBX + ["--", "true"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == (0, "")


def test_run_output_feeds_refine_without_copy_and_paste(tmp_path):
    """run -> refine: the JSON lines of `sbx run -o` are what `sbx refine --from` reads."""
    prof = tmp_path / "p.yaml"
    prof.write_text("name: p\nextends: default\nrules:\n  - errno(EACCES): getppid\n")
    denials = tmp_path / "d.jsonl"
    code = "import os; os.getppid(); os.getppid()"
    r = subprocess.run(SBX + ["--log", "-o", str(denials), "--profile", str(prof), "--", PY, "-c", code],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in denials.read_text().splitlines()]
    assert [(d["syscall"], d["action"]) for d in lines] == [("getppid", "errno")] * 2
    out = tmp_path / "p2.yaml"
    r = subprocess.run([PY, "-m", "sandbox", "refine", str(prof), "--from", str(denials), "-o", str(out),
                        "--broad"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(SBX + ["--log", "--profile", str(out), "--", PY, "-c", code], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "no denials recorded" in r.stderr, r.stderr


def test_json_summary(tmp_path):
    r = subprocess.run(SBX + ["--log", "--json", "--", PY, "-c",
                              f"import ctypes; ctypes.CDLL(None).syscall({NR['ptrace']}, 16, 1, 0, 0)"],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    doc = json.loads(r.stderr.strip().splitlines()[-1])
    assert doc["profile"] == "default"
    (row,) = doc["denials"]
    assert (row["syscall"], row["count"], row["action"]) == ("ptrace", 1, "errno")
    assert row["decided_by"].startswith("profiles/default.yaml:")


def test_monitor_that_cannot_start_does_not_run_the_command(tmp_path):
    """Fail closed for options: asked to monitor, sbx never runs the command unmonitored."""
    marker = tmp_path / "ran"
    env = dict(os.environ, PATH="/usr/bin:/bin")
    # no bpffs, no BTF problem to provoke here: an unprivileged user cannot load the probe
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                        "/usr/bin/python3", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "from sandbox.entry import main; sys.exit(main(sys.argv[2:]))", ROOT,
                        "run", "--monitor", "--", "touch", str(marker)],
                       cwd="/", capture_output=True, text=True, timeout=30, env=env)
    if "No module named" in r.stderr:
        need(False, f"/usr/bin/python3 cannot import sbx's dependencies as nobody: {r.stderr[-200:]}")
    assert r.returncode == 125, r.stderr
    assert not marker.exists()
    assert "cannot start the eBPF monitor" in r.stderr


def test_a_command_run_from_a_checkout_cannot_rewrite_sbx():
    """default lets the command write its working directory; when that is a checkout of
    sbx, its code and built-in profiles decide what later runs install: they stay read-only."""
    target = os.path.join(ROOT, "profiles", "default.yaml")
    probe = f"import os; os.close(os.open({target!r}, os.O_WRONLY | os.O_APPEND)); print('opened')"
    assert subprocess.run([PY, "-c", probe], capture_output=True, text=True).stdout == "opened\n"
    r = subprocess.run(SBX + ["--", PY, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "PermissionError" in r.stderr, r.stdout + r.stderr
    for code in ("sandbox/launcher.py", "bpf_filters/compiler.py"):
        r = subprocess.run(SBX + ["--", "sh", "-c", f"echo >> {code}"], cwd=ROOT, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode != 0 and "cannot create" in r.stderr, (code, r.stderr)
    r = subprocess.run(SBX + ["--", "sh", "-c", "echo x > docs/.sbx-write-probe && "
                              "cat docs/.sbx-write-probe && rm docs/.sbx-write-probe"],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.stdout == "x\n", "the rest of the working directory stays writable"


def test_syscall_minus_one_is_enosys_as_unconfined_not_a_kill():
    # -1 is what a debugger writes to skip a call; the kernel answers ENOSYS to it
    code = "import ctypes; l = ctypes.CDLL(None, use_errno=True); print(l.syscall(-1), ctypes.get_errno())"
    outside = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=30)
    assert outside.stdout.split() == ["-1", "38"]
    for profile in ("default", "minimal", "strict-net"):
        r = subprocess.run(SBX + ["--profile", profile, "--", PY, "-c", code], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout.split()) == (0, ["-1", "38"]), (profile, r.stderr)


def test_output_to_sbx_s_own_stdout_keeps_what_the_caller_wrote_before(tmp_path):
    """-o /dev/stdout names sbx's stdout, followed although it is a link; redirected
    to a file, it is written after what the caller wrote there, not over it."""
    out = tmp_path / "all.txt"
    shell = f"{{ echo header; {' '.join(SBX)} -o /dev/stdout -- true; echo trailer; }} > {out}"
    r = subprocess.run(["/bin/sh", "-c", shell], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "header\ntrailer\n", out.read_text()


def test_output_to_a_fifo_no_one_reads_is_refused_at_once(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    r = subprocess.run(SBX + ["-o", str(fifo), "--", "true"], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 125 and "a FIFO no one reads" in r.stderr, r.stderr


def test_the_subreaper_flag_is_given_back_and_children_are_listed():
    """sbx run sets the child-subreaper flag for its run and gives back what it was
    (a caller may be a subreaper itself); children() lists a child, not others."""
    from tests.conftest import in_child

    def probe():
        from sandbox.kernel import spawn
        first = spawn.adopt_orphans(1)
        again = spawn.adopt_orphans(first)
        proc = subprocess.Popen(["sleep", "5"])
        listed = spawn.children()
        proc.kill()
        proc.wait()
        return [first, again, proc.pid in listed, os.getpid() in listed]
    assert in_child(probe) == [0, 1, True, False]

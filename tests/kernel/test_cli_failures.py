"""Known ways sbx used to end in a traceback, each run as a person would meet it.

A negative --timeout, a libbpf without the functions sbx binds, Ctrl-C in the
middle of compiling, a user at their process limit: each must end with one
clear line and the documented status (sandbox/errors.py), never a traceback.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.errors import EXIT_INTERRUPTED, EXIT_SANDBOX, EXIT_USAGE
from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]
SBX = [sys.executable, "-m", "sandbox"]


def sbx(*args, env=None, timeout=60):
    return subprocess.run(SBX + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "1e999", "0x", ""])
def test_verify_refuses_a_timeout_that_is_not_a_duration(value):
    r = sbx("verify", "--timeout", value, "-p", "default", "--", "true")
    assert r.returncode == EXIT_USAGE and "Traceback" not in r.stderr
    assert "Invalid value for '--timeout'" in r.stderr and "seconds" in r.stderr


@pytest.fixture(scope="module")
def big_profile(tmp_path_factory):
    """A profile whose compile takes seconds: 30,000 one-value rules that do not merge."""
    rng = random.Random(7)
    rules = "".join(f'  - allow: ioctl\n    when: ["arg1 == {rng.randrange(1 << 31)}"]\n'
                    for _ in range(30_000))
    path = tmp_path_factory.mktemp("big") / "big.yaml"
    path.write_text("name: big\nextends: [default]\nrules:\n" + rules)
    return str(path)


@pytest.mark.parametrize("argv, line", [
    (["compile", "{p}"], "sbx compile: interrupted\n"),
    (["check", "{p}"], "sbx check: interrupted\n"),
    (["run", "--no-cache", "--profile", "{p}", "--", "true"],
     "sbx: interrupted; the command was not run\n"),
], ids=["compile", "check", "run"])
def test_ctrl_c_while_compiling_is_one_line_and_130(big_profile, argv, line):
    proc = subprocess.Popen(SBX + [a.format(p=big_profile) for a in argv], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2.0)                       # importing and parsing take ~1 s; compiling ~8
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err, out) == (EXIT_INTERRUPTED, line, "")


def test_a_libbpf_without_the_functions_sbx_binds_is_a_message(tmp_path):
    """The dynamic loader finds libbpf.so.1 on LD_LIBRARY_PATH first: a library
    that has the version functions and nothing else stands for a partial build."""
    need(os.geteuid() == 0, "the probe's privilege check comes first")
    need(shutil.which("gcc") is not None, "gcc")
    src = tmp_path / "fake.c"
    src.write_text("unsigned libbpf_major_version(void) { return 1; }\n"
                   "unsigned libbpf_minor_version(void) { return 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libbpf.so.1"), str(src)],
                   check=True)
    env = dict(os.environ, LD_LIBRARY_PATH=str(tmp_path))
    why = (f"{tmp_path}/libbpf.so.1 lacks 26 functions sbx needs (libbpf_set_print, "
           "libbpf_strerror, libbpf_probe_bpf_prog_type, bpf_object__open_file, ...): install a "
           "complete libbpf >= 1.0 (Debian/Ubuntu package libbpf1)")
    r = sbx("monitor", "--duration", "0.1", env=env)
    assert (r.returncode, r.stderr) == (1, f"sbx monitor: error: cannot monitor: {why}\n")
    r = sbx("run", "--monitor", "--", "sh", "-c", "echo ran", env=env)
    assert r.returncode == EXIT_SANDBOX and r.stdout == "" and why in r.stderr
    r = sbx("trace", "-o", str(tmp_path / "t.yaml"), "--", "true", env=env)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert f"tracing with seccomp user notification (eBPF unavailable: {why})" in r.stderr


def nobody_sbx(*args, nproc: int):
    """sbx as nobody, with the system Python on this checkout and its venv's
    site-packages, under `prlimit --nproc` (root is exempt from RLIMIT_NPROC)."""
    import sysconfig
    boot = ("import sys; sys.path[:0] = [sys.argv.pop(1), sys.argv.pop(1)]; sys.argv[0] = 'sbx'; "
            "from sandbox.entry import main; sys.exit(main())")
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "prlimit",
            f"--nproc={nproc}", "/usr/bin/python3", "-I", "-c", boot, str(ROOT),
            sysconfig.get_paths()["purelib"], *args]
    return subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})


@pytest.mark.parametrize("args", [["run", "--", "true"],
                                  ["verify", "--allow-unobserved", "-p", "default", "--", "true"],
                                  ["trace", "-o", f"/tmp/sbx-nproc-{os.getpid()}.yaml", "--", "true"]],
                         ids=["run", "verify", "trace"])
def test_fork_failing_at_the_process_limit_is_125_with_the_reason(args):
    need(os.geteuid() == 0 and shutil.which("setpriv") and shutil.which("prlimit"),
         "root, setpriv and prlimit (to run as nobody under a process limit)")
    probe = nobody_sbx("--version", nproc=100)
    need(probe.returncode == 0, f"nobody cannot start sbx from this checkout: {probe.stderr[-300:]}")
    r = nobody_sbx(*args, nproc=1)
    assert r.returncode == EXIT_SANDBOX and "Traceback" not in r.stderr, r.stderr
    assert ("cannot start true: fork: Resource temporarily unavailable (uid 65534 has reached its "
            "limit of 1 process at once: RLIMIT_NPROC, ulimit -u); the command was not run") \
        in r.stderr


@pytest.mark.parametrize("args, status", [
    (["trace", "--record", "{dev}", "--", "true"], 0),
    (["compile", "default", "-o", "{dev}"], 0),
    (["export", "default", "-o", "{dev}"], 0),
    (["trace", "-o", "{dev}", "--", "true"], 0),               # checked through a private copy
    (["export", "default", "--format", "k8s", "-o", "{dev}"], EXIT_USAGE),  # + DEV.json beside
], ids=["trace --record", "compile -o", "export -o", "trace -o", "export k8s -o"])
def test_an_output_that_is_a_device_is_written_into_never_replaced(tmp_path, args, status):
    """As root, writing beside /dev/null and renaming over it would replace the
    device node with a file: a null device made here stands for it."""
    need(os.geteuid() == 0, "mknod needs root")
    import stat
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    r = sbx(*[a.format(dev=dev) for a in args])
    assert r.returncode == status and "Traceback" not in r.stderr, r.stderr
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and sorted(os.listdir(tmp_path)) == ["null"]

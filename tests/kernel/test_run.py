"""`sbx run` on the real kernel: built-in profiles deny what they promise, real programs run.

Each test runs sbx as a subprocess (`python -m sandbox run ...`) and checks the
command's real behaviour: errno values seen inside, exit statuses, messages.
"""
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from bpf_filters.syscalls import table as _table

NR = _table("x86_64").by_name

from tests.conftest import need

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
SBX = [PY, "-m", "sandbox"]


def sbx(*args, timeout=60, **kw):
    env = kw.pop("env", None) or dict(os.environ)
    return subprocess.run(SBX + list(args), cwd=kw.pop("cwd", ROOT), capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


PROBE = textwrap.dedent(r'''
    import ctypes, errno, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    def call(nr, *args):
        r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
        return "ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    which = sys.argv[1]
    if which == "ptrace":
        print(call(101, 16, os.getppid(), 0, 0))          # PTRACE_ATTACH
    elif which == "bpf":
        print(call(321, 5, 0, 0))                          # BPF_PROG_LOAD with a NULL attr
    elif which == "unshare-user":
        print(call(272, 0x10000000))
    elif which == "io_uring":
        print(call(425, 1, 0))
    elif which == "tiocsti":
        # at the terminal it was given, made its controlling terminal: the kernel lets
        # TIOCSTI through there without CAP_SYS_ADMIN (dev.tty.legacy_tiocsti=1), so
        # only the filter refuses it
        try:
            os.setsid()
        except OSError:                                     # already a session leader
            pass
        call(16, 0, 0x540E, 0)                              # TIOCSCTTY
        c = ctypes.c_char(b"x")
        print(call(16, 0, 0x5412, ctypes.addressof(c)))
    elif which == "clone3":
        print(call(435, 0, 0))
    elif which == "x32":
        print(call(0x40000000 | 39))                       # x32 getpid
    elif which == "above":
        print(call(1000))
''')


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    p = tmp_path_factory.mktemp("probe") / "probe.py"
    p.write_text(PROBE)
    return str(p)


def test_the_terminal_injection_probe_injects_unconfined(probe):
    """The control of "TIOCSTI ioctl is denied": the same probe pushes a byte into
    its controlling terminal when nothing filters it (the command would read it)."""
    need(os.uname().machine == "x86_64", "x86_64 syscall numbers")
    need(open("/proc/sys/dev/tty/legacy_tiocsti").read().strip() == "1",
         "TIOCSTI is refused by the kernel here (dev.tty.legacy_tiocsti=0)")
    master, slave = os.openpty()
    try:
        r = subprocess.run([PY, probe, "tiocsti"], stdin=slave, capture_output=True, text=True,
                           timeout=30)
    finally:
        os.close(slave)
        os.close(master)
    assert r.stdout.strip() == "ok", r.stdout + r.stderr


@pytest.mark.parametrize("attack,allowed", [
    ("ptrace", {"EPERM"}), ("bpf", {"EPERM"}), ("unshare-user", {"EPERM"}),
    ("io_uring", {"ENOSYS", "EPERM"}), ("tiocsti", {"EPERM"}), ("clone3", {"ENOSYS"}),
    ("above", {"ENOSYS"}),
], ids=["ptrace is denied", "bpf is denied", "unshare(CLONE_NEWUSER) is denied",
        "io_uring_setup is denied", "TIOCSTI ioctl is denied", "clone3 gets ENOSYS",
        "numbers above the table get ENOSYS"])
def test_default_profile_denies(probe, attack, allowed):
    need(os.uname().machine == "x86_64", "x86_64 syscall numbers")
    master, slave = os.openpty()           # a terminal as standard input (TIOCSTI's target)
    try:
        r = sbx("run", "--", PY, probe, attack, stdin=slave)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in allowed


def test_x32_syscall_is_killed_and_explained(probe):
    need(os.uname().machine == "x86_64", "x86_64 only")
    r = sbx("run", "--", PY, probe, "x32")
    assert r.returncode == 128 + 31
    assert "was killed" in r.stderr and "x32" in r.stderr or "SIGSYS" in r.stderr


def test_int80_from_64bit_process_is_killed(tmp_path):
    need(shutil.which("gcc") is not None, "gcc")
    src = tmp_path / "i.c"
    src.write_text('int main(void){ long r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");'
                   ' return r > 0 ? 0 : 1; }')
    subprocess.run(["gcc", "-O1", "-o", str(tmp_path / "i"), str(src)], check=True)
    assert subprocess.run([str(tmp_path / "i")]).returncode == 0, "int 0x80 getpid works unconfined"
    r = sbx("run", "--", str(tmp_path / "i"))
    assert r.returncode == 128 + 31, r.stderr
    need(os.geteuid() == 0, "the kill explanation reads audit records (root)")
    assert "was killed" in r.stderr and "i386" in r.stderr


def test_ptrace_kill_is_explained_with_the_rule(tmp_path):
    need(os.geteuid() == 0, "audit records need root")
    prof = tmp_path / "k.yaml"
    prof.write_text("name: k\nextends: default\nrules:\n  - kill-process: ptrace\n")
    r = sbx("run", "--profile", str(prof), "--", PY, "-c",
            f"import ctypes; ctypes.CDLL(None).syscall({NR['ptrace']}, 0, 0, 0, 0)")
    assert r.returncode == 159
    assert "syscall ptrace (101) is not allowed by profile k" in r.stderr
    assert "k.yaml:4" in r.stderr


def test_threads_still_work_without_clone3():
    r = sbx("run", "--", PY, "-c",
            "import threading; out=[]; ts=[threading.Thread(target=out.append, args=(i,)) for i in range(8)];"
            "[t.start() for t in ts]; [t.join() for t in ts]; print(sorted(out))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(list(range(8)))


def test_exit_status_and_signals_propagate():
    assert sbx("run", "--", "sh", "-c", "exit 7").returncode == 7
    assert sbx("run", "--", "sh", "-c", "kill -TERM $$").returncode == 128 + 15


def test_bad_profile_fails_with_position_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    r = sbx("run", "--profile", "tests/fixtures/bad/typos.yaml", "--", "touch", str(marker))
    assert r.returncode == 2
    assert "tests/fixtures/bad/typos.yaml:4:13: error: unknown syscall 'opne'" in r.stderr
    assert "Traceback" not in r.stderr and not marker.exists()


def test_unknown_profile_and_missing_command(tmp_path):
    r = sbx("run", "--profile", "nope", "--", "true")
    assert r.returncode == 2 and "no profile 'nope'" in r.stderr
    r = sbx("run", "--", "no-such-command-xyz")
    assert r.returncode == 127 and "command not found" in r.stderr
    script = tmp_path / "s"
    script.write_text("#!/bin/sh\necho hi\n")
    r = sbx("run", "--", str(script))
    assert r.returncode == 126 and "not executable" in r.stderr
    r = sbx("run")
    assert r.returncode == 2 and "missing command" in r.stderr


def test_filter_that_cannot_be_installed_fails_closed(tmp_path):
    """Inside a sandbox that refuses seccomp(2), a nested sbx must not run the command."""
    outer = tmp_path / "outer.yaml"
    outer.write_text("name: outer\nextends: default\nrules:\n  - errno(EPERM): [seccomp, prctl]\n")
    marker = tmp_path / "ran"
    r = sbx("run", "--profile", str(outer), "--", PY, "-m", "sandbox", "run", "--", "touch", str(marker))
    assert r.returncode == 125, (r.stdout, r.stderr)
    assert "cannot confine" in r.stderr and "was not run" in r.stderr
    assert not marker.exists()


def test_cached_filter_is_used_and_invalidated_by_edits(tmp_path):
    from sandbox import cache
    prof = tmp_path / "p.yaml"
    prof.write_text("name: p\nextends: default\nrules:\n  - errno(EACCES): getppid\n")
    code = "import ctypes,os; r=ctypes.CDLL(None,use_errno=True).syscall(110); print(r, ctypes.get_errno())"
    r1 = sbx("run", "--profile", str(prof), "--", PY, "-c", code)
    assert r1.stdout.split() == ["-1", "13"]
    entry = os.path.join(cache.location(), cache._entry_name(f"{prof}\0enforce\0x86_64"))
    assert os.path.isfile(entry)
    before = os.stat(entry).st_mtime_ns
    r1b = sbx("run", "--profile", str(prof), "--", PY, "-c", code)
    assert r1b.stdout.split() == ["-1", "13"] and os.stat(entry).st_mtime_ns == before, "a hit"
    prof.write_text("name: p\nextends: default\nrules:\n  - errno(EXDEV): getppid\n")
    r2 = sbx("run", "--profile", str(prof), "--", PY, "-c", code)
    assert r2.stdout.split() == ["-1", "18"], "an edited profile must not reuse the old filter"
    os.unlink(entry)


def test_a_cached_run_loads_neither_click_nor_yaml_nor_the_compiler(tmp_path):
    """sbx run's fast path: with the filter cached, the launcher needs only the kernel seam."""
    listing = tmp_path / "modules"
    script = ("import sys; from sandbox.entry import main; code = main(sys.argv[2:]); "
              "open(sys.argv[1], 'w').write('\\n'.join(sorted(sys.modules))); sys.exit(code)")
    for _ in range(2):                  # the first run may compile and fill the cache
        r = subprocess.run([PY, "-c", script, str(listing), "run", "--", "true"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    loaded = set(listing.read_text().split())
    assert "sandbox.launcher" in loaded and "sandbox.kernel.spawn" in loaded
    heavy = {"click", "yaml", "sandbox.cli", "sandbox.policy", "bpf_filters.compiler",
             "bpf_filters.ir", "sandbox.checks", "psutil",
             "bpf_filters.syscalls"}            # the seam's numbers come from kernel.sysnos
    assert not heavy & loaded, sorted(heavy & loaded)


def test_a_run_that_logged_nothing_does_not_load_the_audit_reader(tmp_path):
    """As root, sbx run listens for audit records to count denials; when none arrived
    it skips loading the reader (~35 ms of imports). Audit records of any other process
    on the machine also wake it, so this asks for most runs, not all."""
    need(os.geteuid() == 0, "the audit socket needs root")
    listing = tmp_path / "modules"
    script = ("import sys; from sandbox.entry import main; code = main(sys.argv[2:]); "
              "open(sys.argv[1], 'w').write('\\n'.join(sorted(sys.modules))); sys.exit(code)")
    quiet = 0
    for _ in range(8):
        r = subprocess.run([PY, "-c", script, str(listing), "run", "--", "true"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        loaded = set(listing.read_text().split())
        assert "sandbox.kernel.netlink" in loaded          # it did listen
        quiet += "sandbox.kernel.audit" not in loaded
    assert quiet >= 5, f"the reader was loaded in {8 - quiet} of 8 runs that logged nothing"
    # and a denial still gets its one line
    r = subprocess.run(SBX + ["run", "--", PY, "-c", "import ctypes; ctypes.CDLL(None).syscall(163, 0)"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "1 syscall was denied under profile default" in r.stderr, r.stderr


def test_status_shows_a_confined_process():
    p = subprocess.Popen(SBX + ["run", "--", "sleep", "5"], cwd=ROOT)
    try:
        time.sleep(0.5)
        import psutil
        child = psutil.Process(p.pid).children()[0].pid
        r = subprocess.run(SBX + ["status", str(child)], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
        assert "filter" in r.stdout.splitlines()[1]
        r = subprocess.run(SBX + ["status", str(os.getpid())], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 1, "an unconfined pid makes status fail"
    finally:
        p.kill()
        p.wait()


# -- representative programs under their profiles ------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_bind_is_named_with_its_port_and_port_0_as_the_kernels_pick():
    """The kernel's audit record of a refused bind gives the port, except port 0 (the
    kernel picks one), whose src= it leaves out: the explanation names both."""
    need(os.geteuid() == 0, "Landlock refusals are explained from audit records (root)")
    port = free_port()
    for asked, said in ((port, f"binding TCP port {port}: profile web allows bind only on "
                                f"ports 80, 443, 8000, 8080, 8443 (sbx run --allow-port PORT adds one)"),
                        (0, "binding TCP port 0 (a port the kernel picks): profile web allows bind "
                            "only on ports 80, 443, 8000, 8080, 8443 (sbx run --allow-port 0 "
                            "allows it)")):
        r = sbx("run", "--profile", "web", "--", PY, "-c",
                f"import socket; socket.socket().bind(('127.0.0.1', {asked}))")
        assert r.returncode == 1 and f"was refused {said}" in r.stderr, r.stderr
    ok = sbx("run", "--profile", "web", "--allow-port", "0", "--", PY, "-c",
             "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    assert ok.returncode == 0 and int(ok.stdout) > 0, ok.stderr


def test_web_profile_serves_and_fetches(tmp_path):
    (tmp_path / "index.html").write_text("hello from sbx\n")
    port = free_port()
    refused = sbx("run", "--profile", "web", "--", PY, "-c",
                  f"import socket; socket.socket().bind(('127.0.0.1', {port}))")
    assert refused.returncode == 1 and "PermissionError" in refused.stderr, \
        "web binds only its listed ports (Landlock) unless --allow-port adds one"
    server = subprocess.Popen(SBX + ["run", "--profile", "web", "--allow-port", str(port), "--",
                                     PY, "-m", "http.server",
                                     str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("server under the web profile never answered: "
                        + server.stderr.read1().decode() if server.poll() is not None else "")
        assert b"hello from sbx" in body
        client = sbx("run", "--profile", "web", "--allow-port", str(port), "--", PY, "-c",
                     f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/').read().decode())")
        assert client.returncode == 0 and "hello from sbx" in client.stdout, client.stderr
        if shutil.which("curl"):
            c = sbx("run", "--profile", "web", "--allow-port", str(port), "--", "curl", "-sf",
                    f"http://127.0.0.1:{port}/")
            assert c.returncode == 0 and "hello from sbx" in c.stdout, c.stderr
    finally:
        server.terminate()
        server.wait(10)


def test_minimal_profile_runs_pure_computation():
    r = sbx("run", "--profile", "minimal", "--", "/usr/bin/python3", "-c", "print(1+1)")
    assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr
    assert sbx("run", "--profile", "minimal", "--", "/bin/true").returncode == 0
    r = sbx("run", "--profile", "minimal", "--", "/usr/bin/python3", "-c",
            "import socket\ntry:\n socket.socket()\nexcept OSError as e: print('denied', e.errno)")
    assert r.stdout.startswith("denied"), r.stdout + r.stderr


def test_build_profile_compiles_and_commits(tmp_path):
    need(shutil.which("gcc") is not None and shutil.which("make") is not None and shutil.which("git") is not None,
         "gcc, make and git")
    (tmp_path / "hello.c").write_text('#include <stdio.h>\nint main(void){puts("hi");return 0;}\n')
    (tmp_path / "Makefile").write_text("hello: hello.c\n\tgcc -O2 -o hello hello.c\n")
    r = sbx("run", "--profile", "build", "--", "make", "-C", str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(tmp_path / "hello")], capture_output=True, text=True).stdout == "hi\n"
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    assert sbx("run", "--profile", "build", "--", *git[:3], "init", "-q").returncode == 0
    assert sbx("run", "--profile", "build", "--", *git, "add", "hello.c").returncode == 0
    r = sbx("run", "--profile", "build", "--", *git, "commit", "-qm", "x")
    assert r.returncode == 0, r.stderr


def test_python_profile_runs_threads_subprocess_ctypes_sqlite():
    code = ("import threading, subprocess, ctypes, sqlite3, sys\n"
            "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
            "print(subprocess.run(['/bin/echo', 'sub'], capture_output=True, text=True).stdout.strip())\n"
            "print(ctypes.CDLL(None).getpid() > 0)\n"
            "db = sqlite3.connect(':memory:'); db.execute('create table t(x)'); db.execute('insert into t values (42)')\n"
            "print(db.execute('select x from t').fetchone()[0])\n")
    r = sbx("run", "--profile", "python", "--", PY, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["sub", "True", "42"]


def test_strict_net_has_no_sockets_but_runs_programs():
    r = sbx("run", "--profile", "strict-net", "--", PY, "-c",
            "import socket\ntry:\n socket.create_connection(('127.0.0.1', 9), 1)\nexcept OSError as e: print(e.errno)")
    assert r.returncode == 0
    assert r.stdout.strip() in ("1", "13"), r.stdout
    assert sbx("run", "--profile", "strict-net", "--", "sh", "-c", "echo ok | cat").stdout == "ok\n"


def test_complain_mode_logs_what_the_default_would_deny(tmp_path):
    """getppid falls to the profile default here: enforce denies it, complain lets it
    run and lists it (audit records need root)."""
    from bpf_filters.syscalls import table
    names = sorted(n for n in table("x86_64").by_name if n not in ("getppid", "clone3"))
    prof = tmp_path / "c.yaml"
    prof.write_text("name: c\ndefault: errno(EPERM)\nrules:\n  - errno(ENOSYS): clone3\n"
                    f"  - allow: [{', '.join(names)}]\n")
    code = "import ctypes; r = ctypes.CDLL(None, use_errno=True).syscall(110); print(r > 0)"
    enforce = sbx("run", "--profile", str(prof), "--", PY, "-c", code)
    assert enforce.stdout.strip() == "False", enforce.stderr
    complain = sbx("run", "--profile", str(prof), "--mode", "complain", "--", PY, "-c", code)
    assert complain.returncode == 0 and complain.stdout.strip() == "True", complain.stderr
    need(os.geteuid() == 0, "listing the logged calls reads audit records (root)")
    assert "would have been denied" in complain.stderr
    assert "getppid (110)" in complain.stderr


NGINX_CONF = """worker_processes 1;
error_log {d}/error.log;
pid {d}/nginx.pid;
events {{}}
http {{
  access_log off;
  client_body_temp_path {d}/cb; proxy_temp_path {d}/px; fastcgi_temp_path {d}/fc;
  uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;
  server {{ listen 127.0.0.1:443; location / {{ return 200 "served\\n"; }} }}
}}
"""


def test_web_runs_nginx_as_root_on_a_privileged_port(tmp_path):
    """web keeps what a root web server needs (bind below 1024, become its worker user)
    and nothing else: not CAP_CHOWN, so the temporary directories are its worker's
    beforehand (nginx's default worker user is nobody), as web's comment says."""
    need(os.geteuid() == 0, "root")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    need(os.access(nginx, os.X_OK), "nginx is not installed")
    for temp in ("cb", "px", "fc", "uw", "sc"):
        (tmp_path / temp).mkdir()
        os.chown(tmp_path / temp, 65534, -1)
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=tmp_path))
    p = subprocess.Popen(SBX + ["run", "--profile", "web", "--", nginx, "-c", str(conf), "-g", "daemon off;"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body = None
        for _ in range(50):
            try:
                with urllib.request.urlopen("http://127.0.0.1:443/", timeout=1) as r:
                    body = r.read()
                break
            except OSError:
                if p.poll() is not None:
                    break
                time.sleep(0.1)
        assert body == b"served\n", (p.poll(), (tmp_path / "error.log").read_text()
                                     if (tmp_path / "error.log").exists() else "")
    finally:
        p.terminate()
        p.communicate(timeout=10)

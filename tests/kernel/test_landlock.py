"""Landlock in sbx run: what the profiles' file and port rules refuse, said in plain words; and fail closed.

Root runs (the denials are read from audit records, types 1423/1424).
"""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import in_child, need

pytestmark = pytest.mark.kernel
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
SBX = [PY, "-m", "sandbox", "run"]


@pytest.fixture(autouse=True)
def root():
    need(os.geteuid() == 0, "needs root")


@pytest.fixture
def home(tmp_path):
    """A home directory with a dummy SSH key, as $HOME of the command."""
    h = tmp_path / "home"
    (h / ".ssh").mkdir(parents=True)
    (h / ".ssh" / "id_rsa").write_text("-----BEGIN DUMMY KEY-----\n")
    return h


@pytest.mark.parametrize("profile", ["web", "default", "build", "python", "minimal", "strict-net"])
def test_a_secret_is_refused_with_the_reason(home, profile):
    key = home / ".ssh" / "id_rsa"
    assert subprocess.run(["cat", str(key)], capture_output=True).returncode == 0     # control
    r = subprocess.run(SBX + ["--profile", profile, "--", "cat", str(key)], cwd=ROOT,
                       env=dict(os.environ, HOME=str(home)), capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr                       # cat's own status
    assert r.stdout == ""
    assert (f"sbx: cat was refused read access to {key}: profile {profile} denies "
            f"{home}/.ssh") in r.stderr, r.stderr


def test_making_a_terminal_is_refused_and_said_why():
    """The built-ins grant the command's own terminal, not /dev/ptmx and /dev/pts:
    Python's pty.openpty works unconfined and is refused under default, with
    the reason and what a profile would need."""
    code = "import pty; pty.openpty(); print('MADE')"
    assert subprocess.run([PY, "-c", code], capture_output=True, text=True).stdout == "MADE\n"
    r = subprocess.run(SBX + ["--", PY, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "MADE" not in r.stdout, r.stderr
    assert ("refused write access to /dev/ptmx: profile default grants the command's own "
            "terminals ($TTY), not the others") in r.stderr, r.stderr
    assert "SBX163" in r.stderr


def test_a_profile_the_command_may_change_is_said_at_launch(tmp_path):
    """A profile kept in the working directory can be rewritten by the command, and
    the next run installs what it wrote: said when the run starts; not for one
    the command cannot write."""
    work, safe = tmp_path / "work", tmp_path / "safe"
    work.mkdir()
    safe.mkdir()
    for d in (work, safe):
        (d / "mine.yaml").write_text(MINE)
    env = dict(os.environ, TMPDIR=str(work))
    said = subprocess.run(SBX + ["--profile", "mine.yaml", "--", "true"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)
    assert said.returncode == 0, said.stderr
    assert "its own file mine.yaml is one the command may change" in said.stderr, said.stderr
    quiet = subprocess.run(SBX + ["--profile", str(safe / "mine.yaml"), "--", "true"], cwd=work,
                           env=env, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and "its own file" not in quiet.stderr, quiet.stderr


@pytest.mark.parametrize("top", ["/", "/etc", "/usr", "/var", "/usr/lib", "/var/lib", "/etc/ssl"])
def test_a_working_directory_of_slash_or_a_system_directory_is_not_granted(tmp_path, top):
    """A service runs in / (systemd's default WorkingDirectory): write: [$CWD] there
    would reach every file but the denied ones; from /etc, /usr or /var, root's
    cron.d, systemd units and /usr/local/bin. The grant is left out, and said; the
    rest of the profile holds (writing $TMPDIR)."""
    need(os.geteuid() == 0, "root shows what a grant of a system directory gives")
    need(os.path.isdir(top), f"{top} exists (Debian has it)")
    victim = os.path.join(top, "sbx-test-cwd-" + os.urandom(4).hex())   # like /etc/cron.d
    target = victim + "/planted"
    script = (f"echo planted > {target}; echo ok > {tmp_path}/out; "
              f"test -e {target} && echo WROTE-THERE; true")
    os.mkdir(victim, 0o755)
    try:
        unconfined = subprocess.run(["sh", "-c", script], cwd=top, capture_output=True, text=True)
        assert "WROTE-THERE" in unconfined.stdout        # root may write there, unconfined
        os.unlink(target)
        r = subprocess.run(SBX + ["--", "sh", "-c", script], cwd=top, capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, PYTHONPATH=ROOT, TMPDIR=str(tmp_path)))
        assert r.returncode == 0, r.stderr
        assert "WROTE-THERE" not in r.stdout and not os.path.lexists(target)
    finally:
        if os.path.lexists(target):
            os.unlink(target)
        os.rmdir(victim)
    assert (tmp_path / "out").read_text() == "ok\n"
    where = "every file but the denied ones" if top == "/" else "the system's files"
    assert f"$CWD is {top} here, where write would reach {where}: not granted" in r.stderr, r.stderr


def test_writing_outside_the_working_and_temporary_directories_is_refused(tmp_path, home):
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run(SBX + ["--profile", "web", "--", "sh", "-c",
                              f"echo ok > {work}/out && echo no > {home}/.bashrc"],
                       cwd=work, env=dict(os.environ, HOME=str(home), TMPDIR=str(work)),
                       capture_output=True, text=True, timeout=30)
    assert (work / "out").read_text() == "ok\n" and not (home / ".bashrc").exists()
    assert f"sbx: sh was refused creating a file in {home}: profile web allows" in r.stderr, r.stderr


def test_web_serves_files_from_its_working_directory(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello from the web profile\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(SBX + ["--profile", "web", "--", PY, "-m", "http.server", "--bind",
                                     "127.0.0.1", str(port)],
                              cwd=site, env=dict(os.environ, PORT=str(port)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        body = None
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None and b"hello from the web profile" in body, \
            server.stderr.read1().decode() if server.poll() is not None else "no answer"
        c = subprocess.run(SBX + ["--profile", "web", "--", "curl", "-sf", f"http://127.0.0.1:{port}/"],
                           cwd=site, env=dict(os.environ, PORT=str(port)), capture_output=True,
                           text=True, timeout=30)
        assert "hello from the web profile" in c.stdout, c.stderr
    finally:
        server.terminate()
        server.wait(10)


LANDLOCK_GONE = """name: no-landlock
extends: default
rules:
  - errno(ENOSYS): [landlock_create_ruleset, landlock_add_rule, landlock_restrict_self]
filesystem:
  write: [/]
"""


def test_a_profile_asking_for_landlock_on_a_kernel_without_it_does_not_run(tmp_path):
    """Nested: the outer profile answers landlock_* with ENOSYS, as a kernel without it would."""
    outer = tmp_path / "outer.yaml"
    outer.write_text(LANDLOCK_GONE)
    marker = tmp_path / "ran"
    r = subprocess.run(SBX + ["--profile", str(outer), "--", PY, "-m", "sandbox", "run", "--", "touch",
                              str(marker)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 125, r.stderr
    assert not marker.exists()
    assert "this kernel cannot enforce Landlock itself" in r.stderr
    assert "the command was not run" in r.stderr


def test_best_effort_runs_and_says_exactly_what_was_not_enforced(tmp_path):
    outer = tmp_path / "outer.yaml"
    outer.write_text(LANDLOCK_GONE)
    inner = tmp_path / "inner.yaml"
    inner.write_text("name: relaxed\nextends: web\nlandlock: best-effort\n")
    marker = tmp_path / "ran"
    r = subprocess.run(SBX + ["--profile", str(outer), "--", PY, "-m", "sandbox", "run", "--profile",
                              str(inner), "--", "touch", str(marker)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and marker.exists(), r.stderr
    notes = [line for line in r.stderr.splitlines() if "best-effort" in line]
    assert len(notes) == 1, r.stderr
    assert "not enforced on this kernel: Landlock itself" in notes[0]
    assert "the profile's filesystem and network rules" in notes[0]


def test_verify_fails_on_a_landlock_denial(home):
    r = subprocess.run([PY, "-m", "sandbox", "verify", "--profile", "web", "--", "sh", "-c",
                        f"cat {home}/.ssh/id_rsa > /dev/null; exit 0"],
                       cwd=ROOT, env=dict(os.environ, HOME=str(home)), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stderr
    assert "refused by the profile's Landlock rules" in r.stderr
    assert "fs.read_file" in r.stderr and f"{home}/.ssh/id_rsa" in r.stderr


# -- sbx's cache stays out of reach, in one Landlock layer or two ----------------------

def _in_child(prepared, fn) -> dict:
    """fn() in a forked child confined by *prepared*'s steps; its dict back."""
    def confined():
        for step in prepared.steps:
            step.apply()
        return fn()
    return in_child(confined)


def _try(fn) -> str:
    try:
        fn()
        return "done"
    except OSError as err:
        import errno
        return errno.errorcode[err.errno]


def _cache_attacks(cache: str, parent: str) -> dict:
    entry = os.path.join(cache, "entry")
    return {
        "create": _try(lambda: os.close(os.open(os.path.join(cache, "new"), os.O_CREAT | os.O_WRONLY))),
        "overwrite": _try(lambda: os.close(os.open(entry, os.O_WRONLY))),
        "truncate": _try(lambda: os.truncate(entry, 0)),
        "rename-entry": _try(lambda: os.rename(entry, os.path.join(cache, "moved"))),
        "unlink": _try(lambda: os.unlink(entry)),
        "mkdir": _try(lambda: os.mkdir(os.path.join(cache, "d"))),
        "move-cache": _try(lambda: os.rename(cache, os.path.join(parent, "elsewhere"))),
        "link-out": _try(lambda: os.link(entry, os.path.join(parent, "work", "stolen"))),
        "control: write beside": _try(lambda: open(os.path.join(parent, "work", "ok"), "w").close()),
    }


def _cache_tree(tmp_path):
    parent = tmp_path / "var"
    cache = parent / "cache"
    (parent / "work").mkdir(parents=True)
    cache.mkdir()
    (cache / "entry").write_text("genuine\n")
    return str(parent), str(cache)


@pytest.mark.parametrize("grant, layers", [
    pytest.param("parent", 2, id="write granted on the cache's parent: two layers"),
    pytest.param("work", 1, id="write granted beside the cache: one layer"),
])
def test_the_cache_is_unwritable_whatever_the_profile_grants_around_it(tmp_path, grant, layers):
    """The profile may write where the cache's parent is (then sbx needs its own
    layer: Landlock layers only narrow) or only beside it (then the profile's
    layer, which handles every write right, keeps the cache as it is alone).
    Either way every change to the cache fails, while the grant itself holds."""
    from sandbox import confine
    from sandbox.kernel import landlock
    parent, cache = _cache_tree(tmp_path)
    target = parent if grant == "parent" else os.path.join(parent, "work")
    spec = confine.Spec(fs=[("read", "/", False), ("exec", "/", False), ("write", target, False)])
    prepared = confine.prepare(spec, "test", cache, dict(os.environ))
    try:
        restrict = [s for s in prepared.steps if isinstance(s, landlock.Restrict)]
        results = _in_child(prepared, lambda: _cache_attacks(cache, parent))
    finally:
        prepared.close()
    assert results.pop("control: write beside") == "done"
    assert all(v in ("EACCES", "EXDEV", "EPERM") for v in results.values()), results
    assert (tmp_path / "var" / "cache" / "entry").read_text() == "genuine\n"
    assert sorted(os.listdir(cache)) == ["entry"]
    assert len(restrict) == 1 and len(restrict[0].rulesets) == layers


def test_a_rule_path_swapped_for_a_symlink_grants_nothing(tmp_path):
    """Rules are planned on real paths, then opened: a directory replaced by a
    symbolic link in between (towards the cache, say) makes that rule fail."""
    from sandbox.kernel import landlock
    (tmp_path / "real").mkdir()
    (tmp_path / "cache").mkdir()
    (tmp_path / "swapped").symlink_to(tmp_path / "cache")
    rs = landlock.Ruleset(fs=landlock.WRITE_RIGHTS)
    try:
        failed = rs.allow_paths([(str(tmp_path / "real"), landlock.WRITE_RIGHTS, True),
                                 (str(tmp_path / "swapped"), landlock.WRITE_RIGHTS, True),
                                 (str(tmp_path / "swapped" / "x"), landlock.WRITE_RIGHTS, True)])
        assert rs.rules == 1
        assert [(p, e.errno) for p, e in failed] == [(str(tmp_path / "swapped"), 40),
                                                     (str(tmp_path / "swapped" / "x"), 40)]
    finally:
        rs.close()


def test_rule_descriptors_are_closed_and_only_they(tmp_path):
    """allow_paths closes its rule descriptors in batches (close_range over runs
    of numbers): every one is closed, over several batches, and a descriptor of
    someone else's that sits between them stays open."""
    from sandbox.kernel import landlock
    dirs = []
    for i in range(landlock._HELD * 2 + 5):
        (tmp_path / str(i)).mkdir()
        dirs.append((str(tmp_path / str(i)), landlock.WRITE_RIGHTS, True))
    def open_fds():
        listed = [int(n) for n in os.listdir("/proc/self/fd")]   # its own fd is closed by now
        return {fd for fd in listed if _is_open(fd)}

    before = open_fds()
    rs = landlock.Ruleset(fs=landlock.WRITE_RIGHTS)
    gap = os.open(os.devnull, os.O_RDONLY)
    theirs = os.open(os.devnull, os.O_RDONLY)
    os.close(gap)                         # the first rule takes this number, the next go above 'theirs'
    try:
        assert not rs.allow_paths(dirs)
        assert rs.rules == len(dirs)
        assert open_fds() == before | {rs.fd, theirs}
    finally:
        os.close(theirs)
        rs.close()


def test_rules_are_made_under_a_low_descriptor_limit(tmp_path):
    """A batch of rule descriptors must not run a low RLIMIT_NOFILE out: with
    room for a few descriptors only, every rule is still made."""
    import resource
    from sandbox.kernel import landlock
    dirs = []
    for i in range(100):
        (tmp_path / str(i)).mkdir()
        dirs.append((str(tmp_path / str(i)), landlock.WRITE_RIGHTS, True))

    def ruled():
        highest = max(int(n) for n in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 8, highest + 8))
        fillers = []
        try:                                 # every free number taken ...
            while True:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for fd in fillers[-4:]:              # ... but four: the ruleset's and three for rules
            os.close(fd)
        rs = landlock.Ruleset(fs=landlock.WRITE_RIGHTS)
        failed = rs.allow_paths(dirs)
        return rs.rules, [str(e) for _p, e in failed]
    assert in_child(ruled) == [100, []]


def test_a_path_holding_a_nul_grants_nothing(tmp_path):
    """C would read the path up to the NUL, a parent of what was meant."""
    from sandbox.kernel import landlock
    (tmp_path / "d").mkdir()
    rs = landlock.Ruleset(fs=landlock.WRITE_RIGHTS)
    try:
        failed = rs.allow_paths([(f"{tmp_path}\0/d", landlock.WRITE_RIGHTS, True),
                                 (str(tmp_path / "d"), landlock.WRITE_RIGHTS, True)])
        assert [(p, e.errno) for p, e in failed] == [(f"{tmp_path}\0/d", 22)]
        assert rs.rules == 1
    finally:
        rs.close()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_close_all_closes_runs_and_leaves_the_gaps():
    from sandbox.kernel import landlock
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(6)]
    mine = [fds[0], fds[1], fds[3], fds[5]]
    landlock._close_all(list(reversed(mine)))
    assert [_is_open(fd) for fd in fds] == [False, False, True, False, True, False]
    os.close(fds[2])
    os.close(fds[4])


# -- sbx refine: refused, refined, then allowed --------------------------------------------

MINE = "name: mine   # a profile of my own\nextends: [web]\n"


def _run(profile, argv, out, cwd, env):
    return subprocess.run(SBX + ["--profile", str(profile), "-o", str(out), "--"] + argv, cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def _landlock_lines(path):
    import json
    if not os.path.exists(path):
        return []
    return [line for line in open(path) if json.loads(line).get("action") == "landlock"]


def _refine(profile, denials, out):
    return subprocess.run([PY, "-m", "sandbox", "refine", str(profile), "--from", str(denials), "-o",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
def place(tmp_path):
    """A working directory, a temporary directory and a data file outside both."""
    for d in ("work", "tmp", "data"):
        (tmp_path / d).mkdir()
    (tmp_path / "data" / "config.txt").write_text("setting = 1\n")
    (tmp_path / "mine.yaml").write_text(MINE)
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"), HOME=str(tmp_path / "work"))
    return tmp_path, env


def test_refine_grants_a_refused_file_read_and_the_refined_profile_runs_without_denial(place):
    tmp, env = place
    data = tmp / "data" / "config.txt"
    first = _run(tmp / "mine.yaml", ["cat", str(data)], tmp / "d1.jsonl", tmp / "work", env)
    assert first.returncode == 1 and first.stdout == "", first.stderr
    assert f"cat was refused read access to {data}" in first.stderr
    r = _refine(tmp / "mine.yaml", tmp / "d1.jsonl", tmp / "mine2.yaml")
    assert r.returncode == 0, r.stderr
    assert f"+  read: [{data}]" in r.stdout, r.stdout        # the file itself, under read
    refined = (tmp / "mine2.yaml").read_text()
    assert refined.startswith(MINE) and "write" not in refined.split(MINE)[1]
    second = _run(tmp / "mine2.yaml", ["cat", str(data)], tmp / "d2.jsonl", tmp / "work", env)
    assert second.returncode == 0 and second.stdout == "setting = 1\n", second.stderr
    assert _landlock_lines(tmp / "d2.jsonl") == [] and "refused" not in second.stderr
    other = _run(tmp / "mine2.yaml", ["cat", str(tmp / "data" / "other")], tmp / "d3.jsonl",
                 tmp / "work", env)
    assert "refused" in other.stderr                          # the directory stays closed


def test_refine_adds_a_refused_tcp_port_and_the_refined_profile_connects(place):
    tmp, env = place
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        code = (f"import socket; s = socket.create_connection(('127.0.0.1', {port}), timeout=5); "
                "print('connected')")
        first = _run(tmp / "mine.yaml", [PY, "-I", "-c", code], tmp / "d1.jsonl", tmp / "work", env)
        assert first.returncode != 0 and "connected" not in first.stdout
        assert f"refused a TCP connection to port {port}" in first.stderr, first.stderr
        r = _refine(tmp / "mine.yaml", tmp / "d1.jsonl", tmp / "mine2.yaml")
        assert r.returncode == 0, r.stderr
        assert f"+  connect: [{port}]" in r.stdout, r.stdout
        second = _run(tmp / "mine2.yaml", [PY, "-I", "-c", code], tmp / "d2.jsonl", tmp / "work", env)
        assert second.returncode == 0 and second.stdout == "connected\n", second.stderr
        assert _landlock_lines(tmp / "d2.jsonl") == []


def test_refine_broad_lifts_the_signal_scope_and_the_refined_profile_signals(place):
    """A signal to a process outside the sandbox is refused (scope: signals: sandbox);
    refine proposes nothing without --broad, and with it scope: {signals: any}, under
    which the same signal gets through."""
    tmp, env = place
    outside = subprocess.Popen(["sleep", "60"])
    try:
        argv = ["kill", "-CONT", str(outside.pid)]
        first = _run(tmp / "mine.yaml", argv, tmp / "d1.jsonl", tmp / "work", env)
        assert first.returncode != 0, first.stderr
        assert f"kill was refused sending a signal to pid {outside.pid}" in first.stderr, first.stderr
        plain = _refine(tmp / "mine.yaml", tmp / "d1.jsonl", tmp / "mine2.yaml")
        assert plain.returncode == 0 and "nothing to change" in plain.stderr, plain.stderr
        assert "use --broad" in plain.stderr and not (tmp / "mine2.yaml").exists()
        broad = subprocess.run([PY, "-m", "sandbox", "refine", str(tmp / "mine.yaml"), "--from",
                                str(tmp / "d1.jsonl"), "-o", str(tmp / "mine2.yaml"), "--broad"],
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert broad.returncode == 0, broad.stderr
        assert "+scope:\n+  signals: any\n" in broad.stdout, broad.stdout
        second = _run(tmp / "mine2.yaml", argv, tmp / "d2.jsonl", tmp / "work", env)
        assert second.returncode == 0, second.stderr
        assert _landlock_lines(tmp / "d2.jsonl") == []
        assert outside.poll() is None                    # SIGCONT: it is still there
    finally:
        outside.kill()
        outside.wait()


MQ = ("import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
      "fd = libc.mq_open(b'/sbx-test-mq', os.O_CREAT | os.O_RDWR, 0o600, None); "
      "sys.exit(f'mq_open: {os.strerror(ctypes.get_errno())}') if fd < 0 else None; "
      "libc.mq_unlink(b'/sbx-test-mq'); print('queue made and removed')")


def test_posix_message_queues_work_under_default_where_dev_mqueue_is_mounted():
    """mq_open works on the kernel's own mount of the mqueue file system, whose root
    is /dev/mqueue's inode: default's grant there reaches it (without it, Landlock
    refused every queue although the rules allow @ipc)."""
    need(os.geteuid() == 0, "mounting the mqueue file system needs root")
    mounted = "/dev/mqueue" in {line.split()[1] for line in open("/proc/mounts")}
    if not mounted:
        os.makedirs("/dev/mqueue", exist_ok=True)
        subprocess.run(["mount", "-t", "mqueue", "none", "/dev/mqueue"], check=True)
    try:
        r = subprocess.run(SBX + ["--", sys.executable, "-c", MQ], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and "queue made and removed" in r.stdout, r.stderr
    finally:
        if not mounted:
            subprocess.run(["umount", "/dev/mqueue"], check=True)

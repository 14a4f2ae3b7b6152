"""``sbx trace`` records files and TCP ports, with both recorders, and the profile it
writes confines them: a small C program (fileprog.c) that reads a config file and
writes an output file is traced, replayed under the profile with every file access
working, and refused anywhere else; the two recorders see the same calls."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import trace as tr
from sandbox.ebpf.probe import available
from sandbox.policy import load_profile
from tests.conftest import need

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("fileprog.c")


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    """fileprog, installed as APP/bin/fileprog (so $EXEC_ROOT is APP)."""
    need(shutil.which("gcc") is not None, "gcc is needed to build tests/kernel/fileprog.c")
    root = tmp_path_factory.mktemp("app")
    (root / "bin").mkdir()
    exe = root / "bin" / "fileprog"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(SOURCE)],
                   check=True)
    return exe


@pytest.fixture(params=["ebpf", "notify"])
def backend(request):
    need(os.geteuid() == 0, "needs root: eBPF tracing, and replaying as the traced user")
    if request.param == "ebpf":
        need(*available())
    return request.param


class World:
    """A home, a working directory and a temporary directory of their own."""

    def __init__(self, root: Path):
        self.root = root
        self.home, self.cwd, self.tmp = root / "home", root / "work", root / "tmp"
        for d in (self.home, self.cwd, self.tmp, self.home / "out"):
            d.mkdir(parents=True, exist_ok=True)
        (self.home / "app.conf").write_text("greeting=hello\n")
        self.env = {**os.environ, "HOME": str(self.home), "TMPDIR": str(self.tmp),
                    "PYTHONPATH": str(REPO)}

    def record(self, argv: list[str], backend: str) -> tr.Recording:
        old = os.getcwd()
        os.chdir(self.cwd)
        try:
            rec = tr.record([str(a) for a in argv], backend, self.env)
        finally:
            os.chdir(old)
        assert os.waitstatus_to_exitcode(rec.exit_status) == 0, argv
        return rec

    def sbx(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sandbox", *map(str, args)], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, timeout=120)


def test_the_recorders_see_each_kind_of_file_call_alike(tmp_path, app):
    need(os.geteuid() == 0, "needs root for the eBPF recorder")
    need(*available())
    seen = {}
    for backend in ("ebpf", "notify"):
        world = World(tmp_path)
        ops = tmp_path / "ops"
        if ops.exists():
            shutil.rmtree(ops)
        ops.mkdir()
        rec = world.record([app, world.home / "app.conf", world.home / "out" / "r.txt",
                            f"ops:{ops}"], backend)
        seen[backend] = rec.files
    ebpf, notify = seen["ebpf"], seen["notify"]
    assert set(ebpf.words) == set(notify.words)
    assert ebpf.created == notify.created and ebpf.moves == notify.moves
    ops, made, out = str(tmp_path / "ops"), str(tmp_path / "ops" / "made"), str(tmp_path / "home/out")
    words = set(ebpf.words)
    assert {("read", str(tmp_path / "home/app.conf")),         # fopen(CONFIG, "r")
            ("write", out), ("modify", f"{out}/r.txt"),        # fopen(OUTPUT, "w")
            ("read", f"{out}/r.txt"),                          # read back
            ("exec", str(app)),                                # the command itself
            ("write", ops),                                    # mkdir "made" (relative)
            ("write", made),                                   # openat(made, "a.txt", O_CREAT)
            ("modify", f"{ops}/b.txt"),                        # truncate("b.txt")
            ("refer", ops),                                    # linkat: ops/b.txt -> made/c.txt
            ("read", f"{made}/c.txt"),                         # openat2(made, "c.txt")
            ("list", made),                                    # open("made", O_DIRECTORY)
            ("list", ops)} <= words                            # chdir(ops)
    assert any(word == "exec" and path.startswith("/usr/") for word, path in words)   # ld.so
    assert {f"{ops}/made", f"{made}/a.txt", f"{ops}/b.txt", f"{made}/c.txt", f"{made}/d.link",
            f"{made}/fifo", f"{made}/sock", f"{ops}/e.txt"} <= ebpf.created
    assert ebpf.moves == {(made, ops), (ops, made)}           # renameat2 out, linkat back in


def test_tcp_ports_bound_and_connected_are_recorded_and_udp_is_not(tmp_path, app, backend):
    world = World(tmp_path)
    port, udp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    rec = world.record([app, world.home / "app.conf", world.home / "out" / "r.txt",
                        f"tcp:{port}", f"udp:{udp}"], backend)
    assert rec.files.ports == {("bind", port): 1, ("connect", port): 1}


def test_a_path_longer_than_the_probe_reads_is_granted_on_its_deepest_whole_directory(
        tmp_path, app):
    need(os.geteuid() == 0, "needs root for the eBPF recorder")
    need(*available())
    world = World(tmp_path)
    deep = tmp_path / "/".join(["d" * 50] * 6)
    deep.mkdir(parents=True)
    (deep / "app.conf").write_text("greeting=deep\n")
    rec = world.record([app, deep / "app.conf", world.home / "out" / "r.txt"], "ebpf")
    cut = str(deep / "app.conf")[:255]
    assert ("read", os.path.dirname(cut)) in rec.files.words
    assert any("longer than 255 bytes" in note for note in rec.files.notes)
    notify = world.record([app, deep / "app.conf", world.home / "out" / "r.txt"], "notify")
    assert ("read", str(deep / "app.conf")) in notify.files.words      # read whole from memory


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the must-show: trace, replay with zero denials, nothing written elsewhere ------------

def test_a_traced_program_replays_under_its_profile_and_writes_nowhere_else(tmp_path, app,
                                                                           backend):
    world = World(tmp_path)
    conf, out = world.home / "app.conf", world.home / "out" / "result.txt"
    traced = world.sbx("trace", "-o", tmp_path / "p.yaml", "--backend", backend, "--verify",
                       "--", app, conf, out)
    assert traced.returncode == 0, traced.stderr
    assert f"sbx: verify: 0 denials; {app} exited with status 0" in traced.stderr
    text = (tmp_path / "p.yaml").read_text()
    section = text[text.index("\nfilesystem:"):]
    print(section)
    prof = load_profile(str(tmp_path / "p.yaml"))
    grants = {(word, path) for word, path, _pos in prof.fs}
    assert ("read", "$HOME/app.conf") in grants                 # the config file, by name
    assert ("write", "$HOME/out") in grants                     # where the output goes
    assert not any(word == "write" and path in ("$CWD", "$HOME", "$TMPDIR", "/", "/tmp")
                   for word, path in grants)
    assert prof.net == {"bind": [], "connect": []}
    out.unlink()
    others = [world.home / "other.txt", world.cwd / "x.txt", world.tmp / "x.txt",
              world.root / "x.txt", Path("/var/tmp") / f"sbx-test-{os.getpid()}"]
    ran = world.sbx("run", "--profile", tmp_path / "p.yaml", "--", app, conf, out,
                    f"try:{world.home / 'out' / 'second.txt'}", *[f"try:{p}" for p in others])
    assert ran.returncode == 0, ran.stderr
    assert out.read_text() == "hello\n"
    lines = ran.stdout.splitlines()
    assert lines[0] == f"{world.home / 'out' / 'second.txt'}: ok"  # the output directory
    assert lines[1:] == [f"{p}: EACCES" for p in others]           # Landlock: nowhere else
    assert not any(p.exists() for p in others)


def test_a_shell_using_devices_replays_under_its_traced_profile(tmp_path, backend):
    """The built-ins deny /dev (the devices are an allow-list): a traced shell that reads,
    writes and tests devices gets each one granted with ioctl-dev, and replays clean."""
    world = World(tmp_path)
    script = ("cat /dev/null; echo x > /dev/null; head -c1 /dev/urandom > /dev/null; "
              "head -c1 /dev/zero > /dev/full 2>/dev/null; test -t 0 < /dev/null; true")
    traced = world.sbx("trace", "-o", tmp_path / "d.yaml", "--backend", backend, "--verify",
                       "--", "/bin/sh", "-c", script)
    assert traced.returncode == 0, traced.stderr
    assert "sbx: verify: 0 denials; /bin/sh exited with status 0" in traced.stderr, traced.stderr
    prof = load_profile(str(tmp_path / "d.yaml"))
    ioctl = {t for w, t, _ in prof.fs if w == "ioctl-dev"}
    assert {"/dev/null", "/dev/urandom"} <= ioctl, prof.fs
    assert "secret" not in (tmp_path / "d.yaml").read_text()


def test_the_terminal_a_traced_command_opens_is_its_own_not_every_one(tmp_path, backend):
    """A command that opens its terminal by name (echo > $(tty)) gets $TTY, which
    a later run expands to its own terminal, a different one; /dev/pts, every
    terminal of the user, is not granted."""
    world = World(tmp_path)

    def under_a_terminal(*args):
        master, slave = os.openpty()
        try:
            return subprocess.run([sys.executable, "-m", "sandbox", *map(str, args)],
                                  cwd=world.cwd, env=world.env, stdin=slave, capture_output=True,
                                  text=True, timeout=120)
        finally:
            os.close(slave)
            os.close(master)
    script = 'echo hello > "$(tty)"'
    traced = under_a_terminal("trace", "-o", tmp_path / "t.yaml", "--backend", backend, "--",
                              "/bin/sh", "-c", script)
    assert traced.returncode == 0, traced.stderr
    prof = load_profile(str(tmp_path / "t.yaml"))
    assert ("modify", "$TTY") in {(w, t) for w, t, _ in prof.fs}, prof.fs
    assert not [t for _w, t, _ in prof.fs if t.startswith("/dev/pts")], prof.fs
    replay = under_a_terminal("run", "--profile", tmp_path / "t.yaml", "--", "/bin/sh", "-c", script)
    assert replay.returncode == 0, replay.stderr


def test_the_tcp_port_seen_is_the_only_one_the_profile_allows(tmp_path, app, backend):
    world = World(tmp_path)
    conf, out = world.home / "app.conf", world.home / "out" / "result.txt"
    port, other = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    traced = world.sbx("trace", "-o", tmp_path / "p.yaml", "--backend", backend, "--",
                       app, conf, out, f"tcp:{port}")
    assert traced.returncode == 0, traced.stderr
    assert f"network:\n  bind: [{port}]\n  connect: [{port}]\n" in (tmp_path / "p.yaml").read_text()
    ran = world.sbx("run", "--profile", tmp_path / "p.yaml", "--", app, conf, out,
                    f"tcp:{port}", f"tcp:{other}")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [f"tcp {port}: ok", f"tcp {other}: bind EACCES"]

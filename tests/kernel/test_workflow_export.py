"""The nginx + redis workflow, export half: trace each server, export, run it where it was sent.

For each server: `sbx trace` records it while a client talks to it; the
traced profile is exported to runc (`--format oci`, with the OCI runtime
preset) and the server runs in a runc container (host binaries bound read-only,
host network, Docker's default capabilities, no noNewPrivileges as under
Docker) and answers the same client; it is exported to systemd (`--format
systemd`), the unit passes `systemd-analyze verify`, and a real service manager
(tests/systemd_manager.py) starts it: the server answers the client under
systemd. The profiles keep no capability, so the units run as nobody (nginx's
master cannot switch its worker's user without CAP_SETUID, under `sbx run` as
under systemd).
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from click.testing import CliRunner

from sandbox.cli import cli
from tests.conftest import need
from tests.systemd_manager import SystemdManager, available

pytestmark = pytest.mark.system
SBX = os.path.join(os.path.dirname(sys.executable), "sbx")
RUNC = shutil.which("runc")
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
               "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT",
               "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def talk(port: int, request: bytes, until: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while until not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


class Nginx:
    need_binary = "/usr/sbin/nginx"

    def __init__(self, work, port):
        (work / "html").mkdir()
        (work / "html" / "index.html").write_text("hello from nginx\n")
        temp = " ".join(f"{k}_temp_path {work}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (work / "nginx.conf").write_text(
            f"daemon off; master_process on; worker_processes 1; error_log stderr; pid {work}/nginx.pid;\n"
            f"events {{ worker_connections 64; }}\n"
            f"http {{ access_log off; {temp} server {{ listen 127.0.0.1:{port}; root {work}/html; }} }}\n")
        self.argv = [self.need_binary, "-c", f"{work}/nginx.conf", "-p", str(work)]
        self.port = port

    def exercise(self) -> None:
        reply = talk(self.port, b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n", b"hello from nginx")
        assert reply.startswith(b"HTTP/1.1 200") and b"hello from nginx" in reply, reply


class Redis:
    need_binary = "/usr/bin/redis-server"

    def __init__(self, work, port):
        self.argv = [self.need_binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--daemonize", "no", "--dir", str(work)]
        self.port = port

    def exercise(self) -> None:
        reply = talk(self.port, b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n"
                                b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"$2\r\nv1\r\n")
        assert reply == b"+PONG\r\n+OK\r\n$2\r\nv1\r\n", reply


def serve(argv, server, stop=signal.SIGTERM) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        wait_port(server.port, proc)
        server.exercise()
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
        out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.fixture(params=[Nginx, Redis], ids=["nginx", "redis"])
def traced(request):
    cls = request.param
    need(os.geteuid() == 0, "sbx trace (eBPF) and runc need root")
    need(os.path.isfile(cls.need_binary), f"{cls.need_binary} is not installed")
    # nginx's worker runs as nobody: the work dir must be readable by others (pytest's are 0700)
    work = pathlib.Path(tempfile.mkdtemp(prefix="sbx-workflow-"))
    work.chmod(0o755)
    server = cls(work, free_port())
    profile = work / "traced.yaml"
    res = serve([SBX, "trace", "-o", str(profile), "--", *server.argv], server)
    assert profile.is_file(), res.stderr
    yield server, str(profile), work
    shutil.rmtree(work, ignore_errors=True)


def export(ref: str, fmt: str, *extra: str) -> tuple[str, str]:
    res = CliRunner().invoke(cli, ["export", ref, "--format", fmt, *extra])
    assert res.exit_code == 0, res.stderr
    return res.stdout, res.stderr


def bundle(tmp_path, argv, seccomp: dict) -> str:
    """runc bundle: the host's binaries read-only, a writable work dir, host network."""
    root = tmp_path / "bundle"
    (root / "rootfs").mkdir(parents=True)
    subprocess.run([RUNC, "spec"], cwd=root, check=True)
    config = json.loads((root / "config.json").read_text())
    config["root"] = {"path": "rootfs", "readonly": True}
    config["process"].update(args=argv, terminal=False, noNewPrivileges=False)
    for k in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][k] = DOCKER_CAPS
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
    mounts = [m for m in config["mounts"] if not m["destination"].startswith("/sys")]
    for d in ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/sys"):
        if os.path.exists(d):
            mounts.append({"destination": d, "type": "bind", "source": d, "options": ["rbind", "ro"]})
    for d in ("/var", "/run"):
        mounts.append({"destination": d, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]})
    mounts.append({"destination": str(tmp_path), "type": "bind", "source": str(tmp_path), "options": ["rbind", "rw"]})
    config["mounts"] = mounts
    config["linux"]["seccomp"] = seccomp
    (root / "config.json").write_text(json.dumps(config))
    return str(root)


def test_the_traced_server_runs_under_runc(traced):
    need(RUNC is not None, "runc is not installed")
    server, profile, tmp_path = traced
    text, stderr = export(profile, "oci")
    assert "added the OCI runtime preset" in stderr
    cid = f"sbx-wf-{uuid.uuid4().hex[:10]}"
    try:
        res = serve([RUNC, "run", "--bundle", bundle(tmp_path, server.argv, json.loads(text)), cid], server)
    finally:
        subprocess.run([RUNC, "delete", "-f", cid], capture_output=True)
    assert "operation not permitted" not in res.stderr.lower(), res.stderr


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    why = available()
    need(why is None, why or "")
    with SystemdManager(tmp_path_factory.mktemp("systemd")) as m:
        yield m


def serve_unit(m: SystemdManager, name: str, server, dropin: str, work) -> str:
    """Start SERVER as a unit (as nobody, in WORK), let the client talk to it, stop it; its output."""
    out = work / f"{name}.out"
    shutil.chown(work, "nobody")
    m.install(f"{name}.service", "[Unit]\nDefaultDependencies=no\n[Service]\nType=simple\nUser=nobody\n"
              f"Group=nogroup\nWorkingDirectory={work}\nExecStart={' '.join(server.argv)}\n"
              f"StandardOutput=file:{out}\nStandardError=file:{out}\n", dropin)
    res = m.start_unit(f"{name}.service")
    assert res.returncode == 0, f"{res.stderr}\n{m.unit_log(name)}"
    try:
        end = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()
                break
            except OSError:
                state = m.show(f"{name}.service", "ActiveState")["ActiveState"]
                if state != ["active"] or time.monotonic() > end:
                    text = out.read_text() if out.exists() else ""
                    raise AssertionError(f"{name} is {state}:\n{text}\n{m.unit_log(name)}")
                time.sleep(0.1)
        server.exercise()
    finally:
        m.stop_unit(f"{name}.service")
    return out.read_text() if out.exists() else ""


def test_the_traced_server_runs_under_its_systemd_unit(traced, manager):
    server, profile, work = traced
    # the trace ran with TMPDIR=/tmp and wrote the work dir there as $TMPDIR; the test's
    # manager sets its own TMPDIR (%T), so the export binds $TMPDIR to what the trace saw
    dropin, stderr = export(profile, "systemd", "--var", f"TMPDIR={tempfile.gettempdir()}")
    assert "warning: systemd allows" in stderr              # the loosenings are named
    analyze = shutil.which("systemd-analyze")
    need(analyze is not None, "systemd-analyze is not installed")
    unit = work / "sbx-server.service"
    unit.write_text("[Unit]\nDescription=traced server\n[Service]\nExecStart=" + " ".join(server.argv) +
                    "\n" + dropin.replace("[Service]\n", ""))
    res = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout + res.stderr == "", res.stdout + res.stderr
    said = serve_unit(manager, f"traced-{type(server).__name__.lower()}", server, dropin, work)
    assert "Operation not permitted" not in said, said


def test_nginx_runs_under_the_web_profiles_systemd_unit(manager):
    """The issue's case: `web` decides socket, socketpair and ioctl by their arguments; the unit allows
    them (with RestrictAddressFamilies=) instead of leaving nginx without sockets; and its files and
    ports (bound with --var) let nginx serve from its directory."""
    need(os.path.isfile(Nginx.need_binary), "nginx is not installed")
    work = pathlib.Path(tempfile.mkdtemp(prefix="sbx-workflow-"))
    try:
        work.chmod(0o755)
        server = Nginx(work, free_port())
        res = CliRunner().invoke(cli, ["export", "web", "--format", "systemd", "--var", f"CWD={work}",
                                       "--var", f"PORT={server.port}"])
        assert res.exit_code == 0, res.stderr
        for name in ("socket", "socketpair", "ioctl"):
            assert f"warning: systemd allows {name}" in res.stderr
        said = serve_unit(manager, "web-nginx", server, res.stdout, work)
        assert "Operation not permitted" not in said, said
    finally:
        shutil.rmtree(work, ignore_errors=True)

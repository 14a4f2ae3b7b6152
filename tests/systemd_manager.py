"""A real systemd service manager for tests: ``systemd --user`` as root, in a private mount namespace.

systemd is not PID 1 on the test machine, but its service manager still runs
units with everything an exported drop-in uses (seccomp, mount namespaces,
capabilities): started as root, ``systemd --user`` keeps every privilege, so
the sandboxing settings the man page reserves for system services apply (the
brief check: ``Seccomp: 2`` and a read-only /etc under ``ProtectSystem=strict``).

How (each step for a reason measured here):

- ``unshare -m --propagation private``: the manager's mounts stay its own;
- a tmpfs on /run/systemd with /run/systemd/system in it: without that
  directory systemd refuses ("System has not been booted with systemd");
  and with /run/systemd/inaccessible/{dir,reg,fifo,chr,blk}, the nodes PID 1
  makes at boot and InaccessiblePaths= mounts over a path (without them a
  unit fails at step NAMESPACE: "Failed to mount
  /run/systemd/inaccessible/dir ... No such file or directory");
- the console and /dev/kmsg are a pseudo-terminal inside that namespace:
  systemd 252 logs to /dev/console (it insists on a terminal there) and its
  generators to /dev/kmsg; this way nothing reaches the machine's console or
  kernel log, and the log is ours to show when a test fails;
- ``--unit=`` an empty target: the user manager's default.target would start
  gpg-agent, dbus and other sockets for nothing;
- XDG_RUNTIME_DIR, XDG_CONFIG_HOME, HOME and TMPDIR point into the test's
  own directory (``%h`` and ``%T`` resolve to HOME and TMPDIR, and units
  inherit the manager's environment); units live in
  $XDG_CONFIG_HOME/systemd/user, drop-ins in UNIT.service.d/;
- ready when $XDG_RUNTIME_DIR/systemd/private exists; ``systemctl --user``
  reaches the manager through it from outside the namespace.

There is no journal: units write with ``StandardOutput=file:``.
"""
from __future__ import annotations

import os
import pathlib
import select
import shutil
import signal
import subprocess
import threading
import time

SYSTEMD = "/lib/systemd/systemd"
IDLE_TARGET = "sbx-idle.target"
_SETUP = ('set -e; mount -t tmpfs -o mode=0755 tmpfs /run/systemd; mkdir /run/systemd/system; '
          'i=/run/systemd/inaccessible; mkdir -m 0755 $i; mkdir -m 0 $i/dir; install -m 0 /dev/null $i/reg; '
          'mkfifo -m 0 $i/fifo; mknod -m 0 $i/chr c 0 0; mknod -m 0 $i/blk b 0 0; '
          'mount --bind "$1" /dev/console; mount --bind "$1" /dev/kmsg; '
          f'exec {SYSTEMD} --user --unit={IDLE_TARGET} --log-target=console --log-level=info')


def available() -> str | None:
    """Why a manager cannot run here, or None."""
    if os.geteuid() != 0:
        return "a systemd manager with mount namespaces and capabilities needs root"
    for tool in (SYSTEMD, shutil.which("unshare"), shutil.which("systemctl")):
        if not tool or not os.path.exists(tool):
            return f"{tool or 'unshare/systemctl'} is not installed (systemd, util-linux)"
    return None


class SystemdManager:
    """One manager for a test module: ``with SystemdManager(dir) as m: m.run(...)``."""

    def __init__(self, base: pathlib.Path):
        self.base = pathlib.Path(base)
        self.runtime = self.base / "runtime"
        self.config = self.base / "config"
        self.home = self.base / "home"
        self.tmp = self.base / "tmp"
        self.units = self.config / "systemd" / "user"
        self.proc: subprocess.Popen | None = None
        self._log: list[str] = []
        self._master = -1
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self.ready_seconds = 0.0

    # -- life cycle

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": str(self.home), "TMPDIR": str(self.tmp), "LANG": "C.UTF-8",
                "XDG_RUNTIME_DIR": str(self.runtime), "XDG_CONFIG_HOME": str(self.config),
                "XDG_DATA_HOME": str(self.base / "data"), "XDG_STATE_HOME": str(self.base / "state"),
                "XDG_CACHE_HOME": str(self.base / "cache")}

    def __enter__(self) -> "SystemdManager":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, timeout: float = 30.0) -> None:
        for d in (self.runtime, self.units, self.home, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.runtime.chmod(0o700)
        (self.units / IDLE_TARGET).write_text("[Unit]\nDescription=nothing to start\nDefaultDependencies=no\n")
        self._master, slave = os.openpty()
        try:
            tty = os.ttyname(slave)
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", _SETUP, "sh", tty],
                env=self.env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd="/")
        finally:
            os.close(slave)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        sock = self.runtime / "systemd" / "private"
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                self.close()
                raise RuntimeError(f"systemd --user did not start:\n{self.log()}")
            time.sleep(0.01)
        self.ready_seconds = time.monotonic() - t0

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)     # systemd --user stops its units and exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._master >= 0:
            os.close(self._master)
            self._master = -1

    def _read_log(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 65536)
            except OSError:                 # EIO: every writer is gone
                return
            self._log.append(chunk.decode(errors="replace").replace("\r\n", "\n"))

    def log(self) -> str:
        """What the manager said (its console)."""
        return "".join(self._log)

    # -- units

    def systemctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["systemctl", "--user", "--no-pager", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def install(self, unit: str, body: str, dropin: str | None = None, dropin_name: str = "sbx.conf") -> None:
        """Write UNIT (and UNIT.d/DROPIN) and make the manager read them."""
        (self.units / unit).write_text(body)
        if dropin is not None:
            d = self.units / f"{unit}.d"
            d.mkdir(exist_ok=True)
            (d / dropin_name).write_text(dropin)
        res = self.systemctl("daemon-reload")
        if res.returncode:
            raise RuntimeError(f"daemon-reload failed: {res.stderr}\n{self.log()}")

    def start_unit(self, unit: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """``systemctl --user start UNIT``: for a oneshot unit this returns when it has run."""
        return self.systemctl("start", unit, timeout=timeout)

    def stop_unit(self, unit: str) -> subprocess.CompletedProcess:
        return self.systemctl("stop", unit)

    def show(self, unit: str, *props: str) -> dict[str, list[str]]:
        """`systemctl show` properties: each a list (a list property comes one line per item)."""
        res = self.systemctl("show", unit, *(f"--property={p}" for p in props))
        out: dict[str, list[str]] = {}
        for line in res.stdout.splitlines():
            key, eq, value = line.partition("=")
            if eq:
                out.setdefault(key, []).append(value)
        return out

    def unit_log(self, unit: str) -> str:
        """The manager's lines about UNIT."""
        return "\n".join(line for line in self.log().splitlines() if unit in line)

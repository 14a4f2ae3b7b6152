"""What a confined process may do: one attempt per thing a profile decides, printed as JSON.

Run the same way under ``sbx run`` and as a systemd unit's ExecStart (no fork
unless a check needs one, so that ``minimal`` runs it too):

    python3 -I -S confinement_probe.py AREA

AREA is a directory the test prepared: ``other/file`` (a file beside the
working directory) and ``outside/`` (a writable directory no profile grants);
the working directory holds ``owned``, a file to hand to nobody. Each check
prints "ok" or "refused: ERRNO".
"""
import ctypes
import errno
import json
import os
import shutil
import socket
import subprocess
import sys

CLONE_NEWUSER = 0x10000000
AF_VSOCK = 40


def _unshare_user() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _run_copy(tmp: str) -> None:
    exe = os.path.join(tmp, f"probe-true-{os.getpid()}")
    shutil.copy("/bin/true", exe)
    try:
        subprocess.run([exe], check=True, stdin=subprocess.DEVNULL)
    except subprocess.CalledProcessError as err:
        raise OSError(errno.EPERM, f"exit status {err.returncode}") from err
    finally:
        os.unlink(exe)


def _write(path: str) -> None:
    with open(path, "w") as fh:
        fh.write("x")


def _write_once(path: str) -> None:
    """Write *path* and take it away again (a probe must leave nothing behind where it got through)."""
    _write(path)
    os.unlink(path)


def _make_cgroup() -> None:
    top = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    path = os.path.join(top, f"sbx-probe-{os.getpid()}")
    os.mkdir(path)
    os.rmdir(path)


def _read(path: str) -> None:
    with open(path) as fh:
        fh.read()


def checks(area: str) -> dict:
    home, tmp = os.environ["HOME"], os.environ.get("TMPDIR") or "/tmp"
    return {
        "read /etc/hostname": lambda: _read("/etc/hostname"),
        "write in the working directory": lambda: _write("probe-written"),
        "write outside the granted paths": lambda: _write(os.path.join(area, "outside", "file")),
        "write in /root": lambda: _write_once(f"/root/.sbx-probe-{os.getpid()}"),
        "read beside the working directory": lambda: _read(os.path.join(area, "other", "file")),
        "read $HOME/.ssh": lambda: _read(os.path.join(home, ".ssh", "id")),
        "write $TMPDIR": lambda: _write(os.path.join(tmp, f"probe-{os.getpid()}")),
        "write /dev/null": lambda: _write("/dev/null"),
        "write /proc/self/comm": lambda: _write("/proc/self/comm"),
        "create a cgroup": _make_cgroup,
        "create a user namespace": _unshare_user,
        "give a file to nobody": lambda: os.chown("owned", 65534, -1),
        "run a program copied to $TMPDIR": lambda: _run_copy(tmp),
        "open a vsock socket": lambda: socket.socket(AF_VSOCK, socket.SOCK_STREAM).close(),
    }


def main() -> None:
    out = {}
    for name, fn in checks(sys.argv[1]).items():
        try:
            fn()
            out[name] = "ok"
        except OSError as err:
            out[name] = f"refused: {errno.errorcode.get(err.errno, err.errno)}"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

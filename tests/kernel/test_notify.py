"""run_supervised against the real kernel: every syscall of a command, its
threads and its children reported through seccomp user notification."""
import collections
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from bpf_filters.syscalls import table
from sandbox.errors import LaunchError
from sandbox.kernel.notify import ARG_SPECS, SyscallRecord, run_supervised
from tests.conftest import need

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
NR_UMASK, NR_GETPPID, NR_SOCKET, NR_EXECVE, NR_EXIT_GROUP = (
    table("x86_64").nr(n) for n in ("umask", "getppid", "socket", "execve", "exit_group"))
AF_INET, SOCK_STREAM, SOCK_CLOEXEC = 2, 1, 0o2000000


def by_nr(result, arch="x86_64"):
    return collections.Counter({nr: n for (a, nr), n in result.calls.items() if a == arch})


def strace_counts(argv, tmp_path):
    """Per-syscall-number counts from strace -f (entries, not signals/resumes)."""
    out = tmp_path / "strace.txt"
    subprocess.run(["strace", "-f", "-qq", "-n", "-o", str(out), *argv], check=True)
    counts = collections.Counter()
    for line in out.read_text().splitlines():
        m = re.match(r"\d+\s+\[\s*(\d+)\] (?!---|<\.\.\.)", line)
        if m:
            counts[int(m.group(1))] += 1
    return counts


def test_true_runs_and_every_call_is_counted():
    result = run_supervised(["/bin/true"])
    calls = by_nr(result)
    assert result.exit_status == 0 and result.returncode == 0
    assert calls[NR_EXECVE] == 1 and calls[NR_EXIT_GROUP] == 1
    assert sum(calls.values()) >= 10
    assert set(a for a, _ in result.calls) == {"x86_64"}


@pytest.mark.parametrize("argv", [
    pytest.param(["/bin/true"], id="a static sequence"),
    pytest.param(["sh", "-c", "/bin/true; /bin/true"], id="a shell that forks and execs"),
])
def test_counts_equal_strace_exactly(argv, tmp_path):
    need(shutil.which("strace") is not None, "strace not installed")
    assert by_nr(run_supervised(argv)) == strace_counts(argv, tmp_path)


def test_socket_arguments_are_recorded():
    records: list[SyscallRecord] = []
    result = run_supervised([PYTHON, "-c", "import socket; socket.socket()"],
                            on_record=records.append)
    assert result.returncode == 0
    raw = [r.args[:2] for r in records if r.nr == NR_SOCKET]
    assert (AF_INET, SOCK_STREAM | SOCK_CLOEXEC) in raw
    # Counted values are masked as the eBPF monitor masks them.
    assert result.arg_values[("x86_64", NR_SOCKET, 0)].get(AF_INET, 0) >= 1
    assert result.arg_values[("x86_64", NR_SOCKET, 1)].get(SOCK_STREAM, 0) >= 1
    mmap_prot = result.arg_values[("x86_64", 9, 2)]
    assert sum(mmap_prot.values()) == result.calls[("x86_64", 9)]


def test_counted_arguments_match_the_ebpf_monitor():
    monitor = pytest.importorskip("sandbox.ebpf.probe")
    assert ARG_SPECS == monitor.ARG_SPECS


def test_custom_arg_specs():
    result = run_supervised(["/bin/true"], arg_specs={("x86_64", 257): {2: 0xFFFFFFFF}})
    assert set(k[:2] for k in result.arg_values) == {("x86_64", 257)}  # openat flags
    assert sum(result.arg_values[("x86_64", 257, 2)].values()) == result.calls[("x86_64", 257)]


def test_threads_and_forked_children_are_traced():
    program = textwrap.dedent("""
        import os, threading
        def worker():
            for _ in range(7):
                os.getppid()
        t = threading.Thread(target=worker)
        t.start(); t.join()
        pid = os.fork()
        if pid == 0:
            for _ in range(5):
                os.umask(0o22)
            os._exit(0)
        os.waitpid(pid, 0)
    """)
    records: list[SyscallRecord] = []
    result = run_supervised([PYTHON, "-c", program], on_record=records.append)
    assert result.returncode == 0
    main = next(r.pid for r in records if r.nr == NR_EXECVE)
    thread_ids = {r.pid for r in records if r.nr == NR_GETPPID}
    child_ids = {r.pid for r in records if r.nr == NR_UMASK}
    assert result.calls[("x86_64", NR_GETPPID)] == 7
    assert result.calls[("x86_64", NR_UMASK)] == 5
    assert len(thread_ids) == 1 and main not in thread_ids
    assert len(child_ids) == 1 and main not in child_ids and not child_ids & thread_ids
    assert all(len(r.args) == 6 for r in records)
    assert len(records) == sum(result.calls.values())


def test_int80_is_recorded_as_i386():
    program = textwrap.dedent("""
        import ctypes, mmap
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(b"\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3")  # mov eax,20; int 0x80; ret
        fn = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
        import os
        raise SystemExit(0 if fn() == os.getpid() else 3)
    """)
    result = run_supervised([PYTHON, "-c", program])
    assert result.returncode == 0
    assert result.calls[("i386", 20)] == 1
    assert {a for a, _ in result.calls} == {"x86_64", "i386"}


def test_environment_exit_codes_and_signals():
    env = {"PATH": "/usr/bin:/bin", "X": "3"}
    assert run_supervised(["sh", "-c", "exit $X"], env=env).returncode == 3
    assert run_supervised(["sh", "-c", "kill -TERM $$"], env=env).returncode == -15


@pytest.mark.parametrize("argv, status, message", [
    pytest.param(["/nonexistent/binary"], 127, "no such file", id="a missing file"),
    pytest.param(["sbx-no-such-command-here"], 127, "command not found", id="a name not on PATH"),
    pytest.param(["/etc/passwd"], 126, "not executable", id="a file without exec permission"),
    pytest.param(["/"], 126, "is a directory", id="a directory"),
])
def test_exec_errors_come_back_with_the_launcher_exit_statuses(argv, status, message):
    with pytest.raises(LaunchError) as info:
        run_supervised(argv)
    assert info.value.status == status and message in str(info.value)


def test_bad_interpreter_fails_in_the_child_and_is_reported(tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    with pytest.raises(LaunchError) as info:
        run_supervised([str(script)])
    assert info.value.status == 127
    assert str(info.value) == f"{script}: cannot execute: No such file or directory"


def test_command_never_runs_when_the_filter_cannot_be_installed(tmp_path, capfd):
    marker = tmp_path / "ran"
    # A filter chain may hold only one listener: a supervised process that
    # tries to supervise again gets EBUSY from seccomp().
    program = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        from sandbox.errors import LaunchError
        from sandbox.kernel.notify import run_supervised
        try:
            run_supervised(["/usr/bin/touch", {str(marker)!r}])
        except LaunchError as err:
            print(err)
            raise SystemExit(err.status)
    """)
    assert run_supervised([PYTHON, "-c", program]).returncode == 125
    assert not marker.exists()
    assert ("cannot confine /usr/bin/touch: seccomp(SECCOMP_SET_MODE_FILTER): Device or resource "
            "busy; the command was not run" in capfd.readouterr().out)


def test_works_as_an_unprivileged_user():
    """As root, drop to nobody first (which also makes the process
    non-dumpable, the case pidfd_getfd needs care with)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            true = run_supervised(["/bin/true"])
            sock = run_supervised([PYTHON, "-c", "import socket; socket.socket()"])
            payload = (os.geteuid(), true.returncode, dict(true.calls), sock.returncode,
                       sock.arg_values.get(("x86_64", NR_SOCKET, 0)))
        except BaseException as err:  # report it to the test process
            payload = repr(err)
        os.write(write_fd, pickle.dumps(payload))
        os._exit(0)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    payload = pickle.loads(data)
    assert not isinstance(payload, str), payload
    euid, true_rc, true_calls, sock_rc, domains = payload
    assert euid != 0 and (true_rc, sock_rc) == (0, 0)
    assert true_calls[("x86_64", NR_EXECVE)] == 1
    assert domains.get(AF_INET, 0) >= 1

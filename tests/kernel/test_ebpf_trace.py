"""Trace mode of the eBPF probe on the real kernel: per-(arch, nr) call
counts and argument values for a tracked task tree, and nothing from
untracked processes."""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import threading

import pytest

from sandbox.ebpf.probe import ARG_SPECS, FAMILIES, Probe, available
from tests.conftest import need
from tests.kernel import bpf_probe as sc

GETPPID, SOCKET, IOCTL, PRCTL, PERSONALITY, SETSOCKOPT, FCNTL, SOCKETPAIR, CLONE = (
    110, 41, 16, 157, 135, 54, 72, 53, 56)
MMAP, MPROTECT, CLONE3 = 9, 10, 435
I386_GETPPID, I386_PERSONALITY = 64, 136
TCGETS, PR_GET_DUMPABLE, F_GETFD = 0x5401, 3, 1
SOCK_CLOEXEC, SOCK_NONBLOCK = 0x80000, 0x800

pytestmark = pytest.mark.kernel


@pytest.fixture(params=list(FAMILIES))
def tracer(request):
    need(os.geteuid() == 0, "needs root")
    ok, reason = available()
    need(ok, reason)
    with Probe("trace", family=request.param) as p:
        yield p


def busy_body() -> int:
    """Known calls, including from a thread and a forked child."""
    for _ in range(7):
        sc.call(GETPPID)
    fd, _ = sc.call(SOCKET, socket.AF_INET, socket.SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)
    assert fd >= 0
    buf = ctypes.create_string_buffer(64)
    assert sc.call(IOCTL, fd, TCGETS, ctypes.addressof(buf)) == (-1, errno.ENOTTY)
    one = ctypes.c_int(1)
    assert sc.call(SETSOCKOPT, fd, socket.SOL_SOCKET, socket.SO_REUSEADDR,
                  ctypes.addressof(one), 4)[0] == 0
    assert sc.call(FCNTL, fd, F_GETFD)[0] == 1
    pair = (ctypes.c_int * 2)()
    assert sc.call(SOCKETPAIR, socket.AF_UNIX, socket.SOCK_DGRAM, 0, ctypes.addressof(pair))[0] == 0
    for _ in range(3):
        sc.call(PERSONALITY, 0xFFFFFFFF)                  # query only
    sc.call(PRCTL, PR_GET_DUMPABLE)
    sc.call(PRCTL, PR_GET_DUMPABLE | (1 << 32))           # int: high word ignored
    addr, _ = sc.call(MMAP, 0, 4096, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    sc.call(MPROTECT, addr, 4096, mmap.PROT_READ | mmap.PROT_WRITE)
    thread = threading.Thread(target=lambda: sc.call(GETPPID))
    thread.start()
    thread.join()
    child = os.fork()
    if child == 0:
        sc.call(GETPPID)
        os._exit(0)
    os.waitpid(child, 0)
    return 0


def x86_64(values, nr, idx):
    return values.get(("x86_64", nr, idx), {})


def test_trace_counts_calls_and_argument_values_of_the_tracked_tree(tracer):
    bystander = sc.spawn(busy_body)                       # untracked
    pid = sc.spawn(busy_body, tracer)
    assert sc.reap(pid) == 0 and sc.reap(bystander) == 0
    calls, values = tracer.counters()["calls"], tracer.arg_values()
    assert calls[("x86_64", GETPPID)] == 7 + 1 + 1         # main, thread, child
    assert calls[("x86_64", PERSONALITY)] == 3
    assert x86_64(values, SOCKET, 0) == {socket.AF_INET: 1}
    assert x86_64(values, SOCKET, 1) == {socket.SOCK_STREAM: 1}   # flags masked off
    assert x86_64(values, SOCKETPAIR, 0) == {socket.AF_UNIX: 1}
    assert x86_64(values, IOCTL, 1) == {TCGETS: 1}
    assert x86_64(values, SETSOCKOPT, 1) == {socket.SOL_SOCKET: 1}
    assert x86_64(values, SETSOCKOPT, 2) == {socket.SO_REUSEADDR: 1}
    assert x86_64(values, FCNTL, 1)[F_GETFD] == 1
    assert x86_64(values, PERSONALITY, 0) == {0xFFFFFFFF: 3}
    assert x86_64(values, PRCTL, 0)[PR_GET_DUMPABLE] >= 2
    assert x86_64(values, MMAP, 2)[mmap.PROT_READ] >= 1
    assert x86_64(values, MPROTECT, 2)[mmap.PROT_READ | mmap.PROT_WRITE] >= 1
    clone_flags = x86_64(values, CLONE, 0)
    assert any(flags & 0xFF == 17 for flags in clone_flags)        # fork: SIGCHLD
    assert calls[("x86_64", CLONE3)] >= 1       # glibc's pthread_create: flags in memory
    assert tracer.counters()["map_full"] == {"denials": 0, "calls": 0, "args": 0, "tasks": 0,
                                             "ports": 0}


def test_trace_counts_i386_calls_under_their_own_arch(tracer):
    def body():
        sc.int80(I386_GETPPID)
        sc.int80(I386_PERSONALITY, 0xFFFFFFFF)
        sc.int80(I386_PERSONALITY, 0xFFFFFFFF)
    pid = sc.spawn(body, tracer)
    assert sc.reap(pid) == 0
    calls = tracer.counters()["calls"]
    assert calls[("i386", I386_GETPPID)] == 1
    assert calls[("i386", I386_PERSONALITY)] == 2
    assert tracer.arg_values()[("i386", I386_PERSONALITY, 0)] == {0xFFFFFFFF: 2}


def test_trace_also_reports_denials_which_are_not_calls(tracer):
    def body():
        sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | errno.EPERM}))
        sc.call(GETPPID)
        sc.call(PERSONALITY, 0xFFFFFFFF)
    pid = sc.spawn(body, tracer)
    assert sc.reap(pid) == 0
    counts = tracer.counters()
    assert ("x86_64", GETPPID) not in counts["calls"]
    assert counts["calls"][("x86_64", PERSONALITY)] == 1
    assert counts["denials"] == {("x86_64", GETPPID, "errno"): 1}
    assert [(e.pid, e.nr) for e in sc.drain(tracer)] == [(pid, GETPPID)]


def test_custom_argument_specs_replace_the_defaults():
    need(os.geteuid() == 0, "needs root")
    specs = {("x86_64", GETPPID): {0: 0xFF}}
    with Probe("trace", arg_specs=specs) as tracer:
        pid = sc.spawn(lambda: sc.call(GETPPID, 0x1234) and 0, tracer)
        assert sc.reap(pid) == 0
        values = tracer.arg_values()
    assert values == {("x86_64", GETPPID, 0): {0x34: 1}}


def test_default_specs_cover_every_arch_for_the_narrowing_syscalls():
    names_per_arch = {}
    for (arch, _), masks in ARG_SPECS.items():
        names_per_arch.setdefault(arch, 0)
        names_per_arch[arch] += 1
        assert masks and all(0 <= idx < 6 for idx in masks)
    assert names_per_arch == {"x86_64": 13, "i386": 14, "x32": 13}     # + kill, tkill, tgkill


def file_body(where: str) -> int:
    """Relative and absolute paths, a directory descriptor, a rename, a TCP bind."""
    os.chdir(where)
    with open("rel.txt", "w"):
        pass
    d = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
    os.mkdir("sub", dir_fd=d)
    os.rename("rel.txt", "sub/moved.txt", src_dir_fd=d, dst_dir_fd=d)
    os.close(d)
    with open(os.path.join(where, "sub", "moved.txt")):
        pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
    return 0


def test_trace_reports_file_calls_with_their_paths_made_absolute(tmp_path):
    need(os.geteuid() == 0, "needs root")
    need(*available())
    events = []
    with Probe("trace", on_path=events.append) as tracer:
        pid = sc.spawn(lambda: file_body(str(tmp_path)), tracer)
        assert sc.reap(pid) == 0
        tracer.drain()
        ports = tracer.ports()
    mine = [(e.nr, e.path1, e.path2) for e in events if e.pid == pid]
    base = os.fsencode(tmp_path)
    assert (257, base + b"/rel.txt", None) in mine                        # openat, cwd-relative
    assert (258, base + b"/sub", None) in mine                            # mkdirat(dirfd, "sub")
    assert (264, base + b"/rel.txt", base + b"/sub/moved.txt") in mine    # renameat, dirfds
    assert (257, base + b"/sub/moved.txt", None) in mine                  # absolute
    assert ports == {("bind", 0): 1}


def test_monitor_mode_reads_no_path_and_counts_no_port(tmp_path):
    need(os.geteuid() == 0, "needs root")
    need(*available())
    events = []
    with Probe("monitor", on_path=events.append) as monitor:
        pid = sc.spawn(lambda: file_body(str(tmp_path)), monitor)
        assert sc.reap(pid) == 0
        monitor.drain()
        assert monitor.ports() == {} and monitor.counters()["events"] == 0
    assert events == []

"""The eBPF denial monitor against real seccomp filters on the real kernel.

Every test forks children that install hand-written filters and make known
denied syscalls; the monitor must report each of them, exactly, with the
right task, arch, number, arguments and action, and nothing else.
"""
from __future__ import annotations

import collections
import ctypes
import errno
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from bpf_filters.syscalls import table as _table

NR = _table("x86_64").by_name

from sandbox.kernel import libbpf
from sandbox.ebpf.probe import DEFAULT_OBJECT, FAMILIES, Probe, ProbeUnavailable, available
from tests.conftest import need
from tests.kernel import bpf_probe as sc

GETPPID, GETPGRP, GETPID, SYSLOG, VHANGUP, ACCT = 110, 111, 39, 103, 153, 163
I386_GETPPID = 64
EPERM, EACCES = errno.EPERM, errno.EACCES

pytestmark = pytest.mark.kernel


@pytest.fixture(params=list(FAMILIES))
def probe(request):
    need(os.geteuid() == 0, "needs root")
    ok, reason = available()
    need(ok, reason)
    with Probe("monitor", family=request.param) as p:
        yield p


@pytest.fixture
def monitor():
    need(os.geteuid() == 0, "needs root")
    ok, reason = available()
    need(ok, reason)
    with Probe("monitor") as p:
        yield p


def summary(events):
    """Comparable (pid, tid, arch, nr, action, errno, signal) tuples."""
    return sorted((e.pid, e.tid, e.arch, e.nr, e.action, e.errno, e.signal) for e in events)


def report_to(fd: int, data) -> None:
    os.write(fd, (json.dumps(data) + "\n").encode())


def read_report(fd: int):
    with os.fdopen(fd) as f:
        return json.loads(f.readline())


def ignore_sigsys() -> None:
    """A SIGSYS handler (SIG_IGN would be reset by the kernel and kill us)."""
    signal.signal(signal.SIGSYS, lambda *_: None)


def mixed_denials(out_fd: int | None) -> int:
    """errno and trap denials from the main thread, 3 threads and a child."""
    ignore_sigsys()
    sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | EPERM,
                                  GETPGRP: sc.RET_ERRNO | EACCES,
                                  ACCT: sc.RET_TRAP | 42}))
    assert sc.call(GETPPID, 1, 2, 3, 4, 5, 6) == (-1, EPERM)
    assert sc.call(GETPGRP) == (-1, EACCES)
    assert sc.call(GETPID)[0] == os.getpid()          # allowed: not reported
    sc.call(ACCT, 7)
    tids = []

    def worker(i):
        tids.append(threading.get_native_id())
        sc.call(GETPPID, i)
        sc.call(GETPPID, i)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    child = os.fork()
    if child == 0:
        sc.call(GETPGRP, 9)
        os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    if out_fd is not None:
        report_to(out_fd, {"tids": tids, "child": child})
    return 0


def test_errno_and_trap_from_threads_and_children_are_reported_exactly(probe):
    read_fd, write_fd = os.pipe()
    bystander = sc.spawn(lambda: mixed_denials(None))       # untracked
    pid = sc.spawn(lambda: mixed_denials(write_fd), probe)
    os.close(write_fd)
    report = read_report(read_fd)
    assert sc.reap(pid) == 0 and sc.reap(bystander) == 0
    events = sc.drain(probe)
    child = report["child"]
    expected = [(pid, pid, "x86_64", GETPPID, "errno", EPERM, None),
                (pid, pid, "x86_64", GETPGRP, "errno", EACCES, None),
                (pid, pid, "x86_64", ACCT, "trap", 42, 31),
                (child, child, "x86_64", GETPGRP, "errno", EACCES, None)]
    expected += [(pid, tid, "x86_64", GETPPID, "errno", EPERM, None)
                 for tid in report["tids"] for _ in range(2)]
    assert summary(events) == sorted(expected)
    first = next(e for e in events if e.tid == pid and e.nr == GETPPID)
    assert first.args == (1, 2, 3, 4, 5, 6) and first.ret == -EPERM
    trap = next(e for e in events if e.action == "trap")
    assert trap.ret == ACCT and trap.args[0] == 7      # rolled back: ret == nr
    counts = probe.counters()
    assert counts["denials"] == {("x86_64", GETPPID, "errno"): 7,
                                 ("x86_64", GETPGRP, "errno"): 2,
                                 ("x86_64", ACCT, "trap"): 1}
    assert counts["dropped"] == 0 and counts["events"] == len(events)


def kill_from_thread(out_fd: int) -> None:
    sc.install(sc.filter_program({SYSLOG: sc.RET_KILL_PROCESS}))

    def worker():
        report_to(out_fd, {"tid": threading.get_native_id()})
        sc.call(SYSLOG, 3, 0, 0)
    threading.Thread(target=worker).start()
    time.sleep(10)


def test_kill_process_from_a_thread_is_reported_once(probe):
    read_fd, write_fd = os.pipe()
    pid = sc.spawn(lambda: kill_from_thread(write_fd), probe)
    os.close(write_fd)
    tid = read_report(read_fd)["tid"]
    status = sc.reap(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
    events = sc.drain(probe)
    assert summary(events) == [(pid, tid, "x86_64", SYSLOG, "kill", None, 31)]
    assert events[0].ret == SYSLOG and events[0].args[:3] == (3, 0, 0)


def kill_one_thread(out_fd: int) -> int:
    sc.install(sc.filter_program({VHANGUP: sc.RET_KILL_THREAD,
                                  GETPPID: sc.RET_ERRNO | EPERM}))
    tids = []

    def worker():
        tids.append(threading.get_native_id())
        sc.call(VHANGUP, 5)
    threading.Thread(target=worker, daemon=True).start()
    while not tids:
        time.sleep(0.001)
    sc.wait_thread_gone(tids[0])
    sc.call(GETPPID)                  # the process lives on and is still watched
    report_to(out_fd, {"tid": tids[0]})
    return 0


def test_kill_thread_of_one_thread_among_several_is_reported(probe):
    """That thread exits straight from seccomp, without a sys_exit."""
    read_fd, write_fd = os.pipe()
    pid = sc.spawn(lambda: kill_one_thread(write_fd), probe)
    os.close(write_fd)
    tid = read_report(read_fd)["tid"]
    assert sc.reap(pid) == 0
    events = sc.drain(probe)
    assert summary(events) == sorted([(pid, tid, "x86_64", VHANGUP, "kill", None, 31),
                                      (pid, pid, "x86_64", GETPPID, "errno", EPERM, None)])
    kill = next(e for e in events if e.action == "kill")
    assert kill.args[0] == 5


def test_kill_thread_of_the_last_thread_is_reported(probe):
    def body():
        sc.install(sc.filter_program({VHANGUP: sc.RET_KILL_THREAD}))
        sc.call(VHANGUP)
    pid = sc.spawn(body, probe)
    status = sc.reap(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
    assert summary(sc.drain(probe)) == [(pid, pid, "x86_64", VHANGUP, "kill", None, 31)]


def test_i386_int80_and_x32_syscalls_are_told_apart(probe):
    def body():
        sc.install(sc.filter_program({GETPID | sc.X32_BIT: sc.RET_ERRNO | EPERM},
                                     i386_rules={I386_GETPPID: sc.RET_ERRNO | EACCES}))
        assert sc.int80(I386_GETPPID, 0x1234) == -EACCES
        assert sc.call(GETPID | sc.X32_BIT, 77) == (-1, EPERM)
        assert sc.call(GETPID)[0] == os.getpid()
    pid = sc.spawn(body, probe)
    assert sc.reap(pid) == 0
    events = sc.drain(probe)
    assert summary(events) == sorted([(pid, pid, "i386", I386_GETPPID, "errno", EACCES, None),
                                      (pid, pid, "x32", GETPID, "errno", EPERM, None)])
    by_arch = {e.arch: e for e in events}
    assert by_arch["i386"].args[0] == 0x1234 and by_arch["x32"].args[0] == 77


def test_exec_from_a_non_leader_thread_keeps_the_task_tracked(probe):
    """The exec'ing thread takes over the leader's pid; its execve return is
    not a denial and the new program's denials are reported under the pid."""
    code = f"import ctypes; ctypes.CDLL(None).syscall({NR['getppid']}, 5)"

    def body():
        sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | EPERM}))

        def worker():
            os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", code])
        threading.Thread(target=worker).start()
        time.sleep(10)
    pid = sc.spawn(body, probe)
    assert sc.reap(pid) == 0
    events = sc.drain(probe)
    assert summary(events) == [(pid, pid, "x86_64", GETPPID, "errno", EPERM, None)]
    assert events[0].args[0] == 5
    assert events[0].comm == os.path.basename(sys.executable)[:15]


def test_vfork_spawned_programs_are_tracked(probe):
    """subprocess uses vfork + exec: the child's first return is not a denial."""
    code = f"import ctypes; ctypes.CDLL(None).syscall({NR['getppid']}, 6)"
    read_fd, write_fd = os.pipe()

    def body():
        sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | EPERM}))
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", code])
        assert proc.wait() == 0
        report_to(write_fd, {"child": proc.pid})
    pid = sc.spawn(body, probe)
    os.close(write_fd)
    child = read_report(read_fd)["child"]
    assert sc.reap(pid) == 0
    events = sc.drain(probe)
    assert summary(events) == [(child, child, "x86_64", GETPPID, "errno", EPERM, None)]
    assert events[0].args[0] == 6


def test_signal_handlers_restarts_and_stops_are_not_denials():
    """rt_sigreturn, an EINTR'd read retried by Python and a relative
    nanosleep restarted through restart_syscall after SIGSTOP/SIGCONT."""
    need(os.geteuid() == 0, "needs root")
    go_r, go_w = os.pipe()

    def body():
        sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | EPERM}))
        signal.signal(signal.SIGUSR1, lambda *_: None)
        os.close(go_w)
        os.read(go_r, 1)             # interrupted by SIGUSR1, then retried
        relative = (ctypes.c_long * 2)(0, 600_000_000)
        sc.libc.nanosleep(relative, None)    # stopped, continued: restart_syscall
        sc.call(GETPPID)
    with Probe("trace") as probe:
        pid = sc.spawn(body, probe)
        os.close(go_r)
        time.sleep(0.2)
        os.kill(pid, signal.SIGUSR1)
        time.sleep(0.1)
        os.write(go_w, b"x")
        time.sleep(0.2)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.1)
        os.kill(pid, signal.SIGCONT)
        assert sc.reap(pid) == 0
        events = sc.drain(probe)
        calls = probe.counters()["calls"]
    assert summary(events) == [(pid, pid, "x86_64", GETPPID, "errno", EPERM, None)]
    assert calls.get(("x86_64", 15), 0) >= 1       # rt_sigreturn ran
    assert calls.get(("x86_64", 219), 0) >= 1      # restart_syscall ran


def test_untracked_processes_are_not_reported(monitor):
    def body():
        sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | EPERM}))
        for _ in range(100):
            sc.call(GETPPID)
    pids = [sc.spawn(body) for _ in range(3)]
    assert all(sc.reap(pid) == 0 for pid in pids)
    assert sc.drain(monitor) == []
    assert monitor.counters()["denials"] == {}


@pytest.mark.parametrize("consume_during", [True, False], ids=["drained-live", "drained-after"])
def test_a_burst_of_100k_denials_is_counted_losslessly(monitor, consume_during):
    """Counters are exact whatever happens to the ring buffer, and every
    event is either delivered or counted as dropped."""
    burst = 100_000

    def body():
        sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | EPERM}))
        syscall, nr = sc.libc.syscall, ctypes.c_long(GETPPID)
        for _ in range(burst):
            syscall(nr)
    pid = sc.spawn(body, monitor)
    events, deadline = [], time.monotonic() + 120
    while consume_during and time.monotonic() < deadline:
        events += monitor.poll(10)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert status == 0
            break
    if not consume_during:
        assert sc.reap(pid, timeout=120) == 0
    events += sc.drain(monitor)
    counts = monitor.counters()
    assert counts["denials"] == {("x86_64", GETPPID, "errno"): burst}
    assert len(events) + counts["dropped"] == burst
    assert counts["events"] == len(events)
    assert all(e.pid == pid and e.nr == GETPPID for e in events)
    print(f"burst of {burst}: {len(events)} events, {counts['dropped']} dropped")


def test_a_poll_returns_at_most_its_limit_while_a_task_keeps_denying(monitor):
    """A task denying faster than Python decodes: each poll() comes back with
    at most its limit, while the task still runs (libbpf alone would read on
    for as long as the task does, into one unbounded list), and what the
    polls read plus what the kernel dropped is still the exact count."""
    seconds = 3.0

    def body():
        sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | EPERM}))
        syscall, nr = sc.libc.syscall, ctypes.c_long(GETPPID)
        calls, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(1000):
                syscall(nr)
            calls += 1000
        os.write(out_w, b"%d" % calls)
    out_r, out_w = os.pipe()
    pid = sc.spawn(body, monitor)
    os.close(out_w)
    time.sleep(0.5)                                  # let the ring buffer fill
    read, polls_while_running = 0, 0
    while True:
        batch = monitor.poll(0, limit=1000)
        assert len(batch) <= 1000
        read += len(batch)
        if os.waitpid(pid, os.WNOHANG)[0]:
            break
        polls_while_running += 1
    read += len(sc.drain(monitor))
    calls = int(os.read(out_r, 64))
    os.close(out_r)
    counts = monitor.counters()
    assert polls_while_running > 10, "poll() did not return while the task was denying"
    assert counts["denials"] == {("x86_64", GETPPID, "errno"): calls}
    assert read + counts["dropped"] == calls
    print(f"{calls} denials in {seconds} s: {read} read in {polls_while_running} polls, "
          f"{counts['dropped']} dropped")


SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101
NOTIF_FLAG_CONTINUE = 1


def supervise(listener: int, replies: list[tuple[int, int, int]]) -> None:
    """Answer one notification per (val, error, flags) in *replies*."""
    for val, error, flags in replies:
        req = bytearray(80)
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req, True)
        notif_id = struct.unpack_from("<Q", req)[0]
        resp = bytearray(struct.pack("<QqiI", notif_id, val, error, flags))
        fcntl.ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp, True)


def test_notify_replies_are_told_from_errno(monitor):
    parent_sock, child_sock = socket.socketpair()

    def body():
        ppid = os.getppid()
        fd = sc.install(sc.filter_program({GETPPID: sc.RET_USER_NOTIF,
                                           GETPGRP: sc.RET_ERRNO | EACCES}),
                        sc.FLAG_NEW_LISTENER)
        socket.send_fds(child_sock, [b"l"], [fd])
        os.close(fd)
        assert sc.call(GETPPID) == (-1, EPERM)            # supervisor: -EPERM
        assert sc.call(GETPPID)[0] == ppid                 # supervisor: continue
        assert sc.call(GETPGRP) == (-1, EACCES)           # the filter itself
        assert sc.call(GETPPID)[0] == 5                   # supervisor: value 5
    pid = sc.spawn(body, monitor)
    _, (listener,), _, _ = socket.recv_fds(parent_sock, 1, 1)
    supervise(listener, [(0, -EPERM, 0), (0, 0, NOTIF_FLAG_CONTINUE), (5, 0, 0)])
    assert sc.reap(pid) == 0
    os.close(listener)   # (closing first could free the listener before the last exit)
    events = sc.drain(monitor)
    assert [(e.nr, e.action, e.errno, e.ret) for e in events] == [
        (GETPPID, "notify", EPERM, -EPERM),
        (GETPGRP, "errno", EACCES, -EACCES),
        (GETPPID, "notify", None, 5)]


def test_cgroup_scope_tracks_tasks_moved_into_the_cgroup(monitor):
    try:
        root = libbpf.cgroup2_root()
    except libbpf.BpfError:
        root = None
    need(root is not None, "no cgroup v2 hierarchy mounted")
    path = os.path.join(root, f"sbx-test-{os.getpid()}")
    os.mkdir(path)
    cgroup_id = os.stat(path).st_ino
    try:
        monitor.track_cgroup(path)

        def body():
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | EPERM}))
            sc.call(GETPPID)
            sc.call(GETPPID)

        def outside():
            sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | EPERM}))
            sc.call(GETPPID)
        pid, other = sc.spawn(body), sc.spawn(outside)
        assert sc.reap(pid) == 0 and sc.reap(other) == 0
        events = sc.drain(monitor)
    finally:
        os.rmdir(path)
    assert summary(events) == [(pid, pid, "x86_64", GETPPID, "errno", EPERM, None)] * 2
    assert {e.cgroup_id for e in events} == {cgroup_id}


def test_tasks_are_forgotten_when_they_exit(monitor):
    def body():
        child = os.fork()
        if child == 0:
            os._exit(0)
        os.waitpid(child, 0)
    pid = sc.spawn(body, monitor)
    assert sc.reap(pid) == 0
    assert monitor.tracked_tids() == set()


def test_a_verifier_rejection_carries_the_log():
    need(os.geteuid() == 0, "needs root")
    with libbpf.BpfObject(DEFAULT_OBJECT) as obj:
        for name in obj.program_names():
            obj.set_autoload(name, name == "sbx_exit_raw")
        lib = libbpf.library().cdll
        prog = lib.bpf_object__find_program_by_name(obj._require(), b"sbx_exit_raw")
        assert lib.bpf_program__set_type(ctypes.c_void_p(prog), 1) == 0  # socket filter
        with pytest.raises(libbpf.BpfError) as info:
            obj.load()
    err = info.value
    assert err.errno is not None and "load eBPF object" in str(err)
    assert "invalid" in err.log or "unknown func" in err.log
    assert libbpf.log_excerpt(err.log).splitlines()[-1] in str(err)
    summary = libbpf.verifier_summary(err.log)
    assert summary.startswith("program sbx_exit_raw: ") and "\n" not in summary


def test_unavailable_reasons_are_one_line(tmp_path):
    need(os.geteuid() == 0, "needs root")
    with pytest.raises(ProbeUnavailable) as info:
        Probe("monitor", obj_path=str(tmp_path / "missing.bpf.o"))
    assert "missing" in str(info.value) and "\n" not in str(info.value)
    bogus = tmp_path / "bogus.bpf.o"
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(ProbeUnavailable) as info:
        Probe("monitor", obj_path=str(bogus))
    assert "\n" not in str(info.value) and "open eBPF object" in str(info.value)
    assert available() == (True, "")


def test_closed_probe_detaches(monitor):
    monitor.close()
    def body():
        sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | EPERM}))
        sc.call(GETPPID)
    assert sc.reap(sc.spawn(body)) == 0
    with pytest.raises(libbpf.BpfError):
        monitor.poll(0)
    with Probe("monitor") as fresh:
        assert fresh.counters()["denials"] == {}


def test_denials_per_action_match_the_counters_across_arches(probe):
    """Counters are keyed by (arch, nr, action), independent of events."""
    def body():
        sc.install(sc.filter_program({GETPPID: sc.RET_ERRNO | EPERM},
                                     i386_rules={I386_GETPPID: sc.RET_ERRNO | EPERM}))
        for _ in range(5):
            sc.call(GETPPID)
            sc.int80(I386_GETPPID)
    pid = sc.spawn(body, probe)
    assert sc.reap(pid) == 0
    events = sc.drain(probe)
    assert collections.Counter((e.arch, e.nr, e.action) for e in events) == \
        collections.Counter(probe.counters()["denials"])
    assert probe.counters()["denials"] == {("x86_64", GETPPID, "errno"): 5,
                                           ("i386", I386_GETPPID, "errno"): 5}


def test_map_layouts_match_the_python_mirrors_of_sbx_h(monitor):
    from sandbox.ebpf import layout as m
    layouts = {"sbx_tasks": (m.U32, m.TASK), "sbx_cfg": (m.U32, m.CONFIG),
               "sbx_cgroups": (m.U64, m.U32), "sbx_denials": (m.DENIAL_KEY, m.U64),
               "sbx_calls": (m.CALL_KEY, m.U64), "sbx_argspec": (m.CALL_KEY, m.ARGSPEC),
               "sbx_argvals": (m.ARG_KEY, m.U64), "sbx_stats": (m.U32, m.U64),
               "sbx_ports": (m.PORT_KEY, m.U64)}
    for name, (key, value) in layouts.items():
        bpf_map = monitor._objmap(name)
        assert (bpf_map.key_size, bpf_map.value_size) == (key.size, value.size), name
    assert m.EVENT.size == 128

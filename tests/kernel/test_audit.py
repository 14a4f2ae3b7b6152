"""AuditReader against the real kernel: hand-built filters with
SECCOMP_FILTER_FLAG_LOG (or RET_LOG / RET_KILL_PROCESS) in forked children,
records read from the audit netlink multicast group."""
import errno
import os
import select
import signal
import time

import pytest

from sandbox.kernel.audit import AuditReader, actions_logged, audit_status, new_audit_session
from tests.conftest import need
from tests.kernel.bpf_probe import (AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, FLAG_LOG,
                                        I386_NR_GETPID, NR_GETPGRP, NR_GETPPID, RET_ERRNO,
                                        RET_KILL_PROCESS, RET_LOG, filter_arch, filter_by_nr,
                                        fork_call, int80, wait)
from tests.kernel.bpf_probe import call as syscall
from tests.kernel.bpf_probe import install as install_filter

EPERM_ACTION = RET_ERRNO | errno.EPERM


def summary(records):
    return [(r.pid, r.arch, r.nr, r.code, r.sig) for r in records]


@pytest.fixture
def reader(root):
    logged = actions_logged()
    need({"errno", "kill_process", "log"} <= logged,
         f"actions_logged lacks errno/kill_process/log: {sorted(logged)}")
    with AuditReader() as r:
        need(r.source == "netlink", f"audit netlink unavailable, got {r.source}")
        yield r


def denier(count: int = 3):
    """Child: getppid -> ERRNO(EPERM) logged *count* times, then getpgrp -> KILL."""
    def body():
        install_filter(filter_by_nr({NR_GETPPID: EPERM_ACTION,
                                     NR_GETPGRP: RET_KILL_PROCESS}), FLAG_LOG)
        for _ in range(count):
            if syscall(NR_GETPPID) != (-1, errno.EPERM):
                return 3
        syscall(NR_GETPGRP)
        return 4  # not reached: killed
    return body


def test_logged_errno_and_kill_records_are_exact(reader):
    pid = fork_call(denier())
    reader.watch(pid)
    status = wait(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
    records = reader.sync()
    assert summary(records) == [(pid, AUDIT_ARCH_X86_64, NR_GETPPID, 0x50000, 0)] * 3 + [
        (pid, AUDIT_ARCH_X86_64, NR_GETPGRP, 0x80000000, 31)]
    assert all(r.comm and r.exe and not r.compat for r in records)
    assert [r.serial for r in records] == sorted(r.serial for r in records)
    assert abs(records[0].timestamp - time.time()) < 60


def test_records_of_other_processes_are_not_returned(reader):
    with AuditReader() as everything:
        watched = fork_call(denier(2))
        other = fork_call(denier(5))
        reader.watch(watched)
        wait(watched), wait(other)
        mine = reader.sync()
        seen = everything.sync()
    assert {r.pid for r in mine} == {watched}
    assert len(mine) == 3
    assert sum(r.pid == other for r in seen) == 6
    assert sum(r.pid == watched for r in seen) == 3


def test_without_flag_log_only_kill_and_log_actions_are_logged(reader):
    def quiet():
        install_filter(filter_by_nr({NR_GETPPID: EPERM_ACTION,
                                     NR_GETPGRP: RET_KILL_PROCESS}))  # no FLAG_LOG
        if syscall(NR_GETPPID) != (-1, errno.EPERM):
            return 3
        syscall(NR_GETPGRP)
        return 4  # not reached: killed

    def logged():
        ppid = os.getppid()
        install_filter(filter_by_nr({NR_GETPPID: RET_LOG}))
        return 0 if syscall(NR_GETPPID) == (ppid, 0) else 3  # logged, then allowed

    quiet_pid, logged_pid = fork_call(quiet), fork_call(logged)
    reader.watch(quiet_pid)
    reader.watch(logged_pid)
    assert os.WTERMSIG(wait(quiet_pid)) == signal.SIGSYS
    assert wait(logged_pid) == 0
    assert sorted(summary(reader.sync())) == sorted([
        (quiet_pid, AUDIT_ARCH_X86_64, NR_GETPGRP, RET_KILL_PROCESS, 31),
        (logged_pid, AUDIT_ARCH_X86_64, NR_GETPPID, RET_LOG, 0)])


def test_int80_from_a_64_bit_process_is_an_i386_compat_record(reader):
    def body():
        install_filter(filter_arch(AUDIT_ARCH_I386, EPERM_ACTION), FLAG_LOG)
        return 0 if int80(I386_NR_GETPID) == -errno.EPERM else 3

    pid = fork_call(body)
    reader.watch(pid)
    assert wait(pid) == 0
    (rec,) = reader.sync()
    assert (rec.pid, rec.arch, rec.nr, rec.compat, rec.arch_name) == (
        pid, AUDIT_ARCH_I386, I386_NR_GETPID, True, "i386")


def test_live_descendants_of_a_watched_pid_are_selected(reader):
    release_r, release_w = os.pipe()

    def parent_body():
        grandchild = fork_call(denier(1))
        os.close(release_w)
        os.read(release_r, 1)  # stay alive (and keep the grandchild unreaped)
        return 0 if os.WIFSIGNALED(wait(grandchild)) else 3

    child = fork_call(parent_body)
    os.close(release_r)
    reader.watch(child)
    deadline = time.monotonic() + 5
    records = []
    while len(records) < 2 and time.monotonic() < deadline:
        records += reader.read(0.2)
    os.close(release_w)
    assert wait(child) == 0
    assert len({r.pid for r in records}) == 1 and records[0].pid != child
    assert [(r.nr, r.code) for r in records] == [(NR_GETPPID, 0x50000),
                                                 (NR_GETPGRP, 0x80000000)]


def test_audit_session_selects_reaped_grandchildren(reader):
    need(open("/proc/self/loginuid").read().strip() == "4294967295" or os.geteuid() == 0,
         "cannot set a login uid here")
    ses_r, ses_w = os.pipe()

    def parent_body():
        ses = new_audit_session()
        os.write(ses_w, str(ses).encode())
        grandchild = fork_call(denier(2))
        return 0 if os.WIFSIGNALED(wait(grandchild)) else 3

    child = fork_call(parent_body)
    os.close(ses_w)
    ses = int(os.read(ses_r, 32))
    os.close(ses_r)
    assert wait(child) == 0  # the grandchild is gone from /proc by now
    reader.watch_session(ses)
    records = reader.sync()
    assert len(records) == 3
    assert {r.ses for r in records} == {ses}
    assert child not in {r.pid for r in records}


def test_burst_of_10k_logged_denials_arrives_complete(reader):
    n = 10_000

    def body():
        install_filter(filter_by_nr({NR_GETPPID: EPERM_ACTION}), FLAG_LOG)
        for _ in range(n):
            syscall(NR_GETPPID)
        return 0

    lost_before = audit_status()["lost"]
    start = time.perf_counter()
    pid = fork_call(body)
    reader.watch(pid)
    assert wait(pid) == 0
    records = reader.sync(timeout=30)
    elapsed = time.perf_counter() - start
    print(f"\n{len(records)}/{n} records in {elapsed:.3f} s, overflows {reader.overflows}")
    assert audit_status()["lost"] == lost_before  # the kernel throttles, never drops
    assert len(records) == n
    assert reader.overflows == 0
    assert len({r.serial for r in records}) == n


def test_flood_of_100k_read_while_it_happens_arrives_complete(reader):
    n = 100_000

    def body():
        install_filter(filter_by_nr({NR_GETPPID: EPERM_ACTION}), FLAG_LOG)
        for _ in range(n):
            syscall(NR_GETPPID)
        return 0

    pid = fork_call(body)
    reader.watch(pid)
    pidfd = os.pidfd_open(pid)
    records = []
    start = time.perf_counter()
    while not select.select([pidfd], [], [], 0)[0]:
        records += reader.read(0.01)
    os.close(pidfd)
    assert wait(pid) == 0
    records += reader.sync(timeout=60)
    elapsed = time.perf_counter() - start
    print(f"\n{len(records)}/{n} records in {elapsed:.3f} s, overflows {reader.overflows}")
    assert (len(records), reader.overflows) == (n, 0)


def test_audit_status_and_default_actions_logged(root):
    status = audit_status()
    assert status["backlog_limit"] >= 0 and status["lost"] >= 0
    logged = actions_logged()
    assert "allow" not in logged  # the kernel refuses to log allow
    print(f"\naudit enabled={status['enabled']} auditd pid={status['pid']} "
          f"backlog_limit={status['backlog_limit']} lost={status['lost']}; "
          f"actions_logged: {' '.join(sorted(logged))}")


def test_fileno_signals_pending_records(reader):
    # Other processes on the machine may log too: readability means "records
    # arrived", read() then applies the selection.
    reader.read()
    pid = fork_call(denier(1))
    reader.watch(pid)
    wait(pid)
    records = []
    deadline = time.monotonic() + 5
    while len(records) < 2 and time.monotonic() < deadline:
        if select.select([reader], [], [], 1)[0]:
            records += reader.read()
    assert [(r.pid, r.nr) for r in records] == [(pid, NR_GETPPID), (pid, NR_GETPGRP)]


def test_kmsg_fallback_is_marked_lossy_and_parses(root):
    need(not any(_comm(p) == "auditd" for p in os.listdir("/proc") if p.isdigit()),
         "auditd running: the kernel does not print records to /dev/kmsg")
    with AuditReader(source="kmsg") as reader:
        assert reader.source == "kmsg" and "rate limit" in reader.lossy
        records = []
        deadline = time.monotonic() + 12  # the printk limit refills every 5 s
        while not records and time.monotonic() < deadline:
            pid = fork_call(denier(0))
            reader.watch(pid)
            wait(pid)
            records = reader.read(1.0)
    assert records, "no record reached /dev/kmsg in 12 s"
    assert records[0].code == 0x80000000 and records[0].nr == NR_GETPGRP


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""

"""parse_record on seccomp audit lines captured from this machine's kernel
(Linux 6.18, no auditd) through the audit netlink group and /dev/kmsg."""
import pytest

from sandbox.kernel.audit import SeccompRecord, parse_record

EXE = "/root/.pyenv/versions/3.11.7/bin/python3.11"
TASK = 'auid=4294967295 uid=0 gid=0 ses=4294967295'

# Netlink payloads (type 1326), verbatim.
ERRNO_LOGGED = (f'audit(1795579929.739:192012): {TASK} pid=12828 comm="python3" exe="{EXE}" '
                'sig=0 arch=c000003e syscall=110 compat=0 ip=0x7f6fae31f829 code=0x50000')
KILL_PROCESS = (f'audit(1795579929.743:192013): {TASK} pid=12829 comm="python3" exe="{EXE}" '
                'sig=31 arch=c000003e syscall=111 compat=0 ip=0x7f6fae31f829 code=0x80000000')
I386_INT80 = (f'audit(1795579929.747:192014): {TASK} pid=12830 comm="python3" exe="{EXE}" '
              'sig=0 arch=40000003 syscall=20 compat=1 ip=0x7f6fae9e2007 code=0x50000')
HEX_COMM = (f'audit(1795579929.747:192015): {TASK} pid=12831 comm=6576696C2022782079 '
            f'exe="{EXE}" sig=0 arch=c000003e syscall=110 compat=0 ip=0x7f6fae31f829 '
            'code=0x7ffc0000')
TRAP = (f'audit(1795579929.751:192016): {TASK} pid=12832 comm="python3" exe="{EXE}" '
        'sig=0 arch=c000003e syscall=110 compat=0 ip=0x7f6fae31f829 code=0x30000')
# /dev/kmsg record, verbatim (one read()).
KMSG = (f'5,1396,739867006,-;audit: type=1326 audit(1795579929.743:192013): {TASK} '
        f'pid=12829 comm="python3" exe="{EXE}" sig=31 arch=c000003e syscall=111 compat=0 '
        'ip=0x7f6fae31f829 code=0x80000000\n')
# auditd's log format around the same payload (type name, msg=, enriched tail).
AUDITD = ('type=SECCOMP msg=' + KILL_PROCESS
          + '\x1dAUID="unset" UID="root" GID="root" ARCH=x86_64 SYSCALL=getpgrp')


def fields(rec: SeccompRecord) -> tuple:
    return (rec.pid, rec.comm, rec.exe, rec.arch, rec.nr, rec.compat, rec.sig,
            rec.code, rec.ip, rec.serial)


@pytest.mark.parametrize("text, expected", [
    pytest.param(ERRNO_LOGGED, (12828, "python3", EXE, 0xC000003E, 110, False, 0,
                                0x50000, 0x7F6FAE31F829, 192012),
                 id="errno from a FLAG_LOG filter: code is the action without its data"),
    pytest.param(KILL_PROCESS, (12829, "python3", EXE, 0xC000003E, 111, False, 31,
                                0x80000000, 0x7F6FAE31F829, 192013),
                 id="kill-process carries sig=31"),
    pytest.param(I386_INT80, (12830, "python3", EXE, 0x40000003, 20, True, 0,
                              0x50000, 0x7F6FAE9E2007, 192014),
                 id="int 0x80 from a 64-bit process is i386 and compat"),
    pytest.param(HEX_COMM, (12831, 'evil "x y', EXE, 0xC000003E, 110, False, 0,
                            0x7FFC0000, 0x7F6FAE31F829, 192015),
                 id="a comm with a quote and spaces is hex-encoded"),
    pytest.param(TRAP, (12832, "python3", EXE, 0xC000003E, 110, False, 0,
                        0x30000, 0x7F6FAE31F829, 192016),
                 id="trap has sig=0: the SIGSYS comes later"),
    pytest.param(KMSG, (12829, "python3", EXE, 0xC000003E, 111, False, 31,
                        0x80000000, 0x7F6FAE31F829, 192013),
                 id="a /dev/kmsg line parses like the netlink payload"),
    pytest.param(AUDITD, (12829, "python3", EXE, 0xC000003E, 111, False, 31,
                          0x80000000, 0x7F6FAE31F829, 192013),
                 id="an auditd log line with an enriched tail parses too"),
])
def test_parses_captured_records(text, expected):
    rec = parse_record(text)
    assert rec is not None
    assert fields(rec) == expected


def test_timestamp_session_and_derived_fields():
    rec = parse_record(KILL_PROCESS)
    assert rec.timestamp == pytest.approx(1795579929.743)
    assert (rec.uid, rec.auid, rec.ses) == (0, 4294967295, 4294967295)
    assert rec.action == 0x80000000
    assert rec.arch_name == "x86_64"
    assert parse_record(I386_INT80).arch_name == "i386"


def test_x32_numbers_are_named_x32():
    rec = parse_record(ERRNO_LOGGED.replace("syscall=110", f"syscall={0x40000000 | 110}"))
    assert rec.arch_name == "x32"
    assert rec.nr == 0x40000000 | 110


def test_exe_null_and_lsm_subject_field():
    text = ERRNO_LOGGED.replace(f'exe="{EXE}"', "exe=(null)").replace(
        " pid=", " subj=unconfined pid=")
    rec = parse_record(text)
    assert rec.exe is None
    assert rec.pid == 12828


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"),
    pytest.param("5,1,2,-;EXT4-fs (vda): mounted filesystem", id="another kernel message"),
    pytest.param("5,1,2,-;audit: type=1300 audit(1.000:5): arch=c000003e syscall=59 "
                 "success=yes exit=0 pid=1 code=0x0", id="another audit record type"),
    pytest.param("type=SYSCALL msg=audit(1.000:5): arch=c000003e syscall=59 pid=1 code=0x0",
                 id="auditd SYSCALL record"),
    pytest.param("audit(1.000:5): pid=1 comm=\"x\"", id="a record without syscall fields"),
    pytest.param(ERRNO_LOGGED.replace("arch=c000003e", "arch=zz"), id="a malformed number"),
])
def test_rejects_other_text(text):
    assert parse_record(text) is None


# records of this kernel (6.18): `sh -c 'echo x > /dev/stderr'` under default, whose open of
# /proc/self/fd/2 with O_CREAT succeeded; and a refusal a profile really made
PROC_CREATE = ('type=LANDLOCK_ACCESS msg=audit(1796426445.923:11945634): domain=1d17979a6 '
               'blockers=fs.make_reg path="/proc/27138/fd" dev="proc" ino=1702892')
REFUSED = ('type=LANDLOCK_ACCESS msg=audit(1796426445.927:11945635): domain=1d17979a6 '
           'blockers=fs.read_file path="/etc/shadow" dev="vda" ino=739')


def test_a_create_check_in_procfs_is_not_a_refusal():
    """The kernel checks the right to create before it looks up a name it has not
    cached; for /proc/PID/fd/N that check is all the record says, and procfs creates
    nothing: no refusal. The same record on another file system is one."""
    assert parse_record(PROC_CREATE) is None
    rec = parse_record(REFUSED)
    assert rec.kind == "access" and rec.blockers == ("fs.read_file",) and rec.path == "/etc/shadow"
    elsewhere = parse_record(PROC_CREATE.replace('dev="proc"', 'dev="vda"'))
    assert elsewhere.blockers == ("fs.make_reg",) and elsewhere.path == "/proc/27138/fd"


def test_a_refused_bind_to_port_0_names_port_0():
    """lsm_audit leaves src= out for port 0 (this kernel's record of bind(127.0.0.1:0))."""
    rec = parse_record('type=LANDLOCK_ACCESS msg=audit(1796428995.547:12318065): '
                       'domain=1d179f1f7 blockers=net.bind_tcp saddr=127.0.0.1')
    assert (rec.blockers, rec.port) == (("net.bind_tcp",), 0)
    rec = parse_record('type=LANDLOCK_ACCESS msg=audit(1796428995.547:12318066): '
                       'domain=1d179f1f7 blockers=net.bind_tcp saddr=127.0.0.1 src=7777')
    assert rec.port == 7777

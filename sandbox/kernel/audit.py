"""Read seccomp audit records (type 1326, AUDIT_SECCOMP) from the kernel.

Source: the audit netlink multicast group AUDIT_NLGRP_READLOG, which the
kernel feeds with every record whether or not auditd runs and whether or not
auditing is enabled (kernel/audit.c kauditd_send_multicast_skb; initial
network namespace only; needs CAP_AUDIT_READ). Records are emitted in the
syscall's own context: when the kernel queue holds more than
audit_backlog_limit (64) records the logging task sleeps (up to
audit_backlog_wait_time) instead of dropping, so the only loss point left
is this socket's receive buffer (RCVBUF_BYTES, set with SO_RCVBUFFORCE),
which a reader thread keeps draining. An overflow (ENOBUFS) is counted in
``overflows``.

Fallback when netlink is unavailable: /dev/kmsg, where the kernel prints
records only while no auditd is connected, rate-limited by printk_ratelimit
(kernel.printk_ratelimit=5 s, burst 10: ten records per five seconds) inside
a small ring buffer. ``lossy`` says so.

What the kernel logs (kernel/seccomp.c seccomp_log): KILL_PROCESS,
KILL_THREAD and LOG always; ERRNO, TRAP, TRACE and USER_NOTIF only from a
filter installed with SECCOMP_FILTER_FLAG_LOG; ALLOW never; each only if
named in /proc/sys/kernel/seccomp/actions_logged.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from bpf_filters import insn, syscalls

from . import libc, netlink, seccomp
from .netlink import RCVBUF_BYTES

AUDIT_SECCOMP = 1326
AUDIT_LANDLOCK_ACCESS = 1423   # one denial: domain, blockers, the object (path, port, pid)
AUDIT_LANDLOCK_DOMAIN = 1424   # a domain's first logged denial (status=allocated: who made it), its end
_TYPES = {AUDIT_SECCOMP: "SECCOMP", AUDIT_LANDLOCK_ACCESS: "LANDLOCK_ACCESS",
          AUDIT_LANDLOCK_DOMAIN: "LANDLOCK_DOMAIN"}
ACTIONS_LOGGED = "/proc/sys/kernel/seccomp/actions_logged"
_NLMSGHDR = struct.Struct("=IHHII")
_MARKER_ARG = 0x5EC0A0D17  # marker calls carry it in arg0
_PR_SET_NAME = 15


class AuditUnavailable(Exception):
    """No way to read seccomp audit records here (one-line reason)."""


@dataclass(frozen=True)
class SeccompRecord:
    """One AUDIT_SECCOMP record.

    ``pid`` is the thread-group id in the initial pid namespace. ``code``
    is what the kernel reports: the action only (SECCOMP_RET_ACTION_FULL
    bits) - the kernel strips RET_DATA, so ERRNO(EPERM) reads 0x50000.
    ``nr`` is the raw syscall number (x32 calls keep bit 30).
    ``timestamp``/``serial`` come from the audit(SEC.MSEC:SERIAL) stamp.
    ``auid``/``ses`` are the login uid and audit session (4294967295 when
    unset); a session set with ``new_audit_session`` tags a process tree.
    """
    pid: int
    comm: str
    exe: str | None
    arch: int
    nr: int
    compat: bool
    sig: int
    code: int
    ip: int
    timestamp: float
    serial: int
    uid: int | None = None
    auid: int | None = None
    ses: int | None = None

    @property
    def action(self) -> int:
        """SECCOMP_RET_* action (e.g. 0x80000000 kill-process, 0x50000 errno)."""
        return self.code & 0xFFFF0000

    @property
    def arch_name(self) -> str:
        """x86_64, i386, x32 (x86_64 with the x32 bit), or arch-0x..."""
        return syscalls.arch_of(self.arch, self.nr)[0]


@dataclass(frozen=True)
class LandlockRecord:
    """One Landlock audit record (Linux 6.15+, domains restricted with a LOG flag).

    ``kind`` "access" (type 1423: a denial; ``blockers`` such as
    ("fs.write_file",) and the object: ``path``, or ``port`` for
    net.bind_tcp/net.connect_tcp, or ``opid`` for scope.signal) or "domain"
    (type 1424: ``status`` "allocated" names the task that made the domain,
    ``pid``, "deallocated" counts its ``denials``). ``domain`` is the
    domain's id (hex text), shared by every task it confines.
    """
    kind: str
    domain: str
    serial: int
    blockers: tuple[str, ...] = ()
    path: str | None = None
    port: int | None = None
    opid: int | None = None
    status: str | None = None
    pid: int | None = None
    comm: str = ""
    timestamp: float = 0.0        # seconds since the epoch, from the audit(SEC.MSEC:SERIAL) stamp


_STAMP = re.compile(r"audit\((\d+)\.(\d+):(\d+)\):\s*")
_TYPE = re.compile(r"type=(\w+)")
_FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')
_HEX = re.compile(r"[0-9A-F]+")


def _untrusted(value: str) -> str | None:
    """Decode an audit_log_untrustedstring value: "quoted", (null), or hex."""
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return value[1:-1]
    if value == "(null)":
        return None
    if _HEX.fullmatch(value) and len(value) % 2 == 0:
        return bytes.fromhex(value).decode("utf-8", "backslashreplace")
    return value


def parse_record(text: str, rtype: int | None = None) -> SeccompRecord | LandlockRecord | None:
    """Parse one seccomp or Landlock audit record; None if *text* is neither.

    Accepts the netlink payload (``audit(1.2:3): auid=...``, its type given
    as *rtype*), a /dev/kmsg line (``6,9,7,-;audit: type=1326 audit(...): ...``)
    and an auditd log line (``type=SECCOMP msg=audit(...): ...``, enriched part
    ignored). A netlink payload of unknown type is taken as seccomp.
    """
    text = text.split("\x1d", 1)[0]
    stamp = _STAMP.search(text)
    if stamp is None:
        return None
    declared = _TYPE.search(text, 0, stamp.start())
    kind = rtype if rtype is not None else AUDIT_SECCOMP
    if declared:
        kind = next((k for k, n in _TYPES.items() if declared.group(1) in (str(k), n)), None)
        if kind is None:
            return None
    fields = dict(_FIELD.findall(text, stamp.end()))
    if kind != AUDIT_SECCOMP:
        return _landlock(kind, fields, int(stamp.group(3)),
                         int(stamp.group(1)) + int(stamp.group(2)) / 1000)
    try:
        return SeccompRecord(
            pid=int(fields["pid"]),
            comm=_untrusted(fields.get("comm", '""')) or "",
            exe=_untrusted(fields["exe"]) if "exe" in fields else None,
            arch=int(fields["arch"], 16),
            nr=int(fields["syscall"]),
            compat=fields.get("compat", "0") == "1",
            sig=int(fields.get("sig", "0")),
            code=int(fields["code"], 16),
            ip=int(fields.get("ip", "0"), 16),
            timestamp=int(stamp.group(1)) + int(stamp.group(2)) / 1000,
            serial=int(stamp.group(3)),
            uid=_opt_int(fields.get("uid")),
            auid=_opt_int(fields.get("auid")),
            ses=_opt_int(fields.get("ses")),
        )
    except (KeyError, ValueError):
        return None


def _landlock(kind: int, fields: dict[str, str], serial: int, when: float) -> LandlockRecord | None:
    domain = fields.get("domain")
    if not domain:
        return None
    if kind == AUDIT_LANDLOCK_DOMAIN:
        return LandlockRecord("domain", domain, serial, status=fields.get("status"),
                              pid=_opt_int(fields.get("pid")),
                              comm=_untrusted(fields.get("comm", '""')) or "", timestamp=when)
    blockers = tuple(b for b in fields.get("blockers", "").split(",") if b)
    if blockers and all(b.startswith("fs.make_") for b in blockers) and \
            _untrusted(fields.get("dev", '""')) == "proc":
        # Not a refusal of anything: procfs creates no file, and an O_CREAT open
        # checks the right to create (may_o_create, fs/namei.c lookup_open) before
        # it looks up a name not in the dentry cache, so reopening an existing
        # /proc/PID/fd/N for writing with O_CREAT (a shell's "> /dev/stderr") logs
        # this record, drops O_CREAT and opens the file all the same.
        return None
    path = _untrusted(fields["path"]) if "path" in fields else None
    port = _opt_int(fields.get("dest") or fields.get("src"))
    if port is None and "net.bind_tcp" in blockers:
        port = 0      # lsm_audit prints no src= for port 0: a bind to a port the kernel picks
    return LandlockRecord("access", domain, serial, blockers, path, port,
                          _opt_int(fields.get("opid")), comm=_untrusted(fields.get("ocomm", '""')) or "",
                          timestamp=when)


def _opt_int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def actions_logged(path: str = ACTIONS_LOGGED) -> frozenset[str]:
    """Names in /proc/sys/kernel/seccomp/actions_logged (kernel default:
    kill_process kill_thread trap errno user_notif trace log)."""
    with open(path) as f:
        return frozenset(f.read().split())


def audit_status() -> dict[str, int]:
    """The kernel's audit status (``netlink.audit_status``), AuditUnavailable if it cannot be read."""
    try:
        return netlink.audit_status()
    except OSError as err:
        raise AuditUnavailable(f"audit status: {err.strerror or err}") from err


def new_audit_session(loginuid: int | None = None) -> int:
    """Give the calling process a fresh audit session id and return it.

    Meant for the sandboxed child before exec: every descendant inherits the
    session, so records can be attributed exactly even after reparenting or
    death (``AuditReader(sessions={ses})``). Writes *loginuid* (default: the
    current login uid, or the real uid when unset) to /proc/self/loginuid;
    needs CAP_AUDIT_CONTROL once a login uid is set.
    """
    try:
        with open("/proc/self/loginuid") as f:
            current = int(f.read())
        if loginuid is None:
            loginuid = os.getuid() if current == 0xFFFFFFFF else current
        with open("/proc/self/loginuid", "w") as f:
            f.write(str(loginuid))
        with open("/proc/self/sessionid") as f:
            return int(f.read())
    except OSError as err:
        raise AuditUnavailable(f"cannot start an audit session: {err.strerror}") from err


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split(None, 2)[1])


_MAX_OWNERS = 4096               # domains whose maker AuditReader.owners remembers


class AuditReader:
    """Reads seccomp records of selected processes as they are logged.

    Open it before the sandboxed child runs. A background thread moves
    records from the kernel into memory as they arrive (a flood of 100,000
    logged denials in 0.3 s is kept in full), so the caller may block in
    waitpid and read later.
    Records are selected when read, so pids learnt later (``watch``) match.
    *source*: "auto" (netlink, else /dev/kmsg), "netlink" or "kmsg".

    Selection: records whose pid is in *pids* or descends from one of them
    (looked up in /proc when read: a process already reaped or reparented
    is missed - use sessions for exactness), or whose audit session is in
    *sessions*; with neither, every record except this process's own sync
    markers. *predicate* further filters seccomp records. A Landlock denial
    names only its domain: it is selected once the domain's record names a
    task that is selected (and that *owner* accepts, given its pid), and
    with no selection and no *owner* at once. At most *max_pending* unread
    records are kept, and as many denials of domains not known yet; beyond
    that, and on a socket overflow, records are dropped and counted in
    ``overflows``. *types*: the netlink record types to keep (default: every
    denial type; ``sync`` needs AUDIT_SECCOMP for its marker). *preread*:
    datagrams already read off *netlink_fd* (``netlink.read_pending``), taken
    before anything newer.
    """

    def __init__(self, pids: Iterable[int] | None = None, *,
                 sessions: Iterable[int] | None = None,
                 predicate: Callable[[SeccompRecord], bool] | None = None,
                 source: str = "auto", max_pending: int = 1 << 18,
                 rcvbuf: int = RCVBUF_BYTES, netlink_fd: int | None = None,
                 preread: list[bytes] = (), owner: Callable[[int], bool] | None = None,
                 types: Iterable[int] | None = None):
        if source not in ("auto", "netlink", "kmsg"):
            raise ValueError(f"source must be auto, netlink or kmsg, not {source!r}")
        self._pids = set(pids) if pids is not None else None
        self._sessions = set(sessions) if sessions is not None else None
        self._predicate = predicate
        self._want = source
        self._max_pending = max_pending
        self._rcvbuf = rcvbuf
        self._adopt = netlink_fd      # a socket already subscribed (netlink.open_audit_readlog)
        self._fd = self._event = self._stop_w = -1
        self._sock: socket.socket | None = None
        self._pending: list[bytes] = list(preread)     # datagrams read off netlink_fd already
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None
        self.source: str | None = None
        self.lossy: str | None = None
        self.overflows = 0
        self._held: list[LandlockRecord] = []     # Landlock denials of domains not known yet
        self._owner = owner
        # netlink record types to keep: the others are dropped as they arrive, so that a
        # reader of Landlock records alone (sbx monitor) holds nothing of a seccomp flood
        self._types = frozenset(types) if types is not None else None
        self._max_pending = max_pending
        # the Landlock domains of the watched tasks: domain -> (pid, comm) of the task that
        # made it, least recently seen first (bounded: a monitor runs for days)
        self.owners: dict[str, tuple[int, str]] = {}

    # -- lifecycle -------------------------------------------------------
    def __enter__(self) -> "AuditReader":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Subscribe; raises AuditUnavailable with a one-line reason."""
        if self._fd >= 0:
            return
        why = "audit netlink not tried"
        opened = False
        if self._want != "kmsg":
            try:
                self._open_netlink()
                opened = True
            except OSError as err:
                why = err.strerror or str(err)
                if self._want == "netlink":
                    raise AuditUnavailable(why) from err
        if not opened:
            try:
                self._open_kmsg()
            except OSError as err:
                raise AuditUnavailable(f"{why}; /dev/kmsg: {err.strerror}") from err
        self._event = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._pump, args=(stop_r,),
                                        name="sbx-audit-reader", daemon=True)
        self._thread.start()

    def _open_netlink(self) -> None:
        fd = self._adopt if self._adopt is not None else netlink.open_audit_readlog(self._rcvbuf)
        self._adopt = None
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        self._sock, self._fd, self.source, self.lossy = sock, sock.fileno(), "netlink", None
        self._buf = ctypes.create_string_buffer(1 << 16)

    def _open_kmsg(self) -> None:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(fd, 0, os.SEEK_END)
        self._fd, self.source = fd, "kmsg"
        self.lossy = ("/dev/kmsg: printk rate limit (kernel.printk_ratelimit, "
                      "10 records per 5 s by default), and nothing while auditd runs")

    def fileno(self) -> int:
        """An eventfd, readable once records arrived since the last read()
        (of any process: read() applies the selection)."""
        return self._event

    def close(self) -> None:
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join()
            self._thread = None
        if self._sock is not None:
            self._sock.close()
        elif self._fd >= 0:
            os.close(self._fd)
        for fd in (self._event, self._stop_w):
            if fd >= 0:
                os.close(fd)
        self._sock, self._fd, self._event, self._stop_w = None, -1, -1, -1

    def watch(self, pid: int) -> None:
        """Select records of *pid* (and its descendants) too."""
        if self._pids is None:
            self._pids = set()
        self._pids.add(pid)

    def watch_session(self, ses: int) -> None:
        """Select records of audit session *ses* too (see new_audit_session)."""
        if self._sessions is None:
            self._sessions = set()
        self._sessions.add(ses)

    # -- the pump thread -------------------------------------------------
    def _pump(self, stop_r: int) -> None:
        drain = self._drain_netlink if self._sock is not None else self._drain_kmsg
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(stop_r, select.POLLIN)
        try:
            while all(fd != stop_r for fd, _ in poller.poll()):
                batch, dropped = drain()
                if self._types is not None and self._sock is not None:
                    batch = [d for d in batch if _NLMSGHDR.size <= len(d)
                             and _NLMSGHDR.unpack_from(d)[1] in self._types]
                self._domains_of(batch)
                with self._cond:
                    room = self._max_pending - len(self._pending)
                    self.overflows += dropped + max(0, len(batch) - room)
                    self._pending.extend(batch[:max(0, room)])
                    self._cond.notify_all()
                if batch:
                    os.eventfd_write(self._event, 1)
        except OSError as err:
            with self._cond:
                self._error = err
                self._cond.notify_all()
        finally:
            os.close(stop_r)

    def _domains_of(self, batch: list[bytes]) -> None:
        """Decide whose the Landlock domains of *batch* are as their records arrive:
        the record names the task that made the domain, and whether that task is
        selected is looked up in /proc, which a task that exits soon after its
        denial leaves before a caller reads (a monitor reads every 200 ms)."""
        for rtype, text in self._texts(batch):
            if rtype == AUDIT_LANDLOCK_DOMAIN and "status=allocated" in text:
                rec = parse_record(text, rtype)
                if rec is not None:
                    self._selected(rec)

    def _drain_netlink(self) -> tuple[list[bytes], int]:
        # recv through a GIL-holding call: socket.recv would release the GIL for
        # every record and then wait up to the switch interval (5 ms) to get
        # it back from a busy thread, draining far slower than a flood fills.
        out, dropped, fd, buf, size = [], 0, self._fd, self._buf, len(self._buf)
        addr, call, string_at = ctypes.addressof(buf), libc.call, ctypes.string_at
        while True:
            n = call("recv", fd, addr, size, socket.MSG_DONTWAIT, keep_gil=True)
            if n < 0:
                err = libc.errno()
                if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return out, dropped
                if err == errno.EINTR:
                    continue
                if err != errno.ENOBUFS:
                    raise OSError(err, os.strerror(err))
                dropped += 1  # at least one; the kernel does not say how many
                continue
            out.append(string_at(buf, n))  # headers are split off in read()

    def _drain_kmsg(self) -> tuple[list[bytes], int]:
        out, dropped = [], 0
        while True:
            try:
                line = os.read(self._fd, 8192)
            except BlockingIOError:
                return out, dropped
            except BrokenPipeError:  # the ring buffer overwrote unread records
                dropped += 1
                continue
            if b"type=1326" in line:
                out.append(line)

    # -- reading ---------------------------------------------------------
    def _take(self, timeout: float) -> list[bytes]:
        with self._cond:
            if not self._pending and timeout > 0 and self._error is None:
                self._cond.wait(timeout)
            if self._error is not None:
                raise AuditUnavailable(f"reading audit records: {self._error}") from self._error
            raw, self._pending = self._pending, []
        try:
            os.eventfd_read(self._event)
        except BlockingIOError:
            pass
        return raw

    def _texts(self, raw: list[bytes]) -> Iterator[str]:
        """Record texts in *raw*: netlink datagrams or /dev/kmsg records."""
        if self._sock is None:
            for line in raw:
                yield None, line.split(b"\n", 1)[0].decode("utf-8", "backslashreplace")
            return
        for data in raw:
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, mtype = _NLMSGHDR.unpack_from(data, off)[:2]
                if length < _NLMSGHDR.size:
                    break
                if mtype in _TYPES:
                    payload = data[off + _NLMSGHDR.size:off + length]
                    yield mtype, payload.rstrip(b"\0").decode("utf-8", "backslashreplace")
                off += (length + 3) & ~3

    def read(self, timeout: float = 0.0) -> list[SeccompRecord]:
        """Return the selected records received so far, waiting up to
        *timeout* seconds for the first one if none is pending."""
        if self._thread is None:
            raise AuditUnavailable("reader is not open")
        out = []
        for rtype, text in self._texts(self._take(timeout)):
            rec = parse_record(text, rtype)
            if rec is not None and self._selected(rec):
                out.append(rec)
        return out + self._landlock_selected()

    def sync(self, timeout: float = 5.0) -> list[SeccompRecord]:
        """Return the selected records logged before this call, all of them.

        Logs a marker record from a short-lived thread of this process
        (named with a fresh token; a thread-only filter: RET_LOG for
        getppid(MARKER)) and reads until it arrives: the kernel delivers
        records in order, so nothing logged earlier is still in flight. Without netlink, or when actions_logged
        lists neither log nor errno, waits *timeout* instead.
        """
        if self._thread is None:
            raise AuditUnavailable("reader is not open")
        if self._sock is None or not _marker_possible():
            return self.read(timeout)
        is_marker = _emit_marker()
        out: list[SeccompRecord] = []
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            raw = self._take(remaining)
            for i, item in enumerate(raw):
                for rtype, text in self._texts([item]):
                    rec = parse_record(text, rtype)
                    if rec is None:
                        continue
                    if isinstance(rec, SeccompRecord) and is_marker(rec):
                        with self._cond:  # keep what came after the marker
                            self._pending[:0] = raw[i + 1:]
                        return out + self._landlock_selected()
                    if self._selected(rec):
                        out.append(rec)
        raise AuditUnavailable(f"the sync marker did not arrive within {timeout} s "
                               f"({self.overflows} overflows)")

    def _landlock_selected(self) -> list[LandlockRecord]:
        """The held Landlock denials of domains known by now to be the watched tasks'."""
        mine = [r for r in self._held if r.domain in self.owners]
        self._held = [r for r in self._held if r.domain not in self.owners]
        return mine

    def _selected(self, rec) -> bool:
        if isinstance(rec, LandlockRecord):
            # a denial names only its domain; the domain record of the first one names the
            # task that made it (the command, before it exec'd): held until it is known
            with self._cond:          # the pump thread decides domain records too (_domains_of)
                if rec.kind == "domain":
                    if rec.status == "allocated" and rec.pid is not None and \
                            rec.domain not in self.owners and (
                            self._pids is None and self._sessions is None
                            or self._pids is not None and self._descends(rec.pid)) and (
                            self._owner is None or self._owner(rec.pid)):
                        if len(self.owners) >= _MAX_OWNERS:
                            del self.owners[next(iter(self.owners))]
                        self.owners[rec.domain] = (rec.pid, rec.comm)
                    return False
                if rec.domain in self.owners:
                    self.owners[rec.domain] = self.owners.pop(rec.domain)     # seen now: kept longest
                    return True
            if self._pids is None and self._sessions is None and self._owner is None:
                return True                              # every record: domains need not be known
            if len(self._held) >= self._max_pending:
                del self._held[0]
                self.overflows += 1
            self._held.append(rec)
            return False
        if rec.pid == os.getpid():  # our own: sync() markers
            return False
        if self._pids is not None or self._sessions is not None:
            if not (self._sessions and rec.ses in self._sessions
                    or self._pids is not None and self._descends(rec.pid)):
                return False
        return self._predicate is None or self._predicate(rec)

    def _descends(self, pid: int) -> bool:
        chain = []
        cur: int | None = pid
        while cur and cur > 1 and len(chain) < 256:
            if cur in self._pids:
                self._pids.update(chain)
                return True
            chain.append(cur)
            cur = _ppid(cur)
        return False


def _marker_possible() -> bool:
    try:
        logged = actions_logged()
    except OSError:
        return False
    return "log" in logged or "errno" in logged


def _emit_marker() -> Callable[[SeccompRecord], bool]:
    """Log one seccomp record from a throwaway thread; return its matcher."""
    use_log = "log" in actions_logged()
    action = insn.RET_LOG if use_log else insn.RET_ERRNO | errno.EPERM
    getppid = libc.sysno("getppid")
    program = insn.pack([
        insn.ld_abs(insn.OFF_NR),                                  # A = nr
        insn.jump(insn.JMP | insn.JEQ | insn.K, getppid, 0, 2),
        insn.ld_abs(insn.off_arg_lo(0)),                           # A = low word of arg0
        insn.jump(insn.JMP | insn.JEQ | insn.K, _MARKER_ARG, 1, 0),
        insn.ret(insn.RET_ALLOW),
        insn.ret(action),
    ])
    flags = 0 if use_log else seccomp.SECCOMP_FILTER_FLAG_LOG
    # The record's comm is the thread's name: a fresh token tells this marker
    # from one another reader of this process left in flight.
    token = "sbx" + os.urandom(6).hex()
    failure: list[OSError] = []

    def mark() -> None:
        name = libc.cstring(token)
        libc.prctl(_PR_SET_NAME, name.addr)
        try:
            seccomp.install_filter(program, flags)  # this thread only
        except OSError as err:
            failure.append(err)
            return
        libc.syscall("getppid", _MARKER_ARG)

    thread = threading.Thread(target=mark, name="sbx-audit-marker")
    thread.start()
    thread.join()
    if failure:
        raise AuditUnavailable(f"cannot log a marker record: {failure[0]}") from failure[0]
    pid = os.getpid()
    return lambda rec: rec.pid == pid and rec.comm == token

"""Tell the person running ``sbx run`` what the sandbox blocked, in plain words.

Channels: the audit read-log socket (opened before fork, cheaply; parsed only
when something has to be explained) and, with ``--monitor``, the eBPF probe.
Every record becomes a ``denials.Denial``, attributed to the rule of the
profile that decided it (``denials.attribute``); the table is
``denials.summarize``'s, and the rules that would allow the denied calls come
from ``refine``'s planner, the same one ``sbx refine`` uses. Reporting never
changes the command's status: a failure here is one line on stderr.
"""
from __future__ import annotations

import errno
import os
import stat
import _signal as signal     # the C module: signal.py's enums cost ~3 ms to import
import sys

from .kernel import seccomp

SIGSYS = signal.SIGSYS


def _say(msg: str) -> None:
    try:
        print(f"sbx: {msg}", file=sys.stderr)
    except (OSError, ValueError):
        pass


def _line(text: str) -> None:
    try:
        print(text, file=sys.stderr)
    except (OSError, ValueError):
        pass


class Reporter:
    """Collects the denials of one run and reports them after the command exited.

    *summary*: list every denial (--log, --monitor, complain mode); *as_json*:
    the summary as one JSON document on stderr; *output*: write the denials as
    JSON lines there (what ``sbx refine --from`` reads); *on_denials*: called
    with the list (``sbx verify``).
    """

    def __init__(self, compiled, argv0: str, *, mode: str = "enforce", summary: bool = False,
                 monitor: bool = False, quiet: bool = False, as_json: bool = False,
                 output: str | None = None, on_denials=None, context: dict | None = None):
        self.compiled, self.argv0, self.mode = compiled, argv0, mode
        # for Landlock denials in plain words: env, exe, cache_dir, protected (see denials)
        self.context = context or {}
        self.summary, self.monitor, self.quiet = summary or monitor, monitor, quiet
        self.as_json, self.output, self.on_denials = as_json, output, on_denials
        self.audit_fd = -1
        self.probe = None
        self.pid = None
        self._counters = None
        self._policy_cache = None
        self._listened = True
        self._audit_problem = None      # why the audit socket could not be opened
        self._preread: list[bytes] = []     # audit datagrams read before the reader was loaded
        self._out_fd = -1                   # --output, opened by start(), before the command runs

    @property
    def needs_go(self) -> bool:
        return self.probe is not None

    @property
    def observes(self) -> bool:
        """Denials can be read (audit socket or eBPF probe)."""
        return self.audit_fd >= 0 or self.probe is not None

    def start(self) -> None:
        """Open the channels and the --output file; raises LaunchError when
        --monitor cannot be set up (the command must not start unmonitored when
        monitoring was asked for) or the output file cannot be opened."""
        if self.output:
            self._out_fd = open_output(self.output)
        if os.geteuid() == 0:
            from .kernel.netlink import ensure_audit_enabled, open_audit_readlog
            try:
                self.audit_fd = open_audit_readlog()
                # Landlock logs its denials only while audit is on (seccomp logs either way)
                ensure_audit_enabled()
            except OSError as err:
                self._audit_problem = err.strerror
                if self.summary and not self.monitor:
                    _say(f"cannot read audit records ({err.strerror}); denials will not "
                         "be listed")
        if self.monitor:
            from .errors import LaunchError
            from .ebpf import Probe, ProbeUnavailable
            try:
                self.probe = Probe("monitor")
            except ProbeUnavailable as e:
                self.stop()
                raise LaunchError(f"cannot start the eBPF monitor: {e}; the command was not run "
                                  "(run without --monitor, or with --log to read audit records "
                                  "instead)") from e
        elif self.summary and self.audit_fd < 0 and os.geteuid() != 0:
            _say("cannot read seccomp audit records (needs root / CAP_AUDIT_READ); "
                 "denials will not be listed")

    def track(self, pid: int) -> None:
        self.pid = pid
        if self.probe is not None:
            self.probe.track_pid(pid)

    def stop(self) -> None:
        if self._out_fd >= 0:
            os.close(self._out_fd)
            self._out_fd = -1
        if self.audit_fd >= 0:
            os.close(self.audit_fd)
            self.audit_fd = -1
        if self.probe is not None:
            self.probe.close()
            self.probe = None

    # -- after the command exited ------------------------------------------
    def finish(self, pid: int, status: int) -> None:
        """Report; never raises (the command has run: its status is what sbx returns)."""
        try:
            self._finish(pid, status)
        except Exception as err:                      # noqa: BLE001 - reporting is best effort
            _say(f"could not report the denials: {type(err).__name__}: {err}")
        finally:
            self.stop()

    def _finish(self, pid: int, status: int) -> None:
        self.pid = self.pid or pid
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == SIGSYS
        wanted = killed or self.summary or self.output or self.on_denials is not None
        if not (wanted or self.observes):
            return
        if not wanted and self.probe is None and self._nothing_logged(failed=status != 0):
            return
        denials = self._collect()
        if self.on_denials is not None:
            self.on_denials(denials)
        if self.output:
            self._write_json_lines(denials)
        if killed:
            self._explain_kill(denials)
        if self.quiet:
            return
        self._explain_landlock(denials)
        if self.summary:
            self._summary(denials)
        elif denials and not killed:
            # errno(ENOSYS) whatever the arguments is the profile's answer on purpose
            # (clone3, for every thread glibc starts): the caller falls back, and nothing
            # needs looking into. Audit records do not carry the errno (the kernel logs
            # the action alone), hence the list the compiler made.
            fallbacks = self.compiled.fallbacks
            n = sum(d.count for d in denials if d.action != "log" and not d.landlock
                    and not (d.action == "errno" and d.nr in fallbacks.get(d.arch, ())))
            if n:
                _say(f"{n} syscall{'s' if n != 1 else ''} {'was' if n == 1 else 'were'} denied under "
                     f"profile {self.compiled.name}; rerun with --log (or --monitor) to list them, "
                     "or -o FILE to save them for `sbx refine`")

    # how long a run whose command failed waits for a denial record still on its
    # way (one logged just before the command exited; see netlink.read_pending).
    # Measured: 60 of 60 Python commands denied right before exiting were counted
    # with no wait at all; 1 ms is the margin for a C program that exits on the
    # next instruction. A command that succeeded is not kept waiting: a denial it
    # got around is reported when its record is already there, which it is unless
    # the command exited within microseconds of it.
    AUDIT_GRACE_S = 0.001

    def _nothing_logged(self, failed: bool) -> bool:
        """No denial record arrived: nothing to count for the plain run's one-line
        hint, and the audit reader need not be loaded. What was read is kept for it."""
        if self.audit_fd < 0:
            return True
        from .kernel.netlink import read_pending
        found, self._preread = read_pending(self.audit_fd, self.AUDIT_GRACE_S if failed else 0)
        return not found

    def _collect(self) -> list:
        self._listened = self.observes
        if self.probe is not None:
            return self._probe_denials()
        return self._audit_denials()

    def _audit_denials(self) -> list:
        from .denials import Denial
        if self.audit_fd < 0:
            return []
        from .kernel.audit import AuditReader
        reader = AuditReader(pids=[self.pid], netlink_fd=self.audit_fd, source="netlink",
                             preread=self._preread)
        self.audit_fd = -1
        try:
            reader.open()
            records = reader.sync(timeout=2.0)
        finally:
            reader.close()
        from .kernel.audit import LandlockRecord
        return [Denial.from_landlock(r) if isinstance(r, LandlockRecord) else Denial.from_audit(r)
                for r in records]

    # -- the eBPF monitor (--monitor) ---------------------------------------
    def _probe_denials(self) -> list:
        """Every event the probe delivered, in order, then one args-less Denial
        per (arch, nr, action) for the events a full ring buffer dropped: the
        counts add up to the probe's lossless in-kernel counters.  (The task
        has exited, so its events are all in the buffer: one non-blocking poll.)"""
        from .denials import Denial, attribute
        events = self.probe.poll(0)
        counters = self._counters = self.probe.counters()
        out = []
        for ev in events:
            kind = None
            if ev.action == "kill":      # the probe cannot tell the two kills apart; the policy can
                k = attribute(self._policy(), ev.arch, ev.nr, ev.args).action.kind
                kind = k if k in ("kill-process", "kill-thread") else "kill-process"
            out.append(Denial.from_event(ev, kind))
        delivered: dict[tuple, int] = {}
        for ev in events:
            delivered[(ev.arch, ev.nr, ev.action)] = delivered.get((ev.arch, ev.nr, ev.action), 0) + 1
        for (arch, nr, action), n in counters["denials"].items():
            missing = n - delivered.get((arch, nr, action), 0)
            if missing > 0:
                kind = "kill-process" if action == "kill" else action
                out.append(Denial(arch, nr, kind, self.pid or 0, "", None, missing))
        if self.audit_fd >= 0:       # RET_LOG (complain mode) and Landlock come from audit
            out += [d for d in self._audit_denials()
                    if d.landlock or (d.action == "log" and self.mode == "complain")]
        return out

    def _policy(self):
        if self._policy_cache is None:
            from .policy import load_profile, lower
            self._policy_cache = lower(load_profile(self.compiled.path), seccomp.native_arch())
        return self._policy_cache

    def _explain_kill(self, denials: list) -> None:
        from .denials import attribute
        cmd = os.path.basename(self.argv0)
        kills = ("kill-process", "kill-thread", "trap")
        mine = [d for d in denials if d.action in kills and d.pid == self.pid] or \
            [d for d in denials if d.action in kills]
        if not mine:
            why = (f"audit records cannot be read: {self._audit_problem}" if self._audit_problem
                   else "audit records need root" if os.geteuid() else "no audit record arrived")
            _say(f"{cmd} was killed by seccomp (SIGSYS) under profile {self.compiled.name}; "
                 f"the syscall is unknown ({why}); rerun with --monitor to see it")
            return
        d = mine[-1]
        what = "killed" if d.action != "trap" else "stopped by SIGSYS (trap)"
        abi = "" if d.arch == seccomp.native_arch() else f" [{d.arch} ABI]"
        where = attribute(self._policy(), d.arch, d.nr, d.args, d.action).where()
        _say(f"{cmd} was {what}: syscall {d.name or '?'} ({d.nr}){abi} is not allowed by profile "
             f"{self.compiled.name} ({where})")

    MAX_LANDLOCK_LINES = 8

    def _explain_landlock(self, denials: list) -> None:
        """One line per distinct file, port or process the Landlock rules refused."""
        from .denials import explain_landlock, landlock_groups
        groups = landlock_groups(denials)
        if not groups:
            return
        cmd = os.path.basename(self.argv0)
        c = self.context
        for blockers, target, n in groups[:self.MAX_LANDLOCK_LINES]:
            why = explain_landlock(blockers, target, self.compiled.spec, self.compiled.name,
                                   c.get("env", {}), c.get("exe"), c.get("cache_dir"),
                                   c.get("protected", ()))
            _say(f"{cmd} {why}" + (f" ({n} times)" if n > 1 else ""))
        if len(groups) > self.MAX_LANDLOCK_LINES:
            _say(f"... and {len(groups) - self.MAX_LANDLOCK_LINES} more files, ports or processes "
                 "refused; -o FILE saves them all")

    def _summary(self, denials: list) -> None:
        from .denials import summarize
        native = seccomp.native_arch()
        if not [d for d in denials if not d.landlock]:
            if self._listened:          # else start() said that denials cannot be listed
                if self.as_json:
                    self._json([], native)
                elif any(d.landlock for d in denials):
                    # the Landlock lines above are denials too, enforced even in complain mode
                    _say(f"no seccomp denials recorded under profile {self.compiled.name}; the "
                         "Landlock refusals above were enforced"
                         + (" (complain mode does not relax Landlock)"
                            if self.mode == "complain" else ""))
                else:
                    _say(f"no denials recorded under profile {self.compiled.name}")
            return
        rows = summarize(denials, self._policy(), native)
        if self.as_json:
            self._json(rows, native)
            return
        total = sum(r.count for r in rows)
        verb = "would have been denied" if self.mode == "complain" else "denied"
        how = ""
        if self._counters is not None:
            dropped = self._counters["dropped"]
            how = (f" (counted in the kernel; {dropped} of {total} events dropped, example args "
                   "come from the others)" if dropped else " (counted in the kernel; every event "
                   "delivered)")
        _say(f"{total} syscall{'s' if total != 1 else ''} {verb} under profile {self.compiled.name}{how}:")
        _line(f"  {'SYSCALL':24} {'COUNT':>7}  {'ACTION':20} {'EXAMPLE ARGS':28} RULE")
        from .policy.show import action_text
        for r in rows:
            shown = action_text(r.attribution.action) if r.attribution.action.denies and \
                r.action != "log" else r.action
            _line(f"  {r.label:24} {r.count:>7}  {shown:20} {_args_text(r, native):28} "
                  f"{r.attribution.where()}")
        self._allow_lines(denials)

    def _json(self, rows, native: str) -> None:
        import json
        doc = {"profile": self.compiled.name, "mode": self.mode,
               "denials": [r.to_json() for r in rows]}
        _line(json.dumps(doc))

    def _allow_lines(self, denials: list) -> None:
        """The profile change that would allow the denied calls, from ``sbx refine``'s
        planner: by-design denials are left out, and the rules are placed first."""
        from . import refine
        # in complain mode "log" is what enforce mode would deny; otherwise a log rule allowed it
        obs = [d for d in denials if d.arch in ("x86_64", "i386", "x32")
               and (d.action != "log" or self.mode == "complain")]
        with_args = {(o.arch, o.nr) for o in obs if o.args is not None}
        obs = [o for o in obs if o.args is not None or (o.arch, o.nr) not in with_args]
        plan = refine.plan_changes(self._policy(), obs)
        if plan.changes:
            _line("  to allow them, put these first in the profile's rules (`sbx refine` writes them):")
            _line("\n".join(refine.render_rules(plan, 4, detail=False)))
        for skip in plan.skipped:
            _line(f"  {skip.name}: not suggested: {skip.reason}")
        if any(s.needs_broad for s in plan.skipped):
            _line("  (`sbx refine --broad` writes rules that override deliberate denials, each "
                  "marked as such)")

    def _write_json_lines(self, denials: list) -> None:
        """One JSON object per denial; first, when Landlock refused something, the
        run's context (``denials.RunContext``: what ``sbx refine`` expands the
        profile's paths with)."""
        import json
        if self._out_fd < 0:
            return
        fd, self._out_fd = self._out_fd, -1
        try:
            # the command may have written the same file meanwhile: only sbx's lines stay
            # (not in sbx's own stdout or stderr redirected to a file: the caller's)
            own = self.output in _STREAMS or self.output.startswith(_FD_DIRS)
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and not own:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                try:
                    now = os.lstat(self.output)
                except OSError:
                    now = None
                if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    _say(f"{self.output} was moved or replaced while the command ran (it may "
                         "write that directory): what is there now is not sbx's record; the "
                         "record went to the file sbx opened, wherever it is now")
            with open(fd, "w", encoding="utf-8") as fh:
                if any(d.landlock for d in denials):
                    from .denials import RunContext
                    c = self.context
                    ctx = RunContext.of_run(self.compiled.spec, c.get("env", {}), c.get("exe"),
                                            c.get("cache_dir"))
                    fh.write(json.dumps(ctx.to_json()) + "\n")
                for d in denials:
                    fh.write(json.dumps(d.to_json()) + "\n")
        except OSError as err:
            _say(f"cannot write {self.output}: {err.strerror}")


# what the caller's own descriptors are called: followed, whatever they are links to
_STREAMS = ("/dev/stdout", "/dev/stderr")
_FD_DIRS = ("/dev/fd/", "/proc/self/fd/")


def open_output(path: str) -> int:
    """The --output file, opened (and emptied) before the command runs; LaunchError
    (125) if it cannot be.

    Opened now, not after the command exited: the command may write the
    directory it is in, and sbx, unconfined, must not write through a symbolic
    link the command left there (at ~/.ssh/rc, a root-owned script, a disk).
    No link is followed in any component of the path (an earlier confined run
    may have left one, at the file or at a directory on the way), except the
    names of sbx's own descriptors (/dev/stdout, /dev/fd/N). A block device is
    refused; a FIFO without a reader too, rather than waiting before the run."""
    from .errors import LaunchError
    from .kernel.libc import open_no_links
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        own = path in _STREAMS or path.startswith(_FD_DIRS)
        if own:
            fd = os.open(path, flags & ~os.O_CREAT)
        else:
            try:
                fd = open_no_links(path, flags)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise OSError(err.errno, "a symbolic link on the way, which sbx does not follow "
                                             "(a confined command may have left it); give the "
                                             "real path") from err
                raise
        try:
            st = os.fstat(fd)
            if stat.S_ISBLK(st.st_mode):
                raise OSError(errno.EINVAL, "a block device")
            if stat.S_ISREG(st.st_mode) and not own:      # a stream redirected to a file: append
                os.ftruncate(fd, 0)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd
    except OSError as err:
        why = "a FIFO no one reads" if err.errno == errno.ENXIO else err.strerror
        raise LaunchError(f"cannot write {path}: {why}; the command was not run") from err


def _args_text(row, native: str) -> str:
    """The arguments the syscall takes (registers beyond them are noise), at most 4."""
    from bpf_filters.syscalls.signatures import signature
    if not row.example:
        return "-"
    sig = signature(row.label.split(" ")[0])
    count = len(sig) if sig else 6
    shown = ", ".join(hex(a) for a in row.example[:min(count, 4)])
    return shown + (", ..." if count > 4 else "")

"""Tell the person running ``sbx run`` what the sandbox blocked, in plain words.

Channels: the audit read-log socket (opened before fork, cheaply; parsed only
when something has to be explained) and, with ``--monitor``, the eBPF probe.
Numbers are mapped back to the profile rule that decided them through the
compiler's source map (the policy IR).
"""
from __future__ import annotations

import os
import _signal as signal     # the C module: signal.py's enums cost ~3 ms to import
import sys

from .kernel import seccomp

SIGSYS = signal.SIGSYS


def _say(msg: str) -> None:
    print(f"sbx: {msg}", file=sys.stderr)


class Denial:
    __slots__ = ("arch", "nr", "action", "pid", "comm", "args", "count")

    def __init__(self, arch: str, nr: int, action: str, pid: int, comm: str, args=None, count=1):
        self.arch, self.nr, self.action, self.pid, self.comm = arch, nr, action, pid, comm
        self.args, self.count = args, count


class Reporter:
    def __init__(self, compiled, opts):
        self.compiled, self.opts = compiled, opts
        self.audit_fd = -1
        self.probe = None
        self.pid = None
        self.wants_summary = opts.log or opts.mode == "complain" or opts.monitor
        self._monitor_counters = None      # --monitor: the probe's counters, read after exit
        self._mon_policy = None
        self._listened = True
        self.collect_always = opts.on_denials is not None

    @property
    def needs_go(self) -> bool:
        return self.probe is not None

    def start(self) -> None:
        self.audit_fd = -1
        if os.geteuid() == 0:
            from .kernel.netlink import open_audit_readlog
            try:
                self.audit_fd = open_audit_readlog()
            except OSError:
                pass
        if self.opts.monitor:
            from .monitor import Probe, ProbeUnavailable
            try:
                self.probe = Probe("monitor")
            except ProbeUnavailable as e:
                _say(f"monitor unavailable: {e}; running without it")
        if self.wants_summary and self.audit_fd < 0 and self.probe is None:
            _say("cannot read seccomp audit records (needs root / CAP_AUDIT_READ); "
                 "denials will not be listed")

    def track(self, pid: int) -> None:
        self.pid = pid
        if self.probe is not None:
            self.probe.track_pid(pid)

    def stop(self) -> None:
        if self.audit_fd >= 0:
            os.close(self.audit_fd)
            self.audit_fd = -1
        if self.probe is not None:
            self.probe.close()
            self.probe = None

    # -- after the command exited ------------------------------------------
    def finish(self, pid: int, status: int) -> None:
        self.pid = self.pid or pid
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == SIGSYS
        if not (killed or self.wants_summary or self.collect_always):
            self.stop()
            return
        try:
            denials = self._collect(killed)
            if self.opts.on_denials is not None:
                self.opts.on_denials(denials)
            if killed:
                self._explain_kill(denials)
            if self.wants_summary and not self.opts.quiet:
                self._summary(denials)
        finally:
            self.stop()

    def _collect(self, killed: bool) -> list[Denial]:
        self._listened = self.probe is not None or self.audit_fd >= 0
        if self.probe is not None:
            return self._probe_denials()
        return self._audit_denials()

    def _audit_denials(self) -> list[Denial]:
        out: list[Denial] = []
        if self.audit_fd < 0:
            return out
        from .kernel.audit import AuditReader
        reader = AuditReader(pids=[self.pid], netlink_fd=self.audit_fd, source="netlink")
        self.audit_fd = -1
        try:
            reader.open()
            records = reader.sync(timeout=2.0)
        finally:
            reader.close()
        names = {0x80000000: "kill-process", 0: "kill-thread", 0x30000: "trap", 0x50000: "errno",
                 0x7FC00000: "notify", 0x7FFC0000: "log", 0x7FF00000: "trace"}
        for r in records:
            out.append(Denial(r.arch_name, r.nr & ~0x40000000 if r.arch_name == "x32" else r.nr,
                              names.get(r.action, hex(r.action)), r.pid, r.comm))
        return out

    # -- the eBPF monitor (--monitor) ---------------------------------------
    def _probe_denials(self) -> list[Denial]:
        """Every event the probe delivered, in order, then one args-less Denial
        per (arch, nr, action) for the events a full ring buffer dropped: the
        counts add up to the probe's lossless in-kernel counters.  (The task
        has exited, so its events are all in the buffer: one non-blocking poll.)"""
        events = self.probe.poll(0)
        counters = self._monitor_counters = self.probe.counters()
        out = [Denial(ev.arch, ev.nr, ev.action, ev.pid, ev.comm, ev.args) for ev in events]
        delivered: dict[tuple, int] = {}
        for ev in events:
            delivered[(ev.arch, ev.nr, ev.action)] = delivered.get((ev.arch, ev.nr, ev.action), 0) + 1
        for (arch, nr, action), n in counters["denials"].items():
            if n > delivered.get((arch, nr, action), 0):
                out.append(Denial(arch, nr, action, self.pid, "", None,
                                  n - delivered.get((arch, nr, action), 0)))
        for d in out:
            if d.action == "kill":          # the probe cannot tell the two kills apart; the policy can
                kind = self._monitor_decision(d.arch, d.nr, d.args).action.kind
                d.action = kind if kind in ("kill-process", "kill-thread") else "kill-process"
        if self.audit_fd >= 0 and (self.opts.log or self.opts.mode == "complain"):
            out += [d for d in self._audit_denials() if d.action == "log"]   # RET_LOG: not denied
        return out

    def _monitor_policy(self):
        if self._mon_policy is None:
            self._mon_policy = self._policy()
        return self._mon_policy

    def _monitor_decision(self, arch: str, nr: int, args):
        from bpf_filters import syscalls
        from bpf_filters.ir import evaluate
        return evaluate(self._monitor_policy(), syscalls.AUDIT_ARCH.get(arch, 0),
                        syscalls.seccomp_nr(arch, nr),
                        tuple(args or (0,) * 6))

    def _policy(self):
        from .policy import load_profile, lower
        return lower(load_profile(self.compiled.path), seccomp.native_arch())

    def _rule_text(self, policy, arch: str, nr: int, args=None) -> str:
        from bpf_filters import syscalls
        from bpf_filters.ir import evaluate
        token = syscalls.AUDIT_ARCH.get(arch, 0)
        dec = evaluate(policy, token, syscalls.seccomp_nr(arch, nr), tuple(args or (0,) * 6))
        if dec.rule is not None and dec.rule.origin is not None:
            o = dec.rule.origin
            return f"{_rel(o.file)}:{o.line} {o.text}"
        o = policy.origins.get(dec.reason)
        where = f"{_rel(o.file)}:{o.line} {o.text}" if o else "built-in"
        return f"{dec.reason} action, {where}"

    def _explain_kill(self, denials: list[Denial]) -> None:
        from bpf_filters import syscalls
        cmd = os.path.basename(self.opts.argv[0])
        mine = [d for d in denials if d.action in ("kill-process", "kill-thread", "trap")
                and d.pid == self.pid] or [d for d in denials if d.action in
                                           ("kill-process", "kill-thread", "trap")]
        if not mine:
            why = "audit records need root" if os.geteuid() else "no audit record arrived"
            _say(f"{cmd} was killed by seccomp (SIGSYS) under profile {self.compiled.name}; "
                 f"the syscall is unknown ({why}); rerun with --monitor to see it")
            return
        d = mine[-1]
        policy = self._policy()
        name = syscalls.name_of(d.arch, d.nr)
        what = "killed" if d.action != "trap" else "stopped by SIGSYS (trap)"
        abi = "" if d.arch == seccomp.native_arch() else f" [{d.arch} ABI]"
        _say(f"{cmd} was {what}: syscall {name or '?'} ({d.nr}){abi} is not allowed by profile "
             f"{self.compiled.name} ({self._rule_text(policy, d.arch, d.nr)})")

    def _summary(self, denials: list[Denial]) -> None:
        from bpf_filters import syscalls
        if self._monitor_counters is not None and denials:
            self._monitor_summary(denials)
            return
        if not denials:
            if self._listened:          # else start() said that denials cannot be listed
                _say(f"no denials recorded under profile {self.compiled.name}")
            return
        policy = self._policy()
        groups: dict[tuple, list[Denial]] = {}
        for d in denials:
            groups.setdefault((d.arch, d.nr, d.action), []).append(d)
        verb = "would have been denied" if self.opts.mode == "complain" else "denied"
        _say(f"{len(denials)} syscall{'s' if len(denials) != 1 else ''} {verb} "
             f"under profile {self.compiled.name}:")
        print(f"  {'SYSCALL':24} {'COUNT':>6}  {'ACTION':13} {'EXAMPLE ARGS':28} RULE", file=sys.stderr)
        allow = []
        for (arch, nr, action), ds in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            name = syscalls.name_of(arch, nr) or f"#{nr}"
            label = f"{name} ({nr})" + ("" if arch == seccomp.native_arch() else f" {arch}")
            ex = next((d.args for d in ds if d.args), None)
            ex_txt = ", ".join(hex(a) for a in ex[:3]) if ex else "-"
            print(f"  {label:24} {len(ds):>6}  {action:13} {ex_txt:28} "
                  f"{self._rule_text(policy, arch, nr, ex)}", file=sys.stderr)
            if name not in allow and not name.startswith("#"):
                allow.append(name)
        if allow:
            print("  to allow them, add to the profile's rules (or run `sbx refine`):", file=sys.stderr)
            print(f"    - allow: [{', '.join(allow)}]", file=sys.stderr)

    def _monitor_summary(self, denials: list[Denial]) -> None:
        """The --monitor table: exact counts (kernel counters), example args
        and deciding rule per (syscall, action), then the rules that would allow them."""
        from .policy.show import action_text
        groups: dict[tuple, list[Denial]] = {}
        for d in denials:
            groups.setdefault((d.arch, d.nr, d.action), []).append(d)
        total = sum(d.count for d in denials)
        dropped = self._monitor_counters["dropped"]
        verb = "would have been denied" if self.opts.mode == "complain" else "denied"
        how = (f"{dropped} of {total} events dropped, example args come from the others"
               if dropped else "every event delivered")
        if any(d.action == "log" for d in denials):
            how += "; 'log' rows from audit records, which carry no args"
        _say(f"{total} syscall{'s' if total != 1 else ''} {verb} under profile {self.compiled.name} "
             f"(counted in the kernel; {how}):")
        print(f"  {'SYSCALL':22} {'COUNT':>7}  {'ACTION':20} {'EXAMPLE ARGS':28} RULE", file=sys.stderr)
        for (arch, nr, action), ds in sorted(groups.items(), key=lambda kv: -sum(d.count for d in kv[1])):
            ex = next((d.args for d in ds if d.args), None)
            dec = self._monitor_decision(arch, nr, ex)
            shown = action_text(dec.action) if dec.action.denies and action != "log" else action
            name = _syscall_name(arch, nr)
            label = f"{name} ({nr})" + ("" if arch == seccomp.native_arch() else f" {arch}")
            print(f"  {label:22} {sum(d.count for d in ds):>7}  {shown:20} {_args_text(name, ex):28} "
                  f"{self._rule_text(self._monitor_policy(), arch, nr, ex)}", file=sys.stderr)
        self._monitor_allow_lines(denials)

    def _monitor_allow_lines(self, denials: list[Denial]) -> None:
        from . import refine
        obs = [refine.Observation(d.arch, d.nr, d.args, d.count) for d in denials
               if d.arch in ("x86_64", "i386", "x32")]
        with_args = {(o.arch, o.nr) for o in obs if o.args is not None}
        obs = [o for o in obs if o.args is not None or (o.arch, o.nr) not in with_args]
        plan = refine.plan_changes(self._monitor_policy(), obs, broad=True)
        if not plan.changes:
            return
        lines = refine.render_rules(plan, 4, detail=False)
        print("  to allow them, put these first in the profile's rules (`sbx refine` writes them; "
              "a rule marked 'overrides' undoes a deliberate denial):", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)


def _syscall_name(arch: str, nr: int) -> str:
    from bpf_filters import syscalls
    return syscalls.name_of(arch, nr) or f"#{nr}"


def _args_text(name: str, args) -> str:
    """The arguments the syscall takes (registers beyond them are noise), at most 4."""
    from bpf_filters.syscalls.signatures import signature
    if not args:
        return "-"
    sig = signature(name)
    count = len(sig) if sig else 6
    shown = ", ".join(hex(a) for a in args[:min(count, 4)])
    return shown + (", ..." if count > 4 else "")


def _rel(path: str) -> str:
    from .paths import display_path
    return display_path(path)

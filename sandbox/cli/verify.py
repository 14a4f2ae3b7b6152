"""``sbx verify``: run a command under a profile and fail if anything was denied (a CI gate).

A command that ends by itself is judged by its denials and its exit status;
``--timeout`` makes running out of time a failure (124); ``--duration`` is the
service mode: a server runs that long, is stopped (SIGTERM, then SIGKILL) and
is judged by its denials alone. Denials are read from the audit records of a
fresh audit session that the whole process tree inherits (root).

What the command leaves running when it exits (a server that daemonizes) is
part of the run: sbx is its child subreaper meanwhile (``kernel.tree``), follows
it until it exits, counts its denials, and stops it with the command at the
deadline; nothing the command started outlives sbx verify's deadline.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import contextmanager

import click

from ..errors import EXIT_TIMEOUT, EXIT_USAGE as EXIT_BAD_INPUT
from ..kernel.tree import GRACE_S
from .common import Seconds, emit_json, follower_of, native, say

EXIT_OK, EXIT_FINDINGS = 0, 1


_LOGGED_NAME = {"errno": "errno", "trap": "trap", "kill-process": "kill_process",
                "kill-thread": "kill_thread", "notify": "user_notif"}


def unobservable(policy) -> list[str]:
    """Denying actions of *policy* that the kernel will not log here (actions_logged)."""
    from ..kernel.audit import actions_logged
    kinds = {policy.default.kind, policy.unknown.kind, policy.bad_arch.kind}
    for ap in policy.arches:
        for rules in ap.rules.values():
            kinds.update(r.action.kind for r in rules)
    try:
        logged = actions_logged()
    except OSError:
        return sorted(k for k in kinds if k in _LOGGED_NAME)
    return sorted(k for k in kinds if k in _LOGGED_NAME and _LOGGED_NAME[k] not in logged)


def _audit_readable() -> bool:
    from ..kernel.netlink import open_audit_readlog
    try:
        os.close(open_audit_readlog())
    except OSError:
        return False
    return True


class _TreeAudit:
    """Seccomp audit records of the command's whole process tree.

    sbx verify takes a fresh audit session before it starts the command; every
    descendant inherits it, so a denial is attributed even when the process that
    made it has exited or been reparented (``launcher.run``'s own collection
    follows the parent chain in /proc, which loses such processes).
    """

    def __init__(self):
        from ..kernel.audit import AuditReader, AuditUnavailable, new_audit_session
        self.reader = None
        try:
            ses = new_audit_session()
            reader = AuditReader(sessions=[ses], source="netlink")
            reader.open()
            self.reader = reader
        except AuditUnavailable as e:
            say(f"no audit session ({e}): denials of processes that exit before their parent "
                 "may be missed")

    def watch(self, pid: int) -> None:
        """The command's pid: its Landlock domain's records name it, not the session."""
        if self.reader is not None:
            self.reader.watch(pid)

    def denials(self) -> list:
        from ..denials import Denial
        from ..kernel.audit import LandlockRecord
        return [Denial.from_landlock(r) if isinstance(r, LandlockRecord) else Denial.from_audit(r)
                for r in self.reader.sync(timeout=5.0)]

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


class _Deadline:
    """--timeout and --duration: SIGTERM to the command when time is up, SIGKILL after a
    grace period (``expired`` says it fired)."""

    def __init__(self, seconds: float | None):
        self.seconds, self.pid, self.expired, self.stage = seconds, None, False, 0
        self.old = None

    def _fire(self, _signum, _frame):
        self.expired = True
        if self.pid is None:                  # not started yet: look again shortly
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            return
        sig = signal.SIGTERM if self.stage == 0 else signal.SIGKILL
        self.stage += 1
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGTERM:
            signal.setitimer(signal.ITIMER_REAL, GRACE_S)

    @contextmanager
    def armed(self):
        if not self.seconds:
            yield self
            return
        self.old = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        try:
            yield self
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)

    def started(self, pid: int) -> None:
        """RunOptions.on_spawn: the command's pid, for the timer."""
        self.pid = pid




@click.command(context_settings={"allow_interspersed_args": False},
               epilog="Exit status: 0 the command succeeded (or, with --duration, ran until "
                      "stopped) and nothing was denied; 1 at least one syscall was denied (listed; "
                      "errno(ENOSYS) answers the profile gives so that callers fall back, such as "
                      "clone3, are listed but count only with --strict); the command's own status if "
                      "it failed without denials; 124 timed out (--timeout); 2 bad input, or "
                      "denials cannot be observed.")
@click.option("--profile", "-p", required=True, help="profile name (yours, /etc/sbx/profiles, built-in) or YAML file")
@click.option("--timeout", type=Seconds(positive=True), metavar="S",
              help="stop the command after S seconds and fail (124): it should have ended")
@click.option("--duration", type=Seconds(positive=True), metavar="S",
              help="service mode: stop the command after S seconds (SIGTERM, then SIGKILL) and "
                   "judge it by its denials only; an earlier exit is judged as usual")
@click.option("--allow-unobserved", is_flag=True,
              help="run even where denials cannot be observed (not root): only the exit status counts")
@click.option("--strict", is_flag=True,
              help="also fail on errno(ENOSYS) denials the profile makes for callers to fall back "
                   "(clone3, io_uring, ...)")
@click.option("--json", "as_json", is_flag=True,
              help="print the verdict as one JSON object on stdout (the text report stays on stderr)")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def verify(profile, timeout, duration, allow_unobserved, strict, as_json, command):
    """Run COMMAND under PROFILE and fail if any syscall was denied (a CI gate).

    Every denial is logged (SECCOMP_FILTER_FLAG_LOG) and read from the audit
    netlink socket, which needs root. What the command leaves running (a
    daemon, a background job) is followed until it exits and judged with it,
    and stopped with it at the --timeout or --duration deadline. Examples:
    sbx verify --profile web -- ./run-tests.sh;
    sbx verify --profile web --duration 10 -- nginx -g 'daemon off;'
    """
    from ..errors import LaunchError
    from ..launcher import RunOptions, run
    from ..policy import load_profile, lower
    if timeout and duration:
        raise click.UsageError("give --timeout (running out of time fails) or --duration "
                               "(a service stopped on time passes), not both")
    policy = lower(load_profile(profile), native())
    observed = os.geteuid() == 0 and _audit_readable()
    missing = unobservable(policy) if observed else []
    if not observed or missing:
        why = ("denials cannot be observed: reading seccomp audit records needs root "
               "(and the initial network namespace)" if not observed
               else f"denials by {', '.join(missing)} cannot be observed: not in "
                    "/proc/sys/kernel/seccomp/actions_logged")
        if not allow_unobserved:
            say(f"{why}; run as root or pass --allow-unobserved")
            sys.exit(EXIT_BAD_INPUT)
        say(f"{why}; only the command's exit status is checked")
    from ..kernel import tree as procs
    from ..kernel.audit import AuditUnavailable
    child_denials: list = []
    tree = _TreeAudit() if observed else None
    seconds = timeout or duration
    deadline = _Deadline(seconds)
    # what the command leaves running (a server that daemonizes) is part of the run:
    # followed, judged by its denials, and stopped with the command at the deadline
    follower = follower_of(command, seconds, "--timeout" if timeout else "--duration")
    tell_left = follower.on_left                 # "it daemonized": not when the deadline stopped it
    follower.on_left = lambda pids: None if deadline.expired else tell_left(pids)

    def started(pid: int) -> None:
        deadline.started(pid)
        follower.started(pid, before)
        if tree is not None:
            tree.watch(pid)
    try:
        with procs.Subreaper():                  # orphans come to sbx, to be followed and reaped
            before = procs.children()
            ends = time.monotonic() + seconds if seconds else None
            with deadline.armed():
                status = run(RunOptions(list(command), profile=profile, log=observed, quiet=True,
                                        keep_leftovers=True,
                                        on_denials=child_denials.extend, on_spawn=started))
            if follower.command is not None:
                follower.deadline = ends
                procs.follow(follower.command, follower)
        denials = tree.denials() if tree is not None and tree.reader is not None else child_denials
    except LaunchError as e:
        say(str(e))
        sys.exit(e.status)
    except AuditUnavailable as e:                          # audit channel failed mid-run
        say(f"could not read the audit records: {e}")
        sys.exit(EXIT_BAD_INPUT)
    finally:
        if tree is not None:
            tree.close()
    ran = Run(command, profile, status, deadline.expired or follower.stopped, seconds,
              service=bool(duration), observed=observed)
    verdict = judge_run(ran, policy, denials, strict)
    report(verdict)
    if as_json:
        emit_json(verdict.to_json())
    sys.exit(verdict.exit_code)


class Run:
    """How the command ended: its status, whether the clock stopped it, in which mode."""

    def __init__(self, command, profile: str, status: int, expired: bool, seconds: float | None,
                 service: bool, observed: bool):
        self.command, self.profile, self.status = list(command), profile, status
        self.expired, self.seconds, self.service, self.observed = expired, seconds, service, observed


class Verdict:
    """What sbx verify concludes: the exit code, the outcome word and its reasons."""

    def __init__(self, ran: Run, failing, fallbacks, refused, outcome: str, exit_code: int):
        self.ran, self.failing, self.fallbacks, self.refused = ran, failing, fallbacks, refused
        self.outcome, self.exit_code = outcome, exit_code

    def to_json(self) -> dict:
        ran = self.ran
        return {"outcome": self.outcome, "exit_code": self.exit_code, "command": ran.command,
                "profile": ran.profile, "status": ran.status, "observed": ran.observed,
                "mode": "service" if ran.service else "command",
                "stopped_after": ran.seconds if ran.expired else None,
                "denials": [r.to_json() for r in self.failing],
                "fallbacks": [r.to_json() for r in self.fallbacks],
                "refused": [{"blocked_by": list(b), "target": t, "count": n}
                            for b, t, n in self.refused]}


def judge_run(ran: Run, policy, denials, strict: bool) -> Verdict:
    """The verdict: denials fail (1); then running out of --timeout (124); then a
    failing status, unless --duration stopped a service as planned."""
    from ..denials import judge, landlock_groups, summarize
    failing, fallbacks = judge(summarize(denials, policy, native()), strict)
    refused = landlock_groups(denials)
    if failing or refused:
        return Verdict(ran, failing, fallbacks, refused, "denied", EXIT_FINDINGS)
    if ran.expired and not ran.service:
        return Verdict(ran, failing, fallbacks, refused, "timeout", EXIT_TIMEOUT)
    if ran.status != 0 and not (ran.expired and ran.service):
        return Verdict(ran, failing, fallbacks, refused, "failed", ran.status)
    return Verdict(ran, failing, fallbacks, refused, "ok", EXIT_OK)


def _print_rows(rows) -> None:
    click.echo(f"  {'SYSCALL':28} {'COUNT':>6}  {'ACTION':13} RULE", err=True)
    for r in rows:
        click.echo(f"  {r.label:28} {r.count:>6}  {r.action:13} {r.rule}", err=True)


def report(v: Verdict) -> None:
    """The verdict in words, on stderr."""
    ran = v.ran
    cmd, profile = os.path.basename(ran.command[0]), ran.profile
    ended = (f"stopped after {ran.seconds:g} s as asked" if ran.expired and ran.service
             else f"{cmd} exited with status {ran.status}")
    if v.refused:
        n = sum(k for _b, _t, k in v.refused)
        say(f"FAIL: {n} file, port or process access{'es' if n != 1 else ''} refused by the "
            f"profile's Landlock rules ({ended}):")
        for blockers, target, k in v.refused:
            click.echo(f"  {','.join(blockers):28} {k:>6}  {target or '-'}", err=True)
    if v.fallbacks:
        n = sum(r.count for r in v.fallbacks)
        say(f"{n} call{'s' if n != 1 else ''} answered ENOSYS by design (the caller falls back; "
            "--strict counts them):")
        _print_rows(v.fallbacks)
    if v.failing:
        total = sum(r.count for r in v.failing)
        say(f"FAIL: {total} denied syscall{'s' if total != 1 else ''} under profile {profile} "
            f"({ended}):")
        _print_rows(v.failing)
    elif v.outcome == "timeout":
        say(f"FAIL: {cmd} timed out after {ran.seconds:g} s (no denials; for a service that "
            "runs until stopped, use --duration)")
    elif v.outcome == "failed":
        say(f"FAIL: {cmd} exited with status {ran.status} (no denials)")
    elif v.outcome == "ok":
        how = (f"ran {ran.seconds:g} s and was stopped" if ran.expired and ran.service
               else "succeeded")
        if not ran.observed:
            say(f"OK: {cmd} {how} under profile {profile} (denials were not observed)")
        else:
            say(f"OK: {cmd} {how} with no denials under profile {profile}")

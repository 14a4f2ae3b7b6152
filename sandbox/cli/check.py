"""``sbx check`` (hardening lint and, with --baseline, the drift gate: text, JSON, SARIF) and
``sbx verify`` (run a command as a CI gate)."""
from __future__ import annotations

import json
import os
import signal
import sys
from contextlib import contextmanager

import click

from ..policy.diagnostics import Diagnostic, PolicyError, render_list
from .common import EXIT_BAD_INPUT, Seconds, emit, native, say, shown, shown_sources, version

EXIT_OK, EXIT_FINDINGS = 0, 1
EXIT_TIMEOUT = 124
KILL_GRACE_S = 3.0


# --------------------------------------------------------------------------- sbx check







def is_group_file(ref: str) -> bool:
    """A syscall group definitions file (profiles/groups.yaml, or a copy of it), not a profile.

    Recognised by content, not by path: after a plain ``pip install .`` the
    built-in groups live in the installed package while ``sbx check
    profiles/*.yaml`` names the checkout's copy.
    """
    import yaml
    if not os.path.isfile(ref):
        return False
    try:
        with open(ref, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return False             # the profile loader reports it with its position
    return isinstance(doc, dict) and "groups" in doc and not {"name", "rules", "default", "extends"} & set(doc)


def _load(ref: str, native: str, errors: list, err_out: list[str]):
    """(profile, policy) or None after recording the PolicyError's diagnostics."""
    from ..policy import load_profile, lower
    try:
        prof = load_profile(ref)
        return prof, lower(prof, native)
    except PolicyError as e:
        sources = shown_sources(e.sources)
        for d in e.diagnostics:
            if d.severity == "error":
                errors.append((ref, d))
        err_out.append(render_list([shown(d) for d in e.diagnostics], sources) +
                       f"\nsbx check: {ref}: the profile does not load")
        return None


def _text_report(reports, fail_on: str) -> str:
    from ..checks import SEVERITIES, at_or_above
    out = []
    for rep in reports:
        sources = shown_sources(rep.profile.sources)
        for f in rep.findings:
            out.append(shown(f).format(sources))
        c = rep.counts()
        counts = ", ".join(f"{c[s]} {s}{'s' if c[s] != 1 and s != 'info' else ''}" for s in SEVERITIES)
        failing = len(at_or_above(rep.findings, fail_on))
        verdict = f"; {failing} at or above --fail-on {fail_on}" if failing else ""
        out.append(f"{rep.profile.name}: score {rep.score}/100 ({counts}){verdict}")
        if rep.comparison is not None:
            out.append(_comparison_text(rep.comparison))
        out.append("")
    return "\n".join(out)


def _comparison_text(cmp: dict) -> str:
    other = cmp["against"]
    lines = [f"  compared with {other} ({cmp['against_path']}): score {cmp['score']} vs "
             f"{cmp['against_score']}"]
    for key, label in (("allowed_here_denied_there", f"allows what {other} denies"),
                       ("denied_here_allowed_there", f"denies what {other} allows"),
                       ("unconditional_here_conditional_there", f"allows for any argument what {other} filters"),
                       ("conditional_here_unconditional_there", f"filters what {other} allows for any argument"),
                       ("findings_only_here", "findings only here"),
                       ("findings_only_there", f"findings only in {other}")):
        items = cmp[key]
        lines.append(f"  {label} ({len(items)}): {', '.join(items) if items else '-'}")
    return "\n".join(lines)


@click.command(epilog="Exit status: 0 no finding at or above --fail-on; 1 findings at or above "
                      "--fail-on; 2 bad input (a profile that does not load; its errors are "
                      "printed as file:line:col diagnostics).")
@click.argument("profiles", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text",
              show_default=True, help="sarif: SARIF 2.1.0 for GitHub code scanning")
@click.option("--fail-on", type=click.Choice(["error", "warning", "note", "never"]), default="error",
              show_default=True, help="lowest severity that makes the exit status 1")
@click.option("--against", metavar="OTHER", help="also compare with this profile (name or file)")
@click.option("--baseline", "baseline", metavar="OLD",
              help="drift gate: also report what each profile decides differently from OLD "
                   "(SBX140 widened: an error; SBX141 narrowed: info)")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="write the report here instead of stdout")
def check(profiles, fmt, fail_on, against, baseline, output):
    """Lint PROFILE... for hardening problems, with stable rule ids (SBX101...) and a score.

    Each finding points at the rule (file:line:col) that allows the risky call.
    Severities: error (the sandbox is escapable or meaningless), warning (risky),
    note (style), info (expected layout, never fails). The rules are listed in
    docs/checks.md.
    """
    from .. import checks
    from ..sarif import to_json, to_sarif
    host = native()
    errors: list[tuple[str, Diagnostic]] = []
    err_out: list[str] = []
    other = None
    if against:
        loaded = _load(against, host, errors, err_out)
        other = checks.check_profile(loaded[0], host, loaded[1]) if loaded else None
    old = _load(baseline, host, errors, err_out) if baseline else None
    reports = []
    for ref in profiles:
        if is_group_file(ref):
            from ..policy import builtin_dir
            click.echo(f"sbx check: {ref}: syscall group definitions, not a profile; skipped (profiles "
                       f"use the groups in {builtin_dir() / 'groups.yaml'})", err=True)
            continue
        loaded = _load(ref, host, errors, err_out)
        if loaded is not None:
            rep = checks.check_profile(loaded[0], host, loaded[1])
            if other is not None:
                rep.comparison = checks.compare(rep, other)
            if old is not None:
                rep.findings += _drift(old[0], loaded[0], baseline, host)
            reports.append(rep)
    failing = [f for r in reports for f in checks.at_or_above(r.findings, fail_on)]
    code = EXIT_BAD_INPUT if err_out else EXIT_FINDINGS if failing else EXIT_OK
    if fmt == "sarif":
        text = json.dumps(to_sarif(reports, errors, version()), indent=2) + "\n"
    elif fmt == "json":
        text = json.dumps(to_json(reports, errors, fail_on, code), indent=2) + "\n"
    else:
        text = _text_report(reports, fail_on)
    emit(text, output)
    for e in err_out:
        click.echo(e, err=True)
    sys.exit(code)


def _drift(old_prof, new_prof, old_ref: str, native: str) -> list:
    """The drift findings of *new_prof* against *old_prof* (sandbox.drift); not scored."""
    from .. import drift
    from ..diff import diff_profiles
    from ..paths import display_path
    label = display_path(old_ref) if os.path.exists(old_ref) else old_ref
    return drift.findings(diff_profiles(old_prof, new_prof, native), label)




# --------------------------------------------------------------------------- sbx verify

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
    """--timeout: SIGTERM to the command when time is up, SIGKILL after a grace period."""

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
            signal.setitimer(signal.ITIMER_REAL, KILL_GRACE_S)

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




@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
               epilog="Exit status: 0 the command succeeded and nothing was denied; 1 at least one "
                      "syscall was denied (listed; errno(ENOSYS) answers the profile gives so that "
                      "callers fall back, such as clone3, are listed but count only with --strict); "
                      "the command's own status if it failed without denials; 124 timed out; "
                      "2 bad input, or denials cannot be observed.")
@click.option("--profile", "-p", required=True, help="built-in name or YAML file")
@click.option("--timeout", type=Seconds(), metavar="S", help="stop the command after S seconds")
@click.option("--allow-unobserved", is_flag=True,
              help="run even where denials cannot be observed (not root): only the exit status counts")
@click.option("--strict", is_flag=True,
              help="also fail on errno(ENOSYS) denials the profile makes for callers to fall back "
                   "(clone3, io_uring, ...)")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def verify(profile, timeout, allow_unobserved, strict, command):
    """Run COMMAND under PROFILE and fail if any syscall was denied (a CI gate).

    Every denial is logged (SECCOMP_FILTER_FLAG_LOG) and read from the audit
    netlink socket, which needs root. Example: sbx verify --profile web -- ./run-tests.sh
    """
    from ..errors import LaunchError
    from ..launcher import RunOptions, run
    from ..policy import load_profile, lower
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
    from ..kernel.audit import AuditUnavailable
    child_denials: list = []
    tree = _TreeAudit() if observed else None
    deadline = _Deadline(timeout)
    try:
        with deadline.armed():
            status = run(RunOptions(list(command), profile=profile, log=observed, quiet=True,
                                    on_denials=child_denials.extend,
                                    on_spawn=lambda pid: (deadline.started(pid), tree and tree.watch(pid))))
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
    sys.exit(_verdict(command, profile, policy, denials, status, deadline.expired, timeout, observed,
                      strict))


def _print_rows(rows) -> None:
    click.echo(f"  {'SYSCALL':28} {'COUNT':>6}  {'ACTION':13} RULE", err=True)
    for r in rows:
        click.echo(f"  {r.label:28} {r.count:>6}  {r.action:13} {r.rule}", err=True)


def _verdict(command, profile, policy, denials, status, expired, timeout, observed, strict) -> int:
    from ..denials import judge, landlock_groups, summarize
    cmd = os.path.basename(command[0])
    failing, fallbacks = judge(summarize(denials, policy, native()), strict)
    refused = landlock_groups(denials)
    if refused:
        n = sum(k for _b, _t, k in refused)
        say(f"FAIL: {n} file, port or process access{'es' if n != 1 else ''} refused by the "
             f"profile's Landlock rules ({cmd} exited with status {status}):")
        for blockers, target, k in refused:
            click.echo(f"  {','.join(blockers):28} {k:>6}  {target or '-'}", err=True)
    if fallbacks:
        n = sum(r.count for r in fallbacks)
        say(f"{n} call{'s' if n != 1 else ''} answered ENOSYS by design (the caller falls back; "
             "--strict counts them):")
        _print_rows(fallbacks)
    if failing:
        total = sum(r.count for r in failing)
        say(f"FAIL: {total} denied syscall{'s' if total != 1 else ''} under profile {profile} "
             f"({cmd} exited with status {status}):")
        _print_rows(failing)
        return EXIT_FINDINGS
    if refused:
        return EXIT_FINDINGS
    if expired:
        say(f"FAIL: {cmd} timed out after {timeout:g} s (no denials)")
        return EXIT_TIMEOUT
    if status != 0:
        say(f"FAIL: {cmd} exited with status {status} (no denials)")
        return status
    if not observed:
        say(f"OK: {cmd} succeeded under profile {profile} (denials were not observed)")
    else:
        say(f"OK: {cmd} succeeded with no denials under profile {profile}")
    return EXIT_OK

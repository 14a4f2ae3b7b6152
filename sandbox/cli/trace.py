"""``sbx trace``: the command line over ``sandbox.trace`` (record, merge, write, summarize, verify).

Besides the click command, the two steps that run after the profile is
written live here: counting what a profile allows (for the summary line)
and re-running the command under it with every denial audited (--verify).
"""
from __future__ import annotations

import os
import sys

import click


from .. import trace as tr
from ..paths import display_path
from .common import OutputPath, Seconds, cannot_write, emit_profile, follower_of, is_stream, processes


def _say(message: str) -> None:
    click.echo(f"sbx: {message}", err=True)


def _record(command: list[str], backend: str, native: str, record_to: str | None = None,
            duration: float | None = None) -> tr.Observed:
    import time
    chosen, why = tr.choose_backend(backend)
    _say(f"tracing with {tr.BACKEND_TEXT[chosen]}" + ("" if chosen == "ebpf" else f" ({why})"))
    started = time.time()
    follower = follower_of(command, duration, "--duration", _say)
    rec = tr.record(command, chosen, follower=follower, duration=duration)
    if record_to:
        _write_recording(record_to, rec, started, native)
    from ..errors import wait_status_code as exit_code
    status = exit_code(rec.exit_status)
    if status:
        _say(f"note: {command[0]} exited with status {status}; the profile covers what it did")
    obs = tr.observe(rec, native)
    if follower.left:
        n = len(follower.left)
        obs.notes.append(f"{os.path.basename(command[0])} left {processes(follower.left).split(' (')[0]} "
                         f"running; {'they were' if n > 1 else 'it was'} traced until "
                         + ("--duration stopped " + ("them" if n > 1 else "it") if follower.stopped
                            else ("they" if n > 1 else "it") + " exited"))
    elif follower.stopped:
        obs.notes.append(f"traced for {duration:g} s (--duration), then stopped")
    _say(f"recorded {sum(obs.calls.values())} calls of {len(obs.calls)} syscalls "
         f"in {rec.seconds:.2f} s")
    return obs


def _write_recording(path: str, rec: tr.Recording, started: float, native: str) -> None:
    """sbx trace --record: the run's raw recording with this host's provenance."""
    from .. import recording
    from ..errors import wait_status_code
    from ..trace.files import generalise
    prov = recording.host_provenance(rec.argv, rec.backend, started, rec.seconds,
                                     wait_status_code(rec.exit_status), rec.lost, native)
    # the run's filesystem: and network: sections, as sbx trace writes them (with the
    # profile's variables, so that they mean the same on another host)
    files, net = generalise(rec.files, rec.places) if rec.files is not None and \
        rec.places is not None else (None, None)
    try:
        recording.write_recording(path, prov, rec.calls, rec.arg_values, files, net)
    except OSError as err:
        raise tr.TraceError(f"cannot write {path}: {err.strerror}") from err
    what = f"{len(rec.calls)} syscalls" + ("" if files is None else ", files and ports")
    _say(f"recorded to {display_path(path)} ({what}, host {prov.host}, Linux {prov.kernel}, "
         f"{prov.libc})")


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("-o", "--output", type=OutputPath(dir_okay=False),
              help="the profile to write (YAML)")
@click.option("--record", "record_to", type=click.Path(dir_okay=False), metavar="OUT.jsonl",
              help="also write the raw recording, with this host's provenance (for sbx profile "
                   "build)")
@click.option("--baseline", metavar="MAJOR.MINOR",
              help="the profile's baseline (default: the running kernel's release)")
@click.option("--backend", type=click.Choice(tr.BACKENDS), default="auto", show_default=True,
              help="ebpf: tracepoints (root); notify: seccomp user notification (any user)")
@click.option("--merge", "merges", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="an earlier sbx trace profile to include (repeatable)")
@click.option("--extends", "base", metavar="BASE",
              help="write only what BASE (a profile name or YAML file) does not allow")
@click.option("--name", help="the profile's name (default: trace-COMMAND)")
@click.option("--duration", type=Seconds(positive=True), metavar="S",
              help="stop COMMAND and what it left running after S seconds (a service); "
                   "without it, sbx trace waits until every process has exited")
@click.option("--verify", is_flag=True,
              help="run COMMAND again under the new profile and fail on any denial (root)")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def trace(output, record_to, baseline, backend, merges, base, name, duration, verify, command):
    """Record what COMMAND does and write the tightest profile that lets it run.

    Example: sbx trace -o git.yaml -- git status
    (or --record git.jsonl: the raw recording, to build one profile from many runs
    and hosts with sbx profile build)
    """
    from ..kernel.seccomp import native_arch
    from ..policy import load_profile
    command = list(command)
    if not command and not merges:
        raise click.UsageError("give a COMMAND to trace, or --merge profiles to combine")
    if verify and not command:
        raise click.UsageError("--verify needs a COMMAND to run")
    if not output and not record_to:
        raise click.UsageError("give -o PROFILE.yaml, --record OUT.jsonl, or both")
    if record_to and not command:
        raise click.UsageError("--record needs a COMMAND to trace")
    if duration and not command:
        raise click.UsageError("--duration needs a COMMAND to trace")
    if verify and (not output or is_stream(output)):
        raise click.UsageError("--verify needs -o PROFILE.yaml (a file it can run under)")
    native = native_arch()
    try:
        if verify and os.geteuid() != 0:
            raise tr.TraceError("--verify needs root: seccomp denials are read from audit records", 2)
        for target in (output, record_to):
            problem = cannot_write(target) if target else None
            if problem:
                raise tr.TraceError(problem, 2)
        previous = [load_profile(os.path.abspath(m)) for m in merges]
        base_prof = load_profile(base) if base else None
        parts = [tr.observed_from_profile(p, native) for p in previous]
        chosen_baseline, baseline_note = tr.choose_baseline(bool(command), previous, baseline)
        if command:
            parts.append(_record(command, backend, native, record_to, duration))
        if not output:
            return
        obs = tr.merge(parts)
        for warning in obs.warnings:
            _say(f"warning: {warning}")
        title = name or (previous[0].name if previous else tr.default_name(command))
        text = tr.write_profile(obs, title, native, base_prof,
                                tr.base_ref(base, output) if base else None, chosen_baseline,
                                baseline_note)
        n, m = emit_profile(text, output, native), tr.count_allowed("default", native)
        _say(f"wrote {display_path(output)}: {n} syscalls allowed (default allows {m})")
        if verify:
            sys.exit(_verify(command, output, native))
    except tr.TraceError as err:
        _say(f"error: {err}")
        sys.exit(err.status)


def _verify(command: list[str], output: str, native: str) -> int:
    """The same verdict as ``sbx verify``: errno(ENOSYS) answered by a rule of the
    profile is a fallback by design, every other denial fails."""
    from ..denials import judge, landlock_groups, summarize
    from ..policy import load_profile, lower
    _say(f"verifying: running {command[0]} under {display_path(output)}")
    code, denials = tr.verify_profile(command, os.path.abspath(output))
    failing, fallbacks = judge(summarize(denials, lower(load_profile(os.path.abspath(output)), native),
                                         native))
    refused = landlock_groups(denials)
    if refused:
        _say(f"verify: {sum(k for _b, _t, k in refused)} accesses refused by the generated "
             "profile's file and port rules:")
        for blockers, target, k in refused:
            click.echo(f"  {','.join(blockers)}: {k} x {target or '-'}", err=True)
        return 1
    by_design = sum(r.count for r in fallbacks)
    extra = (f" (and {by_design} answered ENOSYS by design: "
             f"{', '.join(r.label for r in fallbacks)})" if by_design else "")
    if failing:
        _say(f"verify: {sum(r.count for r in failing)} denials under the generated profile{extra}:")
        for r in failing:
            click.echo(f"  {r.label}: {r.count} x {r.action} ({r.rule})", err=True)
        return 1
    _say(f"verify: 0 denials{extra}; {command[0]} exited with status {code}")
    return code

"""The command line of a profile's life: ``sbx diff`` (semantic diff of two profiles) and
``sbx profile build`` (one profile from recordings of many runs and hosts)."""
from __future__ import annotations

import json
import os
import sys

import click

from .common import ARCH_CHOICES, EXIT_BAD_INPUT, OutputPath, emit, label, native, say, version

EXIT_SAME, EXIT_DIFFERENT = 0, 1










@click.command(epilog="Exit status: 0 both profiles decide every syscall alike and their other "
                      "layers are written alike; 1 they differ; 2 bad input (a profile that does "
                      "not load, printed as file:line:col diagnostics).")
@click.argument("old")
@click.argument("new")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text",
              show_default=True, help="sarif: a result per change (SBX140 widened ... SBX143)")
@click.option("--arch", type=click.Choice(ARCH_CHOICES), default="native", show_default=True,
              help="what 'native' means in both profiles")
@click.option("-o", "--output", type=OutputPath(dir_okay=False, writable=True),
              help="write the diff here instead of stdout")
def diff(old, new, fmt, arch, output):
    """What NEW decides differently from OLD, per ABI, syscall and argument region.

    Computed on the filters' decisions, not on the text: for every syscall
    number of every ABI, the numbers the tables do not name and the other
    architectures, the exact argument regions where OLD and NEW answer
    differently, grouped by syscall, widenings first, with the rules
    (file:line) that decide each side. Capabilities, scope, Landlock,
    filesystem and network sections are compared as written.
    Example: sbx diff default web
    """
    from .. import diff as df
    from ..policy import load_profile
    host = native(arch)
    old_prof, new_prof = load_profile(old), load_profile(new)
    d = df.diff_profiles(old_prof, new_prof, host)
    a, b = label(old), label(new)
    if fmt == "json":
        text = json.dumps(df.to_json(d, a, b), indent=2) + "\n"
    elif fmt == "sarif":
        from .. import drift
        from ..sarif import findings_log
        log = findings_log(drift.findings(d, a), [new_prof.name], version(),
                           {"old": a, "new": b, "native": host,
                            "summary": {k: d.count(k) for k in ("widening", "narrowing", "change")}})
        text = json.dumps(log, indent=2) + "\n"
    else:
        text = df.render_text(d, a, b)
    emit(text, output)
    sys.exit(EXIT_DIFFERENT if d.changes or d.confinement else EXIT_SAME)


# --------------------------------------------------------------------------- sbx profile build

@click.group()
def profile():
    """Make profiles from recordings (sbx profiles lists and shows the built-in ones)."""




def _read_all(paths) -> list:
    """Every recording, or exit 2 after printing every problem of every file."""
    from ..recording import RecordingError, read_recording
    files, failed = [], False
    for path in paths:
        try:
            files.append(read_recording(path))
        except RecordingError as err:
            click.echo(err.render(), err=True)
            failed = True
    if failed:
        sys.exit(EXIT_BAD_INPUT)
    return files


@profile.command("build", epilog="Exit status: 0 the profile was written; 1 --require-converged "
                                 "and learning has not converged (nothing written); 2 bad input "
                                 "(recordings with file:line:col errors, a bad option).")
@click.argument("recordings", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=OutputPath(dir_okay=False),
              help="the profile to write (YAML)")
@click.option("--name", help="the profile's name (default: trace-COMMAND of the first recording)")
@click.option("--extends", "base", metavar="BASE",
              help="write only what BASE (a profile name or YAML file) does not allow")
@click.option("--baseline", metavar="MAJOR.MINOR",
              help="the profile's baseline (default: the oldest kernel among the recordings)")
@click.option("--arch", type=click.Choice(ARCH_CHOICES), default="native", show_default=True,
              help="the ABI to write rules for")
@click.option("--require-converged", is_flag=True,
              help="write nothing and exit 1 unless learning has converged")
def build(recordings, output, name, base, baseline, arch, require_converged):
    """Build one profile from RECORDING.jsonl... (sbx trace --record), from any hosts.

    Every syscall and argument value any recording made is allowed; each rule
    says how many recordings and hosts needed it. Also prints whether learning
    has converged: whether the later half of the recorded runtime still added
    syscalls (docs/lifecycle.md).
    Example: sbx profile build web-1.jsonl web-2.jsonl -o web.yaml
    """
    from bpf_filters.syscalls import BadVersionError
    from .. import fleet
    from .. import trace as tr
    from ..paths import display_path
    from ..policy import build_filter, load_profile
    from ..policy.profile import check_baseline
    host = native(arch)
    if baseline is not None:
        try:
            baseline = check_baseline(baseline)
        except BadVersionError as err:
            raise click.BadParameter(str(err), param_hint="--baseline")
    files = _read_all(recordings)
    conv = fleet.convergence(files, host)
    for line in fleet.summary_lines(conv):
        say(line)
    if require_converged and not conv.converged:
        say(f"not writing {display_path(output)}: learning has not converged "
             "(--require-converged)")
        sys.exit(EXIT_DIFFERENT)
    base_prof = load_profile(base) if base else None
    title = name or tr.default_name(files[0].provenance.command)
    text = fleet.build_profile(files, title, host, base_prof,
                               tr.base_ref(base, output) if base else None, baseline)
    emit(text, output)
    build_filter(load_profile(os.path.abspath(output)), native=host)
    n, m = tr.count_allowed(os.path.abspath(output), host), tr.count_allowed("default", host)
    say(f"wrote {display_path(output)}: {n} syscalls allowed (default allows {m})")

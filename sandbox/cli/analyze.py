"""``sbx analyze``: the command line over ``sandbox.analyze`` (analyse, merge, write, explain).

The profile is written by ``sandbox.trace``'s writer, so a static profile has the
same shape as a traced one and the two merge either way round
(``sbx analyze --merge TRACED.yaml``, ``sbx trace --merge STATIC.yaml``).
"""
from __future__ import annotations

import json
import os
import sys

import click

from .. import trace as tr
from ..paths import display_path
from .common import OutputPath, cannot_write, emit, emit_profile, fail, say


@click.command()
@click.argument("binary")
@click.option("-o", "--output", type=OutputPath(dir_okay=False),
              help="write the profile here (default: print it)")
@click.option("--extends", "base", metavar="BASE",
              help="write only what BASE (a profile name or YAML file) does not allow")
@click.option("--merge", "merges", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="a profile from sbx trace (or sbx analyze) to include (repeatable)")
@click.option("--exec", "execs", multiple=True, metavar="PROGRAM",
              help="also analyse PROGRAM, which BINARY runs (the filter is inherited across "
                   "execve); repeatable")
@click.option("--json", "as_json", is_flag=True, help="print the findings as JSON instead")
@click.option("--explain", "explain_name", metavar="SYSCALL",
              help="print the call chain that makes SYSCALL reachable")
@click.option("--arch", default="native", show_default=True,
              help="the architecture to analyse (x86_64 only so far)")
@click.option("--name", help="the profile's name (default: analyze-BINARY)")
@click.option("--baseline", metavar="MAJOR.MINOR",
              help="the profile's baseline (default: the oldest of the running kernel's release "
                   "and the --merge'd profiles' baselines)")
@click.option("--no-cache", is_flag=True, help="analyse every library again (do not read or "
              "write the per-build-id cache)")
def analyze(binary, output, base, merges, execs, as_json, explain_name, arch, name, baseline,
            no_cache):
    """Derive a profile from BINARY's code and every library it loads, before it ever runs.

    Example: sbx analyze /usr/sbin/nginx -o nginx.yaml --merge nginx-traced.yaml
    """
    if arch not in ("native", "x86_64"):
        fail(f"--arch {arch}: sbx analyze handles x86_64 only so far",
              "record the program instead: sbx trace -o OUT.yaml -- PROGRAM")
    from ..kernel.seccomp import native_arch
    native = native_arch()
    if native != "x86_64":
        fail(f"this machine is {native}: sbx analyze handles x86_64 only so far",
              "record the program instead: sbx trace -o OUT.yaml -- PROGRAM")
    from ..analyze.cache import SummaryCache
    from ..analyze.elf import AnalyzeError
    from ..analyze.program import analyze_program
    from ..analyze.result import explain, observed, to_json
    try:
        analysis = analyze_program(binary, SummaryCache(enabled=not no_cache),
                                   extra_execs=list(execs))
    except AnalyzeError as err:
        fail(str(err), err.hint, err.status)
    if analysis.cache_note:
        say(f"note: {analysis.cache_note}")
    _report(analysis)
    if explain_name:
        lines = explain(analysis, explain_name)
        for line in lines:
            click.echo(line)
        if lines[0].startswith("unknown syscall"):
            sys.exit(2)
        if not output:
            return
    if as_json:
        doc = to_json(analysis, tr.count_allowed("default", native))
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        if output:
            emit(text, output)
        else:
            click.echo(text, nl=False)
        return
    _write_profile(analysis, observed(analysis), output, base, merges, name, native, baseline)


def _report(a) -> None:
    libs = len(a.stats)
    cached = sum(1 for s in a.stats if s.cached)
    n = len(a.all_syscalls())
    say(f"analysed {display_path(a.path)}: {libs} objects ({cached} from the cache) in "
         f"{a.seconds:.2f} s; {n} syscalls reachable"
         + (f"; {len(a.reach.limits)} limits (see the profile header)" if a.reach.limits else ""))


def _write_profile(analysis, obs: tr.Observed, output, base, merges, name, native,
                   baseline) -> None:
    from ..policy import load_profile
    problem = cannot_write(output) if output else None
    if problem:
        fail(problem)
    previous = [load_profile(os.path.abspath(m)) for m in merges]
    parts = [obs] + [tr.observed_from_profile(p, native) for p in previous]
    merged = tr.merge(parts)
    base_prof = load_profile(base) if base else None
    try:
        # the libraries analysed are this machine's, made for the running kernel: the
        # profile serves it and, merged, the oldest kernel a merged profile was made on
        chosen, note = tr.choose_baseline(True, previous, baseline)
    except tr.TraceError as err:
        fail(str(err), status=err.status)
    stem = os.path.basename(analysis.path)
    title = name or "analyze-" + ("".join(c if c.isalnum() or c in "_.-" else "-" for c in stem)
                                  or "program")
    ref = (tr.base_ref(base, output) if output else base) if base else None
    text = tr.write_profile(merged, title, native, base_prof, ref, chosen, note)
    if not output:
        click.echo(text, nl=False)
        return
    n, m = emit_profile(text, output, native), tr.count_allowed("default", native)
    say(f"wrote {display_path(output)}: {n} syscalls allowed (default allows {m})")

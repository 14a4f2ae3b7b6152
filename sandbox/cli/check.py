"""``sbx check``: the hardening lint and, with --baseline, the drift gate (text, JSON, SARIF)."""
from __future__ import annotations

import json
import os
import sys

import click

from ..policy.diagnostics import Diagnostic, PolicyError, render_list
from .common import EXIT_BAD_INPUT, OutputPath, echo_diag, emit, native, shown, shown_sources, version

EXIT_OK, EXIT_FINDINGS = 0, 1


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


def _base_name(prof, file: str) -> str:
    """The name of the base profile read from *file* (its ``name:``), else its file name."""
    for line in prof.sources.get(file, []):
        if line.startswith("name:"):
            return line[5:].split("#")[0].strip().strip("'\"") or os.path.basename(file)
    return os.path.basename(file)


def _text_report(reports, fail_on: str, verbose: bool = False) -> str:
    """Each finding with its source line; info findings located in a base profile
    (inherited, not the checked file's doing) are folded into one line per base
    unless *verbose*."""
    from ..checks import SEVERITIES, at_or_above
    out = []
    for rep in reports:
        sources = shown_sources(rep.profile.sources)
        folded: dict[str, int] = {}
        for f in rep.findings:
            inherited = f.pos is not None and os.path.abspath(f.pos.file) != \
                os.path.abspath(rep.profile.path)
            if f.severity == "info" and inherited and not verbose:
                base = _base_name(rep.profile, f.pos.file)
                folded[base] = folded.get(base, 0) + 1
                continue
            out.append(shown(f).format(sources))
        for base, n in folded.items():
            out.append(f"{n} info finding{'s' if n != 1 else ''} inherited from {base}; "
                       "--verbose to list")
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
@click.option("-o", "--output", type=OutputPath(dir_okay=False, writable=True),
              help="write the report here instead of stdout")
@click.option("-v", "--verbose", is_flag=True,
              help="text: list the info findings inherited from base profiles one by one")
def check(profiles, fmt, fail_on, against, baseline, output, verbose):
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
        text = _text_report(reports, fail_on, verbose)
    if output:
        emit(text, output)
    elif fmt == "text":
        echo_diag(text, err=False, nl=False)
    else:
        click.echo(text, nl=False)
    for e in err_out:
        echo_diag(e)
    sys.exit(code)


def _drift(old_prof, new_prof, old_ref: str, native: str) -> list:
    """The drift findings of *new_prof* against *old_prof* (sandbox.drift); not scored."""
    from .. import drift
    from ..diff import diff_profiles
    from ..paths import display_path
    label = display_path(old_ref) if os.path.exists(old_ref) else old_ref
    return drift.findings(diff_profiles(old_prof, new_prof, native), label)

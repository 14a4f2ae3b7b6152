"""The command line of a profile's life: ``sbx diff`` (semantic diff of two profiles) and
``sbx profile build`` (one profile from recordings of many runs and hosts)."""
from __future__ import annotations

import json
import os
import sys

import click

ARCH_CHOICES = ["native", "x86_64", "i386", "x32", "aarch64"]
EXIT_SAME, EXIT_DIFFERENT, EXIT_BAD_INPUT = 0, 1, 2


def _native(arch: str) -> str:
    from .kernel.seccomp import native_arch
    return native_arch() if arch == "native" else arch


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("sbx")
    except PackageNotFoundError:
        return "0"


def _label(ref: str) -> str:
    from .paths import display_path
    return display_path(ref) if "/" in ref or ref.endswith((".yaml", ".yml")) else ref


def _emit(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)


@click.command(epilog="Exit status: 0 both profiles decide every syscall alike and their other "
                      "layers are written alike; 1 they differ; 2 bad input (a profile that does "
                      "not load, printed as file:line:col diagnostics).")
@click.argument("old")
@click.argument("new")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text",
              show_default=True, help="sarif: a result per change (SBX140 widened ... SBX143)")
@click.option("--arch", type=click.Choice(ARCH_CHOICES), default="native", show_default=True,
              help="what 'native' means in both profiles")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
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
    from . import diff as df
    from .policy import load_profile
    native = _native(arch)
    old_prof, new_prof = load_profile(old), load_profile(new)
    d = df.diff_profiles(old_prof, new_prof, native)
    a, b = _label(old), _label(new)
    if fmt == "json":
        text = json.dumps(df.to_json(d, a, b), indent=2) + "\n"
    elif fmt == "sarif":
        from . import drift
        from .sarif import findings_log
        log = findings_log(drift.findings(d, a), [new_prof.name], _version(),
                           {"old": a, "new": b, "native": native,
                            "summary": {k: d.count(k) for k in ("widening", "narrowing", "change")}})
        text = json.dumps(log, indent=2) + "\n"
    else:
        text = df.render_text(d, a, b)
    _emit(text, output)
    sys.exit(EXIT_DIFFERENT if d.changes or d.confinement else EXIT_SAME)

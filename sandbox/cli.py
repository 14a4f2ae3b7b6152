"""The ``sbx`` command line (click).  ``sbx run`` has a fast path in ``sandbox.entry``."""
from __future__ import annotations

import os
import sys

import click

from .policy.diagnostics import PolicyError

ARCH_CHOICES = ["native", "x86_64", "i386", "x32", "aarch64"]


# Commands that live beside their subsystem, imported only when used: "name": "module:attr"
LAZY_COMMANDS = {
    "analyze": "sandbox.cli_analyze:analyze",
    "check": "sandbox.cli_check:check",
    "verify": "sandbox.cli_check:verify",
    "export": "sandbox.cli_interop:export",
    "import": "sandbox.cli_interop:import_",
    "trace": "sandbox.cli_trace:trace",
    "monitor": "sandbox.cli_monitor:monitor",
    "refine": "sandbox.cli_monitor:refine",
}


class SbxGroup(click.Group):
    """Lazy subcommands; turns PolicyError into diagnostics + exit 2, never a traceback."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS:
            import importlib
            mod, _, attr = LAZY_COMMANDS[name].partition(":")
            try:
                return getattr(importlib.import_module(mod), attr)
            except ImportError:
                return None
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PolicyError as e:
            click.echo(e.render(), err=True)
            ctx.exit(2)


@click.group(cls=SbxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sbx", prog_name="sbx")
def cli():
    """sbx: run programs under a verified seccomp-bpf filter compiled from a YAML profile."""


def _load(ref: str):
    from .policy import load_profile
    return load_profile(ref)


def _native(arch: str) -> str:
    from .kernel.seccomp import native_arch
    return native_arch() if arch == "native" else arch


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--profile", "-p", default="default", show_default=True, help="built-in name or YAML file")
@click.option("--mode", type=click.Choice(["enforce", "complain"]), default="enforce", show_default=True,
              help="complain: the profile's default deny is logged instead")
@click.option("--log", is_flag=True, help="install with SECCOMP_FILTER_FLAG_LOG and summarize denials")
@click.option("--monitor", is_flag=True, help="record denials with the eBPF monitor; summary after exit")
@click.option("--no-cache", is_flag=True, help="compile the profile even if a cached filter is valid")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(profile, mode, log, monitor, no_cache, command):
    """Run COMMAND confined by PROFILE.  Example: sbx run --profile web -- python3 -m http.server"""
    from .entry import run_main
    args = ["--profile", profile, "--mode", mode] + (["--log"] if log else []) + \
           (["--monitor"] if monitor else []) + (["--no-cache"] if no_cache else []) + ["--", *command]
    sys.exit(run_main(args))


@cli.command("compile")
@click.argument("profile")
@click.option("--format", "fmt", type=click.Choice(["asm", "raw", "c"]), default="asm", show_default=True)
@click.option("--arch", type=click.Choice(ARCH_CHOICES), default="native", show_default=True,
              help="what 'native' means in the profile")
@click.option("--mode", type=click.Choice(["enforce", "complain"]), default="enforce")
@click.option("--no-optimize", is_flag=True, help="skip the optimizer passes")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="write here instead of stdout")
def compile_cmd(profile, fmt, arch, mode, no_optimize, output):
    """Compile PROFILE to a seccomp program (assembly, raw bytes or C)."""
    from bpf_filters.disasm import disassemble, to_c
    from .policy import build_filter
    prof = _load(profile)
    flt = build_filter(prof, native=_native(arch), mode=mode, optimize=not no_optimize)
    if fmt == "raw":
        data = flt.encode()
        if output:
            with open(output, "wb") as fh:
                fh.write(data)
        else:
            sys.stdout.buffer.write(data)
        return
    if fmt == "c":
        text = to_c(flt.insns, f"sbx_{prof.name}")
    else:
        header = (f"; profile {prof.name} ({prof.path}), {len(flt.insns)} instructions, "
                  f"compiled in {flt.stats['compile_ms']:.1f} ms\n")
        text = header + disassemble(flt.insns)
    if output:
        with open(output, "w") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)


def _parse_int(text: str) -> int:
    from .policy.constants import lookup
    val = lookup(text)
    if val is not None:
        return val
    try:
        return int(text, 0)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a number nor a known constant")


@cli.command()
@click.argument("profile")
@click.argument("syscall")
@click.argument("args", nargs=-1)
@click.option("--arch", type=click.Choice(["x86_64", "i386", "x32", "aarch64"]), default=None,
              help="ABI of the call (default: the native one)")
def explain(profile, syscall, args, arch):
    """Show what PROFILE decides for SYSCALL [ARGS...] and which rule decides it.

    SYSCALL is a name or a number; ARGS are numbers or constants (AF_INET, TIOCSTI).
    """
    from bpf_filters import syscalls
    from bpf_filters.disasm import disassemble
    from .policy import build_filter
    prof = _load(profile)
    native = _native("native")
    arch = arch or native
    flt = build_filter(prof, native=native)
    table = syscalls.table(arch)
    if syscall.isdigit() or syscall.lower().startswith("0x"):
        nr = int(syscall, 0)
        name = table.name(nr) or "?"
    else:
        nr = table.nr(syscall)
        if nr is None:
            hint = syscalls.closest(syscall, arch)
            raise click.UsageError(f"unknown syscall '{syscall}' on {arch}" +
                                   (f" (did you mean '{hint}'?)" if hint else ""))
        name = syscall
    values = [_parse_int(a) for a in args] + [0] * (6 - len(args))
    ex = flt.explain(syscalls.AUDIT_ARCH[arch], nr, values[:6])
    d = ex.decision
    click.echo(f"{name} ({nr}) on {arch} with args ({', '.join(hex(v) for v in values[:max(1, len(args))])})")
    click.echo(f"  decision: {ex.action}")
    from .paths import display_path
    if d.rule is not None and d.rule.origin:
        o = d.rule.origin
        click.echo(f"  rule:     {display_path(o.file)}:{o.line}: {o.text}")
        if d.rule.conds:
            click.echo(f"            when {' and '.join(str(c) for c in d.rule.conds)}")
    else:
        o = flt.policy.origins.get(d.reason)
        where = f"{display_path(o.file)}:{o.line}: {o.text}" if o else "(built-in default)"
        click.echo(f"  rule:     profile {d.reason} action, {where}")
    click.echo(f"  cost:     {ex.result.executed} BPF instructions executed (of {len(flt.insns)})")
    if not ex.consistent:
        click.echo("  error: the compiled filter disagrees with the policy; please report this", err=True)
        sys.exit(1)


@cli.group()
def profiles():
    """List and show built-in profiles."""


@profiles.command("list")
def profiles_list():
    """The built-in profiles with their descriptions."""
    from .policy import builtin_names
    for n in builtin_names():
        p = _load(n)
        click.echo(f"{n:12} {p.description}")


@profiles.command("show")
@click.argument("name")
@click.option("--arch", type=click.Choice(ARCH_CHOICES), default="native")
def profiles_show(name, arch):
    """Print the resolved profile NAME (extends and groups expanded) as YAML."""
    from .policy.show import resolved_yaml
    click.echo(resolved_yaml(_load(name), _native(arch)), nl=False)


@cli.command()
@click.argument("pids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="every process, not only confined ones")
def status(pids, all_):
    """Seccomp mode and filter count of processes (default: all confined processes)."""
    from .status import status_lines
    lines, ok = status_lines(list(pids), all_)
    for line in lines:
        click.echo(line)
    sys.exit(0 if ok else 1)


def main():
    from .entry import main as entry_main
    sys.exit(entry_main())

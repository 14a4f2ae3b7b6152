"""The ``sbx`` command line (click).  ``sbx run`` has a fast path in ``sandbox.entry``."""
from __future__ import annotations

import sys

import click

from .policy.diagnostics import PolicyError
from .run_options import click_options

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
    "diff": "sandbox.cli_lifecycle:diff",
    "profile": "sandbox.cli_lifecycle:profile",
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


@cli.command(context_settings={"allow_interspersed_args": False})
@click_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(command, **options):
    """Run COMMAND confined by PROFILE.  Example: sbx run --profile web -- python3 -m http.server"""
    from .entry import execute
    sys.exit(execute(dict(options, argv=list(command), allow_ports=tuple(options["allow_ports"]))))


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
    """A number as profiles write it (0x1f, 0644 octal, -1) or a constant (AF_INET)."""
    from .policy.conditions import parse_number
    from .policy.constants import lookup
    val = lookup(text)
    if val is not None:
        return val
    try:
        return parse_number(text)
    except ValueError as err:
        if text[:1].isalpha() or text[:1] == "_":
            err = f"{text!r} is neither a number nor a known constant"
        raise click.BadParameter(str(err)) from None


@cli.command()
@click.argument("profile")
@click.argument("syscall")
@click.argument("args", nargs=-1)
@click.option("--arch", type=click.Choice(["x86_64", "i386", "x32", "aarch64"]), default=None,
              help="ABI of the call (default: the native one)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
def explain(profile, syscall, args, arch, as_json):
    """Show what PROFILE decides for SYSCALL [ARGS...] and which rule decides it.

    SYSCALL is a name or a number; ARGS are numbers or constants (AF_INET, TIOCSTI).
    """
    from bpf_filters import syscalls
    from .denials import Attribution
    from .policy import build_filter
    from .policy.show import action_text
    prof = _load(profile)
    native = _native("native")
    arch = arch or native
    flt = build_filter(prof, native=native)
    table = syscalls.table(arch)
    if syscall[:1].isdigit():
        nr = _parse_int(syscall)
        if not 0 <= nr <= 0xFFFFFFFF:
            raise click.BadParameter(f"syscall number {syscall} is out of range")
        name = table.name(nr) or "?"
    else:
        nr = table.nr(syscall)
        if nr is None:
            hint = syscalls.closest(syscall, arch)
            raise click.UsageError(f"unknown syscall '{syscall}' on {arch}" +
                                   (f" (did you mean '{hint}'?)" if hint else ""))
        name = syscall
    if len(args) > 6:
        raise click.BadParameter("a syscall has at most 6 arguments")
    values = [_parse_int(a) & 0xFFFF_FFFF_FFFF_FFFF for a in args] + [0] * (6 - len(args))
    ex = flt.explain(syscalls.AUDIT_ARCH[arch], nr, values[:6])
    d = ex.decision
    where = Attribution.of(flt.policy, d)
    if as_json:
        import json
        click.echo(json.dumps({
            "profile": prof.name, "syscall": name, "nr": nr, "arch": arch, "args": values[:6],
            "decision": action_text(ex.action), "decided_by": where.where(),
            "conditions": [str(c) for c in d.rule.conds] if d.rule is not None else [],
            "instructions_executed": ex.result.executed, "instructions": len(flt.insns),
            "consistent": ex.consistent}))
    else:
        click.echo(f"{name} ({nr}) on {arch} with args "
                   f"({', '.join(hex(v) for v in values[:max(1, len(args))])})")
        click.echo(f"  decision: {action_text(ex.action)}")
        click.echo(f"  rule:     {where.where()}")
        if d.rule is not None and d.rule.conds:
            click.echo(f"            when {' and '.join(str(c) for c in d.rule.conds)}")
        if d.rule is not None:
            _explain_baseline(prof, d.rule, name, arch)
        click.echo(f"  cost:     {ex.result.executed} BPF instructions executed (of {len(flt.insns)})")
    if not ex.consistent:
        click.echo("  error: the compiled filter disagrees with the policy; please report this", err=True)
        sys.exit(1)


def _explain_baseline(prof, rule, name: str, arch: str) -> None:
    """Say why the ``baseline:`` rule decided: the syscall's age against the baseline."""
    from bpf_filters import syscalls
    from .policy.profile import baseline_spec
    spec = baseline_spec(prof)
    if spec is None or rule.origin != spec.origin:
        return
    since = syscalls.table(arch).introduced(name)
    click.echo(f"            {name} is in Linux {since} on {arch}, newer than the baseline "
               f"{prof.baseline.value}, and no rule names it: ENOSYS, so that callers fall back")


@cli.group()
def profiles():
    """List and show built-in profiles (to build one from recordings: sbx profile build)."""


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

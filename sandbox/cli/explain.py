"""``sbx explain``: what a profile decides for one call, and which rule decides it."""
from __future__ import annotations

import sys

import click

from .common import load, native, parse_int


@click.command()
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
    from ..denials import Attribution
    from ..policy import build_filter
    from ..policy.show import action_text
    prof = load(profile)
    host = native()
    arch = arch or host
    flt = build_filter(prof, native=host)
    table = syscalls.table(arch)
    if syscall[:1].isdigit():
        nr = parse_int(syscall)
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
    values = [parse_int(a) & 0xFFFF_FFFF_FFFF_FFFF for a in args] + [0] * (6 - len(args))
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
    from ..policy.profile import baseline_spec
    spec = baseline_spec(prof)
    if spec is None or rule.origin != spec.origin:
        return
    since = syscalls.table(arch).introduced(name)
    click.echo(f"            {name} is in Linux {since} on {arch}, newer than the baseline "
               f"{prof.baseline.value}, and no rule names it: ENOSYS, so that callers fall back")

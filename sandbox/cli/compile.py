"""``sbx compile``: a profile's seccomp program as assembly, raw bytes (for bwrap --seccomp) or C."""
from __future__ import annotations

import click

from .common import ARCH_CHOICES, OutputPath, emit, load, native


@click.command("compile")
@click.argument("profile")
@click.option("--format", "fmt", type=click.Choice(["asm", "raw", "c"]), default="asm", show_default=True)
@click.option("--arch", type=click.Choice(ARCH_CHOICES), default="native", show_default=True,
              help="what 'native' means in the profile")
@click.option("--mode", type=click.Choice(["enforce", "complain"]), default="enforce")
@click.option("--no-optimize", is_flag=True, help="skip the optimizer passes")
@click.option("-o", "--output", type=OutputPath(dir_okay=False, writable=True), help="write here instead of stdout")
def compile_cmd(profile, fmt, arch, mode, no_optimize, output):
    """Compile PROFILE to a seccomp program (assembly, raw bytes or C)."""
    from bpf_filters.disasm import disassemble, to_c
    from ..policy import build_filter
    prof = load(profile)
    flt = build_filter(prof, native=native(arch), mode=mode, optimize=not no_optimize)
    if fmt == "raw":
        emit(flt.encode(), output)
        return
    if fmt == "c":
        text = to_c(flt.insns, f"sbx_{prof.name}")
    else:
        header = (f"; profile {prof.name} ({prof.path}), {len(flt.insns)} instructions, "
                  f"compiled in {flt.stats['compile_ms']:.1f} ms\n")
        text = header + disassemble(flt.insns)
    emit(text, output)

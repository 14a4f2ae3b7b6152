"""The ``sbx`` command line: the click group and where each subcommand lives.

Each subcommand is a module of this package, imported only when it is used
(``sbx status`` does not load the compiler, ``sbx check`` not libbpf). The
console entry point is ``sandbox.entry``: it runs ``sbx run`` without click
and hands every other command line to ``cli`` here. A ``PolicyError`` (a
profile that does not load) becomes its ``file:line:col`` diagnostics and
exit status 2, Ctrl-C one line and status 130, never a traceback.
"""
from __future__ import annotations

import importlib

import click

from ..errors import SbxError
from ..policy.diagnostics import PolicyError

# "name": "module:attribute", the module relative to this package
COMMANDS = {
    "run": "run:run",
    "compile": "compile:compile_cmd",
    "explain": "explain:explain",
    "profiles": "profiles:profiles",
    "status": "status:status",
    "analyze": "analyze:analyze",
    "check": "check:check",
    "verify": "verify:verify",
    "export": "interop:export",
    "import": "interop:import_",
    "trace": "trace:trace",
    "monitor": "monitor:monitor",
    "refine": "monitor:refine",
    "diff": "lifecycle:diff",
    "profile": "lifecycle:profile",
}


class SbxGroup(click.Group):
    """Lazy subcommands; turns PolicyError into diagnostics + exit 2, never a traceback."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        mod, _, attr = COMMANDS[name].partition(":")
        return getattr(importlib.import_module(f"{__name__}.{mod}"), attr)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PolicyError as e:
            from .common import echo_diag
            echo_diag(e.render())
            ctx.exit(2)
        except SbxError as e:                     # search.UnsafeProfile, LaunchError ...
            from .common import echo_diag
            echo_diag(e.render())
            ctx.exit(e.status)
        except KeyboardInterrupt:      # Ctrl-C: one line and 130, as a shell reports SIGINT
            _interrupted(ctx)


def _interrupted(ctx) -> None:
    from ..errors import EXIT_INTERRUPTED
    name = ctx.invoked_subcommand or ""
    try:
        click.echo(f"sbx{' ' + name if name else ''}: interrupted", err=True)
    except OSError:
        pass
    ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=SbxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sbx", prog_name="sbx")
@click.option("--color", "--colour", "color_mode", type=click.Choice(["auto", "always", "never"]),
              default="auto", show_default=True, metavar="auto|always|never",
              help="colour the severity words of diagnostics (auto: on a terminal, unless NO_COLOR "
                   "is set)")
def cli(color_mode):
    """sbx: run programs under a verified seccomp-bpf filter compiled from a YAML profile."""
    from .. import color
    color.set_mode(color_mode)

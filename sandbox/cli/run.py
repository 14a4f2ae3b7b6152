"""``sbx run`` under click: only for ``sbx run --help`` and callers that go through
``cli`` (tests, ``python -m sandbox``); the console entry point parses run itself."""
from __future__ import annotations

import sys

import click

from ..run_options import click_options


@click.command(context_settings={"allow_interspersed_args": False})
@click_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(command, **options):
    """Run COMMAND confined by PROFILE.  Example: sbx run --profile web -- python3 -m http.server"""
    from ..launcher import main
    sys.exit(main(dict(options, argv=list(command), allow_ports=tuple(options["allow_ports"]))))

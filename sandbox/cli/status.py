"""``sbx status``: seccomp mode, filters and profile of running processes."""
from __future__ import annotations

import sys

import click

from .common import emit_json


@click.command()
@click.argument("pids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="every process, not only confined ones")
@click.option("--json", "as_json", is_flag=True, help="a JSON array instead of the table")
def status(pids, all_, as_json):
    """Seccomp mode, filter count and sbx profile of processes (default: all confined processes).

    The profile is the one the sbx run that started the process (or its nearest
    ancestor) installed, as recorded where the confined command cannot write;
    '-' when no sbx run record covers it.
    """
    from ..status import status_lines, status_rows
    rows, ok = status_rows(list(pids), all_)
    if as_json:
        emit_json(rows)
    else:
        for line in status_lines(rows):
            click.echo(line)
    sys.exit(0 if ok else 1)

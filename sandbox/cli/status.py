"""``sbx status``: seccomp mode and filters of running processes."""
from __future__ import annotations

import sys

import click


@click.command()
@click.argument("pids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="every process, not only confined ones")
def status(pids, all_):
    """Seccomp mode and filter count of processes (default: all confined processes)."""
    from ..status import status_lines
    lines, ok = status_lines(list(pids), all_)
    for line in lines:
        click.echo(line)
    sys.exit(0 if ok else 1)

"""``sbx profiles list|show``: the built-in profiles."""
from __future__ import annotations

import click

from .common import ARCH_CHOICES, load, native


@click.group()
def profiles():
    """List and show built-in profiles (to build one from recordings: sbx profile build)."""


@profiles.command("list")
def profiles_list():
    """The built-in profiles with their descriptions."""
    from ..policy import builtin_names
    for n in builtin_names():
        p = load(n)
        click.echo(f"{n:12} {p.description}")


@profiles.command("show")
@click.argument("name")
@click.option("--arch", type=click.Choice(ARCH_CHOICES), default="native")
def profiles_show(name, arch):
    """Print the resolved profile NAME (extends and groups expanded) as YAML."""
    from ..policy.show import resolved_yaml
    click.echo(resolved_yaml(load(name), native(arch)), nl=False)

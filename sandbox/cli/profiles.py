"""``sbx profiles list|show``: the profiles a name can mean, and one of them resolved."""
from __future__ import annotations

import click

from .common import ARCH_CHOICES, emit_json, load, native


@click.group()
def profiles():
    """List and show profiles: yours ($XDG_CONFIG_HOME/sbx/profiles), the system's
    (/etc/sbx/profiles) and the built-in ones (to build one from recordings: sbx profile build)."""


@profiles.command("list")
@click.option("--json", "as_json", is_flag=True, help="a JSON array instead of text")
def profiles_list(as_json):
    """Every profile on the search path, where it comes from and what it is for.

    A name means the first of: your profiles, the system's, the built-in ones;
    a later one of the same name is listed as shadowed. A profile others could
    change is listed as refused.
    """
    from ..paths import display_path
    from ..policy import PolicyError
    rows = []
    for name, origin, path, shadowed_by in _listing():
        entry = {"name": name, "origin": origin, "path": display_path(path),
                 "shadowed_by": shadowed_by, "description": None, "error": None}
        if shadowed_by is None:
            try:
                entry["description"] = load(name).description
            except PolicyError as err:
                entry["error"] = err.diagnostics[0].message if err.diagnostics else "does not load"
        rows.append(entry)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        what = (f"(shadowed by the {r['shadowed_by']} {r['name']})" if r["shadowed_by"]
                else f"error: {r['error']}" if r["error"] else r["description"])
        click.echo(f"{r['name']:12} {r['origin']:8} {what}  [{r['path']}]")


def _listing():
    from ..search import listing
    return listing()


@profiles.command("show")
@click.argument("name")
@click.option("--arch", type=click.Choice(ARCH_CHOICES), default="native")
@click.option("--json", "as_json", is_flag=True,
              help="the resolved profile as JSON (the same data as the YAML, and each rule's "
                   "FILE:LINE:COL as \"at\")")
def profiles_show(name, arch, as_json):
    """Print the resolved profile NAME (extends and groups expanded) as YAML."""
    from ..policy.show import resolved_yaml
    prof = load(name)
    text = resolved_yaml(prof, native(arch))
    if as_json:
        import yaml
        from ..paths import display_path
        doc = yaml.safe_load(text)
        # the YAML says where each rule comes from in a comment, which JSON has no room for
        for rule, spec in zip(doc["rules"], prof.rules):
            rule["at"] = f"{display_path(spec.pos.file)}:{spec.pos.line}:{spec.pos.col}"
        emit_json(doc)
        return
    click.echo(text, nl=False)

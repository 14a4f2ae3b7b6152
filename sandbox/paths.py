"""Where sbx's data files are, without importing anything heavy."""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def builtin_dir() -> str:
    """The built-in profiles: package data ``sandbox/profiles`` when installed,
    ``profiles/`` beside the package in a source checkout."""
    for d in (os.path.join(_HERE, "profiles"), os.path.join(os.path.dirname(_HERE), "profiles")):
        if os.path.isfile(os.path.join(d, "groups.yaml")):
            return d
    return os.path.join(os.path.dirname(_HERE), "profiles")


def display_path(path: str) -> str:
    """profiles/web.yaml for built-ins (and profiles/presets/...), a path relative to the cwd below it,
    else absolute."""
    rel_builtin = os.path.relpath(os.path.abspath(path), builtin_dir())
    if not rel_builtin.startswith(".."):
        return f"profiles/{rel_builtin}"
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel

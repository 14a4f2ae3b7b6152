"""The options of ``sbx run``, defined once: the fast path parses them by hand, click builds its command from them.

Import-light (no click): ``sbx run`` parses its own command line so that a
cached run imports neither click nor YAML nor the compiler. ``click_options``
turns the same table into click decorators for ``sbx run --help`` and the
man page.
"""
from __future__ import annotations

from .errors import UsageError


class Opt:
    """One option: its flags, where its value goes, how it is read."""

    __slots__ = ("flags", "dest", "kind", "default", "choices", "metavar", "help")

    def __init__(self, *flags: str, dest: str, kind: str = "value", default=None, choices=(),
                 metavar: str = "", help: str = ""):
        self.flags, self.dest, self.kind, self.default = flags, dest, kind, default
        self.choices, self.metavar, self.help = choices, metavar, help


def _port(text: str) -> int:
    from .confine import tcp_port            # only with --allow-port: confine is not light
    port = tcp_port(text)
    if port is None:
        raise UsageError(f"--allow-port takes a TCP port 0..65535, not {text[:40]!r}")
    return port


RUN_OPTIONS = (
    Opt("--profile", "-p", dest="profile", default="default", metavar="NAME|FILE",
        help="profile name (yours, /etc/sbx/profiles, built-in) or YAML file"),
    Opt("--mode", dest="mode", kind="choice", default="enforce", choices=("enforce", "complain"),
        help="complain: the profile's default seccomp deny is logged instead (files, ports, "
             "scopes and capabilities stay enforced)"),
    Opt("--log", dest="log", kind="flag", default=False,
        help="install with SECCOMP_FILTER_FLAG_LOG and summarize denials"),
    Opt("--monitor", dest="monitor", kind="flag", default=False,
        help="record denials with the eBPF monitor; summary after exit"),
    Opt("--json", dest="json", kind="flag", default=False,
        help="print the summary of --log or --monitor as JSON (on stderr)"),
    Opt("--output", "-o", dest="output", default=None, metavar="FILE",
        help="write the denials as JSON lines to FILE, the input of `sbx refine --from`"),
    Opt("--no-cache", dest="use_cache", kind="off", default=True,
        help="compile the profile even if a cached filter is valid"),
    Opt("--allow-port", dest="allow_ports", kind="ports", default=(), metavar="PORT",
        help="also allow TCP bind and connect on PORT where the profile restricts ports (repeatable)"),
)
_BY_FLAG = {f: o for o in RUN_OPTIONS for f in o.flags}


def usage() -> str:
    parts = []
    for o in RUN_OPTIONS:
        if o.kind in ("flag", "off"):
            parts.append(f"[{o.flags[0]}]")
        elif o.kind == "choice":
            parts.append(f"[{o.flags[0]} {'|'.join(o.choices)}]")
        else:
            parts.append(f"[{o.flags[0]} {o.metavar}]" + ("..." if o.kind == "ports" else ""))
    return f"usage: sbx run {' '.join(parts)} -- CMD [ARGS...]"


class HelpRequested(Exception):
    pass


def parse_run(args: list[str]) -> dict:
    """The ``sbx run`` arguments (everything after 'run') as RunOptions keywords."""
    opts = {o.dest: o.default for o in RUN_OPTIONS}
    ports: list[int] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        if a in ("--help", "-h"):
            raise HelpRequested
        name, eq, val = a.partition("=")
        opt = _BY_FLAG.get(name)
        if opt is None:
            import difflib                    # the error path only: the hot path stays lean
            near = difflib.get_close_matches(name, [f for f in _BY_FLAG if f.startswith("--")], 1)
            raise UsageError(f"unknown option {a!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        if opt.kind in ("flag", "off"):
            if eq:
                raise UsageError(f"option {name} takes no value")
            opts[opt.dest] = opt.kind == "flag"
        else:
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(f"option {name} needs a value")
                val = args[i]
            if opt.kind == "choice" and val not in opt.choices:
                raise UsageError(f"{name} must be {' or '.join(opt.choices)}, not {val!r}")
            if opt.kind == "ports":
                ports.append(_port(val))
            elif val == "" and opt.dest in ("output", "profile"):
                raise UsageError(f"{name}: an empty value names no file")
            else:
                opts[opt.dest] = val
        i += 1
    opts["allow_ports"] = tuple(ports)
    cmd = args[i:]
    if not cmd:
        raise UsageError("missing command to run")
    opts["argv"] = cmd
    return opts


def click_options(func):
    """Apply the table as click options to *func* (click imported here only)."""
    import click
    for o in reversed(RUN_OPTIONS):
        if o.kind == "flag":
            deco = click.option(*o.flags, o.dest, is_flag=True, help=o.help)
        elif o.kind == "off":
            deco = click.option(*o.flags, o.dest, is_flag=True, flag_value=False, default=True,
                                help=o.help)
        elif o.kind == "choice":
            deco = click.option(*o.flags, o.dest, type=click.Choice(o.choices), default=o.default,
                                show_default=True, help=o.help)
        elif o.kind == "ports":
            deco = click.option(*o.flags, o.dest, type=click.IntRange(0, 65535), multiple=True,
                                metavar=o.metavar, help=o.help)
        else:
            deco = click.option(*o.flags, o.dest, default=o.default, show_default=o.default is not None,
                                metavar=o.metavar, help=o.help)
        func = deco(func)
    return func


__all__ = ["HelpRequested", "RUN_OPTIONS", "click_options", "parse_run", "usage"]

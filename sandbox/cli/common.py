"""What every ``sbx`` subcommand shares: messages, exits, output files, profile loading.

One way to say things: ``say`` prefixes ``sbx COMMAND:``, ``fail`` adds
``error:`` and leaves with status 2 (bad input) unless told otherwise,
diagnostics go out with display paths (``profiles/web.yaml``, not the
site-packages path). One way to write an output file: ``emit`` writes a
temporary file beside the target and renames it, so a reader never sees half
a profile, and a target that cannot be written is a message, not a traceback.
"""
from __future__ import annotations

import os
import sys

import click

EXIT_BAD_INPUT = 2
ARCH_CHOICES = ["native", "x86_64", "i386", "x32", "aarch64"]


def _prefix() -> str:
    ctx = click.get_current_context(silent=True)
    names = []
    while ctx is not None:
        if ctx.info_name and ctx.parent is not None:      # the root is always "sbx"
            names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["sbx"] + names[::-1])


def echo_diag(text: str, err: bool = True, nl: bool = True) -> None:
    """Diagnostics (or a report of them) with their severity words coloured on a
    terminal (``sandbox.color``: NO_COLOR, ``sbx --color``)."""
    from .. import color
    on = color.enabled(sys.stderr if err else sys.stdout)
    click.echo(color.severity_words(text, on), err=err, nl=nl, color=on)


def say(message: str) -> None:
    """A line on stderr as ``sbx COMMAND: message``."""
    echo_diag(f"{_prefix()}: {message}")


def fail(message: str, hint: str | None = None, status: int = EXIT_BAD_INPUT):
    """Say ``error: message (hint)`` and exit with *status*."""
    say(f"error: {message}" + (f" ({hint})" if hint else ""))
    sys.exit(status)


def processes(pids: list[int]) -> str:
    """"2 processes (4711 nginx, 4712 nginx)": who a command left running."""
    from ..kernel.tree import comm
    shown = ", ".join(f"{p} {comm(p)}" for p in pids[:5]) + (", ..." if len(pids) > 5 else "")
    return f"{len(pids)} process{'es' if len(pids) != 1 else ''} ({shown})"


def follower_of(command: list[str], seconds: float | None, option: str, tell=say):
    """The ``kernel.tree.Follower`` of sbx trace and sbx verify: it *tell*s who the
    command left running (a daemonizing server) and who the deadline (*option*,
    *seconds*) stopped."""
    from ..kernel.tree import GRACE_S, Follower
    prog = os.path.basename(command[0])

    def left(pids: list[int]) -> None:
        one = len(pids) == 1
        until = (f"until {'it exits' if one else 'they exit'} or {option} {seconds:g} s has passed"
                 if seconds else f"until {'it exits' if one else 'they exit'} "
                                 f"({option} S stops {'it' if one else 'them'} after S seconds)")
        tell(f"note: {prog} exited and left {processes(pids)} running (it daemonized); "
             f"following {'it' if one else 'them'} {until}")

    def stopped(pids: list[int]) -> None:
        tell(f"{option} {seconds:g} s: stopping {processes(pids)} (SIGTERM, SIGKILL after "
             f"{GRACE_S:g} s)")
    return Follower(on_left=left, on_stop=stopped)


def emit_json(doc) -> None:
    """*doc* as one line of JSON on stdout: what every ``--json`` prints."""
    import json
    click.echo(json.dumps(doc))


def native(arch: str = "native") -> str:
    from ..kernel.seccomp import native_arch
    return native_arch() if arch == "native" else arch


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version
    try:
        return dist_version("sbx")
    except PackageNotFoundError:
        return "0"


def load(ref: str):
    """A profile by name (the search path: sandbox.search) or file; PolicyError (exit 2 through the group) if it does not load."""
    from ..policy import load_profile
    return load_profile(ref)


def label(ref: str) -> str:
    """How a profile reference is shown: a file by display path, a built-in by name."""
    from ..paths import display_path
    return display_path(ref) if "/" in ref or ref.endswith((".yaml", ".yml")) else ref


def shown(d):
    """The diagnostic with display paths (profiles/x.yaml, paths relative to the cwd)."""
    from ..paths import display_path
    from ..policy.diagnostics import Diagnostic, Position
    pos = d.pos and Position(display_path(d.pos.file), d.pos.line, d.pos.col, d.pos.length)
    return Diagnostic(pos, d.message, d.severity, d.hint, [shown(n) for n in d.notes], d.rule_id)


def shown_sources(sources: dict[str, list[str]]) -> dict[str, list[str]]:
    from ..paths import display_path
    return {display_path(f): lines for f, lines in sources.items()}


def warn(diags, sources: dict) -> None:
    """Diagnostics on stderr, each with its source line, under display paths."""
    lines = shown_sources(sources)
    for d in diags:
        echo_diag(shown(d).format(lines))


def cannot_write(output: str) -> str | None:
    """Why ``emit`` could not write *output*, checked before long work, or None.

    A device or FIFO (/dev/null, /dev/stdout) is written in place, so it needs
    write access itself; a file is written beside itself and renamed, so its
    directory must be writable."""
    if os.path.exists(output) and not os.path.isfile(output) and not os.path.isdir(output):
        return None if os.access(output, os.W_OK) else f"cannot write {output}: permission denied"
    where = os.path.dirname(os.path.abspath(output))
    if not os.access(where, os.W_OK):
        return f"cannot write {output}: {where} is not a writable directory"
    return None


def emit(text: str | bytes, output: str | None) -> None:
    """*text* to the file *output* (atomically: a temporary file renamed over it), or to stdout.

    A file that cannot be written (missing directory, no permission, a
    directory of that name) ends sbx with status 2 and the reason.
    """
    if not output or output == "-":
        if isinstance(text, bytes):
            sys.stdout.buffer.write(text)
            sys.stdout.buffer.flush()
        else:
            click.echo(text, nl=False)
        return
    from ..paths import write_output
    try:
        write_output(output, text)
    except OSError as err:
        fail(f"cannot write {output}: {err.strerror or err}")


class OutputPath(click.Path):
    """``-o``'s file: a click.Path that refuses the empty string (it names no
    file, and would otherwise read as "standard output" to some steps and as
    the working directory to others)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value == "":
            self.fail("an empty path names no file", param, ctx)
        return super().convert(value, param, ctx)


class Seconds(click.ParamType):
    """A duration: a finite number of seconds, 0 (or, *positive*, more than 0) to
    about three years (setitimer and poll take no more; nan and inf are not durations)."""

    name = "seconds"
    MAX = 10 ** 8

    def __init__(self, positive: bool = False):
        self.positive = positive

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        else:
            try:
                seconds = float(value)
            except ValueError:
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not (0 < seconds if self.positive else 0 <= seconds) or not seconds <= self.MAX:
            low = "more than 0" if self.positive else "from 0"     # (nan fails both tests)
            self.fail(f"{value} is not a number of seconds {low} to {self.MAX:,}", param, ctx)
        return seconds


def is_stream(output: str) -> bool:
    """*output* is a device or FIFO (``/dev/null``, ``/dev/stdout``): written into, never
    renamed over, and it cannot be read back."""
    return os.path.exists(output) and not os.path.isfile(output) and not os.path.isdir(output)


def emit_profile(text: str, output: str, native: str) -> int:
    """A generated profile to *output*, checked (loaded and compiled: PolicyError, status 2,
    if it does not) before anything is written; returns how many syscalls it allows.
    A device or FIFO is checked through a private copy, since it cannot be read back."""
    import tempfile
    from ..policy import build_filter, load_profile
    from ..trace import count_allowed
    if is_stream(output):
        with tempfile.TemporaryDirectory(prefix="sbx-profile-") as tmp:
            copy = os.path.join(tmp, "profile.yaml")
            with open(copy, "w", encoding="utf-8") as fh:
                fh.write(text)
            build_filter(load_profile(copy), native=native)
            n = count_allowed(copy, native)
        emit(text, output)
        return n
    emit(text, output)
    build_filter(load_profile(os.path.abspath(output)), native=native)
    return count_allowed(os.path.abspath(output), native)


def parse_int(text: str) -> int:
    """A number as profiles write it (0x1f, 0644 octal, -1) or a constant (AF_INET)."""
    from ..policy.conditions import parse_number
    from ..policy.constants import lookup
    val = lookup(text)
    if val is not None:
        return val
    try:
        return parse_number(text)
    except ValueError as err:
        if text[:1].isalpha() or text[:1] == "_":
            err = f"{text!r} is neither a number nor a known constant"
        raise click.BadParameter(str(err)) from None

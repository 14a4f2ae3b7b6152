"""Colour for the severity words of diagnostics (error, warning, note, info) on a terminal.

On when the stream is a terminal, unless NO_COLOR is set to anything but the
empty string (https://no-color.org) or TERM is ``dumb``; ``sbx --color
always|never`` overrides both, as a command-line flag should. Only the word
in a diagnostic's head line is coloured (``file:line:col: error:``, ``sbx
check: error:``, a line starting ``warning:``), never a quoted source line.
Import-light (no click): ``sbx run`` prints diagnostics too.
"""
from __future__ import annotations

import os
import re

MODES = ("auto", "always", "never")
_MODE = ["auto"]
# as compilers colour them: error bold red, warning bold magenta, note bold cyan, info dim
CODES = {"error": "1;31", "warning": "1;35", "note": "1;36", "info": "2"}
_HEAD = re.compile(r"(?m)^((?:\S[^\n]*?:\d+:\d+: )|(?:sbx[\w -]*: )?)(error|warning|note|info)(?=:)")


def set_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"colour mode must be one of {MODES}, not {mode!r}")
    _MODE[0] = mode


def enabled(stream) -> bool:
    """Should what goes to *stream* be coloured?"""
    if _MODE[0] != "auto":
        return _MODE[0] == "always"
    if os.environ.get("NO_COLOR", "") != "" or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def severity_words(text: str, on: bool = True) -> str:
    """*text* with each diagnostic's severity word coloured (unchanged when not *on*)."""
    if not on:
        return text
    return _HEAD.sub(lambda m: f"{m.group(1)}\033[{CODES[m.group(2)]}m{m.group(2)}\033[0m", text)


__all__ = ["CODES", "MODES", "enabled", "set_mode", "severity_words"]

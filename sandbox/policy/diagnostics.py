"""One Diagnostic type for the loader, ``sbx check`` and the profile generator.

Rendered as ``file:line:col: error: message`` then the source line and a caret
under the offending token (1-based lines and columns), with optional notes
("first defined here") and hints ("did you mean 'open'?").
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import SbxError


@dataclass(frozen=True)
class Position:
    file: str
    line: int          # 1-based
    col: int           # 1-based
    length: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def shifted(self, cols: int, length: int = 1) -> "Position":
        return Position(self.file, self.line, self.col + cols, length)


@dataclass
class Diagnostic:
    pos: Position | None
    message: str
    severity: str = "error"                # error | warning | note | info
    hint: str | None = None
    notes: list["Diagnostic"] = field(default_factory=list)
    rule_id: str | None = None             # stable id for ``sbx check``

    def format(self, sources: dict[str, list[str]] | None = None) -> str:
        where = f"{self.pos}: " if self.pos else ""
        tag = f" [{self.rule_id}]" if self.rule_id else ""
        msg = self.message + (f" ({self.hint})" if self.hint else "")
        out = [f"{where}{self.severity}: {msg}{tag}"]
        if self.pos and sources and self.pos.file in sources:
            lines = sources[self.pos.file]
            if 1 <= self.pos.line <= len(lines):
                text = lines[self.pos.line - 1].rstrip("\n")
                out.append(f"  {text}")
                out.append("  " + " " * (self.pos.col - 1) + "^" + "~" * max(0, self.pos.length - 1))
        for n in self.notes:
            out.append(n.format(sources))
        return "\n".join(out)


class PolicyError(SbxError):
    """A profile could not be loaded; carries every problem found in it (exit status 2)."""

    status = 2

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, list[str]] | None = None):
        self.diagnostics = diagnostics
        self.sources = sources or {}
        super().__init__(self.render())

    def render(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        body = "\n".join(d.format(self.sources) for d in self.diagnostics)
        return f"{body}\n{len(errors)} error{'s' if len(errors) != 1 else ''} in profile"


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None

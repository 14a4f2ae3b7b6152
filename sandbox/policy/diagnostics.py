"""One Diagnostic type for the loader, ``sbx check`` and the profile generator.

Rendered as ``file:line:col: error: message`` then the source line and a caret
under the offending token (1-based lines and columns), with optional notes
("first defined here") and hints ("did you mean 'open'?").
"""
from __future__ import annotations

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


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    prev2, prev = [], list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            d = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                d = min(d, prev2[j - 2] + 1)
            cur.append(d)
        prev2, prev = prev, cur
    return prev[-1]


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the candidate *word* is a typo of, or None.

    Only typos are suggested: one edit (two for words longer than 8
    characters), ignoring case, or *word* being a candidate with a suffix
    added (SCMP_CMP_EQUAL for SCMP_CMP_EQ).  A name that merely shares a part
    with a candidate is no typo of it: 'syscall' is not 'afs_syscall', 'recv'
    is not 'recvmsg'.
    """
    w = word.casefold()
    limit = 1 if len(w) <= 8 else 2
    best: tuple[float, str] | None = None
    for c in candidates:
        k = c.casefold()
        suffixed = len(k) >= 6 and w.startswith(k)
        d = _edits(w, k) if abs(len(k) - len(w)) <= limit else limit + 1
        d = min(d, limit + 1) if suffixed else d        # accepted, after every true typo
        if (d <= limit or suffixed) and (best is None or (d, c) < best):
            best = (d, c)
    return f"did you mean '{best[1]}'?" if best else None

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
                text, col = _window(lines[self.pos.line - 1].rstrip("\n"), self.pos.col)
                out.append(f"  {text}")
                width = max(1, min(self.pos.length, len(text) - col + 1))
                out.append("  " + " " * (col - 1) + "^" + "~" * (width - 1))
        for n in self.notes:
            out.append(n.format(sources))
        return "\n".join(out)


SHOWN = 100          # at most this much of a source line is quoted under a message


def _window(text: str, col: int) -> tuple[str, int]:
    """*text* cut to SHOWN characters around column *col* (1-based), and the column in it:
    a crafted one-line profile must not flood the terminal."""
    if len(text) <= SHOWN:
        return text, col
    start = max(0, min(col - 1 - SHOWN // 2, len(text) - SHOWN))
    shown = text[start:start + SHOWN]
    col -= start
    if start:
        shown, col = "..." + shown, col + 3
    if start + SHOWN < len(text):
        shown += "..."
    return shown, col


class PolicyError(SbxError):
    """A profile could not be loaded; carries every problem found in it (exit status 2)."""

    status = 2

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, list[str]] | None = None):
        self.diagnostics = diagnostics
        self.sources = sources or {}
        super().__init__(self.render())

    def render(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        return f"{render_list(self.diagnostics, self.sources)}\n" \
               f"{len(errors)} error{'s' if len(errors) != 1 else ''} in profile"


def decode_utf8(raw: bytes, file: str, what: str) -> tuple[str | None, Diagnostic | None]:
    """(*raw* decoded, None), or (None, an error at the first byte that is not
    UTF-8: line and column counted in bytes, as an editor's hex view shows them)."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        return None, Diagnostic(Position(file, line, col), f"{what} is not valid UTF-8 "
                                f"(byte {raw[err.start]:#04x} at offset {err.start})",
                                hint="save the file as UTF-8")


MAX_SHOWN = 20       # diagnostics printed for one profile; a crafted one may have thousands


def render_list(diags: list[Diagnostic], sources: dict | None) -> str:
    """The first MAX_SHOWN diagnostics, then how many more there are."""
    body = "\n".join(d.format(sources) for d in diags[:MAX_SHOWN])
    if len(diags) > MAX_SHOWN:
        body += f"\n... and {len(diags) - MAX_SHOWN} more (fix these first)"
    return body


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

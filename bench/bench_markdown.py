"""Markdown rendering for the benchmark report: sections of tables and text.

Each benchmark section returns a ``Section``: a title, blocks (tables or
lines of text, in order) and the raw numbers for the JSON output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]
    align: str = ""          # one of "l"/"r" per column; default: first left, others right

    def render(self) -> list[str]:
        cells = [[cell(v) for v in row] for row in self.rows]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(self.headers)]
        align = self.align or "l" + "r" * (len(self.headers) - 1)

        def line(values: Sequence[str]) -> str:
            out = []
            for i, v in enumerate(values):
                out.append(v.ljust(widths[i]) if align[i] == "l" else v.rjust(widths[i]))
            return "| " + " | ".join(out) + " |"

        sep = ["-" * (w - 1) + (":" if a == "r" else "-") for w, a in zip(widths, align)]
        return [line(self.headers), line(sep)] + [line(r) for r in cells]


@dataclass
class Section:
    number: int
    title: str
    blocks: list[Table | str] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def text(self, line: str) -> None:
        self.blocks.append(line)

    def table(self, headers: list[str], rows: list[list[Any]], align: str = "") -> None:
        self.blocks.append(Table(headers, rows, align))

    def render(self) -> str:
        out = [f"## {self.number}. {self.title}", ""]
        for block in self.blocks:
            if isinstance(block, Table):
                out.extend(block.render())
            else:
                out.append(block)
            out.append("")
        return "\n".join(out)


def cell(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != v:          # NaN
            return "n/a"
        return f"{v:.2f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def trio(*values: Any) -> str:
    """Several numbers in one cell: ``121 / 367 / 447``."""
    return " / ".join(cell(v) for v in values)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"

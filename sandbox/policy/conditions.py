"""Parse one argument condition: ``arg0 in [AF_UNIX, AF_INET]``, ``arg1 & 0x7 == 0``.

Grammar (one condition per string; a rule's conditions all have to hold):
    cond   := ARG CMP value                      # ==, !=, <, <=, >, >=
            | ARG '&' value ('==' | '!=') value   # masked compare
            | ARG ['not'] 'in' '[' value {',' value} ']'
    value  := term {'|' term}                     # O_CREAT|O_WRONLY
    term   := NUMBER | NAME | '~' term | '(' value ')'   # 0x10, -1, AF_INET, ~0x3
    ARG    := 'arg0' .. 'arg5'
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from . import constants
from .diagnostics import Diagnostic, Position, did_you_mean

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>-?0[xX][0-9a-fA-F]+|-?0[oO][0-7]+|-?\d+) |
    (?P<name>[A-Za-z_][A-Za-z0-9_]*) |
    (?P<op>==|!=|<=|>=|<|>|&|\||\[|\]|,|~|\(|\))
)""", re.X)


@dataclass(frozen=True)
class CondSpec:
    arg: int
    op: str                      # ==, !=, <, <=, >, >=, &==, &!=, in, not in
    values: tuple[int, ...]      # signed as written; widths are applied when lowering
    mask: int | None
    pos: Position
    text: str


class _Parser:
    def __init__(self, text: str, pos: Position):
        self.text, self.base = text, pos
        self.toks: list[tuple[str, str, int]] = []
        self.diags: list[Diagnostic] = []
        i = 0
        while i < len(text):
            if text[i:].strip() == "":
                break
            m = _TOKEN.match(text, i)
            if not m or m.end() == i:
                col = i + len(text[i:]) - len(text[i:].lstrip())
                self.error(col, f"unexpected character {text[col]!r} in condition")
                break
            kind = m.lastgroup
            self.toks.append((kind, m.group(kind), m.start(kind)))
            i = m.end()
        self.i = 0

    def error(self, col: int, msg: str, hint: str | None = None, length: int = 1) -> None:
        self.diags.append(Diagnostic(self.base.shifted(col, length), msg, hint=hint))

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "", len(self.text))

    def take(self, kind: str | None = None, value: str | None = None):
        tok = self.peek()
        if (kind and tok[0] != kind) or (value and tok[1] != value):
            want = value or kind
            got = tok[1] or "end of condition"
            self.error(tok[2], f"expected {want!r} in condition, found {got!r}")
            raise ValueError
        self.i += 1
        return tok

    def term(self) -> int:
        kind, val, col = self.peek()
        if kind == "op" and val == "~":
            self.i += 1
            return ~self.term()
        if kind == "op" and val == "(":
            self.i += 1
            v = self.value()
            self.take("op", ")")
            return v
        if kind == "num":
            self.i += 1
            return int(val, 0)
        if kind == "name":
            self.i += 1
            found = constants.lookup(val)
            if found is None:
                self.error(col, f"unknown constant '{val}'",
                           did_you_mean(val, constants.names()), len(val))
                raise ValueError
            return found
        self.error(col, f"expected a number or constant, found {val or 'end of condition'!r}")
        raise ValueError

    def value(self) -> int:
        v = self.term()
        while self.peek()[:2] == ("op", "|"):
            self.i += 1
            v |= self.term()
        return v

    def cond(self) -> CondSpec:
        kind, val, col = self.take("name")
        m = re.fullmatch(r"arg([0-5])", val)
        if not m:
            self.error(col, f"expected arg0..arg5, found '{val}'", length=len(val))
            raise ValueError
        arg = int(m.group(1))
        kind, val, col = self.peek()
        mask = None
        if (kind, val) == ("op", "&"):
            self.i += 1
            mask = self.value()
            kind, val, col = self.take("op")
            if val not in ("==", "!="):
                self.error(col, f"a masked compare takes == or !=, not '{val}'")
                raise ValueError
            op, values = "&" + val, (self.value(),)
        elif kind == "op" and val in ("==", "!=", "<", "<=", ">", ">="):
            self.i += 1
            op, values = val, (self.value(),)
        elif kind == "name" and val in ("in", "not"):
            self.i += 1
            op = "in"
            if val == "not":
                self.take("name", "in")
                op = "not in"
            self.take("op", "[")
            items = [self.value()]
            while self.peek()[:2] == ("op", ","):
                self.i += 1
                items.append(self.value())
            self.take("op", "]")
            values = tuple(items)
        else:
            self.error(col, f"expected a comparison (==, !=, <, <=, >, >=, &, in, not in), found {val or 'end'!r}")
            raise ValueError
        if self.i != len(self.toks):
            self.error(self.peek()[2], f"unexpected {self.peek()[1]!r} after the condition")
            raise ValueError
        return CondSpec(arg, op, values, mask, self.base, self.text)


def parse_condition(text: str, pos: Position) -> tuple[CondSpec | None, list[Diagnostic]]:
    """Parse *text* written at *pos*; returns the condition or the diagnostics."""
    p = _Parser(text, pos)
    if p.diags:
        return None, p.diags
    try:
        return p.cond(), []
    except ValueError:
        return None, p.diags


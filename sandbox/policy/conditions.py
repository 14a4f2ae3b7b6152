"""Parse one argument condition: ``arg0 in [AF_UNIX, AF_INET]``, ``arg1 & 0x7 == 0``.

Grammar (one condition per string; a rule's conditions all have to hold):
    cond   := ARG CMP value                      # ==, !=, <, <=, >, >=
            | ARG '&' value ('==' | '!=') value   # masked compare
            | ARG ['not'] 'in' '[' value {',' value} ']'
    value  := term {'|' term}                     # O_CREAT|O_WRONLY
    term   := NUMBER | NAME | '~' term | '(' value ')'   # 0x10, -1, AF_INET, ~0x3
    ARG    := 'arg0' .. 'arg5'
    NUMBER := ['-'] ( DEC | '0x' HEX | '0o' OCT | '0' OCT )   # 0644 is octal, as in C

A number with a leading zero is octal, as in C, chmod(1) and strace output
(``0644`` is 420); ``08`` is an error, never a silently different value.
Literals are limited to ``MAX_DIGITS`` characters: any longer one cannot fit
a 64-bit argument, and Python refuses to convert decimal strings of more than
4300 digits.  Every text either yields a condition or at least one positioned
diagnostic, never neither.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from . import constants
from .diagnostics import Diagnostic, Position, did_you_mean

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>-?0[xX][0-9a-fA-F]+|-?0[oO][0-9]+|-?\d+) |
    (?P<name>[A-Za-z_][A-Za-z0-9_]*) |
    (?P<op>==|!=|<=|>=|<|>|&|\||\[|\]|,|~|\(|\))
)""", re.X)


MAX_DIGITS = 66          # "0b" + 64 binary digits would be the longest useful spelling


def parse_number(text: str) -> int:
    """The value of a NUMBER token; ValueError with a message for a bad one."""
    body = text.lstrip("-")
    sign = -1 if text.startswith("-") else 1
    if len(body) > MAX_DIGITS:
        raise ValueError(f"number {text[:12]}... has {len(body)} characters: too large for any argument")
    low = body.lower()
    if low.startswith("0x"):
        digits = body[2:]
        if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise ValueError(f"'{text}' is not a hexadecimal number")
        return sign * int(digits, 16)
    if low.startswith("0o") or (len(body) > 1 and body[0] == "0"):
        digits = body[2:] if low.startswith("0o") else body[1:]
        if not digits or any(c not in "01234567" for c in digits):
            if low.startswith("0o"):
                raise ValueError(f"'{text}' is not an octal number (digits 0-7 after 0o)")
            raise ValueError(f"'{text}' is not an octal number (a leading 0 means octal, as in C); "
                             f"write {text.replace('0', '', 1) if sign > 0 else '-' + body[1:]} "
                             "for decimal")
        return sign * int(digits, 8)
    if not body.isdigit() or not body.isascii():
        raise ValueError(f"'{text}' is not a number")
    return sign * int(body, 10)


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
            try:
                return parse_number(val)
            except ValueError as err:
                self.error(col, str(err), length=len(val))
                raise

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
        # every failure path records a diagnostic first; should one ever not,
        # the condition must still not vanish silently
        return None, p.diags or [Diagnostic(pos, f"cannot parse condition {text!r}")]


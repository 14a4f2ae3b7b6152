"""Evaluate arm64's ``asm/unistd.h`` into the syscall table a native 64-bit kernel builds.

Before v6.11 arm64 had no syscall.tbl: ``arch/arm64/kernel/sys.c`` built its
``sys_call_table`` by defining ``__SYSCALL(nr, sym)`` and including
``asm/unistd.h``, which includes ``uapi/asm/unistd.h`` (the ``__ARCH_WANT_*``
switches) and ``include/uapi/asm-generic/unistd.h`` (the numbers). This module
runs that include chain through a small preprocessor that knows only what those
headers use: ``#if/#ifdef/#ifndef/#elif/#else/#endif`` with ``defined``,
``__BITS_PER_LONG``, ``==``, ``!=``, ``!``, ``&&``, ``||``; object- and
function-like ``#define``; ``#undef``; ``#include`` of the three headers (any
other include is skipped). ``__BITS_PER_LONG`` is 64, ``__SYSCALL_COMPAT`` and
``CONFIG_COMPAT`` are undefined, as for the native table.

Each ``__SYSCALL(nr, sym)`` left after macro expansion (``__SC_3264``,
``__SC_COMP`` ... expand to it through the header's own definitions) is one
table slot; its name is the ``__NR_<name>`` define with that number
(``__NR_newfstatat`` for ``__NR3264_fstatat`` and the other 64-bit aliases).
"""
from __future__ import annotations

import ast
import re
from collections.abc import Callable

ENTRY = "arch/arm64/include/asm/unistd.h"
INCLUDES = {
    "uapi/asm/unistd.h": "arch/arm64/include/uapi/asm/unistd.h",
    "asm-generic/unistd.h": "include/uapi/asm-generic/unistd.h",
}
# __NR_ defines that are not syscalls: the table size and arch-private base.
NOT_SYSCALLS = {"__NR_syscalls", "__NR_arch_specific_syscall"}

_DIRECTIVE = re.compile(r"^\s*#\s*(\w+)\s*(.*)$")
_DEFINE = re.compile(r"^(\w+)(\(([^)]*)\))?\s*(.*)$")
_INCLUDE = re.compile(r'^[<"]([^>"]+)[>"]')
_IDENT = re.compile(r"[A-Za-z_]\w*")


class HeaderError(Exception):
    """A header this evaluator cannot read the way the kernel's build would."""


class _Macro:
    def __init__(self, params: list[str] | None, body: str) -> None:
        self.params = params        # None for an object-like macro
        self.body = body


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _logical_lines(text: str) -> list[str]:
    """Source lines with backslash continuations joined."""
    return _strip_comments(text).replace("\\\n", " ").splitlines()


class Preprocessor:
    """Just enough of cpp for the syscall headers; collects ``__SYSCALL`` slots."""

    def __init__(self, read: Callable[[str], str | None], path_of_entry: str = ENTRY) -> None:
        self.read = read
        self.entry = path_of_entry
        self.macros: dict[str, _Macro] = {"__BITS_PER_LONG": _Macro(None, "64")}
        self.text: list[str] = []     # active non-directive lines, in order

    # -- conditions ---------------------------------------------------------
    def _eval(self, expr: str, where: str) -> bool:
        expr = re.sub(r"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)",
                      lambda m: "1" if (m.group(1) or m.group(2)) in self.macros else "0", expr)
        expr = self._expand_objects(expr)
        expr = _IDENT.sub("0", expr)   # cpp: an unknown identifier is 0
        expr = expr.replace("&&", " and ").replace("||", " or ")
        expr = re.sub(r"!(?!=)", " not ", expr)
        try:
            tree = ast.parse(expr.strip(), mode="eval")
        except SyntaxError:
            raise HeaderError(f"{where}: cannot evaluate #if {expr.strip()!r}") from None
        allowed = (ast.Expression, ast.BoolOp, ast.UnaryOp, ast.Compare, ast.Constant,
                   ast.And, ast.Or, ast.Not, ast.Eq, ast.NotEq, ast.Lt, ast.Gt, ast.LtE,
                   ast.GtE, ast.BinOp, ast.Add, ast.Sub, ast.USub)
        if not all(isinstance(node, allowed) for node in ast.walk(tree)):
            raise HeaderError(f"{where}: unsupported #if expression {expr.strip()!r}")
        return bool(eval(compile(tree, where, "eval"), {"__builtins__": {}}))  # noqa: S307

    def _expand_objects(self, text: str, depth: int = 0) -> str:
        if depth > 20:
            return text

        def repl(m: re.Match) -> str:
            macro = self.macros.get(m.group(0))
            if macro is None or macro.params is not None:
                return m.group(0)
            return "(" + self._expand_objects(macro.body, depth + 1) + ")"
        return _IDENT.sub(repl, text)

    # -- directives ---------------------------------------------------------
    def run(self) -> None:
        self._file(self.entry, [])

    def _file(self, path: str, stack: list[str]) -> None:
        text = self.read(path)
        if text is None:
            raise HeaderError(f"{path}: missing")
        if path in stack:
            return
        cond: list[tuple[bool, bool]] = []   # (this branch active, some branch taken)
        for lineno, line in enumerate(_logical_lines(text), start=1):
            where = f"{path}:{lineno}"
            active = all(a for a, _ in cond)
            m = _DIRECTIVE.match(line)
            if m is None:
                if active:
                    self.text.append(line)
                continue
            word, rest = m.group(1), m.group(2).strip()
            if word in ("if", "ifdef", "ifndef"):
                if not active:
                    cond.append((False, True))
                    continue
                if word == "ifdef":
                    value = rest.split()[0] in self.macros
                elif word == "ifndef":
                    value = rest.split()[0] not in self.macros
                else:
                    value = self._eval(rest, where)
                cond.append((value, value))
            elif word == "elif":
                if not cond:
                    raise HeaderError(f"{where}: #elif without #if")
                _, taken = cond.pop()
                outer = all(a for a, _ in cond)
                value = outer and not taken and self._eval(rest, where)
                cond.append((value, taken or value))
            elif word == "else":
                if not cond:
                    raise HeaderError(f"{where}: #else without #if")
                _, taken = cond.pop()
                cond.append((not taken, True))
            elif word == "endif":
                if not cond:
                    raise HeaderError(f"{where}: #endif without #if")
                cond.pop()
            elif not active:
                continue
            elif word == "define":
                d = _DEFINE.match(rest)
                if d is None:
                    raise HeaderError(f"{where}: bad #define")
                name, params, body = d.group(1), d.group(3), d.group(4).strip()
                if name == "__SYSCALL" and name in self.macros:
                    continue    # ours (the collector) stays, as sys.c's does
                plist = [p.strip() for p in params.split(",")] if d.group(2) else None
                self.macros[name] = _Macro(plist, body)
            elif word == "undef":
                if rest.split()[0] != "__SYSCALL":
                    self.macros.pop(rest.split()[0], None)
            elif word == "include":
                inc = _INCLUDE.match(rest)
                target = INCLUDES.get(inc.group(1)) if inc else None
                if target is not None:
                    self._file(target, stack + [path])
        if cond:
            raise HeaderError(f"{path}: unterminated #if")

    # -- slots --------------------------------------------------------------
    def slots(self) -> list[tuple[str, str]]:
        """(number expression, symbol) of every ``__SYSCALL`` after expansion."""
        text = self._expand_calls(" ".join(self.text))
        found = []
        for m in re.finditer(r"\b__SYSCALL\s*\(", text):
            args, _ = _call_args(text, m.end())
            if len(args) != 2:
                raise HeaderError(f"__SYSCALL with {len(args)} arguments: {args}")
            found.append((args[0], args[1]))
        return found

    def _expand_calls(self, text: str, depth: int = 0) -> str:
        if depth > 20:
            raise HeaderError("macro expansion does not terminate")
        out, pos, changed = [], 0, False
        for m in _IDENT.finditer(text):
            if m.start() < pos:
                continue
            macro = self.macros.get(m.group(0))
            if macro is None or macro.params is None or m.group(0) == "__SYSCALL":
                continue
            after = text[m.end():].lstrip()
            if not after.startswith("("):
                continue
            open_at = len(text) - len(after)
            args, end = _call_args(text, open_at + 1)
            if len(args) != len(macro.params):
                raise HeaderError(f"{m.group(0)} takes {len(macro.params)} arguments, "
                                  f"given {len(args)}: {args}")
            body = macro.body
            for param, arg in zip(macro.params, args):
                body = re.sub(rf"\b{re.escape(param)}\b", arg, body)
            out.append(text[pos:m.start()])
            out.append(" " + body + " ")
            pos = end
            changed = True
        out.append(text[pos:])
        result = "".join(out)
        return self._expand_calls(result, depth + 1) if changed else result

    def number(self, expr: str) -> int:
        value = self._expand_objects(expr)
        if not re.fullmatch(r"[\d\s()+\-]+", value):
            raise HeaderError(f"syscall number {expr!r} does not reduce to a constant ({value!r})")
        return int(eval(value, {"__builtins__": {}}))  # noqa: S307 - digits and + - ( ) only

    def names(self) -> dict[int, list[str]]:
        """Number -> the ``__NR_<name>`` defines that stand for it."""
        by_nr: dict[int, list[str]] = {}
        for macro_name, macro in self.macros.items():
            if (not macro_name.startswith("__NR_") or macro_name in NOT_SYSCALLS
                    or macro.params is not None):
                continue
            try:
                nr = self.number(macro_name)
            except HeaderError:
                continue
            by_nr.setdefault(nr, []).append(macro_name[len("__NR_"):])
        return by_nr


def _call_args(text: str, start: int) -> tuple[list[str], int]:
    """Split the arguments of a call whose '(' ends just before *start*."""
    depth, args, cur = 1, [], []
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(cur).strip())
                return [a for a in args if a or len(args) > 1], i + 1
        elif ch == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    raise HeaderError("unbalanced parentheses in a macro call")


def arm64_table(read: Callable[[str], str | None]) -> list[tuple[int, str, str]]:
    """(number, name, entry point) of every slot of the native arm64 table, by number.

    *read* maps a kernel source path to its text, or None when the file is absent.
    """
    pp = Preprocessor(read)
    pp.macros["__SYSCALL"] = _Macro(["nr", "sym"], "")
    pp.run()
    names = pp.names()
    table = []
    seen: dict[int, str] = {}
    for expr, sym in pp.slots():
        nr = pp.number(expr)
        if nr in seen:
            raise HeaderError(f"slot {nr} filled twice ({seen[nr]}, {sym})")
        candidates = names.get(nr, [])
        if len(candidates) != 1:
            raise HeaderError(f"slot {nr} ({sym}): expected one __NR_ name, found {candidates}")
        seen[nr] = sym
        table.append((nr, candidates[0], sym))
    return sorted(table)

"""Write profile rules as YAML text: the one writer of policy fragments.

``sbx trace`` (generated profiles), ``sbx refine`` (the rules it adds) and
``sbx import`` (a Docker/OCI profile in the sbx language) all write rules
through ``rule_lines``, so a rule reads the same whichever tool wrote it
(and ``sbx trace`` its filesystem: and network: lists through ``list_lines``):

    - errno(EPERM): [ptrace, process_vm_readv,
                     process_vm_writev]          (flow style, wrapped)
    - allow: socket                              # 12   (a comment per item:
      when:                                      #       block style)
        - "arg0 in [AF_UNIX, AF_INET]"           # AF_UNIX 4, AF_INET 8
      comment: "why"
"""
from __future__ import annotations

import json
import re

import yaml

WIDTH = 98          # wrap flow lists before this column
COMMENT_COLUMN = 40


def quote(text: str) -> str:
    """A YAML scalar for *text*: bare where YAML reads it back unchanged as this
    string, else double-quoted."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)


_PATHLIKE = re.compile(r"[A-Za-z0-9_$/.+~-][A-Za-z0-9_$/.+~@%=-]*")


def quote_item(text: str) -> str:
    """A list item (a path such as /usr or $HOME/.ssh, a port): bare where YAML
    reads it back unchanged inside a flow list (a number: a port), else double-quoted."""
    if text.isdigit():
        return text
    if _PATHLIKE.fullmatch(text):
        try:
            if yaml.safe_load(f"[{text}]") == [text]:
                return text
        except yaml.YAMLError:
            pass
    return json.dumps(text, ensure_ascii=False)


def list_lines(key: str, items: list[tuple[str, str | None]], indent: int = 2) -> list[str]:
    """``key: [a, b]`` (wrapped), or one item per line when an item has a comment."""
    pad = " " * indent
    shown = [quote_item(t) for t, _ in items]
    if not items:
        return [f"{pad}{key}: []"]
    if not any(c for _, c in items):
        return _flow(f"{pad}{key}: ", shown) if len(shown) > 1 else [f"{pad}{key}: [{shown[0]}]"]
    return [f"{pad}{key}:"] + [_commented(f"{pad}  - {t}", c) for t, (_, c) in zip(shown, items)]


def _commented(text: str, comment: str | None) -> str:
    return f"{text:<{COMMENT_COLUMN}} # {comment}" if comment else text


def _flow(head: str, items: list[str]) -> list[str]:
    """``head[a, b, ...]`` wrapped under its opening bracket."""
    if len(items) == 1:
        return [f"{head}{items[0]}"]
    lines, cur = [], f"{head}["
    pad = " " * len(cur)
    for i, item in enumerate(items):
        piece = item + ("]" if i == len(items) - 1 else ",")
        if len(cur) + 1 + len(piece) > WIDTH and not cur.endswith("["):
            lines.append(cur)
            cur = pad + piece
        else:
            cur += ("" if cur.endswith("[") else " ") + piece
    lines.append(cur)
    return lines


def rule_lines(action: str, names: list[tuple[str, str | None]],
               conds: list[tuple[str, str | None]] = (), comment: str | None = None,
               indent: int = 2) -> list[str]:
    """The YAML lines of one rule: *action* (``allow``, ``errno(EPERM)`` ...) over
    *names* (syscalls or @groups, each with an optional trailing comment), with
    *conds* (condition texts, likewise) and a ``comment:`` field."""
    pad, inner = " " * indent, " " * (indent + 2)
    shown = [quote(n) for n, _ in names]
    if not any(c for _, c in names):
        lines = _flow(f"{pad}- {action}: ", shown)
    elif len(names) == 1:
        lines = [_commented(f"{pad}- {action}: {shown[0]}", names[0][1])]
    else:
        lines = [f"{pad}- {action}:"]
        lines += [_commented(f"{inner}  - {n}", c) for n, (_, c) in zip(shown, names)]
    if conds:
        texts = [quote(t) for t, _ in conds]
        if any(c for _, c in conds):
            lines.append(f"{inner}when:")
            lines += [_commented(f"{inner}  - {t}", c) for t, (_, c) in zip(texts, conds)]
        else:
            lines += _flow(f"{inner}when: ", texts) if len(texts) > 1 else [f"{inner}when: [{texts[0]}]"]
    if comment:
        lines.append(f"{inner}comment: {quote(comment)}")
    return lines


__all__ = ["list_lines", "quote", "quote_item", "rule_lines"]

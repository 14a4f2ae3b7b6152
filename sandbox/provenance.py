"""Where a generated profile's syscall came from, as the comment after its name.

``sbx trace`` writes how often it was seen (``# 12``).  ``sbx analyze`` writes
where its code makes it (``# static: libc.so.6 read ← main``).  A profile that
merges both marks every name with one of three tags:

    # traced: 12                              seen 12 times, not found statically
    # static: libc.so.6 read ← main           found in the code, never seen
    # both: 12 calls; libc.so.6 read ← main   both

The writer (``sandbox.trace``) and its reader (``observed_from_profile``) and
``sbx check`` (SBX144) use these two functions only, so the format lives here.
"""
from __future__ import annotations

import re

STATIC, TRACED, BOTH = "static", "traced", "both"
_TAGGED = re.compile(r"(static|traced|both):\s*(.*)$")
_BOTH = re.compile(r"(\d+) calls?(?:;\s*(.*))?$")


def comment(count: int, where: str | None, tagged: bool) -> str:
    """The comment for a name seen *count* times and found statically at *where* (or not).
    Untagged (a profile with no static part) it is the bare count, as sbx trace writes."""
    if not tagged:
        return str(count)
    if where is not None and count:
        return f"{BOTH}: {count} call{'s' if count != 1 else ''}; {where}"
    if where is not None:
        return f"{STATIC}: {where}"
    return f"{TRACED}: {count}"


def parse(text: str) -> tuple[str | None, int, str | None]:
    """(tag or None, count, where found statically) from a name's comment; an untagged
    comment is sbx trace's count."""
    m = _TAGGED.match(text.strip())
    if m is None:
        n = re.match(r"(\d+)\b", text.strip())
        return None, int(n.group(1)) if n else 0, None
    tag, rest = m.group(1), m.group(2).strip()
    if tag == STATIC:
        return tag, 0, rest or None
    if tag == TRACED:
        n = re.match(r"(\d+)", rest)
        return tag, int(n.group(1)) if n else 0, None
    b = _BOTH.match(rest)
    if b is None:
        return tag, 0, rest or None
    return tag, int(b.group(1)), (b.group(2) or "").strip() or None

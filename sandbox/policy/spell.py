"""Spell argument values the way a person writes them in a profile: the one speller.

``value_text("socket", 0, 2)`` is ``AF_INET``, ``value_text("clone", 0, 0x3d0f00)``
``CLONE_VM|CLONE_FS|...``, ``value_text("openat", 2, 0x80241)``
``O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC``. How an argument is spelled comes from
the one table of argument knowledge (``bpf_filters.syscalls.arguments``); the
names from ``constants``. A value no constant fits is a number: decimal below
10, hexadecimal from there. Used by ``sbx trace``'s writer, ``sbx refine`` and
``sbx import``: the same value reads the same everywhere.
"""
from __future__ import annotations

from bpf_filters.syscalls.arguments import ENUM, FLAGS, SOCKET_TYPE, meaning

from .constants import CONSTANTS

_SOCK_FLAGS = ("SOCK_NONBLOCK", "SOCK_CLOEXEC")


def number(value: int) -> str:
    return hex(value) if value > 9 else str(value)


def value_text(name: str, arg: int, value: int, context: dict[int, set[int]] | None = None) -> str:
    """*value* of argument *arg* of syscall *name*, symbolic where constants fit.

    *context*: the values seen of the call's other arguments, for the spellings
    that depend on them (socket's protocol on the family, setsockopt's option
    on the level)."""
    context = context or {}
    spelling, prefixes = _spelling(name, arg, context)
    if spelling == SOCKET_TYPE:
        return _socket_type(value)
    if spelling == ENUM:
        return constant(value, prefixes) or number(value)
    if spelling == FLAGS:
        if name == "personality":
            return _personality(value, prefixes)
        return flags(value, prefixes, signal_low_byte=(name == "clone"),
                     access_mode=name in ("open", "openat"))
    return number(value)


def shared_text(names: list[str], arg: int, value: int) -> str:
    """*value* spelled for a rule over several syscalls: symbolic only if every
    one of them spells it the same way."""
    texts = {value_text(n, arg, value) for n in names}
    return texts.pop() if len(texts) == 1 else number(value)


def _spelling(name: str, arg: int, context: dict[int, set[int]]):
    if name == "socket" and arg == 2:
        netlink = context.get(0) == {CONSTANTS["AF_NETLINK"]}
        return ENUM, ("NETLINK_",) if netlink else ("IPPROTO_",)
    if name in ("setsockopt", "getsockopt") and arg == 2:
        return (ENUM, ("SO_",)) if context.get(1) == {CONSTANTS["SOL_SOCKET"]} else (None, ())
    m = meaning(name, arg)
    return (m.spelling, m.prefixes) if m is not None else (None, ())


def constant(value: int, prefixes: tuple[str, ...]) -> str | None:
    """The first constant with one of *prefixes* whose value is *value* (a negative
    constant matches its 64- and 32-bit two's complement)."""
    for cname, cval in CONSTANTS.items():
        if not cname.startswith(prefixes) or cname in _SOCK_FLAGS:
            continue
        if cval & 0xFFFF_FFFF_FFFF_FFFF == value or (cval < 0 and cval & 0xFFFF_FFFF == value):
            return cname
    return None


def flags(value: int, prefixes: tuple[str, ...], signal_low_byte=False, access_mode=False) -> str:
    """OR of the constants whose bits are all set (widest first: O_SYNC before
    O_DSYNC), in value order; open's access mode first, clone's signal last."""
    head, tail, rest = [], [], value
    if access_mode:
        head.append({0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}.get(rest & 3, "3"))
        rest &= ~3
    if signal_low_byte and rest & 0xFF:             # clone: CSIGNAL, the exit signal
        tail.append(constant(rest & 0xFF, ("SIG",)) or number(rest & 0xFF))
        rest &= ~0xFF
    bits = sorted(((cname, cval) for cname, cval in CONSTANTS.items()
                   if cname.startswith(prefixes) and cval > 0 and not (access_mode and cval & 3)),
                  key=lambda kv: -bin(kv[1]).count("1"))
    chosen = []
    for cname, cval in bits:
        if rest & cval == cval:
            chosen.append((cval, cname))
            rest &= ~cval
    parts = head + [n for _, n in sorted(chosen)] + tail
    if not parts:
        return constant(value, prefixes) or number(value)
    if rest:
        parts.append(number(rest))
    return "|".join(parts)


def _personality(value: int, prefixes: tuple[str, ...]) -> str:
    """A persona (low byte: PER_LINUX, PER_LINUX32 ...) and its flag bits
    (0xffffffff, the query, is PER_QUERY)."""
    exact = constant(value, prefixes)
    if exact or value == 0xFFFFFFFF:
        return exact or number(value)
    base = constant(value & 0xFF, ("PER_",)) or number(value & 0xFF)
    rest = flags(value & ~0xFF, tuple(p for p in prefixes if p != "PER_"))
    return rest if not value & 0xFF else f"{base}|{rest}"


def _socket_type(value: int) -> str:
    base, extra = value & 0xF, value & ~0xF
    parts = [constant(base, ("SOCK_",)) or number(base)]
    for fname in _SOCK_FLAGS:
        if extra & CONSTANTS[fname]:
            parts.append(fname)
            extra &= ~CONSTANTS[fname]
    if extra:
        parts.append(number(extra))
    return "|".join(parts)


__all__ = ["constant", "flags", "number", "shared_text", "value_text"]

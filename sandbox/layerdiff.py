"""The layers beside the seccomp filter, compared: each difference judged wider or narrower.

``sbx diff`` and the drift gate (``sbx check --baseline``) compare two
profiles' capabilities, scopes, Landlock mode, ``filesystem:`` and
``network:`` sections (as ``policy.profile.confinement`` gives them, bases
and ``inherit`` merged in) and say for each difference whether the new
profile lets through more (*widening*) or less (*narrowing*):

- a capability added widens, removed narrows;
- a scope opened (``sandbox`` -> ``any``) widens, closed narrows;
- ``landlock: best-effort`` where it was ``enforce`` widens, the reverse narrows;
- a TCP port added to ``bind:`` or ``connect:``, or ``any`` where ports were
  listed (a missing key or section means ``any``), widens; removed narrows;
- a filesystem right on a path widens when the other profile did not grant
  it there: granted at that path or an ancestor, with no ``deny`` in between
  (the most specific path decides, as in ``confine``). Checked at the paths of
  the new profile's grants and of the old profile's denies, which are the
  only places where the new can grant what the old did not. No
  ``filesystem:`` section grants everything.

Paths are compared as written (``$HOME/src`` is not ``/root/src``): a grant
the other profile cannot be shown to hold counts as a difference, so the gate
errs towards failing.
"""
from __future__ import annotations

from .confine import ANY, NET_KEYS, RIGHT_WORDS
from .policy.profile import Profile, confinement
from .trace.files import beneath

WIDENING, NARROWING = "widening", "narrowing"
EVERYTHING = frozenset(r for rights in RIGHT_WORDS.values() for r in rights)


def _norm(path: str) -> str:
    return path.rstrip("/") or "/"


def rights_at(fs, path: str) -> frozenset[str]:
    """The Landlock rights *fs* (a Spec's filesystem list, None: no section) grants at
    *path*: a grant holds beneath its path unless a ``deny`` lies between (a deny at
    the grant's own path wins)."""
    if fs is None:
        return EVERYTHING
    entries = [(word, _norm(p)) for word, p, _optional in fs]
    denies = [p for word, p in entries if word == "deny" and beneath(path, p)]
    cut = max(denies, key=len, default=None)
    out: set[str] = set()
    for word, p in entries:
        if word != "deny" and beneath(path, p) and (cut is None or len(p) > len(cut)):
            out.update(RIGHT_WORDS[word])
    return frozenset(out)


def _fs_gained(old, new) -> list[tuple[str, list[str]]]:
    """(path, rights) where *new* grants what *old* does not."""
    if new is None:
        points = ["/"] + [_norm(p) for _w, p, _o in old or ()]
    else:
        points = [_norm(p) for w, p, _o in new if w != "deny"] + \
            [_norm(p) for w, p, _o in old or () if w == "deny"]
    out = []
    for path in dict.fromkeys(points):
        gained = rights_at(new, path) - rights_at(old, path)
        if gained:
            out.append((path, sorted(gained)))
    return out


def _ports(value) -> str:
    return value if value == ANY else "[" + ", ".join(value) + "]"


def _net_value(net, key):
    return ANY if net is None else net.get(key, ANY)


def layer_changes(old: Profile, new: Profile) -> list[tuple[str, str, str, str | None]]:
    """How the other layers of *new* differ from *old*: (section, kind, text, item), kind
    being ``widening`` or ``narrowing`` (a change both ways is two entries), item the
    path, port (``bind 8080``) or capability the entry is about, where there is one."""
    a, b = confinement(old), confinement(new)
    out: list[tuple[str, str, str, str | None]] = []

    def plus_minus(section: str, what: str, xs, ys, added_kind: str, tag: str = "") -> None:
        removed_kind = NARROWING if added_kind == WIDENING else WIDENING
        added, removed = [y for y in ys if y not in xs], [x for x in xs if x not in ys]
        if added:
            out.append((section, added_kind, f"{what}: " + ", ".join(f"+{y}" for y in added),
                        tag + added[0]))
        if removed:
            out.append((section, removed_kind, f"{what}: " + ", ".join(f"-{x}" for x in removed),
                        None))

    plus_minus("capabilities", "capabilities", a.caps, b.caps, WIDENING)
    # a scope listed here is confined to the sandbox: one taken off is opened
    plus_minus("scope", "scoped to the sandbox", a.scoped, b.scoped, NARROWING)
    if a.mode != b.mode:
        out.append(("landlock", WIDENING if b.mode == "best-effort" else NARROWING,
                    f"landlock: {a.mode} -> {b.mode}", None))
    for kind, (x, y) in ((WIDENING, (a.fs, b.fs)), (NARROWING, (b.fs, a.fs))):
        verb = "now grants" if kind == WIDENING else "no longer grants"
        for path, rights in _fs_gained(x, y):
            section = "" if (x is None) == (y is None) else \
                (" (no filesystem: section)" if y is None else " (filesystem: section added)")
            out.append(("filesystem", kind, f"filesystem: {verb} {', '.join(rights)} at "
                                            f"{path}{section}", path))
    for key in NET_KEYS:
        x, y = _net_value(a.net, key), _net_value(b.net, key)
        if x == y:
            continue
        if ANY in (x, y):
            out.append(("network", WIDENING if y == ANY else NARROWING,
                        f"network {key}: {_ports(x)} -> {_ports(y)}", key))
        else:
            plus_minus("network", f"network {key}", list(x), list(y), WIDENING, key + " ")
    return out


__all__ = ["NARROWING", "WIDENING", "layer_changes", "rights_at"]

"""A profile's ``filesystem:`` rules as systemd 252 mount settings, and what they cannot say.

Landlock grants rights beneath paths, the most specific path deciding; systemd
builds a mount namespace in which a path is hidden, read-only or writable,
executable or not. Both are computed per *region*: every path the profile
names, after its variables are bound (``bindings``), decides the region
beneath it down to the next named path. A region's Landlock rights become a
state: visible (any right to read, write or execute), writable (any right
that changes the tree), executable. The drop-in then states, for each region
whose state differs from what it would get anyway, just that.

How systemd 252 turns settings into mounts decides the spelling (all of it
measured under a real service manager, tests/kernel/test_systemd_export.py):

- ``ProtectSystem=strict`` makes / read-only but leaves /dev, /proc, /sys,
  /home, /root and /run/user writable (its own table marks them so; the man
  page names only the first three): each gets ``ReadOnlyPaths=`` when the
  profile grants no write there. Not ``ProtectKernelTunables=``: it also
  hides /proc/kallsyms and /proc/kcore, which a profile may let a command
  read; read-only is what the profile says.
- Every path setting is a mount of its own, and a mount keeps the flags it was
  made with: the recursive read-only and noexec passes of / skip it. So
  ``ExecPaths=P`` alone makes P *writable* under ``ProtectSystem=strict``, and
  ``ReadWritePaths=P`` under ``NoExecPaths=/`` leaves P *executable*. Each
  region is therefore given both of its flags.
- Of two settings on one path systemd keeps one (the "more restrictive"
  mount mode, flags merged), and it drops a ``ReadOnlyPaths=`` or
  ``ReadWritePaths=`` below another of the same kind, with the flags it
  carried. A region that keeps its parent's writability but changes its
  exec flag, or lies in a hidden directory, is therefore a bind mount of the
  path onto itself (``BindReadOnlyPaths=``/``BindPaths=`` with ``rbind``)
  plus ``ExecPaths=``/``NoExecPaths=``.
- ``InaccessiblePaths=`` cannot have visible paths below it (with the ``-``
  prefix they stay hidden; without it the unit fails at step NAMESPACE); a
  hidden directory with a visible path below it is ``TemporaryFileSystem=DIR:ro``
  with the visible paths bound into it. systemd creates DIR when it is missing.
- A read-only mount does not stop writes to device nodes: ``modify`` and
  ``truncate`` below /dev (device I/O) need no writable mount, and cannot be
  refused to the other devices either (said).

Paths are compared as written: ``%h`` (``$HOME``: /root for the system
manager, the user's home for a user manager) and ``%T`` (``$TMPDIR``) are
taken to lie below /root or /home and /tmp when deciding which top-level
directories can be hidden, and are otherwise compared only with paths
written in the same terms (``--var HOME=/root`` compares them exactly).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..confine import RIGHT_WORDS
from ..policy.diagnostics import Diagnostic

READ = frozenset({"read_file"})
EXEC = frozenset({"execute"})
WRITE = frozenset({"write_file", "truncate", "make_reg", "make_dir", "make_sym", "make_sock", "make_fifo",
                   "remove_file", "remove_dir", "refer", "make_char", "make_block"})
DEVICE_IO = frozenset({"write_file", "truncate"})       # on a device node: I/O, not a change to the tree
# ProtectSystem=strict's own table: read-only /, these left writable (and, being mounts of their own,
# outside the noexec pass of NoExecPaths=/)
STRICT_WRITABLE = ("/dev", "/proc", "/sys", "/home", "/root", "/run/user")
# the top-level directories hidden when the profile reads less than / (others stay readable: said).
# Not /bin, /sbin, /lib*: with a merged /usr they are symbolic links, and systemd hides what a link
# points to (/usr/lib for /lib), where sbx grants by the resolved path
TOP_DIRS = ("/boot", "/dev", "/efi", "/etc", "/home", "/media", "/mnt", "/opt", "/proc", "/root", "/run",
            "/srv", "/sys", "/tmp", "/usr", "/var")
# where a specifier may resolve: %h below /root or /home, %T at or below /tmp, %t at
# or below /run
SPECIFIER_HOMES = {"%h": ("/root", "/home"), "%T": ("/tmp",), "%t": ("/run",)}


@dataclass(frozen=True)
class State:
    visible: bool
    writable: bool
    executable: bool


@dataclass
class FsPlan:
    """The mount settings, in order, and the header lines for what they cannot say."""
    settings: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    diags: list[Diagnostic] = field(default_factory=list)


def below(path: str, top: str) -> bool:
    """*path* is *top* or lies beneath it (textually; every path lies below /)."""
    return top == "/" or path == top or path.startswith(top + "/")


def quote(path: str) -> str:
    """A unit path (literal % already doubled, specifiers in) as one word of a systemd path list or
    bind triple: quoted when it holds anything but plain characters (a colon too: quoted, it does
    not separate a bind's source from its destination)."""
    if all(ch.isalnum() or ch in "/._-+@%=,~" for ch in path):
        return path
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Regions:
    """Landlock rights at each named path, the most specific path deciding (sandbox.confine.fs_rules)."""

    def __init__(self, grants: dict[str, set[str]], denies: set[str]):
        self.grants, self.denies = grants, denies

    def rights(self, path: str) -> set[str]:
        out: set[str] = set()
        for g, rights in self.grants.items():
            if below(path, g) and not any(below(d, g) and below(path, d) for d in self.denies):
                out |= rights
        return out

    def state(self, path: str) -> State:
        rights = self.rights(path)
        write = WRITE - DEVICE_IO if below(path, "/dev") and path != "/dev" else WRITE
        return State(path == "/" or bool(rights & (READ | WRITE | EXEC)), bool(rights & write),
                     bool(rights & EXEC))


def _specifier(path: str) -> str | None:
    head = path.split("/", 1)[0]
    return head if head.startswith("%") else None


def _may_hold(top: str, spec: str) -> bool:
    """A path starting with the specifier *spec* may lie at or below the top-level directory *top*."""
    return any(below(home, top) for home in SPECIFIER_HOMES.get(spec, ()))


def plan_fs(entries: list[tuple[str, str, object]]) -> FsPlan:
    """*entries*: (word, unit path, position) with variables already bound (``%h``/``%T`` kept)."""
    plan = FsPlan()
    grants: dict[str, set[str]] = {}
    denies: set[str] = set()
    for word, path, _pos in entries:
        if word == "deny":
            denies.add(path)
        else:
            grants.setdefault(path, set()).update(RIGHT_WORDS[word])
    regions = _Regions(grants, denies)
    root = regions.state("/")
    strict = not root.writable
    named = set(grants) | denies
    if "read_file" not in regions.rights("/"):
        named |= _hide_tops(plan, regions, named, entries)
    if strict:
        named |= set(STRICT_WRITABLE)
        plan.notes.append("metadata: Landlock does not rule chmod, chown, timestamps or extended attributes; "
                          "systemd's read-only mounts refuse them outside the writable paths (stricter)")
    _emit(plan, regions, sorted(named - {"/"}, key=_depth_key), root)
    _device_notes(plan, regions, entries)
    return plan


def _hide_tops(plan: FsPlan, regions: _Regions, named: set[str], entries) -> set[str]:
    """The standard top-level directories no grant reaches, for a profile that reads less than /."""
    hidden, kept = [], []
    for top in TOP_DIRS:
        if top in named or regions.state(top).visible:
            continue                        # the profile decides it, or grants something at or above it
        holders = sorted(g for g in regions.grants if _specifier(g) and _may_hold(top, _specifier(g)))
        if holders:
            kept.append(f"{top} ({', '.join(holders)} may lie there)")
        else:
            hidden.append(top)
    msg = ("read: systemd cannot limit reading to the granted paths: it hides the standard top-level "
           f"directories no grant reaches ({' '.join(hidden) or 'none'}); whatever else lies directly "
           "under / stays readable, and the hidden directories cannot be listed")
    if kept:
        msg += f"; not hidden: {', '.join(kept)}"
    pos = next((p for w, _path, p in entries if w in ("read", "all")), None)
    plan.diags.append(Diagnostic(pos, msg, severity="warning"))
    plan.notes.append(msg)
    return set(hidden)


def _depth_key(path: str):
    return (_specifier(path) is not None, path.count("/"), path)


@dataclass
class _Entry:
    path: str
    mode: str            # the mount systemd makes: ro | rw | bind | hidden | tmpfs | implicit | host
    state: State


ORDER = ("ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "TemporaryFileSystem", "BindPaths",
         "BindReadOnlyPaths", "NoExecPaths", "ExecPaths")


class _Mounts:
    """The mount settings as they are decided, and the mounts systemd will make of them (``entries``:
    / and what ProtectSystem=strict leaves writable, then each path given a setting)."""

    def __init__(self, root: State):
        self.root = root
        self.strict, self.narrowed = not root.writable, not root.executable
        self.out: dict[str, list[str]] = {}
        self.entries = [_Entry("/", "ro" if self.strict else "host", root)]
        if self.strict:
            self.entries += [_Entry(p, "implicit", State(True, True, True)) for p in STRICT_WRITABLE]

    def put(self, key: str, word: str) -> None:
        self.out.setdefault(key, []).append(word)

    def record(self, path: str, mode: str, state: State) -> None:
        own = next((e for e in self.entries if e.path == path), None)
        if own:
            own.mode, own.state = mode, state
        else:
            self.entries.append(_Entry(path, mode, state))

    def decide(self, path: str, want: State, visible_below: bool) -> None:
        above = [e for e in self.entries if e.path != path and below(path, e.path)]
        if any(e.mode == "hidden" for e in above):
            return                                   # hidden with everything beneath it
        if not want.visible:
            if visible_below:
                self.put("TemporaryFileSystem", f"{quote(path)}:ro")
            else:
                self.put("InaccessiblePaths", "-" + quote(path))
            self.record(path, "tmpfs" if visible_below else "hidden", want)
            return
        parent = max(above, key=lambda e: len(e.path))
        own = next((e for e in self.entries if e.path == path), None)
        base = own.state if own else parent.state
        in_tmpfs = any(e.mode == "tmpfs" for e in above)
        spec = _specifier(path) is not None
        if not in_tmpfs and (want == base if not spec else (want == self.root and not want.writable)):
            return
        if own and not in_tmpfs and not want.writable and want.executable == self.root.executable:
            # below the read-only /, systemd drops ReadOnlyPaths= as redundant: / covers the tree, flags too
            self.put("ReadOnlyPaths", "-" + quote(path))
            self.record(path, "ro", want)
            return
        mode = "rw" if want.writable else "ro"
        if in_tmpfs or parent.mode == mode or (want.writable == base.writable and not spec):
            # same writability as the mount above (systemd would drop the setting), or inside a hidden one
            self.put("BindPaths" if want.writable else "BindReadOnlyPaths", f"-{quote(path)}:{quote(path)}:rbind")
            mode = "bind"
        else:
            self.put("ReadWritePaths" if want.writable else "ReadOnlyPaths", "-" + quote(path))
        if not want.executable:
            self.put("NoExecPaths", "-" + quote(path))
        elif self.narrowed:
            self.put("ExecPaths", "-" + quote(path))
        self.record(path, mode, want)

    def settings(self) -> list[tuple[str, str]]:
        head = [("ProtectSystem", "strict")] if self.strict else []
        if self.narrowed:
            head.append(("NoExecPaths", "/"))
        return head + [(k, w) for k in ORDER for w in self.out.get(k, ())]


def _emit(plan: FsPlan, regions: _Regions, paths: list[str], root: State) -> None:
    mounts = _Mounts(root)
    for path in paths:
        visible_below = any(p != path and below(p, path) and regions.state(p).visible for p in paths)
        mounts.decide(path, regions.state(path), visible_below)
    plan.settings = mounts.settings()
    if mounts.narrowed:
        plan.notes.append("exec: NoExecPaths= also refuses mapping files executable (shared libraries, Python "
                          "extensions) outside the exec paths; Landlock's execute right rules execve only "
                          "(stricter)")


def _device_notes(plan: FsPlan, regions: _Regions, entries) -> None:
    """What paths cannot say about devices: writes to device nodes, and device ioctls."""
    dev = regions.rights("/dev")
    first = next((p for _w, _path, p in entries), None)
    if "write_file" not in dev:
        written = sorted(p for p in regions.grants if below(p, "/dev") and regions.grants[p] & DEVICE_IO
                         and not regions.grants[p] & (WRITE - DEVICE_IO))
        pos = next((p for w, path, p in entries if below(path, "/dev") and w in ("modify", "truncate")), first)
        msg = ("devices: a read-only mount does not stop writes to device nodes: under systemd the service "
               "may write every device its user can open (the profile: only "
               f"{' '.join(written) or 'none'})")
        plan.diags.append(Diagnostic(pos, msg, severity="warning"))
        plan.notes.append(msg)
    if "ioctl_dev" not in dev:
        granted = sorted(p for p in regions.grants if "ioctl_dev" in regions.grants[p])
        pos = next((p for w, _path, p in entries if w in ("ioctl-dev", "all")), first)
        msg = ("ioctl-dev: systemd cannot limit device ioctls to paths: ioctls on every device are allowed "
               f"(the profile: only on {' '.join(granted) or 'no device'})")
        plan.diags.append(Diagnostic(pos, msg, severity="warning"))
        plan.notes.append(msg)

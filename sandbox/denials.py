"""Denials, in one model: what the sandbox refused, which rule of the profile decided it, and how it is judged.

Every channel that sees a denial turns it into a ``Denial``: audit records
(``from_audit``: no arguments; ``from_landlock``: a file, port or process the
Landlock rules refused), events of the eBPF monitor (``from_event``:
arguments and errno), and JSON lines written by ``sbx monitor --json`` and
``sbx run --json``/``-o`` (``from_json``: what ``sbx refine`` reads).
``explain_landlock`` says in plain words what a Landlock denial was and which
part of the profile decided it.
``attribute`` names the rule that decided a denial, through
``Policy.origin_of``; ``summarize`` groups denials into rows for every report
(``sbx run``, ``sbx verify``, ``sbx trace --verify``); ``judge`` is the one
verdict of the verify paths: errno(ENOSYS) answered by a rule of the profile
is a fallback by design (the caller retries the old way), anything else is a
failure.

Import-light at module level: ``sbx run`` loads it only after the command
exited and something has to be explained.
"""
from __future__ import annotations

ENOSYS = 38
_KILL = ("kill-process", "kill-thread")


class Denial:
    """One refused syscall (or *count* of them, when counted in the kernel).

    ``nr`` is the syscall number of ``arch`` as reports give it (x32 without
    its 0x40000000 bit); ``action`` an action kind ("errno", "trap",
    "kill-process", "kill-thread", "notify", "log" for complain mode);
    ``args`` the six arguments when known; ``errno`` the errno the call got,
    when known.
    """

    __slots__ = ("arch", "nr", "action", "pid", "comm", "args", "count", "errno", "blockers",
                 "target")

    def __init__(self, arch: str, nr: int, action: str, pid: int = 0, comm: str = "",
                 args: tuple[int, ...] | None = None, count: int = 1, errno: int | None = None,
                 blockers: tuple[str, ...] = (), target: str | None = None):
        self.arch, self.nr, self.action, self.pid, self.comm = arch, nr, action, pid, comm
        self.args, self.count, self.errno = args, count, errno
        # Landlock (action "landlock"): what was refused ("fs.write_file", "net.connect_tcp",
        # "scope.signal") and to what (a path, "port 8080", "pid 123 (comm)")
        self.blockers, self.target = blockers, target

    @property
    def landlock(self) -> bool:
        return self.action == "landlock"

    @property
    def name(self) -> str | None:
        from bpf_filters import syscalls
        return syscalls.name_of(self.arch, self.nr)

    @property
    def label(self) -> str:
        return self.name or f"#{self.nr}"

    @classmethod
    def from_audit(cls, record) -> "Denial":
        """An AUDIT_SECCOMP record (``kernel.audit.SeccompRecord``)."""
        from bpf_filters import syscalls
        from bpf_filters.ir import Action
        arch, nr = syscalls.arch_of(record.arch, record.nr)
        return cls(arch, nr, Action.from_ret(record.code).kind, record.pid, record.comm)

    @classmethod
    def from_landlock(cls, record) -> "Denial":
        """A Landlock denial record (``kernel.audit.LandlockRecord`` of kind "access")."""
        if record.path is not None:
            target = record.path
        elif record.port is not None:
            target = f"port {record.port}"
        elif record.opid is not None:
            target = f"pid {record.opid}" + (f" ({record.comm})" if record.comm else "")
        else:
            target = None
        return cls("", -1, "landlock", blockers=record.blockers, target=target)

    @classmethod
    def from_event(cls, event, action: str | None = None) -> "Denial":
        """An event of the eBPF monitor (``monitor.Event``). The probe cannot tell
        kill-process from kill-thread: pass the policy's *action* to name it."""
        kind = action or ("kill-process" if event.action == "kill" else event.action)
        return cls(event.arch, event.nr, kind, event.pid, event.comm, event.args,
                   errno=event.errno if event.action == "errno" else None)

    def to_json(self) -> dict:
        """The JSON form ``from_json`` reads back (``sbx run -o``, ``sbx monitor --json``)."""
        if self.landlock:
            return {"action": "landlock", "blockers": list(self.blockers), "target": self.target,
                    "count": self.count}
        out = {"arch": self.arch, "nr": self.nr, "syscall": self.name, "action": self.action,
               "count": self.count}
        if self.args is not None:
            out["args"] = list(self.args)
        if self.errno is not None:
            out["errno"] = self.errno
        if self.pid:
            out["pid"], out["comm"] = self.pid, self.comm
        return out

    @classmethod
    def from_json(cls, obj) -> "Denial | None":
        """One JSON object with ``arch`` and ``nr`` or ``syscall``; None if it is no
        denial (a counters line, say); ValueError with one clear line if malformed."""
        from bpf_filters import syscalls
        if isinstance(obj, dict) and obj.get("action") == "landlock":
            blockers = obj.get("blockers")
            if not (isinstance(blockers, list) and all(isinstance(b, str) for b in blockers)):
                raise ValueError("blockers must be a list of strings")
            count = obj.get("count", 1)
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError("count must be a positive integer")
            target = obj.get("target")
            return cls("", -1, "landlock", count=count, blockers=tuple(blockers),
                       target=target if isinstance(target, str) else None)
        if not isinstance(obj, dict) or ("nr" not in obj and "syscall" not in obj):
            return None
        arch = obj.get("arch") or "x86_64"
        if arch not in syscalls.ARCHES:
            raise ValueError(f"unknown arch {arch!r}")
        nr = obj.get("nr")
        if not isinstance(nr, int) or isinstance(nr, bool):
            nr = syscalls.table(arch).nr(str(obj.get("syscall")))
            if nr is None:
                raise ValueError(f"unknown syscall {obj.get('syscall')!r} on {arch}")
        elif not 0 <= nr <= 0xFFFFFFFF:
            raise ValueError(f"syscall number {nr} out of range")
        nr = syscalls.reported_nr(arch, nr)
        args = obj.get("args")
        if args is not None:
            if not (isinstance(args, list) and len(args) <= 6
                    and all(isinstance(a, int) and not isinstance(a, bool) for a in args)):
                raise ValueError("args must be a list of at most 6 integers")
            if any(not -(1 << 63) <= a < (1 << 64) for a in args):
                raise ValueError("an argument does not fit 64 bits")
            args = tuple(a & 0xFFFF_FFFF_FFFF_FFFF for a in args) + (0,) * (6 - len(args))
        count = obj.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError("count must be a positive integer")
        action = obj.get("action") or "errno"
        if not isinstance(action, str):
            raise ValueError("action must be a string")
        errno = obj.get("errno")
        return cls(arch, nr, action, obj.get("pid") or 0, obj.get("comm") or "", args, count,
                   errno if isinstance(errno, int) else None)

    def __eq__(self, other) -> bool:
        return isinstance(other, Denial) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple:
        return (self.arch, self.nr, self.action, self.args, self.count, self.errno, self.blockers,
                self.target)

    def __repr__(self) -> str:
        return (f"Denial({self.arch} {self.label} {self.action} x{self.count}"
                + (f" args={self.args}" if self.args else "") + ")")


class Attribution:
    """What the profile decided for a denial, and where it says so."""

    __slots__ = ("decision", "action", "origin", "reason")

    def __init__(self, decision, action, origin, reason: str):
        self.decision, self.action, self.origin, self.reason = decision, action, origin, reason

    @property
    def fallback(self) -> bool:
        """errno(ENOSYS) on purpose: callers such as glibc then use an older call."""
        return self.action.kind == "errno" and self.action.data == ENOSYS

    @classmethod
    def of(cls, policy, decision) -> "Attribution":
        """The attribution of a decision already made (``bpf_filters.ir.evaluate``)."""
        return cls(decision, decision.action, policy.origin_of(decision), decision.reason)

    def phrase(self) -> str:
        """For a sentence: ``profiles/web.yaml:14 (errno(EPERM): socket)``, or
        ``the profile default (profiles/web.yaml:3)``."""
        from .paths import display_path
        o = self.origin
        if self.reason == "rule":
            if o is None or not o.line:
                return o.text if o is not None else "a built-in rule"
            text = o.text[2:] if o.text.startswith("- ") else o.text
            return f"{display_path(o.file)}:{o.line} ({text})"
        at = f" ({display_path(o.file)}:{o.line})" if o is not None and o.line else ""
        return f"the profile {self.reason}{at}"

    def where(self, with_text: bool = True) -> str:
        """``profiles/web.yaml:14: - errno(EPERM): socket``, or the profile-level
        action (``default action, profiles/web.yaml:3: default: errno(EPERM)``)."""
        from .paths import display_path
        o = self.origin
        at = (f"{display_path(o.file)}:{o.line}" + (f": {o.text}" if with_text and o.text else "")
              if o is not None and o.line else (o.text if o is not None else "built-in"))
        return at if self.reason == "rule" else f"{self.reason} action, {at}"


def attribute(policy, arch: str, nr: int, args: tuple[int, ...] | None = None,
              action: str | None = None) -> Attribution:
    """The rule of *policy* behind a denial of syscall *nr* (reported numbering) of *arch*.

    With *args* the decision is exact. Audit records carry no arguments: then
    the decision of the zero-argument call is taken if its action is the one
    the kernel reported (*action*), else the first rule of the syscall with that
    action, else the profile-level action that has it.
    """
    from bpf_filters import syscalls
    from bpf_filters.ir import Decision, evaluate
    if arch not in syscalls.ARCHES:
        return Attribution.of(policy, Decision(policy.bad_arch, None, "bad_arch"))
    full = syscalls.seccomp_nr(arch, nr)
    dec = evaluate(policy, syscalls.AUDIT_ARCH[arch], full, args or (0,) * 6)
    if args is None and action is not None and not _same_kind(dec.action.kind, action):
        ap = policy.arch(arch)
        rule = next((r for r in (ap.rules.get(full, ()) if ap else ())
                     if _same_kind(r.action.kind, action)), None)
        if rule is not None:
            dec = Decision(rule.action, rule, "rule")
        else:
            reason = next((k for k in ("default", "unknown", "bad_arch")
                           if _same_kind(getattr(policy, k).kind, action)), None)
            if reason is not None:
                dec = Decision(getattr(policy, reason), None, reason)
    return Attribution.of(policy, dec)


def _same_kind(kind: str, reported: str) -> bool:
    return kind == reported or (reported == "kill" and kind in _KILL)


class Row:
    """One line of a denial report: a distinct (ABI, syscall, action)."""

    __slots__ = ("arch", "nr", "label", "count", "action", "attribution", "example")

    def __init__(self, arch, nr, label, count, action, attribution, example):
        self.arch, self.nr, self.label, self.count = arch, nr, label, count
        self.action, self.attribution, self.example = action, attribution, example

    @property
    def fallback(self) -> bool:
        return self.attribution.fallback

    @property
    def rule(self) -> str:
        return self.attribution.where()

    def to_json(self) -> dict:
        """The row as ``sbx run --json`` and ``sbx verify --json`` print it."""
        return {"syscall": self.label.split(" ")[0], "nr": self.nr, "arch": self.arch,
                "count": self.count, "action": self.action, "decided_by": self.rule,
                "fallback": self.fallback,
                "example_args": list(self.example) if self.example else None}


def summarize(denials: list[Denial], policy, native: str) -> list[Row]:
    """A row per distinct (arch, nr, action) of the seccomp denials, most frequent
    first; each with an example of its arguments when one is known, attributed
    with it. (Landlock denials are told by ``explain_landlock``.)"""
    groups: dict[tuple, list[Denial]] = {}
    for d in denials:
        if d.landlock:
            continue
        groups.setdefault((d.arch, d.nr, d.action), []).append(d)
    rows = []
    for (arch, nr, action), ds in groups.items():
        example = next((d.args for d in ds if d.args is not None), None)
        attribution = attribute(policy, arch, nr, example, action)
        label = f"{ds[0].label} ({nr})" + ("" if arch == native else f" [{arch}]")
        rows.append(Row(arch, nr, label, sum(d.count for d in ds), action, attribution, example))
    rows.sort(key=lambda r: (-r.count, r.nr))
    return rows


def judge(rows: list[Row], strict: bool = False) -> tuple[list[Row], list[Row]]:
    """(failing rows, fallback rows): errno(ENOSYS) answered by the profile on
    purpose is a fallback, and fails only with *strict*; complain mode's "log"
    rows let the call through and are no denial."""
    rows = [r for r in rows if r.action != "log"]
    fallbacks = [] if strict else [r for r in rows if r.fallback]
    return [r for r in rows if r not in fallbacks], fallbacks


# -- the run Landlock denials came from ------------------------------------------------

def variables(template: str) -> list[str]:
    """The names of the variables in a path or port template ($NAME, ${NAME})."""
    import re
    return [a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", template)]


class RunContext:
    """Where a run's Landlock denials came from: its working directory, the
    environment variables the profile's paths and ports use, the command's
    file ($EXEC_ROOT), its terminals ($TTY) and sbx's cache directory. ``sbx
    run -o`` writes it as the first JSON line (``{"context": {...}}``) when
    Landlock refused something, so that ``sbx refine`` expands the profile's
    ``$CWD``, ``$HOME``, ``$TTY`` ... as that run did; *known* is False for
    the one guessed from here."""

    __slots__ = ("cwd", "env", "exe", "cache_dir", "known", "ttys")

    def __init__(self, cwd: str, env: dict, exe: str | None = None, cache_dir: str | None = None,
                 known: bool = True, ttys: tuple[str, ...] = ()):
        self.cwd, self.env, self.exe, self.cache_dir, self.known = cwd, env, exe, cache_dir, known
        self.ttys = tuple(ttys)

    @classmethod
    def of_run(cls, spec, env: dict, exe: str | None, cache_dir: str | None) -> "RunContext":
        """The context of a run starting here under *spec* (the variables it uses only)."""
        import os
        names = {"HOME", "TMPDIR"}
        templates = [t for _w, t, _o in spec.fs or ()]
        for value in (spec.net or {}).values():
            templates += list(value) if value != "any" else []
        for t in templates:
            names.update(variables(t))
        names -= {"CWD", "EXEC_ROOT", "TTY"}
        from .confine import terminals
        return cls(os.getcwd(), {n: env[n] for n in sorted(names) if n in env}, exe, cache_dir,
                   ttys=terminals())

    @classmethod
    def here(cls) -> "RunContext":
        """A guess for records that came without one: this process's place and environment."""
        import os
        from .cache import location
        from .confine import terminals
        return cls(os.getcwd(), dict(os.environ), None, location(), known=False, ttys=terminals())

    def to_json(self) -> dict:
        return {"context": {"cwd": self.cwd, "env": self.env, "exe": self.exe, "cache": self.cache_dir,
                            "tty": list(self.ttys)}}

    @classmethod
    def from_json(cls, obj) -> "RunContext | None":
        """The context of a ``{"context": ...}`` line; None for any other object,
        ValueError if malformed."""
        if not isinstance(obj, dict) or "context" not in obj:
            return None
        c = obj["context"]
        if not isinstance(c, dict) or not isinstance(c.get("cwd"), str) or not c["cwd"].startswith("/"):
            raise ValueError("context needs an absolute cwd")
        env = c.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in env.items()):
            raise ValueError("context env must map names to strings")
        exe, cache = c.get("exe"), c.get("cache")
        if not all(v is None or isinstance(v, str) for v in (exe, cache)):
            raise ValueError("context exe and cache must be strings")
        ttys = c.get("tty") or []          # absent from a file an older sbx wrote
        if not isinstance(ttys, list) or not all(isinstance(t, str) and t.startswith("/dev/")
                                                 and "$" not in t for t in ttys):
            raise ValueError("context tty must list device paths")
        return cls(c["cwd"], dict(env), exe, cache, ttys=tuple(ttys))


# -- Landlock denials, in plain words --------------------------------------------------

# right -> (what was refused, the profile word that grants it)
_VERBS = {"read_file": ("read access to", "read"), "read_dir": ("listing", "list"),
          "write_file": ("write access to", "write"), "truncate": ("truncating", "write"),
          "execute": ("running", "exec"),
          "make_reg": ("creating a file in", "create"), "make_dir": ("creating a directory in", "create"),
          "make_sym": ("creating a symlink in", "create"), "make_sock": ("creating a socket in", "create"),
          "make_fifo": ("creating a FIFO in", "create"), "make_char": ("creating a device in", "make-device"),
          "make_block": ("creating a device in", "make-device"),
          "remove_file": ("removing a file from", "remove"),
          "remove_dir": ("removing a directory from", "remove"),
          "refer": ("moving or linking a file across directories at", "refer"),
          "ioctl_dev": ("device ioctls on", "ioctl-dev")}


def landlock_groups(denials: list[Denial]) -> list[tuple[tuple[str, ...], str | None, int]]:
    """(blockers, target, count) per distinct Landlock denial, in first-seen order."""
    counts: dict[tuple, int] = {}
    for d in denials:
        if d.landlock:
            key = (d.blockers, d.target)
            counts[key] = counts.get(key, 0) + d.count
    return [(b, t, n) for (b, t), n in counts.items()]


def explain_landlock(blockers: tuple[str, ...], target: str | None, spec, profile: str,
                     env: dict, exe: str | None, cache_dir: str | None, protected: tuple[str, ...]) -> str:
    """Why the command was refused, naming the part of the profile that decided:
    ``was refused write access to /root/.bashrc: profile web allows write only
    under /srv/site, /tmp``."""
    import os
    from .confine import RIGHT_WORDS, expand_all, expand_deny, own_places
    blocker = blockers[0] if blockers else "?"
    family, _, right = blocker.partition(".")
    if family == "scope":
        what = "sending a signal to" if right == "signal" else "connecting to an abstract Unix socket of"
        return (f"was refused {what} {target or 'a process'} outside the sandbox: profile {profile} "
                f"keeps {'signals' if right == 'signal' else 'abstract-unix'} within it "
                f"(scope: {{{'signals' if right == 'signal' else 'abstract-unix'}: any}} lets it out)")
    if family == "net":
        from .confine import expand
        key = "bind" if right == "bind_tcp" else "connect"
        ports = (spec.net or {}).get(key, "any")
        shown = [t for t in (expand(p, env)[0] for p in (ports if ports != "any" else ())) if t]
        if key == "bind" and target == "port 0":
            return (f"was refused binding TCP port 0 (a port the kernel picks): profile {profile} "
                    f"allows bind only on ports {', '.join(shown) or 'none'} (sbx run --allow-port 0 "
                    "allows it)")
        what = f"binding TCP {target or 'a port'}" if key == "bind" else \
            f"a TCP connection to {target or 'a port'}"
        return (f"was refused {what}: profile {profile} allows {key} only on ports "
                f"{', '.join(shown) or 'none'} (sbx run --allow-port PORT adds one)")
    verb, word = _VERBS.get(right, (right.replace("_", " "), right))
    path = target or "a path"
    real = os.path.realpath(path) if target else None

    def under(p: str) -> bool:
        return real is not None and (real == p or real.startswith(p.rstrip("/") + "/"))
    if cache_dir and under(os.path.realpath(cache_dir)):
        return (f"was refused {verb} {path}: sbx keeps its filter cache out of every "
                "command's reach")
    if right not in ("read_file", "read_dir", "execute") and real is not None:
        from .paths import kept_by
        kept = kept_by(real, protected)
        if kept is not None and kept[1]:
            return (f"was refused {verb} {path}: sbx keeps the user's start-up files and dotfiles "
                    "out of every command's writes: what is written there runs outside the "
                    "sandbox at the next login, shell or use of a tool")
        if kept is not None:
            return f"was refused {verb} {path}: the built-in profiles are never writable by a command"
    grants, denied, inside = [], [], []
    own = own_places(spec.caps)
    for w, template, _optional in spec.fs or ():
        for p in (expand_deny(template, env, own, exe) if w == "deny"
                  else expand_all(template, env, exe))[0]:
            if w == "deny" and under(os.path.realpath(p)):
                denied.append(p)
            elif w == "deny" and real is not None and os.path.lexists(p) and \
                    os.path.realpath(p).startswith(real.rstrip("/") + "/"):
                inside.append(p)                 # one that is there: an absent deny splits nothing
            elif w != "deny" and right in RIGHT_WORDS[w] and p not in grants:
                grants.append(p)
    closest = max(denied, key=len) if denied else None
    if closest is not None and any(under(os.path.realpath(g)) and len(os.path.realpath(g)) >
                                   len(os.path.realpath(closest)) for g in grants):
        closest = None                      # a grant below the deny gives the right back there
    if closest is not None and closest != "/dev":
        return f"was refused {verb} {path}: profile {profile} denies {closest}"
    # /dev denied as a whole makes the devices an allow-list: for a terminal, say which
    own_tty = any(w != "deny" and "TTY" in variables(t) for w, t, _o in spec.fs or ())
    if own_tty and real is not None and (closest is not None or not any(
            under(os.path.realpath(g)) for g in grants)):
        if real == "/dev/tty":
            return (f"was refused {verb} {path}: profile {profile} grants the command's own "
                    "terminals ($TTY), and its controlling terminal, if it has one, is not on "
                    "its input, output or error: /dev/tty would reach the terminal sbx was "
                    "started from (sbx check SBX163)")
        if real == "/dev/ptmx" or real.startswith("/dev/pts/"):
            return (f"was refused {verb} {path}: profile {profile} grants the command's own "
                    "terminals ($TTY), not the others; making a terminal (script, tmux, pexpect) "
                    "needs /dev/ptmx and /dev/pts, which hold every terminal of the user (sbx "
                    "check SBX163)")
    if closest is not None:
        return f"was refused {verb} {path}: profile {profile} denies {closest}"
    if right not in ("read_file", "read_dir", "execute", "write_file", "truncate") and \
            real is not None and any(under(os.path.realpath(g)) for g in grants):
        # a path sbx keeps out of writes inside the directory closes it the same way
        from .paths import dotfiles_of, installation_dirs
        top = real.rstrip("/") + "/"
        own = installation_dirs()
        for p in sorted(protected, key=lambda p: os.path.realpath(p) in own):   # the user's first
            dotted = dotfiles_of(p)                            # a home's dotfiles
            shown = p if dotted is None else dotted
            at = os.path.realpath(shown)
            if not (at.startswith(top) or (dotted is not None and at == real)):
                continue
            whose = "sbx's own files" if os.path.realpath(p) in own else \
                "the user's start-up files and dotfiles"
            return (f"was refused {verb} {path}: sbx keeps {whose} ({shown}) inside it out of "
                    "every command's writes, and nothing may be created, removed or renamed "
                    "directly in a directory above them; install sbx, and keep the home, outside "
                    "the directories a command works in")
    if inside and right not in ("read_file", "read_dir", "execute") and \
            any(under(os.path.realpath(g)) for g in grants):
        # the most specific path decides: a directory above a denied path keeps only
        # the right to be listed (an entry changed there could replace the denied one)
        return (f"was refused {verb} {path}: profile {profile} denies {inside[0]} inside it, and "
                "nothing may be created, removed or renamed directly in a directory above a denied "
                "path")
    where = ", ".join(grants) if grants else "nowhere"
    return f"was refused {verb} {path}: profile {profile} allows {word} only under {where}"


__all__ = ["Attribution", "Denial", "Row", "RunContext", "attribute", "explain_landlock", "judge",
           "landlock_groups", "summarize", "variables"]

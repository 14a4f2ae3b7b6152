"""sbx trace's filesystem: and network: sections: accesses generalised to rules, merged, written.

``generalise`` turns one run's ``trace.access.Accesses`` (Landlock words on
real paths) into ``Files`` (words on profile path templates, and denials)
by these rules, in this order (docs/trace.md, "Files and ports"):

1. A path the run created (or may have: O_CREAT), or anything beneath one,
   is granted on the nearest directory above it that the run did not
   create: Landlock rules are fixed when the command starts, and a path
   that does not exist then cannot carry one.
2. A path in a secret directory (what the built-in profiles deny: $HOME/.ssh,
   /etc/shadow, /root ...) is kept exact and flagged with a comment; it is
   never reached by a wider rule (3-5), and every secret a wider rule covers
   is denied.
3. Whichever is deepest of the system directories (/usr, /lib*, /bin,
   /sbin, /etc, /proc, /sys) and the places ($CWD, $TMPDIR, $HOME,
   $EXEC_ROOT) holding the path decides:
   - in a system directory, reading, listing and executing are granted on
     the whole directory (/usr/lib/x/y -> read: [/usr]), writing stays
     exact; everything in /proc is granted on /proc (process directories
     are named by pid, which changes every run);
   - in $CWD or $TMPDIR, writing is granted on the place itself ($CWD,
     $TMPDIR); in $TMPDIR reading too (temporary names are random);
   - in $EXEC_ROOT (the command's installation, outside the system
     directories), reading, listing and executing are granted on it;
   - anything else is exact: the file read or executed, the file modified,
     the directory written into (a file created or removed there).
   /dev is exact too, with ioctl-dev on devices read or written: the run's
   own terminal is $TTY, any other /dev/pts/N (a terminal the run made)
   /dev/pts, with a comment saying what that opens.
4. More than READ_LIMIT files read (or executed) exactly from one directory
   become one rule on the directory.
5. A rename or link across directories moves a file only where it gains no
   right (Landlock's REFER): the source directory gets the destination's
   rights.
6. Rules another rule already covers (the same or more rights on a parent)
   are dropped; what remains is written with the profile's variables.
Ports are kept as seen.  Merging is a union; a part without a section
(nothing recorded, or a hand-written profile without one) means
unrestricted, and so is the union.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..confine import ANY, RIGHT_WORDS, exec_roots, terminals

SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/proc",
               "/sys")
NOT_DEVICES = ("/dev/shm", "/dev/mqueue")     # directories of ordinary files in /dev
READ_LIMIT = 16
WORDS = ("list", "read", "exec", "modify", "write", "refer", "make-device", "ioctl-dev")
_ORDER = WORDS + tuple(w for w in RIGHT_WORDS if w not in WORDS)   # hand-written words last
WRITING = ("modify", "write", "refer", "make-device")
_LIFTED = {"list": "read"}                     # a created directory's listing: read above it


def rights(word: str) -> frozenset[str]:
    return frozenset(RIGHT_WORDS[word])


def beneath(path: str, top: str) -> bool:
    """*path* is *top* or below it (plain paths or templates, compared by name)."""
    return path == top or top == "/" and path.startswith("/") or path.startswith(top + "/")


@dataclass(frozen=True)
class Places:
    """Where the traced command ran: real paths of the profile's variables (only
    those that can name a place: not /, not a system directory or above one)
    and the secrets that exist here, as (template, real path)."""
    dirs: tuple[tuple[str, str], ...] = ()
    secrets: tuple[tuple[str, str], ...] = ()

    def template(self, path: str) -> str:
        """*path* written with the deepest variable holding it."""
        for var, d in sorted(self.dirs, key=lambda vd: -len(vd[1])):
            if beneath(path, d):
                return f"${var}{path[len(d):]}"
        return path


def usable(path: str | None) -> bool:
    """Can *path* stand for a variable?  Not /, not a system directory, not above one."""
    return bool(path) and path != "/" and not any(
        beneath(top, path) or beneath(path, top) for top in SYSTEM_DIRS)


def places_of(argv: list[str], env: dict | None) -> Places:
    """The places of a run of *argv* started here, now."""
    from ..errors import LaunchError
    from ..kernel.spawn import resolve_command
    env = dict(os.environ) if env is None else env
    try:
        exe = resolve_command(argv[0], env)
    except LaunchError:
        exe = None
    return places_for(env, os.getcwd(), exe)


def places_for(env: dict, cwd: str, exe: str | None,
               ttys: tuple[str, ...] | None = None) -> Places:
    """The places of a run from its environment, working directory, command and
    terminals (*ttys*; None: this process's, which a traced command inherits)."""
    from ..confine import expand
    found = [("CWD", os.path.realpath(cwd)),
             ("TMPDIR", os.path.realpath(env.get("TMPDIR") or "/tmp"))]
    if env.get("HOME"):
        found.append(("HOME", os.path.realpath(env["HOME"])))
    found += [("EXEC_ROOT", os.path.realpath(root)) for root in exec_roots(exe)]
    # the run's own terminals: $TTY, not /dev/pts
    found += [("TTY", tty) for tty in (terminals() if ttys is None else ttys)]
    dirs = tuple(dict.fromkeys((v, d) for v, d in found if usable(d)))
    secrets = []
    for template in secret_templates():
        text, _why = expand(template, {**env, "CWD": cwd})
        if text and os.path.lexists(text):
            secrets.append((template, os.path.realpath(text)))
    return Places(dirs, tuple(sorted(set(secrets))))


def secret_templates() -> list[str]:
    """What the built-in profiles deny (the deny: entries of their filesystem
    sections; read from the YAML directly, as loading them whole takes ~0.3 s)."""
    import yaml
    from ..paths import builtin_dir
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out: set[str] = set()
    for path in sorted(Path(builtin_dir()).glob("*.yaml")):
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        section = data.get("filesystem") if isinstance(data, dict) else None
        denied = section.get("deny", []) if isinstance(section, dict) else []
        out.update(d for d in (denied if isinstance(denied, list) else [denied])
                   if isinstance(d, str))
    # /dev is denied to make the devices an allow-list, not as a secret: rule 3 keeps
    # each device exact, with ioctl-dev
    out.discard("/dev")
    return sorted(out)


@dataclass
class Files:
    """A filesystem section: {word: {path template: comment}} and denied templates."""
    grants: dict[str, dict[str, str]] = field(default_factory=dict)
    denies: set[str] = field(default_factory=set)

    def add(self, word: str, template: str, comment: str = "") -> None:
        mine = self.grants.setdefault(word, {})
        if comment or template not in mine:
            mine[template] = comment


@dataclass
class Net:
    """A network section: TCP ports (or templates) per "bind" and "connect";
    None: any port."""
    bind: set[str] | None = field(default_factory=set)
    connect: set[str] | None = field(default_factory=set)


# -- one run -------------------------------------------------------------------------------

def generalise(acc, places: Places) -> tuple[Files, Net]:
    """The sections for one run's accesses (``trace.access.Accesses``); pure."""
    grants: dict[str, set[str]] = {}
    comments: dict[tuple[str, str], str] = {}
    exact: dict[tuple[str, str], bool] = {}
    for (word, path), _n in sorted(acc.words.items()):
        path, lifted = _lift(path, acc.created)
        word = _LIFTED.get(word, word) if lifted else word
        for target, w, comment, is_exact in _place(word, path, places):
            grants.setdefault(target, set()).add(w)
            if comment:
                comments[(w, target)] = comment
            if is_exact and not lifted and w in ("read", "exec"):
                exact[(w, target)] = True
    _collapse_reads(grants, exact, places)
    for src, dst in sorted(acc.moves):
        _refer(grants, _located(src, acc.created, places), _located(dst, acc.created, places))
    kept = _dedupe(grants)
    files = Files()
    for path, words in kept.items():
        for w in words:
            files.add(w, places.template(path), comments.get((w, path), ""))
    for template, secret in places.secrets:
        if any(beneath(secret, g) and g != secret for g in kept):
            files.denies.add(template)
    net = Net({str(p) for (op, p) in acc.ports if op == "bind"},
              {str(p) for (op, p) in acc.ports if op == "connect"})
    return files, net


def _lift(path: str, created: set[str]) -> tuple[str, bool]:
    """The nearest directory above *path* and every created path it is in."""
    top, q = None, path
    while True:
        if q in created:
            top = q
        if q == "/":
            break
        q = os.path.dirname(q)
    return (os.path.dirname(top) or "/", True) if top is not None else (path, False)


def _secret(path: str, places: Places) -> str | None:
    """The template of the secret *path* is in, unless a working place ($CWD,
    $TMPDIR, $EXEC_ROOT) inside that secret holds it (deny: [/root] with the
    working directory /root/src)."""
    for template, secret in places.secrets:
        if beneath(path, secret) and not any(
                var != "HOME" and beneath(path, d) and beneath(d, secret)
                for var, d in places.dirs):
            return template
    return None


def _place(word: str, path: str, places: Places) -> list[tuple[str, str, str, bool]]:
    """(path, word, comment, exact) rules for one access (rules 2 and 3)."""
    secret = _secret(path, places)
    if secret is not None:
        return [(path, word, f"secret: kept exact ({secret} is denied by the built-in "
                             "profiles)", False)]
    if beneath(path, "/dev") and not any(beneath(path, d) for d in NOT_DEVICES):
        own = any(var == "TTY" and path == d for var, d in places.dirs)
        target = "/dev/pts" if path.startswith("/dev/pts/") and not own else path
        note = ("a terminal the run made: /dev/pts holds every terminal of the user, and the "
                "command may read what is typed into them (SBX163)") if target == "/dev/pts" else ""
        out = [(target, word, note, False)]
        if word in ("read", "modify") and target != "/dev":
            out.append((target, "ioctl-dev", "", False))
        return out
    top = max((d for d in SYSTEM_DIRS if beneath(path, d)), key=len, default=None)
    var, place = max(((v, d) for v, d in places.dirs if beneath(path, d)),
                     key=lambda vd: len(vd[1]), default=(None, None))
    dir_word = "read" if word == "list" else word
    if top is not None and (place is None or len(top) >= len(place)):
        if top == "/proc":
            return [("/proc", dir_word, "", False)]
        if word in ("read", "list", "exec"):
            return [(top, dir_word, "", False)]
        return [(path, word, "", True)]
    if var in ("CWD", "TMPDIR") and word in WRITING:
        return [(place, word, "", False)]
    if var == "TMPDIR" or (var == "EXEC_ROOT" and word in ("read", "list", "exec")):
        return [(place, dir_word, "", False)]
    return [(path, word, "", True)]


def _located(path: str, created: set[str], places: Places) -> str:
    """Where a write into directory *path* is granted."""
    lifted, _ = _lift(path, created)
    return _place("write", lifted, places)[0][0]


def _collapse_reads(grants: dict[str, set[str]], exact: dict, places: Places) -> None:
    """Rule 4: more than READ_LIMIT exact files of one directory -> the directory."""
    for word in ("read", "exec"):
        by_dir: dict[str, list[str]] = {}
        for (w, path) in exact:
            if w == word:
                by_dir.setdefault(os.path.dirname(path), []).append(path)
        for d, paths in sorted(by_dir.items()):
            if len(paths) <= READ_LIMIT or _secret(d, places) is not None:
                continue
            for p in paths:
                grants[p].discard(word)
            grants.setdefault(d, set()).add(word)


def _effective(grants: dict[str, set[str]], path: str) -> frozenset[str]:
    out: set[str] = set()
    for p, words in grants.items():
        if beneath(path, p):
            for w in words:
                out |= rights(w)
    return frozenset(out)


def _refer(grants: dict[str, set[str]], src: str, dst: str) -> None:
    """Rule 5: the source of a move gets every word of the destination's rules."""
    have = _effective(grants, src)
    for p, words in sorted(grants.items()):
        if beneath(dst, p):
            for w in sorted(words):
                if not rights(w) <= have:
                    grants.setdefault(src, set()).add(w)


def _dedupe(grants: dict[str, set[str]]) -> dict[str, list[str]]:
    """Rule 6: drop a word its parents' rules (or a wider word on the same path) cover."""
    kept: dict[str, list[str]] = {}
    for path in sorted(grants, key=lambda p: (p.count("/") - (p == "/"), p)):
        inherited: set[str] = set()
        for p, words in kept.items():
            if p != path and beneath(path, p):
                for w in words:
                    inherited |= rights(w)
        mine: list[str] = []
        for w in sorted(grants[path], key=lambda w: (-len(rights(w)), _ORDER.index(w))):
            if not rights(w) <= inherited:
                mine.append(w)
                inherited |= rights(w)
        if mine:
            kept[path] = sorted(mine, key=_ORDER.index)
    return kept


# -- merging, extending ----------------------------------------------------------------------

def merge_files(parts: list[Files | None]) -> Files | None:
    """The union; None (unrestricted) if any part is."""
    if not parts or any(p is None for p in parts):
        return None
    grants: dict[str, set[str]] = {}
    comments: dict[tuple[str, str], str] = {}
    out = Files()
    for part in parts:
        for word, items in part.grants.items():
            for template, comment in items.items():
                grants.setdefault(template, set()).add(word)
                if comment:
                    comments[(word, template)] = comment
        out.denies |= part.denies
    for template, words in _dedupe(grants).items():
        for w in words:
            out.add(w, template, comments.get((w, template), ""))
    return out


def merge_net(parts: list[Net | None]) -> Net | None:
    if not parts or any(p is None for p in parts):
        return None

    def union(values: list[set[str] | None]) -> set[str] | None:
        return None if any(v is None for v in values) else set().union(*values)
    return Net(union([p.bind for p in parts]), union([p.connect for p in parts]))


def without_base(files: Files | None, net: Net | None, base) -> tuple[Files | None, Net | None]:
    """For ``--extends BASE``: only what BASE's own sections do not grant.  A base
    without a section leaves that access unrestricted, and so does the result."""
    if files is not None and base.fs is not None:
        base_grants = [(w, t) for w, t, _pos in base.fs if w != "deny"]
        base_denies = [t for w, t, _pos in base.fs if w == "deny"]
        out = Files(denies={d for d in files.denies if d not in base_denies})
        for word, items in files.grants.items():
            for template, comment in items.items():
                if not _granted(word, template, base_grants, base_denies):
                    out.add(word, template, comment)
        files = out
    else:
        files = None
    if net is not None and base.net is not None:
        def left(key: str, mine: set[str] | None) -> set[str] | None:
            theirs = base.net.get(key, ANY)
            if theirs == ANY or mine is None:
                return None                # any port: the key is not written, BASE's stands
            return mine - {t for t, _pos in theirs}
        net = Net(left("bind", net.bind), left("connect", net.connect))
    else:
        net = None
    return files, net


def _granted(word: str, template: str, grants: list, denies: list) -> bool:
    """Do *grants* (most specific path deciding, *denies* included) give *word* on *template*?"""
    need = set(rights(word))
    deepest_deny = max((d for d in denies if beneath(template, d)), key=len, default=None)
    for w, t in grants:
        if beneath(template, t) and (deepest_deny is None or len(t) > len(deepest_deny)):
            need -= rights(w)
    return not need


# -- the YAML sections ----------------------------------------------------------------------

def section_lines(files: Files | None, net: Net | None) -> list[str]:
    """The filesystem: and network: sections (none for an unrestricted part)."""
    from ..policy.emit import list_lines
    out: list[str] = []
    if files is not None:
        body: list[str] = []
        for word in _ORDER:
            items = files.grants.get(word)
            if items:
                body += list_lines(word, [(t, items[t] or None) for t in sorted(items)])
        if files.denies:
            body += list_lines("deny", [(t, None) for t in sorted(files.denies)])
        out += ["", "filesystem:" if body else "filesystem: {}"] + body
    if net is not None:
        def ports(values: set[str]) -> list[tuple[str, None]]:
            def order(v: str) -> tuple:
                return (not v.isdigit(), int(v) if v.isdigit() else 0, v)
            return [(v, None) for v in sorted(values, key=order)]
        body = []
        for key, values in (("bind", net.bind), ("connect", net.connect)):
            body += [f"  {key}: {ANY}"] if values is None else list_lines(key, ports(values))
        out += ["", "network:"] + body
    return out


def sections_from_profile(prof, comment_of) -> tuple[Files | None, Net | None]:
    """The sections an earlier ``sbx trace`` profile wrote itself (not its base's);
    *comment_of(line)* gives a line's trailing comment."""
    lines = prof.sources.get(prof.path, [])
    files = net = None
    if prof.fs is not None and any(line.startswith("filesystem:") for line in lines):
        files = Files()
        for word, template, pos in prof.fs:
            if pos.file != prof.path:
                continue
            if word == "deny":
                files.denies.add(template)
            elif word in WORDS:
                files.add(word, template, comment_of(pos.line))
            else:                          # a hand-written word: its rights, as written
                files.add(word, template)
    if prof.net is not None and any(line.startswith("network:") for line in lines):
        def own(key: str) -> set[str] | None:
            values = prof.net.get(key, ANY)
            return None if values == ANY else {t for t, pos in values if pos.file == prof.path}
        net = Net(own("bind"), own("connect"))
    return files, net


__all__ = ["Files", "Net", "Places", "READ_LIMIT", "SYSTEM_DIRS", "beneath", "generalise",
           "merge_files", "merge_net", "places_for", "places_of", "secret_templates",
           "section_lines", "sections_from_profile", "without_base"]

"""Load YAML profiles with positions: ``extends``, ``@groups``, actions, conditions.

``load_profile`` reads a profile (a built-in name or a file), merges the
profiles it extends (this file's rules first: first match wins), expands
groups (both in ``sandbox.policy.expand``, each file and group once), and
checks every name, action and condition, collecting all problems of all files
before failing with a PolicyError.  The result is a ``Profile``;
``sandbox.policy.lower`` turns it into the per-architecture IR.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bpf_filters import syscalls
from bpf_filters.ir import Action, Origin

from . import constants
from .conditions import CondSpec, parse_condition
from .diagnostics import Diagnostic, PolicyError, Position, decode_utf8, did_you_mean
from .expand import expand_groups, redefined, resolve_extends
from ..paths import read_input

TOP_KEYS = ("name", "description", "extends", "default", "unknown", "arches", "bad_arch",
            "baseline", "rules", "groups", "capabilities", "scope", "landlock", "filesystem", "network")
SCOPE_VALUES = ("sandbox", "any")
ACTION_NAMES = ("allow", "log", "errno", "trap", "kill-process", "kill-thread", "notify")
ARCH_NAMES = ("native",) + syscalls.ARCHES
_ACTION_RE = re.compile(r"^(?P<kind>[a-z-]+)(?:\((?P<arg>[^()]*)\))?$")


def builtin_dir() -> Path:
    """Where the built-in profiles live (package data ``sandbox.profiles``)."""
    from ..paths import builtin_dir as _dir
    return Path(_dir())


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml") if p.stem != "groups")


@dataclass
class RuleSpec:
    action: Action
    names: list[tuple[str, Position]]
    conds: list[CondSpec]
    pos: Position
    text: str
    comment: str | None = None
    twice: list[tuple[str, Position]] = field(default_factory=list)   # names repeated in the rule

    @property
    def origin(self) -> Origin:
        return Origin(self.pos.file, self.pos.line, self.pos.col, self.text)


@dataclass
class Setting:
    value: object
    pos: Position | None


@dataclass
class Profile:
    name: str
    description: str
    path: str
    default: Setting
    unknown: Setting
    bad_arch: Setting
    arches: Setting
    rules: list[RuleSpec]
    files: list[str] = field(default_factory=list)       # every file it was built from
    sources: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)
    extends: list[str] = field(default_factory=list)
    local_groups: dict = field(default_factory=dict)   # a profile's own ``groups:``
    capabilities: Setting = field(default_factory=lambda: Setting(None, None))  # kept caps
    scope: dict = field(default_factory=dict)          # {"signals": Setting("sandbox"|"any")}
    landlock: Setting = field(default_factory=lambda: Setting(None, None))  # enforce|best-effort
    digests: dict = field(default_factory=dict)        # file -> SHA-256 of the bytes read
    fs: list | None = None          # [(word, path template, Position)] of filesystem: sections
    net: dict | None = None         # {"bind"|"connect": "any" | [(port template, Position)]}
    baseline: Setting = field(default_factory=lambda: Setting(None, None))  # "5.10": see baseline_spec
    base_refs: list = field(default_factory=list)      # this file's extends: [(ref, Position)]
    absent: list = field(default_factory=list)         # profiles looked for by name first, missing
    fs_inherit: bool = True         # filesystem: {inherit: false} stops the bases' entries
    net_inherit: bool = True

    def digest(self) -> str:
        h = hashlib.sha256()
        for f in sorted(self.files):
            h.update(f.encode() + b"\0" + "".join(self.sources.get(f, [])).encode() + b"\0")
        return h.hexdigest()


def _is_file(p: Path) -> bool:
    """A file, or a path sbx may not look at (then reading it says why, with its position)."""
    try:
        return p.is_file()
    except OSError:
        return True


def find_profile(ref: str, relative_to: Path | None = None, referrer: Path | None = None,
                 absent: list[str] | None = None) -> Path | None:
    """A profile reference is a path (has '/' or ends in .yaml) or a name, looked up on the
    search path (``sandbox.search``: user, system, built-in; UnsafeProfile if the one
    found could be changed by others). *referrer*: the file whose ``extends`` names it;
    *absent* collects the files looked for first that did not exist."""
    from .. import search
    if not search.is_name(ref):
        p = Path(ref)
        if not p.is_absolute() and relative_to is not None:
            p = relative_to / p
        return p if _is_file(p) else None
    found = search.find(ref, str(referrer) if referrer is not None else None)
    if found is None:
        return None
    if absent is not None:
        absent.extend(found.absent)
    return Path(found.path)


class _Reader:
    """Reads one or more files, accumulating diagnostics and sources."""

    def __init__(self) -> None:
        self.diags: list[Diagnostic] = []
        self.sources: dict[str, list[str]] = {}
        self.files: list[str] = []
        self.digests: dict[str, str] = {}
        self.absent: list[str] = []       # profiles looked for by name first, not there

    def error(self, pos: Position | None, msg: str, hint: str | None = None, **kw) -> None:
        self.diags.append(Diagnostic(pos, msg, hint=hint, **kw))

    def pos(self, file: str, node: yaml.Node, shift: int = 0) -> Position:
        m = node.start_mark
        quoted = isinstance(node, yaml.ScalarNode) and node.style in ("'", '"')
        length = 1
        if isinstance(node, yaml.ScalarNode) and node.start_mark.line == node.end_mark.line:
            length = max(1, node.end_mark.column - node.start_mark.column - (2 if quoted else 0))
        return Position(file, m.line + 1, m.column + 1 + (1 if quoted else 0) + shift, length)

    def compose(self, path: Path) -> yaml.Node | None:
        file = str(path)
        try:
            raw = read_input(str(path))
        except OSError as err:
            self.error(Position(file, 1, 1), f"cannot read profile: {err.strerror}")
            return None
        text, bad = decode_utf8(raw, file, "profile")
        if bad is not None:
            self.diags.append(bad)
            return None
        if "\0" in text:
            at = text.index("\0")
            line = text.count("\n", 0, at) + 1
            self.error(Position(file, line, at - (text.rfind("\n", 0, at) + 1) + 1),
                       "profile contains a NUL character", hint="is this a text file?")
            return None
        self.digests[file] = hashlib.sha256(raw).hexdigest()
        self.sources[file] = text.splitlines(keepends=True)
        if file not in self.files:
            self.files.append(file)
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            where = Position(file, mark.line + 1, mark.column + 1) if mark else Position(file, 1, 1)
            self.error(where, f"invalid YAML: {err.problem or err.context}")
            return None
        except yaml.YAMLError as err:
            self.error(Position(file, 1, 1), f"invalid YAML: {err}")
            return None
        except RecursionError:          # PyYAML's composer recurses once per level of nesting
            self.error(_too_deep(file, text), f"the YAML nests more than {MAX_NESTING} levels deep",
                       hint="a profile needs four: rules, a rule, its conditions")
            return None
        if node is None:
            self.error(Position(file, 1, 1), "empty profile")
            return None
        if not isinstance(node, yaml.MappingNode):
            self.error(self.pos(file, node), "a profile must be a mapping of keys (name, rules, ...)")
            return None
        return node

    def mapping(self, file: str, node: yaml.MappingNode, allowed) -> dict[str, tuple]:
        """{key: (key_node, value_node)}; reports duplicates and unknown keys."""
        out: dict[str, tuple] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                self.error(self.pos(file, k), "keys must be plain words")
                continue
            if k.value in out:
                first = self.pos(file, out[k.value][0])
                self.error(self.pos(file, k), f"duplicate key '{k.value}'",
                           notes=[Diagnostic(first, "first defined here", severity="note")])
                continue
            if allowed is not None and k.value not in allowed:
                self.error(self.pos(file, k), f"unknown key '{k.value}'", did_you_mean(k.value, allowed))
                continue
            out[k.value] = (k, v)
        return out

    def scalar(self, file: str, node: yaml.Node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.error(self.pos(file, node), f"{what} must be a single value")
            return None
        return str(node.value)

    def words(self, file: str, node: yaml.Node, what: str) -> list[tuple[str, Position]]:
        """A string or a list of strings."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out = []
        for it in items:
            s = self.scalar(file, it, what)
            if s is not None:
                out.append((s, self.pos(file, it)))
        if isinstance(node, yaml.SequenceNode) and not items:
            self.error(self.pos(file, node), f"{what} list is empty")
        return out

    def action(self, file: str, text: str, pos: Position) -> Action | None:
        m = _ACTION_RE.match(text.strip())
        kind = m.group("kind") if m else text
        if not m or kind not in ACTION_NAMES:
            self.error(pos, f"unknown action '{text}'", did_you_mean(kind, ACTION_NAMES + ("errno(EPERM)",)))
            return None
        arg = m.group("arg")
        if kind in ("errno", "trap"):
            if arg is None:
                return Action(kind, 1 if kind == "errno" else 0)   # errno defaults to EPERM
            arg = arg.strip()
            num = constants.ERRNO.get(arg) if kind == "errno" else None
            if num is None:
                try:
                    num = int(arg, 0)
                except ValueError:
                    self.error(pos, f"unknown errno '{arg}'", did_you_mean(arg, constants.ERRNO))
                    return None
            if not 0 <= num <= 4095:
                self.error(pos, f"{kind} value {num} out of range 0..4095")
                return None
            return Action(kind, num)
        if arg is not None:
            self.error(pos, f"action '{kind}' takes no argument")
            return None
        return Action(kind)


MAX_NESTING = 64


def _too_deep(file: str, text: str) -> Position:
    """Where *text* first nests deeper than MAX_NESTING (PyYAML's parser, unlike
    its composer, does not recurse)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_NESTING:
                    m = event.start_mark
                    return Position(file, m.line + 1, m.column + 1)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        pass
    return Position(file, 1, 1)


def _load_groups(reader: _Reader, path: Path) -> dict[str, tuple[list[tuple[str, Position]], Position]]:
    node = reader.compose(path)
    if node is None:
        return {}
    file = str(path)
    top = reader.mapping(file, node, ("groups",))
    if "groups" not in top:
        return {}
    gnode = top["groups"][1]
    if not isinstance(gnode, yaml.MappingNode):
        reader.error(reader.pos(file, gnode), "groups must be a mapping of name: [syscalls]")
        return {}
    out = {}
    for name, (knode, vnode) in reader.mapping(file, gnode, None).items():
        out[name] = (reader.words(file, vnode, f"group '{name}'"), reader.pos(file, knode))
    return out


def _read_rules(reader: _Reader, file: str, node: yaml.Node) -> list[RuleSpec]:
    if not isinstance(node, yaml.SequenceNode):
        reader.error(reader.pos(file, node), "rules must be a list")
        return []
    out = []
    for item in node.value:
        ipos = reader.pos(file, item)
        if not isinstance(item, yaml.MappingNode):
            reader.error(ipos, "a rule is a mapping like 'allow: [read, write]'")
            continue
        fields = reader.mapping(file, item, None)
        action_keys = [k for k in fields if k not in ("when", "comment")]
        if len(action_keys) != 1:
            reader.error(ipos, "a rule needs exactly one action key (allow, errno(EPERM), kill-process, ...)"
                         if not action_keys else f"a rule has one action, found {', '.join(action_keys)}")
            continue
        key = action_keys[0]
        knode, vnode = fields[key]
        apos = reader.pos(file, knode)
        action = reader.action(file, key, apos)
        names = reader.words(file, vnode, "syscall")
        conds: list[CondSpec] = []
        conds_ok = True
        if "when" in fields:
            wnode = fields["when"][1]
            texts = reader.words(file, wnode, "condition")
            if not texts:
                conds_ok = False       # words() reported the empty or malformed list
            for text, cpos in texts:
                spec, diags = parse_condition(text, cpos)
                reader.diags.extend(diags)
                if spec is None:
                    conds_ok = False   # the rule is dropped with its error: never unconditioned
                else:
                    conds.append(spec)
        comment = None
        if "comment" in fields:
            comment = reader.scalar(file, fields["comment"][1], "comment")
        line_text = reader.sources[file][apos.line - 1].strip() if file in reader.sources else key
        if action is not None and conds_ok:
            out.append(RuleSpec(action, names, conds, apos, line_text, comment))
    return out


def _read_file(reader: _Reader, path: Path) -> Profile | None:
    """One file as written: its bases are merged by ``expand.resolve_extends``."""
    file = str(path)
    node = reader.compose(path)
    if node is None:
        return None
    top = reader.mapping(file, node, TOP_KEYS)

    def setting(key: str, parse):
        if key not in top:
            return Setting(None, None)
        knode, vnode = top[key]
        return Setting(parse(vnode), reader.pos(file, vnode))

    def parse_action(vnode):
        s = reader.scalar(file, vnode, "an action")
        return reader.action(file, s, reader.pos(file, vnode)) if s is not None else None

    def parse_arches(vnode):
        out = []
        for a, apos in reader.words(file, vnode, "arch"):
            if a not in ARCH_NAMES:
                reader.error(apos, f"unknown architecture '{a}'", did_you_mean(a, ARCH_NAMES))
            else:
                out.append(a)
        return out

    name = setting("name", lambda n: reader.scalar(file, n, "name"))
    if name.value is None and "name" not in top:
        reader.error(Position(file, 1, 1), "profile has no 'name'")
    desc = setting("description", lambda n: reader.scalar(file, n, "description"))
    rules = _read_rules(reader, file, top["rules"][1]) if "rules" in top else []
    prof = Profile(name=name.value or path.stem, description=desc.value or "", path=file,
                   default=setting("default", parse_action), unknown=setting("unknown", parse_action),
                   bad_arch=setting("bad_arch", parse_action), arches=setting("arches", parse_arches),
                   rules=rules)
    if "baseline" in top:
        prof.baseline = setting("baseline", lambda n: _read_baseline(reader, file, n))
    if "capabilities" in top:
        prof.capabilities = setting("capabilities", lambda n: _read_caps(reader, file, n))
    if "landlock" in top:
        def parse_mode(vnode):
            s = reader.scalar(file, vnode, "landlock")
            if s is not None and s not in ("enforce", "best-effort"):
                reader.error(reader.pos(file, vnode), f"landlock must be enforce or best-effort, not '{s}'",
                             did_you_mean(s, ("enforce", "best-effort")))
                return None
            return s
        prof.landlock = setting("landlock", parse_mode)
    if "scope" in top:
        prof.scope = _read_scope(reader, file, top["scope"][1])
    if "filesystem" in top:
        prof.fs, prof.fs_inherit = _read_fs(reader, file, top["filesystem"][1])
    if "network" in top:
        prof.net, prof.net_inherit = _read_net(reader, file, top["network"][1])
    if "groups" in top:
        gnode = top["groups"][1]
        if isinstance(gnode, yaml.MappingNode):
            prof.local_groups = {k: (reader.words(file, v, f"group '{k}'"), reader.pos(file, kn))
                                 for k, (kn, v) in reader.mapping(file, gnode, None).items()}
        else:
            reader.error(reader.pos(file, gnode), "groups must be a mapping of name: [syscalls]")
    if "extends" in top:
        prof.base_refs = reader.words(file, top["extends"][1], "extends")
    return prof


def load_profile(ref: str | Path) -> Profile:
    """Load a profile by built-in name or path; raise PolicyError with every problem."""
    from ..errors import SbxError
    from ..search import search_dirs
    try:
        path = find_profile(str(ref)) if not isinstance(ref, Path) else (ref if _is_file(ref) else None)
    except SbxError as err:                       # search.UnsafeProfile
        raise PolicyError([Diagnostic(None, str(err))]) from None
    if path is None:
        hint = did_you_mean(str(ref), builtin_names())
        names = ", ".join(builtin_names())
        where = ", ".join(d for origin, d in search_dirs() if origin != "built-in")
        raise PolicyError([Diagnostic(None, f"no profile '{ref}' (looked in {where}; built-in "
                                            f"profiles: {names}; or give a path to a .yaml file)",
                                      hint=hint)])
    reader = _Reader()
    prof, complete = resolve_extends(
        reader, path, lambda p: _read_file(reader, p),
        lambda ref, referrer: find_profile(ref, referrer.parent, referrer, reader.absent),
        builtin_names)
    groups_path = builtin_dir() / "groups.yaml"
    groups = _load_groups(reader, groups_path) if groups_path.is_file() else {}
    if prof is not None:
        for g, (_members, gpos) in prof.local_groups.items():
            if g in groups:
                redefined(reader, g, gpos, groups[g][1])
        groups = {**groups, **{g: v for g, v in prof.local_groups.items() if g not in groups}}
        expand_groups(reader, prof.rules, groups, syscalls.all_names())
        _check_widths(reader, prof)
        if prof.default.value is None and prof.default.pos is None and complete:
            reader.error(Position(prof.path, 1, 1), "profile has no 'default' action (neither it nor the profiles it extends set one)")
        _apply_defaults(prof)
    unique: dict[tuple, Diagnostic] = {}
    for d in reader.diags:
        unique.setdefault((d.pos, d.message), d)
    order = {f: i for i, f in enumerate(reader.files)}
    reader.diags = sorted(unique.values(), key=lambda d: (
        (order.get(d.pos.file, 99), d.pos.line, d.pos.col) if d.pos else (-1, 0, 0)))
    errors = [d for d in reader.diags if d.severity == "error"]
    if errors or prof is None:
        raise PolicyError(reader.diags, reader.sources)
    prof.files, prof.sources, prof.digests = reader.files, reader.sources, reader.digests
    prof.absent = sorted(set(reader.absent))
    prof.warnings = [d for d in reader.diags if d.severity != "error"]
    return prof


ENOSYS = Action("errno", 38)


def check_baseline(text: str) -> str:
    """A ``baseline:`` value as MAJOR.MINOR, or BadVersionError: not written MAJOR.MINOR,
    newer than the syscall tables, or older than where their ages start."""
    version = syscalls.parse_version(text)
    if version > syscalls.parse_version(syscalls.KERNEL):
        raise syscalls.BadVersionError(f"baseline {text} is newer than the syscall tables "
                                       f"(Linux {syscalls.KERNEL}); use {syscalls.KERNEL} or older")
    for arch in syscalls.ARCHES:
        try:
            syscalls.newer_than(arch, text)
        except syscalls.BadVersionError as err:
            raise syscalls.BadVersionError(
                f"baseline {text}: {err}; use {syscalls.table(arch).history_floor} or newer") from err
    return f"{version[0]}.{version[1]}"


def _read_baseline(reader: _Reader, file: str, node) -> str | None:
    """``baseline: "5.10"``: the oldest kernel release the profile is meant for.

    Written MAJOR.MINOR (YAML reads an unquoted 5.10 as the number 5.1, but the
    node keeps the text as written, so both spellings mean 5.10).
    """
    text = reader.scalar(file, node, "baseline")
    if text is None:
        return None
    try:
        return check_baseline(text)
    except syscalls.BadVersionError as err:
        hint = None if "; use" in str(err) else \
            'write the oldest kernel release to run on, such as baseline: "5.10"'
        reader.error(reader.pos(file, node), str(err), hint)
        return None


def baseline_spec(prof: Profile) -> RuleSpec | None:
    """The rule ``baseline:`` stands for: errno(ENOSYS) for every syscall newer than
    the baseline that no rule names (``lower`` adds it per ABI, after the
    profile's rules), placed at the ``baseline:`` line so that ``sbx explain``,
    run reports, ``sbx check`` and exports name it."""
    if prof.baseline.value is None or prof.baseline.pos is None:
        return None
    pos = prof.baseline.pos
    text = f'baseline: "{prof.baseline.value}"'
    return RuleSpec(ENOSYS, [], [], pos, f"{text} (a syscall newer than Linux "
                    f"{prof.baseline.value} answers ENOSYS)",
                    f"baseline {prof.baseline.value}: the syscalls newer than it answer ENOSYS, "
                    "so that callers fall back")


def _read_caps(reader: _Reader, file: str, node) -> list[str] | None:
    """``capabilities: [NET_BIND_SERVICE, CAP_SETUID]``: the capabilities kept."""
    from ..kernel.caps import NAMES, number
    if isinstance(node, yaml.SequenceNode) and not node.value:
        return []
    out = []
    for word, wpos in reader.words(file, node, "capability"):
        n = number(word)
        if n is None:
            reader.error(wpos, f"unknown capability '{word}'",
                         did_you_mean(word.upper().removeprefix("CAP_"), NAMES))
        elif NAMES[n] not in out:
            out.append(NAMES[n])
    return out


def _read_scope(reader: _Reader, file: str, node) -> dict:
    """``scope: {signals: sandbox|any, abstract-unix: sandbox|any}``."""
    from ..confine import SCOPE_NAMES
    if not isinstance(node, yaml.MappingNode):
        reader.error(reader.pos(file, node), "scope must be a mapping like 'signals: sandbox'")
        return {}
    out = {}
    for key, (_k, vnode) in reader.mapping(file, node, SCOPE_NAMES).items():
        value = reader.scalar(file, vnode, f"scope {key}")
        if value is None:
            continue
        if value not in SCOPE_VALUES:
            reader.error(reader.pos(file, vnode), f"scope {key} must be sandbox or any, not '{value}'",
                         did_you_mean(value, SCOPE_VALUES))
            continue
        out[key] = Setting(value, reader.pos(file, vnode))
    return out


_VAR = re.compile(r"\$(?:\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_template(reader: _Reader, text: str, pos: Position, what: str) -> bool:
    """A path or port template: $HOME, $CWD, $TMPDIR or ${NAME}; a path must be absolute."""
    ok = True
    for m in _VAR.finditer(text):
        name = m.group("braced") if m.group("braced") is not None else m.group("plain")
        if not _NAME.fullmatch(name):
            reader.error(pos.shifted(m.start(), len(m.group(0))),
                         f"bad variable {m.group(0)!r} in {what}", "write ${NAME} or $NAME")
            ok = False
    stripped = _VAR.sub("", text)
    if "$" in stripped:
        reader.error(pos, f"a '$' that starts no variable in {what} {text!r}", "write ${NAME}")
        ok = False
    return ok


def _read_fs(reader: _Reader, file: str, node) -> tuple[list | None, bool]:
    """``filesystem: {read: [/usr, $CWD], write: [$CWD], deny: [$HOME/.ssh], inherit: true}``."""
    from ..confine import FS_KEYS
    if not isinstance(node, yaml.MappingNode):
        reader.error(reader.pos(file, node), "filesystem must be a mapping like 'read: [/usr, $CWD]'")
        return None, True
    entries, inherit = [], True
    for key, (_k, vnode) in reader.mapping(file, node, FS_KEYS + ("inherit",)).items():
        if key == "inherit":
            inherit = _read_bool(reader, file, vnode, "filesystem inherit")
            continue
        if isinstance(vnode, yaml.SequenceNode) and not vnode.value:
            continue                             # an empty list grants nothing
        for text, tpos in reader.words(file, vnode, f"filesystem {key} path"):
            if not (text.startswith("/") or text.startswith("$")):
                reader.error(tpos, f"filesystem path {text!r} is not absolute",
                             "start it with / or with $HOME, $CWD, $TMPDIR or ${NAME}")
            elif "\n" in text or "\0" in text:
                reader.error(tpos, "a filesystem path cannot hold a newline or NUL")
            elif _check_template(reader, text, tpos, "filesystem path"):
                entries.append((key, text, tpos))
    return entries, inherit


def _read_net(reader: _Reader, file: str, node) -> tuple[dict | None, bool]:
    """``network: {bind: [8000, "${PORT}"], connect: any, inherit: true}`` (TCP ports)."""
    from ..confine import ANY, NET_KEYS
    if not isinstance(node, yaml.MappingNode):
        reader.error(reader.pos(file, node), "network must be a mapping like 'bind: [8000]'")
        return None, True
    out, inherit = {}, True
    for key, (_k, vnode) in reader.mapping(file, node, NET_KEYS + ("inherit",)).items():
        if key == "inherit":
            inherit = _read_bool(reader, file, vnode, "network inherit")
            continue
        if isinstance(vnode, yaml.ScalarNode) and vnode.value == ANY:
            out[key] = ANY
            continue
        if isinstance(vnode, yaml.SequenceNode) and not vnode.value:
            out[key] = []
            continue
        ports = []
        for text, ppos in reader.words(file, vnode, f"network {key} port"):
            if text.isdigit():
                if int(text) > 65535:
                    reader.error(ppos, f"TCP port {text} is out of range 0..65535")
                    continue
                ports.append((str(int(text)), ppos))
            elif text.startswith("$") and _check_template(reader, text, ppos, "network port"):
                ports.append((text, ppos))
            elif not text.startswith("$"):
                reader.error(ppos, f"{text!r} is not a TCP port", "write a number, ${VAR} or 'any'")
        out[key] = ports
    return out, inherit


def _read_bool(reader: _Reader, file: str, node, what: str) -> bool:
    s = reader.scalar(file, node, what)
    if s in ("true", "yes", "on"):
        return True
    if s in ("false", "no", "off"):
        return False
    if s is not None:
        reader.error(reader.pos(file, node), f"{what} must be true or false, not '{s}'")
    return True


def confinement(prof: Profile):
    """The profile's non-seccomp part as a ``confine.Spec``."""
    from ..confine import ANY, SCOPE_NAMES, Spec
    scoped = [s for s in SCOPE_NAMES if (prof.scope.get(s) or Setting("sandbox", None)).value == "sandbox"]
    builtin = str(builtin_dir())
    fs = None if prof.fs is None else [
        (word, text, pos.file.startswith(builtin + "/")) for word, text, pos in prof.fs]
    net = None if prof.net is None else {
        key: (ANY if val == ANY else [t for t, _p in val]) for key, val in prof.net.items()}
    # a built-in's port templates (web's ${PORT}) are quiet when their variable is unset, in a
    # profile of one's own that extends it too; the ports one lists oneself are not
    quiet = [] if prof.net is None else [t for val in prof.net.values() if val != ANY for t, p in val
                                         if p.file.startswith(builtin + "/") and "$" in t]
    return Spec(prof.capabilities.value or (), scoped, prof.landlock.value or "enforce", fs, net,
                quiet)


def _apply_defaults(prof: Profile) -> None:
    if prof.unknown.value is None:
        prof.unknown = Setting(Action("errno", 38), None)      # ENOSYS
    if prof.bad_arch.value is None:
        prof.bad_arch = Setting(Action("kill-process"), None)
    if prof.arches.value is None:
        prof.arches = Setting(["native"], None)


def _check_widths(reader: _Reader, prof: Profile) -> None:
    """Every compared value must fit the argument it is compared with, on every ABI."""
    from bpf_filters.syscalls.signatures import arg_width, fits

    for rule in prof.rules:
        for c in rule.conds:
            for name in dict.fromkeys(n for n, _ in rule.names):
                for arch in syscalls.ARCHES:
                    if name not in syscalls.table(arch):
                        continue
                    width = arg_width(arch, name, c.arg)
                    vals = list(c.values) + ([c.mask] if c.mask is not None else [])
                    bad = [v for v in vals if not fits(v, width)]
                    if bad:
                        reader.error(c.pos, f"value {bad[0]:#x} does not fit the {width}-bit "
                                            f"argument arg{c.arg} of {name} on {arch}")
                        break

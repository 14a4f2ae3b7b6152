"""Turn Landlock denials into the smallest ``filesystem:`` or ``network:`` addition that allows them.

``plan_grants`` decides, per file, directory or port the Landlock rules
refused, one entry to add: a TCP port to ``network: bind/connect``, or a
path under the narrowest word that holds the refused right (``read``,
``list``, ``modify``, ``truncate``, ``exec``, ``create``, ``remove``,
``refer``, ``ioctl-dev``, ``make-device``). The path is the file itself for
rights on a file (or its directory, when the file is gone: a temporary file
that each run names anew), the directory for rights in a directory
(creating, removing, renaming entries), written with the deepest of the
profile's variables that holds it ($CWD, $TMPDIR, $HOME, $EXEC_ROOT, $TTY) as the
run had them (``denials.RunContext``). More than ``READ_LIMIT`` files of one
directory under one word become one entry on the directory, as ``sbx trace``
does.

Each candidate is checked with the real planner (``confine.plan_rules``,
then ``rights_at``) as the refused run would have expanded the
profile: a denial the profile already allows there, or one an addition could
not fix (a directory that holds a denied path keeps only the right to be
listed: an entry created beside the denied one could replace it) is left
out with the reason. So is what no profile can allow: sbx's filter cache,
writes to sbx's own code and profiles, ptrace. A path the profile
``deny:``\\ s on purpose needs ``--broad``, like a deliberate seccomp denial;
so does a scope (``scope: {signals: any}`` lifts it whole, for every process
of the user).

``apply_grants`` adds the entries to the profile's own YAML text (comments
and layout survive): to an existing list, a new key of an existing section,
or a new section at the end (which, with ``inherit`` left on, adds to the
sections of the profiles it extends). ``check_grants`` proves on the loaded
result that every planned denial is now allowed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import yaml

from .confine import ANY, RIGHT_WORDS, expand_deny, expand_ports, own_places, plan_rules, rights_at
from .denials import RunContext, landlock_groups
from .kernel.landlock import FILE_RIGHTS, FS_RIGHTS, WRITE_RIGHTS
from .paths import dotfiles_of, kept_by
from .policy.emit import list_lines, quote_item
from .refine import RefineError, Skip, merge_skips

READ_LIMIT = 16          # more files of one directory under one word: the directory (as sbx trace)
# the narrowest word holding each Landlock right
WORD_OF = {"read_file": "read", "read_dir": "list", "write_file": "modify", "truncate": "truncate",
           "execute": "exec", "ioctl_dev": "ioctl-dev", "refer": "refer",
           "make_reg": "create", "make_dir": "create", "make_sym": "create", "make_sock": "create",
           "make_fifo": "create", "make_char": "make-device", "make_block": "make-device",
           "remove_file": "remove", "remove_dir": "remove"}
assert all(r in RIGHT_WORDS[w] for r, w in WORD_OF.items())


@dataclass
class Grant:
    """One entry to add: *value* (a path template or a port) under *key* of *section*."""
    section: str                 # "filesystem" | "network"
    key: str                     # a filesystem word, or bind / connect
    value: str
    denials: int
    blockers: list[str]
    overrides: list[str] = field(default_factory=list)   # deny entries it overrides (--broad)
    targets: list[tuple[str, int]] = field(default_factory=list)   # (real path, rights) it must allow
    port: int | None = None

    @property
    def why(self) -> str:
        n = self.denials
        if self.section == "scope":
            return (f"{self.key}: any: {n} denial{'s' if n != 1 else ''} ({', '.join(self.blockers)}); "
                    "--broad: lifts the scope")
        what = f"port {self.value}" if self.section == "network" else self.value
        text = f"{what}: {n} denial{'s' if n != 1 else ''} ({', '.join(self.blockers)})"
        return text + "".join(f"; --broad: overrides deny: {o}" for o in self.overrides)


@dataclass
class GrantPlan:
    grants: list[Grant]
    skipped: list[Skip]
    notes: list[str]

    @property
    def allowed(self) -> int:
        return sum(g.denials for g in self.grants)


class _Here:
    """The profile as the refused run expanded it: rules, denies, protected paths."""

    def __init__(self, spec, ctx: RunContext):
        from .paths import kept_from_writes
        self.spec, self.ctx = spec, ctx
        self.protected = kept_from_writes(ctx.env, spec.caps)
        self.rules = self.rules_of(spec)
        self.denies: list[tuple[str, str]] = []         # (template, real path)
        own = own_places(spec.caps)
        for word, template, _optional in spec.fs or ():
            if word == "deny":
                for p in expand_deny(template, ctx.env, own, ctx.exe, ctx.cwd, ctx.ttys)[0]:
                    self.denies.append((template, os.path.realpath(p)))

    def rules_of(self, spec) -> list[tuple[str, int, bool]]:
        return plan_rules(spec, self.ctx.env, self.ctx.exe, self.protected, cwd=self.ctx.cwd,
                          ttys=self.ctx.ttys)

    def denied(self, real: str) -> list[str]:
        """The deny templates at or above *real*."""
        return [t for t, d in self.denies if _beneath(real, d)]

    def kept_below(self, real: str) -> list[str]:
        """What the profile denies, or sbx keeps unwritable, strictly below *real*."""
        return [t for t, d in self.denies if d != real and _beneath(d, real)] + \
            [p for p in self.protected if p != real and _beneath(dotfiles_of(p) or p, real)]


def _beneath(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _mask(rights) -> int:
    return sum(FS_RIGHTS[r][0] for r in rights)


# -- planning -----------------------------------------------------------------------

def plan_grants(spec, denials: list, ctx: RunContext, broad: bool = False) -> GrantPlan:
    """What to add to *spec*'s sections so that every Landlock denial in *denials*
    is allowed in a run like *ctx*'s, and what not to (see the module docstring)."""
    from .trace.files import places_for
    here = _Here(spec, ctx)
    plan = GrantPlan([], [], [])
    if not ctx.known:
        plan.notes.append("the denials came without their run's context (sbx run -o writes it): "
                          "$CWD, $HOME, $TMPDIR ... are taken from here")
    places = places_for(ctx.env, ctx.cwd, ctx.exe, ctx.ttys)
    wanted: dict[tuple[str, str], Grant] = {}
    for blockers, target, count in landlock_groups(denials):
        family = blockers[0].partition(".")[0] if blockers else ""
        if family == "net":
            _plan_port(spec, ctx, blockers, target, count, wanted, plan)
        elif family == "fs" and target:
            _plan_path(here, places, blockers, target, count, broad, wanted, plan)
        elif family == "scope":
            _plan_scope(spec, blockers, target, count, broad, wanted, plan)
        else:
            plan.skipped.append(Skip(target or "?", count, f"{', '.join(blockers) or 'unknown'}: no "
                                     "filesystem: or network: entry can allow it"))
    grants = _collapse(list(wanted.values()), places)
    plan.grants = _verified(here, grants, plan.skipped)
    plan.skipped = merge_skips(plan.skipped)
    return plan


def _plan_port(spec, ctx, blockers, target, count, wanted, plan) -> None:
    text = (target or "").removeprefix("port ")
    if not text.isdigit():
        plan.skipped.append(Skip(target or "a port", count, "the record names no port"))
        return
    port = int(text)
    for blocker in blockers:
        key = "bind" if blocker == "net.bind_tcp" else "connect"
        listed = (spec.net or {}).get(key, ANY)
        if listed == ANY or port in expand_ports(listed, ctx.env, []):
            plan.skipped.append(Skip(f"port {port}", count, f"already allowed by network: {key} "
                                     "(the run's variables differed from these?)"))
            continue
        g = wanted.setdefault(("network", key, str(port)),
                              Grant("network", key, str(port), 0, [], port=port))
        g.denials += count
        g.blockers = sorted(set(g.blockers) | {blocker})


SCOPE_OF = {"scope.signal": "signals", "scope.abstract_unix_socket": "abstract-unix"}


def _plan_scope(spec, blockers, target, count, broad, wanted, plan) -> None:
    """A scope can only be lifted whole (Landlock has no per-process exception):
    ``scope: {signals: any}`` lets the command signal every process of its user,
    sbx included, so it needs --broad like a deliberate deny."""
    name = SCOPE_OF.get(blockers[0]) if blockers else None
    if name is None:
        plan.skipped.append(Skip(target or "a process", count, f"{', '.join(blockers)}: not a scope "
                                 "refine knows"))
    elif name not in spec.scoped:
        plan.skipped.append(Skip(target or "a process", count, f"scope: {name} is already any here "
                                 "(refused by another layer?)"))
    elif not broad:
        plan.skipped.append(Skip(target or "a process", count,
                                 f"{', '.join(blockers)}: the profile keeps {name} within the sandbox "
                                 f"(scope:); only scope: {{{name}: any}} lets it out, for every "
                                 "process of the user", needs_broad=True))
    else:
        g = wanted.setdefault(("scope", name, "any"), Grant("scope", name, "any", 0, []))
        g.denials += count
        g.blockers = sorted(set(g.blockers) | set(blockers))


def _plan_path(here: _Here, places, blockers, target, count, broad, wanted, plan) -> None:
    real = os.path.realpath(target)
    rights = [b.partition(".")[2] for b in blockers if b.partition(".")[2] in WORD_OF]
    if not rights:
        plan.skipped.append(Skip(target, count, f"{', '.join(blockers)}: no filesystem word grants it"))
        return
    mask = _mask(rights)
    cache = os.path.realpath(here.ctx.cache_dir) if here.ctx.cache_dir else None
    if cache and _beneath(real, cache):
        plan.skipped.append(Skip(target, count, "sbx keeps its filter cache out of every command's "
                                 "reach; no profile can allow it"))
        return
    if cache and mask & WRITE_RIGHTS and _beneath(cache, real):
        plan.skipped.append(Skip(target, count, f"sbx keeps the directories above its filter cache "
                                 f"({cache}) as they are: no entry added, removed or renamed in them; "
                                 "no profile can allow it"))
        return
    if here.spec.fs is None:
        plan.skipped.append(Skip(target, count, "the profile has no filesystem: section; this was "
                                 "refused by sbx's own protection"))
        return
    kept = kept_by(real, here.protected) if mask & WRITE_RIGHTS else None
    if kept is not None:
        plan.skipped.append(Skip(target, count, "sbx keeps the user's start-up files and dotfiles out "
                                 "of every command's writes; no profile can allow it" if kept[1] else
                                 "sbx's own code and profiles are never writable by a command; no "
                                 "profile can allow it"))
        return
    if rights_at(here.rules, real) & mask == mask:
        plan.skipped.append(Skip(target, count, "already allowed by the profile here (the run's paths "
                                 "or environment differed from these?)"))
        return
    denied = here.denied(real)
    if denied and not broad:
        plan.skipped.append(Skip(target, count, f"denied on purpose by deny: {max(denied, key=len)}",
                                 needs_broad=True))
        return
    for right in rights:
        bit = FS_RIGHTS[right][0]
        path = real
        if bit & FILE_RIGHTS and not os.path.isdir(real):
            if not os.path.exists(real):
                path = os.path.dirname(real)      # gone: a temporary file, named anew each run
                if not os.path.isdir(path):
                    plan.skipped.append(Skip(target, count, "neither it nor its directory exists now"))
                    return
        elif not os.path.isdir(real):
            plan.skipped.append(Skip(target, count, "the directory no longer exists"))
            return
        word = WORD_OF[right]
        g = wanted.setdefault(("filesystem", word, path),
                              Grant("filesystem", word, places.template(path), 0, [],
                                    overrides=denied if broad else []))
        g.denials += count
        g.blockers = sorted(set(g.blockers) | {f"fs.{right}"})
        g.targets.append((real, bit))


def _collapse(grants: list[Grant], places) -> list[Grant]:
    """More than READ_LIMIT files of one directory under one word: one grant on
    the directory (deny overrides keep their files exact)."""
    groups: dict[tuple[str, str], list[Grant]] = {}
    for g in grants:
        if g.section == "filesystem" and not g.overrides and g.targets:
            real = g.targets[0][0]
            if not os.path.isdir(real):
                groups.setdefault((g.key, os.path.dirname(real)), []).append(g)
    out = [g for g in grants if not any(g in members for members in groups.values()
                                        if len(members) > READ_LIMIT)]
    for (word, directory), members in groups.items():
        if len(members) > READ_LIMIT:
            out.append(Grant("filesystem", word, places.template(directory),
                             sum(m.denials for m in members),
                             sorted({b for m in members for b in m.blockers}),
                             targets=[t for m in members for t in m.targets]))
    return out


def _verified(here: _Here, grants: list[Grant], skipped: list[Skip]) -> list[Grant]:
    """The grants that do give what they are for, with the real planner, as the
    run would expand the refined profile; the others skipped with the reason."""
    from .confine import Spec
    while True:
        spec = _with(here.spec, grants, Spec)
        rules = here.rules_of(spec)
        failing = [g for g in grants if g.section == "filesystem"
                   and any(rights_at(rules, real) & bit != bit for real, bit in g.targets)]
        if not failing:
            return grants
        for g in failing:
            name = g.targets[0][0] if len(g.targets) == 1 else g.value
            skipped.append(Skip(name, g.denials, f"{', '.join(g.blockers)}: {_why_not(here, g)}"))
        grants = [g for g in grants if g not in failing]


def _why_not(here: _Here, g: Grant) -> str:
    """Why a grant would not give what it is for."""
    real = g.targets[0][0]
    same = [t for t, d in here.denies if d == real]
    if same:
        return f"deny: {same[0]} names this very path, and a deny wins over a grant on its own path"
    where = real if os.path.isdir(real) else os.path.dirname(real)
    below = here.kept_below(where)
    if below:
        return (f"{where} holds {below[0]}, which stays denied or unwritable: nothing may be created, "
                "removed or renamed directly in a directory above it (that could replace it)")
    return "a grant here would not reach it (the profile's rules around it decide)"


def _with(spec, grants: list[Grant], spec_type):
    """*spec* with the grants added, as a loaded refined profile would have them."""
    fs = None if spec.fs is None else list(spec.fs)
    net = None if spec.net is None else dict(spec.net)
    scoped = list(spec.scoped)
    for g in grants:
        if g.section == "filesystem":
            fs = (fs or []) + [(g.key, g.value, False)]
        elif g.section == "scope":
            scoped = [s for s in scoped if s != g.key]
        else:
            net = net or {}
            old = net.get(g.key, ANY)
            net[g.key] = (list(old) if old != ANY else []) + [g.value]
    return spec_type(spec.caps, scoped, spec.mode, fs, net, spec.net_quiet)


# -- editing the profile text -------------------------------------------------------

def apply_grants(text: str, plan: GrantPlan, source: str = "") -> str:
    """*text* with the plan's entries added to its own ``filesystem:`` and
    ``network:`` sections; every other line kept as it was."""
    if not plan.grants:
        return text
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise RefineError(f"the profile is not valid YAML: {err}") from err
    if root is None:
        root = yaml.MappingNode("tag:yaml.org,2002:map", [])
    if not isinstance(root, yaml.MappingNode):
        raise RefineError("the profile is not a YAML mapping")
    if not text.endswith("\n") and text:
        text += "\n"
    tag = f"added by sbx refine{f' from {source}' if source else ''}"
    edits: list[tuple[int, int, str]] = []          # (start, end, replacement) in the text
    appended: list[str] = []
    sections: dict[str, dict[str, list[Grant]]] = {}
    for g in plan.grants:
        sections.setdefault(g.section, {}).setdefault(g.key, []).append(g)
    for section, keys in sections.items():
        node = next((v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == section),
                    None)
        if node is None:
            appended += [f"# {tag}: {g.why}" for gs in keys.values() for g in gs] + [f"{section}:"]
            for key, gs in keys.items():
                appended += [f"  {key}: any"] if section == "scope" else \
                    list_lines(key, [(g.value, None) for g in gs])
            continue
        if not isinstance(node, yaml.MappingNode):
            raise RefineError(f"the profile's {section}: is not a mapping; write it as 'key: [...]' "
                              "lines to refine it")
        for key, gs in keys.items():
            edits += _edit_scope(text, node, key, gs, tag) if section == "scope" else \
                _edit_key(text, node, key, gs, tag)
    # from the end backwards, so that earlier positions stay valid; two insertions
    # at one place keep the order they were planned in
    for _i, (start, end, new) in sorted(enumerate(edits), key=lambda e: (e[1][0], e[1][1], e[0]),
                                        reverse=True):
        text = text[:start] + new + text[end:]
    if appended:
        sep = "" if not text or text.endswith("\n\n") else "\n"
        text += sep + "".join(line + "\n" for line in appended)
    return text


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _indent_of(text: str, index: int) -> str:
    start = _line_start(text, index)
    line = text[start:]
    return line[:len(line) - len(line.lstrip(" "))]


def _after_line(text: str, index: int) -> int:
    """The index just past the end of the line holding *index*."""
    end = text.find("\n", index)
    return len(text) if end < 0 else end + 1


def _last_line_of(text: str, node: yaml.Node) -> int:
    """An index on the last line of *node*'s content (a block node's end mark
    may sit at the start of the next line)."""
    end = node.end_mark.index
    if end > node.start_mark.index and text[end - 1:end] == "\n":
        end -= 1
    while end > node.start_mark.index and text[end - 1] in " \n":
        end -= 1
    return max(end - 1, node.start_mark.index)


def _edit_key(text: str, section: yaml.MappingNode, key: str, gs: list[Grant], tag: str):
    """The edits that add *gs*'s values to *key* of *section*."""
    items = [quote_item(g.value) for g in gs]
    comments = [f"# {tag}: {g.why}" for g in gs]
    entry = next(((k, v) for k, v in section.value if isinstance(k, yaml.ScalarNode) and k.value == key),
                 None)
    if entry is None:
        if section.flow_style:
            close = section.end_mark.index - 1
            if text[close] != "}":
                raise RefineError("cannot find the end of a flow-style section to add to")
            sep = ", " if section.value else ""
            at = _line_start(text, section.start_mark.index)
            pad = _indent_of(text, at)
            return [(at, at, "".join(f"{pad}{c}\n" for c in comments)),
                    (close, close, f"{sep}{key}: [{', '.join(items)}]")]
        if not section.value:
            raise RefineError("an empty section is not a mapping to add to")
        first_key = section.value[0][0]
        pad = " " * first_key.start_mark.column
        at = _after_line(text, _last_line_of(text, section.value[-1][1]))
        lines = [f"{pad}{c}" for c in comments] + list_lines(key, [(g.value, None) for g in gs],
                                                              indent=first_key.start_mark.column)
        return [(at, at, "".join(line + "\n" for line in lines))]
    k, v = entry
    key_line = _line_start(text, k.start_mark.index)
    pad = _indent_of(text, key_line)
    if isinstance(v, yaml.SequenceNode) and v.flow_style:
        close = v.end_mark.index - 1
        if text[close] != "]":
            raise RefineError(f"cannot find the end of the {key}: list to add to")
        sep = ", " if v.value else ""
        return [(key_line, key_line, "".join(f"{pad}{c}\n" for c in comments)),
                (close, close, sep + ", ".join(items))]
    if isinstance(v, yaml.SequenceNode) and v.value:
        dash = " " * v.start_mark.column
        at = _after_line(text, _last_line_of(text, v.value[-1]))
        return [(at, at, "".join(f"{dash}{c}\n{dash}- {i}\n" for c, i in zip(comments, items)))]
    if isinstance(v, yaml.ScalarNode) and v.value:            # read: /usr
        return [(key_line, key_line, "".join(f"{pad}{c}\n" for c in comments)),
                (v.start_mark.index, v.end_mark.index, f"[{', '.join([quote_item(v.value)] + items)}]")]
    raise RefineError(f"the profile's {key}: is neither a list nor a path; write it as "
                      f"'{key}: [...]' to refine it")


def _edit_scope(text: str, section: yaml.MappingNode, key: str, gs: list[Grant], tag: str):
    """The edits that set *key* of the ``scope:`` mapping *section* to ``any``."""
    comments = [f"# {tag}: {g.why}" for g in gs]
    entry = next(((k, v) for k, v in section.value if isinstance(k, yaml.ScalarNode) and k.value == key),
                 None)
    if entry is not None:
        k, v = entry
        key_line = _line_start(text, k.start_mark.index)
        pad = _indent_of(text, key_line) if not section.flow_style else \
            _indent_of(text, _line_start(text, section.start_mark.index))
        at = key_line if not section.flow_style else _line_start(text, section.start_mark.index)
        return [(at, at, "".join(f"{pad}{c}\n" for c in comments)),
                (v.start_mark.index, v.end_mark.index, "any")]
    if section.flow_style or not section.value:
        close = section.end_mark.index - 1
        if text[close] != "}":
            raise RefineError("cannot find the end of the scope: mapping to add to")
        at = _line_start(text, section.start_mark.index)
        pad = _indent_of(text, at)
        return [(at, at, "".join(f"{pad}{c}\n" for c in comments)),
                (close, close, f"{', ' if section.value else ''}{key}: any")]
    pad = " " * section.value[0][0].start_mark.column
    at = _after_line(text, _last_line_of(text, section.value[-1][1]))
    return [(at, at, "".join(f"{pad}{c}\n" for c in comments) + f"{pad}{key}: any\n")]


# -- checking the result ------------------------------------------------------------

def check_grants(new_spec, plan: GrantPlan, ctx: RunContext) -> None:
    """The refined profile (its ``confine.Spec``) allows every denial the plan
    covers, expanded as the refused run would."""
    here = _Here(new_spec, ctx)
    for g in plan.grants:
        if g.section == "scope":
            if g.key in new_spec.scoped:
                raise RefineError(f"internal error: the refined profile still keeps {g.key} within "
                                  "the sandbox")
            continue
        if g.section == "network":
            listed = (new_spec.net or {}).get(g.key, ANY)
            if listed != ANY and g.port not in expand_ports(listed, ctx.env, []):
                raise RefineError(f"internal error: the refined profile still refuses {g.key} on "
                                  f"port {g.port}")
            continue
        for real, bit in g.targets:
            if rights_at(here.rules, real) & bit != bit:
                raise RefineError(f"internal error: the refined profile still refuses {g.key} "
                                  f"at {real}")


__all__ = ["Grant", "GrantPlan", "READ_LIMIT", "WORD_OF", "apply_grants", "check_grants",
           "plan_grants"]

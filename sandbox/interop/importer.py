"""Import: OCI/Docker JSON (moby includes/excludes) into the sbx profile language."""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass

import yaml

from bpf_filters import syscalls
from bpf_filters.ir import M32, M64, Action

from bpf_filters.syscalls.signatures import arg_width

from ..paths import display_path
from ..policy.constants import ERRNO
from ..policy.diagnostics import Diagnostic, PolicyError, Position, did_you_mean
from ..policy.emit import rule_lines
from ..policy.show import action_text
from ..policy.spell import number, shared_text

from .analysis import (Bdd, OCI_ARCH, PERMISSIVE)


# ---------------------------------------------------------------- import

SCMP_TO_ARCH = {v: k for k, v in OCI_ARCH.items()}
SCMP_ARCHES = ("SCMP_ARCH_NATIVE", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
               "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
               "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
               "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
               "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
               "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB")
GOARCH = {"x86_64": ("amd64",), "i386": ("386", "x86"), "x32": ("x32",), "aarch64": ("arm64",)}
DOCKER_CAPS = ("CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
               "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID",
               "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT")
FROM_OCI = {"SCMP_ACT_ALLOW": "allow", "SCMP_ACT_LOG": "log", "SCMP_ACT_ERRNO": "errno",
            "SCMP_ACT_TRAP": "trap", "SCMP_ACT_KILL": "kill-thread", "SCMP_ACT_KILL_THREAD": "kill-thread",
            "SCMP_ACT_KILL_PROCESS": "kill-process", "SCMP_ACT_TRACE": "trace", "SCMP_ACT_NOTIFY": "notify"}
FROM_OCI_OP = {"SCMP_CMP_EQ": "==", "SCMP_CMP_NE": "!=", "SCMP_CMP_LT": "<", "SCMP_CMP_LE": "<=",
               "SCMP_CMP_GE": ">=", "SCMP_CMP_GT": ">", "SCMP_CMP_MASKED_EQ": "&=="}
# Arguments whose values have well-known names: (syscall, arg) -> (bit flags?, name patterns)
@dataclass
class ImportOptions:
    caps: frozenset[str] = frozenset()
    arch: str = "x86_64"
    kernel: tuple[int, int] | None = None     # None: every includes.minKernel is taken as met
    name: str | None = None


@dataclass
class ImportedRule:
    action: Action
    names: list[str]
    conds: list[tuple[int, str, int, int]]    # (arg, op, value, mask); op "&==" is masked
    comment: str | None
    line: int
    notes: list[str]


class _Json:
    """Typed access to a JSON document composed as YAML nodes, which keep line:col."""

    def __init__(self, file: str, text: str):
        self.file, self.diags = file, []
        self.sources = {file: text.splitlines(keepends=True)}

    def pos(self, node) -> Position:
        m, e = node.start_mark, node.end_mark
        return Position(self.file, m.line + 1, m.column + 1,
                        max(1, e.column - m.column) if e.line == m.line else 1)

    def say(self, node, msg: str, hint: str | None = None, severity: str = "error") -> None:
        self.diags.append(Diagnostic(self.pos(node) if node is not None else None, msg, severity, hint))

    @staticmethod
    def kind(node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "object"
        if isinstance(node, yaml.SequenceNode):
            return "array"
        if node.style == '"':
            return "string"
        return {"true": "boolean", "false": "boolean", "null": "null"}.get(node.value, "number")

    def expect(self, node, kind: str, what: str) -> bool:
        if self.kind(node) == kind:
            return True
        self.say(node, f"{what} must be {'an' if kind[0] in 'ao' else 'a'} {kind}, not {self.kind(node)}")
        return False

    def fields(self, node, allowed: tuple[str, ...], what: str) -> dict:
        """The object's known keys; null values count as absent, as runc's Go decoder reads them."""
        if not self.expect(node, "object", what):
            return {}
        out: dict = {}
        seen: set[str] = set()
        for k, v in node.value:
            if k.value in seen:
                self.say(k, f"duplicate key '{k.value}' in {what}")
            elif k.value not in allowed:
                self.say(k, f"unknown key '{k.value}' in {what} (ignored)", did_you_mean(k.value, allowed),
                         severity="warning")
            elif self.kind(v) != "null":
                out[k.value] = v
            seen.add(k.value)
        return out

    def string(self, node, what: str) -> str | None:
        return node.value if self.expect(node, "string", what) else None

    def uint(self, node, what: str, top: int = M64) -> int | None:
        if not self.expect(node, "number", what):
            return None
        if not re.fullmatch(r"0|[1-9][0-9]*", node.value) or int(node.value) > top:
            self.say(node, f"{what} must be an integer 0..{top}, not {node.value}")
            return None
        return int(node.value)

    def strings(self, node, what: str) -> list[tuple[str, object]]:
        if node is None or self.kind(node) == "null" or not self.expect(node, "array", what):
            return []
        return [(s, n) for n in node.value if (s := self.string(n, what)) is not None]


MAX_NESTING = 64           # a seccomp profile nests 5 deep (syscalls, an entry, args, a comparison)
_JSON_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(file: str, text: str) -> Diagnostic:
    """Where *text* first nests deeper than MAX_NESTING: json and PyYAML's composer
    recurse once per level, and fail (RecursionError) long before memory does."""
    depth = 0
    for m in _JSON_NESTING.finditer(text):
        tok = m.group()
        if tok in "[{":
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, m.start()) + 1
                col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
                return Diagnostic(Position(file, line, col), f"the JSON nests more than {MAX_NESTING} "
                                  "levels deep: not a seccomp profile")
        elif tok in "]}":
            depth -= 1
    return Diagnostic(Position(file, 1, 1), "the JSON nests too deeply: not a seccomp profile")


_LONG_NUMBER = re.compile(r"-?\d{%d,}" % (sys.get_int_max_str_digits() + 1))


def _huge_number(file: str, text: str) -> Diagnostic:
    """Where the number too long to convert is (no seccomp value needs more than 20 digits)."""
    m = _LONG_NUMBER.search(text)
    at = m.start() if m else 0
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    digits = len(m.group().lstrip("-")) if m else 0
    return Diagnostic(Position(file, line, col, 20), f"a number of {digits} digits: no seccomp "
                      "value has more than 20 (the largest, 2^64-1, is 18446744073709551615)")


def _compose(file: str, text: str, j: _Json):
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        j.diags.append(Diagnostic(Position(file, err.lineno, err.colno), f"invalid JSON: {err.msg}"))
        return None
    except RecursionError:
        j.diags.append(_too_deep(file, text))
        return None
    except ValueError:              # an integer longer than Python converts (4,300 digits)
        j.diags.append(_huge_number(file, text))
        return None
    # JSON is YAML, except that YAML forbids tabs as indentation; a tab is one column either way
    try:
        node = yaml.compose(text.replace("\t", " "), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:        # valid JSON that YAML 1.1 still rejects
        mark = err.problem_mark or err.context_mark
        j.diags.append(Diagnostic(Position(file, mark.line + 1, mark.column + 1) if mark else None,
                                  f"cannot read this JSON: {err.problem or err.context}"))
        return None
    except RecursionError:
        j.diags.append(_too_deep(file, text))
        return None
    return node if node is not None and j.expect(node, "object", "a seccomp profile") else None


def _read_action(j: _Json, anode, enode) -> Action | None:
    name = j.string(anode, "action")
    kind = FROM_OCI.get(name) if name else None
    if kind is None:
        if name:
            j.say(anode, f"unknown action '{name}'", did_you_mean(name, FROM_OCI))
        return None
    data = None
    if enode is not None:
        if j.kind(enode) == "string" and enode.value in ERRNO:      # containers/common "errno": "ENOSYS"
            data = ERRNO[enode.value]
        else:
            data = j.uint(enode, "errnoRet", 4095)
        if kind not in ("errno", "trace"):
            j.say(enode, f"errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {name} "
                         "(OCI runtimes refuse the profile)")
    if kind == "errno":
        return Action("errno", 1 if data is None else data)
    if kind == "trace":
        j.say(anode, "SCMP_ACT_TRACE with no tracer attached fails the call with ENOSYS: imported as "
                     "errno(ENOSYS)", severity="warning")
        return Action("errno", 38)
    if kind == "notify":
        j.say(anode, "SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath): imported as notify",
              severity="warning")
    return Action(kind)


def parse_kernel(text: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _applies(j: _Json, fields: dict, opts: ImportOptions, notes: list[str]) -> str | None:
    """moby's includes/excludes for *opts*: why the entry is left out, or None (then *notes*)."""
    goarch, spec = GOARCH[opts.arch], {}
    for key in ("excludes", "includes"):
        f = j.fields(fields[key], ("caps", "arches", "minKernel"), key) if key in fields else {}
        caps = [c for c, _ in j.strings(f.get("caps"), f"{key}.caps")]
        arches = [a for a, _ in j.strings(f.get("arches"), f"{key}.arches")]
        text = kern = None
        if "minKernel" in f and j.kind(f["minKernel"]) != "null":
            text = j.string(f["minKernel"], f"{key}.minKernel")
            kern = parse_kernel(text) if text else None
            if text and kern is None:
                j.say(f["minKernel"], f"invalid kernel version '{text}' (expected MAJOR.MINOR)")
        spec[key] = (caps, arches, kern, text)
    (xcaps, xarches, _, _), (icaps, iarches, ikern, ktext) = spec["excludes"], spec["includes"]
    if set(xarches) & set(goarch):
        return f"excludes arches {', '.join(xarches)}"
    if set(xcaps) & opts.caps:
        return f"excludes caps {', '.join(sorted(set(xcaps) & opts.caps))} (granted)"
    if iarches and not set(iarches) & set(goarch):
        return f"includes arches {', '.join(iarches)}"
    if icaps and not set(icaps) <= opts.caps:
        return f"includes caps {', '.join(icaps)}"
    if ikern and opts.kernel and opts.kernel < ikern:
        return f"includes minKernel {ktext} (kernel {opts.kernel[0]}.{opts.kernel[1]})"
    for what, items in (("excludes caps", xcaps), ("excludes arches", xarches),
                        ("includes arches", iarches), ("includes caps", icaps)):
        if items:
            notes.append(f"{what} {', '.join(items)}" + (" (not granted)" if what == "excludes caps" else ""))
    if ikern:
        notes.append(f"includes minKernel {ktext}" + (" (taken as met)" if opts.kernel is None else ""))
    return None


def _read_args(j: _Json, node, names: list[str]) -> list[tuple[int, str, int, int]] | None:
    conds, ok = [], True
    for a in (node.value if node is not None and j.expect(node, "array", "args") else []):
        f = j.fields(a, ("index", "value", "valueTwo", "op"), "an argument comparison")
        if "index" not in f or "op" not in f:
            j.say(a, "an argument comparison needs 'index' and 'op'")
        idx = j.uint(f["index"], "index", 5) if "index" in f else None
        op = j.string(f["op"], "op") if "op" in f else None
        if op and op not in FROM_OCI_OP:
            j.say(f["op"], f"invalid op '{op}'", did_you_mean(op, FROM_OCI_OP))
            op = None
        value = j.uint(f["value"], "value") if "value" in f else 0
        two = j.uint(f["valueTwo"], "valueTwo") if "valueTwo" in f else 0
        if None in (idx, op, value, two):
            ok = False
            continue
        if op == "SCMP_CMP_MASKED_EQ":
            if two & ~value:
                j.say(a, f"valueTwo {two:#x} has bits outside the mask {value:#x}: this never matches",
                      severity="warning")
            cond = (idx, "&==", two, value)
        else:
            cond = (idx, FROM_OCI_OP[op], value, M64)
        ok &= _fits(j, f.get("value", a), names, cond)
        conds.append(cond)
    return conds if ok else None


def _fits(j: _Json, node, names: list[str], cond: tuple[int, str, int, int]) -> bool:
    """sbx compares 32-bit arguments on their low word: a wider value cannot be written."""
    idx, _, value, mask = cond
    for name in names:
        for arch in syscalls.ARCHES:
            if name in syscalls.table(arch) and arg_width(arch, name, idx) <= 32:
                bad = [v for v in (value, mask if mask != M64 else 0) if v > M32]
                if bad:
                    j.say(node, f"value {bad[0]:#x} does not fit the 32-bit argument arg{idx} of {name} "
                                f"on {arch} (the kernel reads its low word only)")
                    return False
    return True


def _read_entries(j: _Json, nodes, opts: ImportOptions, skipped: list[str]) -> list[ImportedRule]:
    known, out = syscalls.all_names(), []
    for node in nodes:
        f = j.fields(node, ("names", "name", "action", "errnoRet", "errno", "args", "comment",
                            "includes", "excludes"), "a syscalls entry")
        if not f:
            continue
        line, notes = node.start_mark.line + 1, []
        if "name" in f and "names" in f:
            j.say(node, "both 'name' and 'names' in one entry: use either 'name' or 'names'")
        names = [(s, n) for s, n in ([(j.string(f["name"], "name"), f["name"])] if "name" in f
                                      else j.strings(f.get("names"), "names")) if s]
        if "action" not in f:
            j.say(node, "a syscalls entry needs an 'action'")
            continue
        action = _read_action(j, f["action"], f.get("errnoRet", f.get("errno")))
        why = _applies(j, f, opts, notes)
        label = ", ".join(n for n, _ in names[:6]) + (f" ... ({len(names)} names)" if len(names) > 6 else "")
        if why is not None:
            skipped.append(f"line {line}: {why}: {label}")
            continue
        for name, nnode in names:
            if name not in known:
                j.say(nnode, f"unknown syscall '{name}' on every supported architecture (skipped, as runc "
                             "skips names it cannot resolve)", did_you_mean(name, known), "warning")
        good = [n for n, _ in names if n in known]
        conds = _read_args(j, f.get("args"), good)
        comment = j.string(f["comment"], "comment") if "comment" in f else None
        if action is None or conds is None:
            continue
        if not good:
            skipped.append(f"line {line}: no known syscall name: {label}")
        elif len({c[0] for c in conds}) < len(conds):
            j.say(f["args"], "several comparisons on one argument: runc then adds each comparison as a "
                             "rule of its own (any of them matches)", severity="warning")
            out += [ImportedRule(action, good, [c], comment, line, notes) for c in conds]
        else:
            out.append(ImportedRule(action, good, conds, comment, line, notes))
    return out


def _as_libseccomp(j: _Json, rules: list[ImportedRule], default: Action) -> list[ImportedRule]:
    """Drop what libseccomp ignores, so that first-match order gives libseccomp's answers.

    runc skips rules with the default action; a syscall with an unconditional
    rule is decided by the first such rule alone.  Overlapping conditional rules
    with different actions follow libseccomp's tree, not the file order: warned.
    """
    out = []
    for r in rules:
        if r.action != default:
            out.append(r)
            continue
        j.diags.append(Diagnostic(Position(j.file, r.line, 1), f"{action_text(r.action)} is the default "
                                  f"action: runc ignores this entry ({', '.join(r.names[:4])})", "note"))
    decider: dict[str, ImportedRule] = {}
    for r in out:
        for n in r.names:
            if not r.conds:
                decider.setdefault(n, r)
    for r in out:
        lost = [n for n in r.names if n in decider and decider[n] is not r]
        if [n for n in lost if decider[n].action != r.action]:
            first = decider[lost[0]].line
            j.diags.append(Diagnostic(Position(j.file, r.line, 1), f"{', '.join(lost)}: libseccomp lets the "
                                      f"unconditional rule at line {first} decide, this entry never "
                                      "applies to them", "warning"))
        r.names = [n for n in r.names if n not in lost]
    bdd, regions = Bdd(), {}
    for r in out:
        region = 1
        for arg, op, value, mask in r.conds:
            region = bdd.both(region, bdd.compare(arg, op, value, 64, mask))
        for n in r.names:
            # the union of earlier regions per action finds an overlap in one step; only
            # then are the earlier entries searched (one by one they made this quadratic)
            earlier, unions = regions.setdefault(n, ([], {}))
            if any(a != r.action and bdd.both(region, u) for a, u in unions.items()):
                for other, oregion in earlier:
                    if other.action != r.action and bdd.both(region, oregion):
                        j.diags.append(Diagnostic(Position(j.file, r.line, 1), f"{n}: arguments matched by "
                                                  f"this entry and by line {other.line} get different "
                                                  "actions; libseccomp's choice does not follow file "
                                                  "order, sbx's does", "warning"))
            earlier.append((r, region))
            unions[r.action] = bdd.either(unions.get(r.action, 0), region)
    return [r for r in out if r.names]


def _symbol(names: list[str], arg: int, value: int) -> str:
    """The value as the one speller writes it for these syscalls (sandbox.policy.spell)."""
    return shared_text(names, arg, value)


def _cond_text(names: list[str], cond: tuple[int, str, int, int]) -> str:
    arg, op, value, mask = cond
    if op == "&==":
        return f"arg{arg} & {_symbol(names, arg, mask)} == {_symbol(names, arg, value)}"
    shown = _symbol(names, arg, value) if op in ("==", "!=") else number(value)
    return f"arg{arg} {op} {shown}"


def _yaml_rule(r: ImportedRule, file: str) -> list[str]:
    lines = [f"  # {file}:{r.line}" + (f" ({'; '.join(r.notes)})" if r.notes else "")]
    return lines + rule_lines(action_text(r.action), [(n, None) for n in r.names],
                              [(_cond_text(r.names, c), None) for c in r.conds], r.comment)


def _import_arches(j: _Json, top: dict, native: str) -> list[str]:
    listed = j.strings(top.get("architectures"), "architectures")
    amap = top.get("archMap")
    if listed and amap is not None and j.kind(amap) == "array" and amap.value:
        j.say(amap, "'architectures' and 'archMap' were both given: use either 'architectures' or 'archMap'")
    if amap is not None and not listed and j.expect(amap, "array", "archMap"):
        for item in amap.value:
            f = j.fields(item, ("architecture", "subArchitectures"), "an archMap entry")
            main = j.string(f["architecture"], "architecture") if "architecture" in f else None
            if main == OCI_ARCH[native]:
                subs = j.strings(f.get("subArchitectures"), "subArchitectures")
                listed = [(main, f["architecture"])] + subs
    out = [native]
    for name, node in listed:
        ours = SCMP_TO_ARCH.get(name)
        if name not in SCMP_ARCHES:
            j.say(node, f"unknown architecture '{name}'", did_you_mean(name, SCMP_ARCHES))
        elif ours is None and name != "SCMP_ARCH_NATIVE":
            j.say(node, f"{name} has no syscall table in sbx: its calls get bad_arch", severity="warning")
        elif ours and ours not in out:
            out.append(ours)
    return out


def _import_header(name: str, shown: str, opts: ImportOptions, unknown: Action,
                   skipped: list[str]) -> list[str]:
    caps = ", ".join(sorted(opts.caps)) or "none"
    kern = "taken as met" if opts.kernel is None else f"{opts.kernel[0]}.{opts.kernel[1]}"
    out = [f"# {name}: imported by `sbx import` from {shown}",
           f"# Resolved for arch {opts.arch} (\"{GOARCH[opts.arch][0]}\" in includes/excludes), "
           f"capabilities: {caps}, includes.minKernel: {kern}.",
           "# Read as runc reads it: entries with the default action are ignored, an unconditional",
           "# entry alone decides its syscall, comparisons repeated on one argument are alternatives.",
           "# Differences: sbx compares 32-bit arguments (an int such as socket's family) on their low",
           "# word, libseccomp on all 64 bits; numbers the syscall tables do not name get",
           f"# {action_text(unknown)} here (runc: ENOSYS above the highest syscall libseccomp knows);",
           "# bad_arch is libseccomp's kill-thread, as under runc."]
    if skipped:
        out += ["# Entries left out:"] + [f"#   {s}" for s in skipped]
    return out


def import_oci(text: str, file: str, opts: ImportOptions) -> tuple[str, list[Diagnostic]]:
    """An OCI/Docker seccomp JSON as a profile in the sbx language (text, warnings); raises PolicyError."""
    j = _Json(file, text)
    root = _compose(file, text, j)
    keys = ("defaultAction", "defaultErrnoRet", "defaultErrno", "architectures", "archMap", "syscalls",
            "flags", "listenerPath", "listenerMetadata")
    top = j.fields(root, keys, "the profile") if root else {}
    default = None
    if root is not None and "defaultAction" not in top:
        j.say(root, "the profile has no 'defaultAction'")
    elif root is not None:
        default = _read_action(j, top["defaultAction"], top.get("defaultErrnoRet", top.get("defaultErrno")))
    arches = _import_arches(j, top, opts.arch) if root is not None else []
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if key in top:
            j.say(top[key], f"'{key}' is not carried over (sbx run --log asks for SECCOMP_FILTER_FLAG_LOG)",
                  severity="warning")
    skipped: list[str] = []
    listed = "syscalls" in top and j.expect(top["syscalls"], "array", "syscalls")
    nodes = top["syscalls"].value if listed else []
    rules = _read_entries(j, nodes, opts, skipped)
    if default is None or any(d.severity == "error" for d in j.diags):
        raise PolicyError([d for d in j.diags if d.severity == "error"] or j.diags, j.sources)
    rules = _as_libseccomp(j, rules, default)
    shown = display_path(file)
    name = opts.name or re.sub(r"\.json$", "", file.rsplit("/", 1)[-1])
    unknown = default if default.kind in PERMISSIVE else Action("errno", 38)
    desc = f"imported from {shown} for {opts.arch}, capabilities: {', '.join(sorted(opts.caps)) or 'none'}"
    out = _import_header(name, shown, opts, unknown, skipped) + [
        "", f"name: {json.dumps(name)}", f"description: {json.dumps(desc)}",
        f"default: {action_text(default)}", f"unknown: {action_text(unknown)}",
        f"arches: [{', '.join(arches)}]", "bad_arch: kill-thread", "", "rules:" if rules else "rules: []"]
    for r in rules:
        out += _yaml_rule(r, shown) + [""]
    return "\n".join(out).rstrip() + "\n", [d for d in j.diags if d.severity != "error"]

"""Portable recordings: what one traced run did, with where and when, as versioned JSON Lines.

``sbx trace --record OUT.jsonl`` writes one; ``sbx profile build`` reads any
number, from any number of machines. The format (docs/lifecycle.md) is one
JSON object per line:

    {"type": "header", "format": "sbx-recording", "version": 2, "host": ..., "kernel": ...,
     "libc": ..., "arch": ..., "command": [...], "started": ..., "seconds": ..., "backend": ...,
     "exit_code": ..., "lost": ..., "files": true}
    {"type": "syscall", "arch": "x86_64", "nr": 0, "name": "read", "count": 12}
    {"type": "arg", "arch": "x86_64", "nr": 41, "name": "socket", "index": 0, "value": 2, "count": 3}
    {"type": "file", "word": "read", "path": "$CWD/app.conf", "comment": ""}
    {"type": "deny", "path": "/etc/shadow"}
    {"type": "port", "key": "connect", "port": "443"}
    {"type": "end", "calls": 15}

Version 2 added the files and TCP ports of the run (``files: true`` in the
header, then ``file``, ``deny`` and ``port`` lines): the ``filesystem:`` and
``network:`` sections ``sbx trace`` writes for that run (``trace.files``:
generalised, with the profile's variables, so they mean the same on another
host). A version 1 recording, or one whose header says ``files: false``,
recorded no files: ``sbx profile build`` then leaves them unrestricted.

``read_recording`` checks every line and raises one ``RecordingError`` with
every problem of the file as ``file:line:col`` diagnostics: a line that is not
JSON, a first line that is not an sbx header (a foreign file), a newer format
version, unknown types and keys, a name that is not the syscall of that number
here, counts that do not add up to the end line, a file cut short.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from bpf_filters import syscalls

from .confine import tcp_port
from .errors import SbxError
from .paths import read_input
from .policy.diagnostics import Diagnostic, Position, did_you_mean

FORMAT = "sbx-recording"
VERSION = 2
M64 = (1 << 64) - 1
HEADER_KEYS = ("type", "format", "version", "host", "kernel", "libc", "arch", "command",
               "started", "seconds", "backend", "exit_code", "lost", "files")
KEYS = {"header": HEADER_KEYS,
        "syscall": ("type", "arch", "nr", "name", "count"),
        "arg": ("type", "arch", "nr", "name", "index", "value", "count"),
        "file": ("type", "word", "path", "comment"),
        "deny": ("type", "path"),
        "port": ("type", "key", "port"),
        "end": ("type", "calls")}
_PROVENANCE = tuple(k for k in HEADER_KEYS if k not in ("type", "format", "version", "files"))
_FOREIGN_ARCH = re.compile(r"arch-0x[0-9a-f]+")


class RecordingError(SbxError):
    """A recording that does not read; carries every problem found (exit status 2)."""

    status = 2

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, list[str]]):
        self.diagnostics, self.sources = diagnostics, sources
        body = "\n".join(d.format(sources) for d in diagnostics)
        n = sum(d.severity == "error" for d in diagnostics)
        super().__init__(f"{body}\n{n} error{'s' if n != 1 else ''} in recording")

    def render(self) -> str:
        return str(self)


@dataclass
class Provenance:
    """Where and when a recording was made."""
    host: str
    kernel: str                  # uname -r of the host
    libc: str                    # the C library sbx ran with there ("glibc 2.36")
    arch: str                    # the native ABI of the host
    command: list[str]
    started: str                 # ISO 8601 in UTC, to the millisecond
    seconds: float               # from the command's start to its exit
    backend: str                 # "ebpf" | "notify"
    exit_code: int
    lost: int = 0                # counts the tracer could not keep


@dataclass
class RecordingFile:
    path: str
    provenance: Provenance
    calls: dict[tuple[str, int], int]                      # (arch, nr) -> count
    arg_values: dict[tuple[str, int, int], dict[int, int]]  # (arch, nr, index) -> value -> count
    files: object = None          # trace.files.Files of the run; None: files were not recorded
    net: object = None            # trace.files.Net of the run; None: ports were not recorded


def host_provenance(argv: list[str], backend: str, started: float, seconds: float,
                    exit_code: int, lost: int, arch: str) -> Provenance:
    """This host's provenance for a run of *argv* that began at *started* (epoch seconds)."""
    import datetime
    import socket
    when = datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
    return Provenance(socket.gethostname(), os.uname().release, libc_version(), arch, list(argv),
                      when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                      round(seconds, 3), backend, exit_code, lost)


def libc_version() -> str:
    """The C library of this process: confstr on glibc, else what platform can tell."""
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        found = None
    if found:
        return found
    import platform
    name, version = platform.libc_ver()
    return f"{name} {version}".strip() or "unknown"


def _name(arch: str, nr: int) -> str | None:
    return syscalls.name_of(arch, nr)


def render(prov: Provenance, calls: dict, arg_values: dict, files=None, net=None) -> str:
    """The recording's text: the same data gives the same bytes (lines sorted).
    *files* and *net* (``trace.files.Files``/``Net``, both or neither) are the
    run's sections; without them the header says ``files: false``."""
    head = {"type": "header", "format": FORMAT, "version": VERSION, **prov.__dict__,
            "files": files is not None}
    lines = [json.dumps(head)]
    for (arch, nr), n in sorted(calls.items()):
        lines.append(json.dumps({"type": "syscall", "arch": arch, "nr": nr, "name": _name(arch, nr),
                                 "count": n}))
    for (arch, nr, idx), values in sorted(arg_values.items()):
        for value, n in sorted(values.items()):
            lines.append(json.dumps({"type": "arg", "arch": arch, "nr": nr, "name": _name(arch, nr),
                                     "index": idx, "value": value, "count": n}))
    if files is not None:
        for word, items in sorted(files.grants.items()):
            for path, comment in sorted(items.items()):
                lines.append(json.dumps({"type": "file", "word": word, "path": path,
                                         "comment": comment}))
        lines += [json.dumps({"type": "deny", "path": p}) for p in sorted(files.denies)]
    if net is not None:
        for key in ("bind", "connect"):
            ports = getattr(net, key)
            for port in sorted(ports if ports is not None else ["any"],
                               key=lambda p: (not p.isdigit(), int(p) if p.isdigit() else 0, p)):
                lines.append(json.dumps({"type": "port", "key": key, "port": port}))
    lines.append(json.dumps({"type": "end", "calls": sum(calls.values())}))
    return "\n".join(lines) + "\n"


def write_recording(path: str, prov: Provenance, calls: dict, arg_values: dict, files=None,
                    net=None) -> None:
    from .paths import write_output
    write_output(path, render(prov, calls, arg_values, files, net))


# --------------------------------------------------------------------------- reading

class _Lines:
    """Diagnostics for one file, positioned at a key of a line where there is one."""

    def __init__(self, path: str, lines: list[str]):
        self.path, self.lines, self.diags = path, lines, []

    def error(self, line: int, msg: str, key: str | None = None, hint: str | None = None,
              notes=()) -> None:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        col, length = 1, max(1, len(text.rstrip("\n")))
        if key is not None and f'"{key}"' in text:
            col, length = text.index(f'"{key}"') + 1, len(key) + 2
        self.diags.append(Diagnostic(Position(self.path, line, col, length), msg, hint=hint,
                                     notes=list(notes)))


def _int(v, lo: int = 0, hi: int = M64) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _check_header(out: _Lines, obj: dict) -> Provenance | None:
    if obj.get("type") != "header" or obj.get("format") != FORMAT:
        out.error(1, "not an sbx recording: the first line must be its header "
                     f'{{"type": "header", "format": "{FORMAT}", "version": {VERSION}, ...}}',
                  hint="make recordings with sbx trace --record OUT.jsonl")
        return None
    if not _int(obj.get("version"), 1):
        out.error(1, "the header's version must be a positive integer", "version")
        return None
    if obj["version"] > VERSION:
        out.error(1, f"recording format version {obj['version']} is newer than this sbx reads "
                     f"({VERSION})", "version", hint="upgrade sbx")
        return None
    ok = _check_keys(out, 1, obj, HEADER_KEYS)
    checks = (("host", lambda v: isinstance(v, str) and v),
              ("kernel", lambda v: isinstance(v, str) and re.match(r"\d+\.\d+", v)),
              ("libc", lambda v: isinstance(v, str)), ("arch", lambda v: v in syscalls.ARCHES),
              ("command", lambda v: isinstance(v, list) and v and all(isinstance(w, str) for w in v)),
              ("started", _is_time), ("seconds", lambda v: isinstance(v, (int, float))
                                      and not isinstance(v, bool) and v >= 0),
              ("backend", lambda v: isinstance(v, str) and v),
              ("exit_code", lambda v: _int(v, 0, 255)), ("lost", lambda v: _int(v)))
    if obj["version"] >= 2:             # version 1 recorded no files
        checks += (("files", lambda v: isinstance(v, bool)),)
    elif "files" in obj:
        out.error(1, "'files' came with version 2 of the format; this header says version 1",
                  "files")
        ok = False
    for key, good in checks:
        if key not in obj:
            out.error(1, f"the header has no '{key}'")
            ok = False
        elif not good(obj[key]):
            out.error(1, f"bad '{key}' in the header: {json.dumps(obj[key])}", key,
                      hint=_HEADER_HINTS.get(key))
            ok = False
    if not ok:
        return None
    return Provenance(**{k: obj[k] for k in _PROVENANCE})


_HEADER_HINTS = {"files": "true when the run's files and ports follow, else false",
                 "arch": f"one of {', '.join(syscalls.ARCHES)}",
                 "kernel": "the host's uname -r, such as 6.1.0-18-amd64",
                 "started": "ISO 8601 in UTC, such as 2026-01-31T12:00:00Z",
                 "command": "the traced command as a list of strings"}


def _is_time(v) -> bool:
    import datetime
    if not isinstance(v, str):
        return False
    try:
        datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _check_keys(out: _Lines, line: int, obj: dict, allowed) -> bool:
    ok = True
    for key in obj:
        if key not in allowed:
            out.error(line, f"unknown key '{key}' in a {obj.get('type')} line", key,
                      hint=did_you_mean(key, allowed))
            ok = False
    for key in allowed if ok else ():        # a misspelt key is not reported missing too
        if key not in obj and obj.get("type") != "header":
            out.error(line, f"a {obj.get('type')} line needs '{key}'")
            ok = False
    return ok


def _check_call(out: _Lines, line: int, obj: dict) -> bool:
    """arch, nr and name of a syscall or arg line: the name must be what this sbx calls it."""
    arch, nr, name = obj["arch"], obj["nr"], obj["name"]
    if not isinstance(arch, str) or not (arch in syscalls.ARCHES or _FOREIGN_ARCH.fullmatch(arch)):
        out.error(line, f"unknown arch {json.dumps(arch)}", "arch",
                  hint=f"one of {', '.join(syscalls.ARCHES)}, or arch-0x... for others")
        return False
    if not _int(nr, 0, 0xFFFFFFFF):
        out.error(line, f"bad syscall number {json.dumps(nr)}", "nr")
        return False
    known = syscalls.name_of(arch, nr)
    if name is not None and not isinstance(name, str):
        out.error(line, f"bad name {json.dumps(name)}", "name")
        return False
    if known is not None and name is not None and name != known:
        out.error(line, f"{arch} syscall {nr} is {known}, not '{name}'", "name",
                  hint="was this recorded on another architecture or a different table?")
        return False
    return True


def read_recording(path: str) -> RecordingFile:
    """Read and check one recording; RecordingError lists every problem."""
    try:
        text = read_input(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        msg = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise RecordingError([Diagnostic(Position(path, 1, 1), f"cannot read recording: {msg}")], {})
    lines = text.splitlines(keepends=True)
    out = _Lines(path, lines)
    st = _read_lines(out, lines)
    if out.diags or st.prov is None:
        raise RecordingError(out.diags, {path: lines})
    return RecordingFile(path, st.prov, st.calls, st.values, st.files, st.net)


class _State:
    def __init__(self) -> None:
        self.prov: Provenance | None = None
        self.calls: dict = {}
        self.values: dict = {}
        self.first: dict[tuple, int] = {}      # key -> the line that gave it
        self.ended: int | None = None
        self.total = 0
        self.files = self.net = None        # trace.files.Files / Net when the header says files


def _read_lines(out: _Lines, lines: list[str]) -> _State:
    st = _State()
    if not lines:
        out.error(1, "empty recording", hint="make recordings with sbx trace --record OUT.jsonl")
        return st
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.rstrip("\r\n"))
        except (ValueError, RecursionError) as err:
            # JSONDecodeError has a column; a number of more than 4,300 digits
            # (ValueError) or nesting deeper than the interpreter's stack
            # (RecursionError) has none
            col = getattr(err, "colno", 1)
            why = getattr(err, "msg", None) or ("nested too deeply" if isinstance(err, RecursionError)
                                                else str(err).split(";")[0])
            if i == 1:
                out.diags.append(Diagnostic(Position(out.path, 1, col),
                                            f"not an sbx recording: the first line is not JSON "
                                            f"({why})", hint="make recordings with sbx trace "
                                            "--record OUT.jsonl"))
                return st
            out.diags.append(Diagnostic(Position(out.path, i, col), f"not JSON: {why}"))
            continue
        if not isinstance(obj, dict):
            out.error(i, "a line must be a JSON object")
        elif i == 1:
            st.prov = _check_header(out, obj)
            if st.prov is None:
                return st
            if obj.get("files"):
                from .trace.files import Files, Net
                st.files, st.net = Files(), Net()
        elif st.ended is not None:
            out.error(i, f"a line after the end line (line {st.ended})")
        else:
            _read_line(out, st, i, obj)
    for (arch, nr, idx) in st.values:
        if (arch, nr) not in st.calls:
            line = st.first[next(k for k in st.first if k[:3] == (arch, nr, idx))]
            out.error(line, f"argument values of a syscall no syscall line counts ({arch} {nr})")
    if st.ended is None:
        out.error(len(lines), "the recording ends without its end line",
                  hint="cut short? a recording ends with {\"type\": \"end\", ...}")
    return st


def _read_line(out: _Lines, st: _State, i: int, obj: dict) -> None:
    """One syscall, arg or end line into *st*, or its problems into *out*."""
    kind = obj.get("type")
    if kind not in KEYS or kind == "header":
        out.error(i, f"unknown line type {json.dumps(kind)}", "type",
                  hint=did_you_mean(str(kind), [k for k in KEYS if k != "header"]))
        return
    if not _check_keys(out, i, obj, KEYS[kind]):
        return
    if kind in ("file", "deny", "port"):
        _read_access(out, st, i, obj)
        return
    if kind == "end":
        st.ended = i
        # after a rejected line the sum is unknown: no second error for the same problem
        if not _int(obj["calls"]) or (obj["calls"] != st.total and not out.diags):
            out.error(i, f"the end line counts {json.dumps(obj['calls'])} calls, the syscall "
                         f"lines {st.total}", "calls", hint="is this file edited or cut?")
        return
    if not _check_call(out, i, obj):
        return
    bad = next((k for k, ok in (("count", _int(obj["count"], 1)),
                                ("index", kind != "arg" or _int(obj["index"], 0, 5)),
                                ("value", kind != "arg" or _int(obj["value"]))) if not ok), None)
    if bad is not None:
        out.error(i, f"bad {bad} {json.dumps(obj[bad])}", bad, hint=_LINE_HINTS[bad])
        return
    key = (obj["arch"], obj["nr"]) if kind == "syscall" else \
        (obj["arch"], obj["nr"], obj["index"], obj["value"])
    if key in st.first:
        out.error(i, f"a second {kind} line for the same {'call' if kind == 'syscall' else 'value'}",
                  notes=[Diagnostic(Position(out.path, st.first[key], 1), "first given here",
                                    severity="note")])
        return
    st.first[key] = i
    if kind == "syscall":
        st.calls[key] = obj["count"]
        st.total += obj["count"]
    else:
        st.values.setdefault(key[:3], {})[obj["value"]] = obj["count"]


_LINE_HINTS = {"count": "a positive integer", "index": "an argument index, 0..5",
               "value": "an unsigned 64-bit integer"}


def _read_access(out: _Lines, st: _State, i: int, obj: dict) -> None:
    """One file, deny or port line (format version 2) into *st*."""
    from .confine import RIGHT_WORDS
    kind = obj["type"]
    if st.files is None:
        out.error(i, f"a {kind} line in a recording whose header does not say files: true", "type")
        return
    key = (kind,) + tuple(obj[k] for k in KEYS[kind][1:] if k != "comment")
    if key in st.first:
        out.error(i, f"a second {kind} line for the same {'port' if kind == 'port' else 'path'}",
                  notes=[Diagnostic(Position(out.path, st.first[key], 1), "first given here",
                                    severity="note")])
        return
    st.first[key] = i
    if kind == "port":
        port, which = obj["port"], obj["key"]
        if which not in ("bind", "connect"):
            out.error(i, f"bad key {json.dumps(which)}", "key", hint="bind or connect")
        elif not (isinstance(port, str) and (port == "any" or port.startswith("$")
                                             or tcp_port(port) is not None)):
            out.error(i, f"bad port {json.dumps(port)}", "port",
                      hint='a TCP port as a string, such as "443", or "any"')
        elif port == "any":
            setattr(st.net, which, None)
        elif getattr(st.net, which) is not None:
            getattr(st.net, which).add(port)
        return
    path = obj["path"]
    if not (isinstance(path, str) and path[:1] in ("/", "$") and "\n" not in path and "\0" not in path):
        out.error(i, f"bad path {json.dumps(path)}", "path",
                  hint="an absolute path, or one starting with $CWD, $HOME, $TMPDIR, $EXEC_ROOT")
    elif kind == "deny":
        st.files.denies.add(path)
    elif obj["word"] not in RIGHT_WORDS:
        out.error(i, f"unknown word {json.dumps(obj['word'])}", "word",
                  hint=did_you_mean(str(obj["word"]), tuple(RIGHT_WORDS)))
    elif not isinstance(obj["comment"], str):
        out.error(i, f"bad comment {json.dumps(obj['comment'])}", "comment", hint="a string, or \"\"")
    else:
        st.files.add(obj["word"], path, obj["comment"])

"""What becomes of a profile's other layers in each export: files, ports, scopes, capabilities.

``sbx run`` confines a command with more than its seccomp filter:
no_new_privs, the capabilities it keeps (as root, every other one is
dropped), a Landlock domain with the profile's ``filesystem:`` and
``network:`` rules, and the ``scope:`` of signals and abstract Unix sockets.
An export must carry these or say that it does not:

- ``systemd_layers``: the settings systemd 252 has for them (mounts from
  ``systemd_fs``, ``SocketBindAllow=``, ``CapabilityBoundingSet=``,
  ``NoNewPrivileges=``), and a warning at the profile's entry plus a header
  line for each thing it cannot say;
- ``runtime_losses``: OCI/Docker and Kubernetes exports carry the seccomp
  profile only; a warning at each layer names what is lost and the runtime's
  own setting for it.

Path and port templates keep their variables until an export binds them:
``--var NAME=VALUE`` (``bind_vars``) binds any of them; otherwise systemd's
specifiers stand for ``$HOME`` (``%h``), ``$TMPDIR`` (``%T``) and
``$XDG_RUNTIME_DIR`` (``%t``), and the rest
(``$CWD``, ``$EXEC_ROOT``, ``${NAME}``) have no unit equivalent: their
entries are left out with a warning naming the option. ``$TTY`` entries are
left out quietly: a service has no terminal, and under ``sbx run`` without
one they grant nothing either.
"""
from __future__ import annotations

import posixpath
import re

import yaml

from ..confine import ANY, tcp_port
from ..paths import builtin_dir, display_path
from ..policy import Profile
from ..policy.diagnostics import Diagnostic, Position
from .systemd_fs import plan_fs

_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# systemd.unit(5): %h the manager's user's home, %T $TMPDIR or /tmp, %t the runtime
# directory root (/run for the system manager, $XDG_RUNTIME_DIR for a user's)
SPECIFIERS = {"HOME": "%h", "TMPDIR": "%T", "XDG_RUNTIME_DIR": "%t"}
WHAT = {"CWD": "the command's working directory: the unit's WorkingDirectory=",
        "EXEC_ROOT": "the directory above the command's: /usr for /usr/bin/python3"}


def parse_var(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` from --var; ValueError says what is wrong."""
    name, eq, value = text.partition("=")
    if not eq:
        raise ValueError(f"'{text}' is not NAME=VALUE")
    if not _NAME.fullmatch(name):
        raise ValueError(f"'{name}' is not a variable name (letters, digits and _, not starting with a digit)")
    if not value:
        raise ValueError(f"{name}= has no value")
    if "\n" in value or "\0" in value:
        raise ValueError(f"the value of {name} holds a newline or NUL")
    return name, value


def _at(pos: Position) -> str:
    return f"{display_path(pos.file)}:{pos.line}:{pos.col}"


def _names(template: str) -> list[str]:
    return [m.group("braced") or m.group("plain") for m in _VAR.finditer(template)]


def uses(prof: Profile) -> dict[str, list[tuple[str, Position]]]:
    """Every variable the profile's paths and ports use: name -> [(what, position)]."""
    out: dict[str, list[tuple[str, Position]]] = {}
    for word, template, pos in prof.fs or ():
        for name in _names(template):
            out.setdefault(name, []).append(("path", pos))
    for val in (prof.net or {}).values():
        for template, pos in (() if val == ANY else val):
            for name in _names(template):
                out.setdefault(name, []).append(("port", pos))
    return out


def bind_vars(prof: Profile, texts: list[str]) -> tuple[dict[str, str], list[Diagnostic]]:
    """The --var bindings checked against the profile's use of them; ValueError for a value that
    cannot stand where the profile puts it (a relative path, a port that is no number)."""
    bound: dict[str, str] = {}
    for text in texts:
        name, value = parse_var(text)
        bound[name] = value
    used = uses(prof)
    diags = []
    for name, value in bound.items():
        if name not in used:
            diags.append(Diagnostic(None, f"--var {name}: the profile uses no ${name}", severity="warning"))
            continue
        for what, pos in used[name]:
            if what == "port" and tcp_port(value) is None:
                raise ValueError(f"{name}={value}: ${name} is a TCP port at {_at(pos)}; give a number 0..65535")
        for word, template, pos in prof.fs or ():
            if name in _names(template) and not _fill(template, bound, {})[0].startswith(("/", "%")):
                raise ValueError(f"{name}={value}: ${name} makes the filesystem path {template} at {_at(pos)} "
                                 "relative; give an absolute path")
    return bound, diags


def _fill(template: str, bound: dict[str, str], specifiers: dict[str, str]) -> tuple[str, list[str]]:
    """(text, unbound names); literal % doubled when *specifiers* are in use (systemd text)."""
    out, missing, i = [], [], 0
    esc = (lambda s: s.replace("%", "%%")) if specifiers else (lambda s: s)
    for m in _VAR.finditer(template):
        out.append(esc(template[i:m.start()]))
        name = m.group("braced") or m.group("plain")
        if name in bound:
            out.append(esc(bound[name]))
        elif name in specifiers:
            out.append(specifiers[name])
        else:
            missing.append(name)
        i = m.end()
    out.append(esc(template[i:]))
    return "".join(out), missing


def _shown(template: str, bound: dict[str, str]) -> str:
    """A template with its bound variables filled in, as written where one is unbound."""
    text, missing = _fill(template, bound, {})
    return template if missing else text


def unit_path(template: str, bound: dict[str, str]) -> tuple[str | None, list[str]]:
    """A profile path as a unit file writes it, or (None, the unbound variables)."""
    text, missing = _fill(template, bound, SPECIFIERS)
    if missing:
        return None, missing
    norm = posixpath.normpath(text)
    return ("/" + norm.lstrip("/") if text.startswith("/") else norm), []


def key_position(prof: Profile, *keys: str) -> Position | None:
    """Where KEY (or KEY's sub-key) is written, in the first of the profile's files that has it."""
    for file in prof.files:
        try:
            node = yaml.compose("".join(prof.sources.get(file, ())), Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            continue
        for key in keys:
            if not isinstance(node, yaml.MappingNode):
                node = None
                break
            found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key),
                         None)
            if found is None:
                node = None
                break
            knode, node = found
        if node is not None:
            m = knode.start_mark
            return Position(file, m.line + 1, m.column + 1, len(keys[-1]))
    return None


def _unbound_diags(missing: dict[str, list], where: str) -> tuple[list[Diagnostic], list[str]]:
    diags, notes = [], []
    for name, hits in missing.items():
        words = ", ".join(dict.fromkeys(w for w, _ in hits))
        what = f" ({WHAT[name]})" if name in WHAT else ""
        msg = (f"${name} has no {where} equivalent{what}: its {words} entries are left out; "
               f"bind it with --var {name}=VALUE")
        diags.append(Diagnostic(hits[0][1], msg, severity="warning"))
        notes.append(msg)
    return diags, notes


# ---------------------------------------------------------------- systemd

BPF_NOTE = ("SocketBindAllow=/SocketBindDeny= need systemd built with BPF_FRAMEWORK (`systemctl --version`: "
            "+BPF_FRAMEWORK); a systemd without it, Debian 12's 252 among them, ignores them silently")


def systemd_layers(prof: Profile, bound: dict[str, str], features: set[str] | None = None):
    """(settings [(key, value)], header lines, warnings) for everything but the seccomp filter.

    *features*: the words of this machine's `systemctl --version` (+BPF_FRAMEWORK ...), or None.
    """
    settings: list[tuple[str, str]] = [("NoNewPrivileges", "yes")]
    notes: list[str] = []
    diags: list[Diagnostic] = []
    caps = prof.capabilities.value or []
    settings.append(("CapabilityBoundingSet", ""))           # the empty assignment resets what the unit said
    if caps:
        settings.append(("CapabilityBoundingSet", " ".join(f"CAP_{c}" for c in caps)))
    if prof.fs is not None:
        entries, missing = [], {}
        for word, template, pos in prof.fs:
            path, unbound = unit_path(template, bound)
            if "TTY" in unbound:
                continue            # a service has no terminal: as sbx run without one, nothing
            if unbound and word == "deny" and pos is not None and \
                    pos.file.startswith(builtin_dir() + "/"):
                continue            # a built-in's ${GNUPGHOME} ...: skipped when unset, as sbx run does
            for name in unbound:
                missing.setdefault(name, []).append((word, pos))
            if path is not None:
                entries.append((word, path, pos))
        d, n = _unbound_diags(missing, "unit")
        diags += d
        notes += n
        if "HOME" not in bound and any("HOME" in _names(t) for _w, t, _p in prof.fs):
            notes.append("$HOME is %h: the home of the user running the service manager, /root for a "
                         "system service whatever User= says; for a service with User=, bind --var HOME=")
        plan = plan_fs(entries)
        settings += plan.settings
        notes += plan.notes
        diags += plan.diags
    if prof.net is not None:
        _systemd_net(prof, bound, features, settings, notes, diags)
    _scopes(prof, "systemd 252 has no such scope: the service", diags, notes)
    mode = prof.landlock.value or "enforce"
    notes.append(f"landlock: {mode}: " + (
        "sbx refuses to run a command where the kernel cannot enforce the file and port rules; systemd "
        "applies each setting where it can (mount namespaces; cgroup BPF for ports) and starts the unit "
        "regardless" if mode == "enforce" else "sbx runs the command with what the kernel can enforce, "
        "as systemd does"))
    return settings, notes, diags


def _systemd_net(prof, bound, features, settings, notes, diags) -> None:
    bind, connect = prof.net.get("bind", ANY), prof.net.get("connect", ANY)
    if bind != ANY:
        pos = key_position(prof, "network", "bind")
        settings.append(("SocketBindDeny", "tcp"))       # TCP only, like Landlock; UDP binds are not ruled
        missing: dict[str, list] = {}
        for template, ppos in bind:
            text, unbound = _fill(template, bound, {})
            for name in unbound:
                missing.setdefault(name, []).append(("bind port", ppos))
            if unbound:
                continue
            if int(text) == 0:
                msg = ("bind port 0 (a port the kernel picks): SocketBindAllow= takes ports 1-65535, so the "
                       "service cannot bind an ephemeral TCP port")
                diags.append(Diagnostic(ppos, msg, severity="warning"))
                notes.append(msg)
                continue
            settings.append(("SocketBindAllow", f"tcp:{int(text)}"))
        d, n = _unbound_diags(missing, "unit")
        diags += d
        notes += n
        notes.append(BPF_NOTE)
        if features is not None and "-BPF_FRAMEWORK" in features:
            diags.append(Diagnostic(pos, "this machine's systemd is built without BPF_FRAMEWORK: it ignores "
                                    "SocketBindAllow=/SocketBindDeny= without a word, and binds any port",
                                    severity="warning"))
    if connect != ANY:
        pos = key_position(prof, "network", "connect")
        ports = " ".join(t for t, _ in connect) or "none"
        msg = (f"network connect (the profile: TCP ports {ports}): systemd has no per-port connect rule "
               "(IPAddressAllow=/IPAddressDeny= filter addresses, not ports): the service may connect to "
               "any TCP port")
        diags.append(Diagnostic(pos, msg, severity="warning"))
        notes.append(msg)


def _scopes(prof: Profile, lead: str, diags: list, notes: list) -> None:
    from ..confine import SCOPE_NAMES
    what = {"signals": "may signal any process its user may signal",
            "abstract-unix": "may connect to any abstract Unix socket of its network namespace"}
    for key in SCOPE_NAMES:
        setting = prof.scope.get(key)
        if setting is not None and setting.value == "any":
            continue
        where = "" if setting is not None else " (sbx's default)"
        msg = f"scope {key}: sandbox{where}: {lead} {what[key]}"
        diags.append(Diagnostic(setting.pos if setting else None, msg, severity="warning"))
        notes.append(msg)


# ---------------------------------------------------------------- OCI / Docker / Kubernetes

_RUNTIME = {
    "oci": {
        "fs": "the bundle's mounts (read-only binds, root.readonly: true) and linux.readonlyPaths / "
              "linux.maskedPaths (for denied paths)",
        "net": "a network namespace (linux.namespaces type network) and the host's firewall",
        "caps": "process.capabilities (bounding, effective, permitted, inheritable, ambient)",
        "nnp": "process.noNewPrivileges: true",
        "scope": "a PID namespace for signals and a network namespace for abstract Unix sockets "
                 "(linux.namespaces types pid, network)",
    },
    "docker": {
        "fs": "--read-only, --mount type=bind,readonly / --tmpfs for the granted paths, and not mounting "
              "denied ones",
        "net": "--network (none, or a network with published ports) and the host's firewall",
        "caps": "--cap-drop ALL and --cap-add for each kept capability",
        "nnp": "--security-opt no-new-privileges",
        "scope": "the container's own PID and network namespaces (Docker's default)",
    },
    "k8s": {
        "fs": "securityContext.readOnlyRootFilesystem: true with volumes (emptyDir) for the writable "
              "paths; denied paths are simply not mounted",
        "net": "a NetworkPolicy (ingress ports for bind, egress ports for connect)",
        "caps": "securityContext.capabilities (drop: [ALL], add: the kept ones)",
        "nnp": "securityContext.allowPrivilegeEscalation: false",
        "scope": "the Pod's own PID and network namespaces (the default: shareProcessNamespace false, no "
                 "hostNetwork)",
    },
}


def runtime_losses(prof: Profile, fmt: str, bound: dict[str, str]) -> list[Diagnostic]:
    """What an OCI/Docker or Kubernetes seccomp profile does not carry, each at its layer's position."""
    r = _RUNTIME["docker" if fmt == "docker" else "k8s" if fmt == "k8s" else "oci"]
    carrier = "the SeccompProfile" if fmt == "k8s" else "linux.seccomp"
    diags = []
    caps = prof.capabilities.value or []
    kept = " ".join(f"CAP_{c}" for c in caps) or "none"
    diags.append(Diagnostic(prof.capabilities.pos, f"capabilities (kept: {kept}; sbx drops every other one "
                            f"as root) are not part of {carrier}: set {r['caps']}", severity="warning"))
    diags.append(Diagnostic(None, f"sbx always sets no_new_privs; {carrier} does not: set {r['nnp']}",
                            severity="warning"))
    if prof.fs is not None:
        words: dict[str, list[str]] = {}
        for word, template, _pos in prof.fs:
            words.setdefault(word, []).append(_shown(template, bound))
        shown = "; ".join(f"{w} {' '.join(dict.fromkeys(paths))}" for w, paths in words.items())
        diags.append(Diagnostic(key_position(prof, "filesystem"), f"filesystem rules (Landlock: {shown}) are "
                                f"not part of {carrier}: use {r['fs']}", severity="warning"))
    if prof.net is not None:
        rules = []
        for key in ("bind", "connect"):
            val = prof.net.get(key, ANY)
            rules.append(f"{key} {'any' if val == ANY else ' '.join(_shown(t, bound) for t, _ in val) or 'none'}")
        diags.append(Diagnostic(key_position(prof, "network"), f"TCP port rules ({'; '.join(rules)}) are not "
                                f"part of {carrier}: use {r['net']}", severity="warning"))
    scoped = [k for k in ("signals", "abstract-unix") if (prof.scope.get(k) is None or
                                                          prof.scope[k].value != "any")]
    if scoped:
        pos = next((prof.scope[k].pos for k in scoped if prof.scope.get(k) is not None), None)
        diags.append(Diagnostic(pos, f"scope ({', '.join(scoped)} within the sandbox) is Landlock's, not part "
                                f"of {carrier}: {r['scope']} keep them within the {'Pod' if fmt == 'k8s' else 'container'}",
                                severity="warning"))
    return diags

"""What a profile asks of the kernel besides its seccomp filter, and how a run enforces it.

A ``Spec`` is the capabilities a command keeps and its Landlock policy:
scopes, file-system and TCP port rules, and whether a kernel that cannot
enforce all of it is an error (``enforce``) or a one-line note
(``best-effort``). It is plain data with a line-per-item text form, so the
filter cache can carry it and a cached ``sbx run`` needs no YAML.

``prepare`` turns a spec into spawn steps for ``kernel.spawn``, in the order
the child applies them: no_new_privs, capabilities, then the Landlock layers.
The first layer is sbx's own and is applied to every run, whatever the
profile says: it keeps the command away from sbx's filter cache (no write at
or below it) and, like every Landlock domain, forbids ptrace-mode access to
any process outside the sandbox (``/proc/PID/mem`` of the launcher above
all); it also carries the profile's scopes (signals and abstract Unix
sockets only within the sandbox, by default).
"""
from __future__ import annotations

SCOPE_NAMES = ("signals", "abstract-unix")
MODES = ("enforce", "best-effort")


class Spec:
    """The non-seccomp part of a compiled profile."""

    __slots__ = ("caps", "scoped", "mode")

    def __init__(self, caps=(), scoped=SCOPE_NAMES, mode: str = "enforce"):
        self.caps = tuple(caps)              # kept capabilities, names without CAP_
        self.scoped = tuple(s for s in SCOPE_NAMES if s in scoped)
        self.mode = mode

    def lines(self) -> list[str]:
        """The cache's text form, one item per line."""
        return [f"caps {','.join(self.caps) or '-'}",
                f"scope {','.join(self.scoped) or '-'}",
                f"landlock {self.mode}"]

    @classmethod
    def from_lines(cls, lines: list[str]) -> "Spec":
        """Inverse of ``lines``; ValueError for anything else (a damaged cache entry)."""
        fields = {}
        for line in lines:
            key, _, value = line.partition(" ")
            if key in fields or key not in ("caps", "scope", "landlock"):
                raise ValueError(f"bad spec line {line!r}")
            fields[key] = [] if value == "-" else value.split(",")
        if set(fields) != {"caps", "scope", "landlock"} or len(fields["landlock"]) != 1:
            raise ValueError("incomplete spec")
        from .kernel.caps import number
        if any(number(c) is None for c in fields["caps"]) or \
                not set(fields["scope"]) <= set(SCOPE_NAMES) or fields["landlock"][0] not in MODES:
            raise ValueError("bad spec values")
        return cls(fields["caps"], fields["scope"], fields["landlock"][0])

    def __eq__(self, other) -> bool:
        return isinstance(other, Spec) and self.lines() == other.lines()

    def __repr__(self) -> str:
        return f"Spec({'; '.join(self.lines())})"


class Prepared:
    """Spawn steps for one run, plus what could not be enforced (best-effort)."""

    def __init__(self, steps: list, unenforced: list[str], cache_protected: bool):
        self.steps, self.unenforced, self.cache_protected = steps, unenforced, cache_protected

    def close(self) -> None:
        for step in self.steps:
            close = getattr(step, "close", None)
            if close is not None:
                close()


def prepare(spec: Spec, argv0: str, cache_dir: str | None) -> Prepared:
    """The child's confinement steps for *spec*; LaunchError (125) if the kernel
    cannot enforce what *spec* asks and it does not say ``best-effort``.

    *cache_dir* is the cache location to keep out of the command's reach (None:
    there is none to protect).
    """
    from .errors import LaunchError
    from .kernel import caps, landlock, seccomp

    steps: list = [seccomp.NoNewPrivs(), caps.CapDrop(frozenset(caps.number(c) for c in spec.caps))]
    version = landlock.abi()
    missing: list[str] = []
    want_scopes = sum(landlock.SCOPES[{"signals": "signal", "abstract-unix": "abstract_unix_socket"}[s]][0]
                      for s in spec.scoped)
    scoped = landlock.supported(want_scopes, landlock.SCOPES, version)
    if scoped != want_scopes:
        missing.append("signal and abstract Unix socket scopes (Landlock ABI 6, Linux 6.12)")
    fs = landlock.supported(landlock.WRITE_RIGHTS, landlock.FS_RIGHTS, version) if cache_dir else 0
    if version == 0:
        missing.insert(0, "Landlock itself: the ptrace boundary that keeps the command away from "
                          "sbx and other processes of the user, and the filter cache protection")
    layers = []
    if version and (fs or scoped):
        base = landlock.Ruleset(fs=fs, scoped=scoped)
        if fs:
            landlock.protect_from_writes(base, cache_dir)
        layers.append(base)
    if missing and spec.mode != "best-effort":
        for rs in layers:
            rs.close()
        raise LaunchError(f"cannot confine {argv0}: this kernel cannot enforce "
                          f"{'; '.join(missing)} (the profile says landlock: enforce, the default; "
                          "write landlock: best-effort to run without it); the command was not run")
    if layers:
        steps.append(landlock.Restrict(layers))
    return Prepared(steps, missing, bool(fs))


__all__ = ["MODES", "Prepared", "SCOPE_NAMES", "Spec", "prepare"]

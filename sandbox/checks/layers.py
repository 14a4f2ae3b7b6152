"""sbx check rules for what a profile says besides syscalls: files, ports, scopes, capabilities.

Each checker looks at the profile's ``filesystem:``, ``network:``, ``scope:``,
``landlock:`` and ``capabilities:`` as written (paths are judged by their
template: ``$HOME`` is anyone's home), and reports with the position of the
entry that grants too much. The rule rows live with the others in
``sandbox.checks.registry.CHECKS``; docs/checks.md explains each.
"""
from __future__ import annotations

from bpf_filters import syscalls

from ..confine import RIGHT_WORDS
from ..policy.diagnostics import Position
from .registry import finding
from .vectors import allowing

# words of filesystem: that change files
WRITE_WORDS = tuple(w for w, rights in RIGHT_WORDS.items()
                    if set(rights) & {"write_file", "truncate", "make_reg", "make_dir", "remove_file",
                                      "remove_dir", "make_char", "make_block", "make_sym", "refer"})
# words that make new files: a program can be put there
CREATE_WORDS = tuple(w for w, rights in RIGHT_WORDS.items() if "make_reg" in rights)
EXEC_WORDS = ("exec", "all")
# words that open a file for reading or writing (a terminal: its keystrokes, its screen)
OPEN_WORDS = tuple(w for w, rights in RIGHT_WORDS.items() if {"read_file", "write_file"} & set(rights))
READ_WORDS = ("read", "all")
# where a write outlives the sandbox: the system, the kernel's knobs, boot
SYSTEM_DIRS = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/opt",
               "/proc", "/sys", "/var/lib", "/var/spool", "/root")
# devices whose writes do not outlive the sandbox, for SBX152 (everything else under /dev
# is hardware, or the kernel): /dev/shm and /dev/mqueue hold IPC objects, not hardware;
# terminals other than the command's own are SBX163's (what is typed there is read)
HARMLESS_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/pts", "/dev/ptmx",
                    "/dev/random", "/dev/urandom", "/dev/shm", "/dev/mqueue", "/dev/stdout",
                    "/dev/stderr")
SECRETS = ("$HOME/.ssh", "$HOME/.gnupg", "$HOME/.aws")
HOMES = ("$HOME", "${HOME}", "/home", "/root")
# capabilities that undo the sandbox, each with why
ESCAPING_CAPS = {
    "SYS_ADMIN": "mounts, namespaces, bpf, and reads of other processes' memory maps past Landlock",
    "SYS_MODULE": "loads kernel code",
    "SYS_RAWIO": "raw I/O ports and devices",
    "SYS_PTRACE": "ptrace and /proc/PID/mem of every process of any user (Landlock still fences "
                  "the sandbox, CAP_SYS_PTRACE the rest of the kernel's checks)",
    "DAC_READ_SEARCH": "open_by_handle_at opens any file by its handle, past Landlock's path rules",
    "BPF": "loads eBPF programs into the kernel",
    "PERFMON": "perf events, and /proc/PID/environ and maps of other processes past Landlock",
    "SYS_BOOT": "reboots the host or loads a new kernel",
    "SETFCAP": "file capabilities that outlive the sandbox",
    "MAC_ADMIN": "changes the host's LSM policy",
    "MAC_OVERRIDE": "overrides the host's LSM policy",
    "MKNOD": "device nodes, and through them raw disks",
    "NET_ADMIN": "the host's network configuration",
    "NET_RAW": "raw and packet sockets: the host's traffic can be read and forged",
    "SYS_TIME": "the host's clock",
    # Landlock has no right for owners, modes or identities: these act on any file
    # or socket the command can name, whatever its filesystem: rules say
    "CHOWN": "gives any file it can name to another user (/etc/passwd, to an account outside "
             "the sandbox): Landlock has no right for owners",
    "FOWNER": "changes the mode of any file it can name (/etc/shadow, readable by all): Landlock "
              "has no right for modes",
}
# a note, not a warning: a root server becomes its worker user with them (web keeps both)
IDENTITY_CAPS = {
    "SETUID": "becomes any user, and reaches that user's Unix sockets as them",
    "SETGID": "joins any group, and reaches the Unix sockets of that group as a member",
}


def _covers(grant: str, target: str) -> bool:
    """The grant's path is *target* or one of its ancestors."""
    g = grant.rstrip("/") or "/"
    return target == g or g == "/" or target.startswith(g + "/")


def _within(grant: str, area: str) -> bool:
    return _covers(area, grant.rstrip("/") or "/")


def _entries(profile, words) -> list[tuple[str, Position]]:
    return [(text, pos) for word, text, pos in (profile.fs or ()) if word in words]


def _denied(profile, path: str) -> bool:
    return any(_covers(text, path) for text, _pos in _entries(profile, ("deny",)))


TERMINAL_HINT = ("grant $TTY instead: the command's own terminals, /dev/tty among them only when "
                 "the controlling terminal is its own; only a command that makes terminals "
                 "(script, tmux, pexpect) needs /dev/pts and /dev/ptmx")


def check_filesystem(ctx) -> None:
    prof = ctx.profile
    if prof.fs is None:
        net = _network_allowed(ctx)
        ctx.out.append(finding("SBX151" if net else "SBX150", Position(prof.path, 1, 1),
                               f"profile {prof.name} has no filesystem section: the command may "
                               "read and write every file its user can (SSH keys, shell start-up "
                               "files, the profile itself; as root also /etc and /proc/sys)"
                               + (", and it may use the network" if net else "")))
        return
    for text, pos in _entries(prof, WRITE_WORDS):
        system = [d for d in SYSTEM_DIRS if _covers(text, d) or _within(text, d)]
        dev = _covers(text, "/dev") or (_within(text, "/dev") and
                                       not any(_within(text, h) for h in HARMLESS_DEVICES))
        if system or dev:
            where = ", ".join(system + (["/dev"] if dev else []))
            ctx.out.append(finding("SBX152", pos, f"write access over {text} reaches {where}: "
                                   "changes there outlive the sandbox"))
        elif text in HOMES or text == "/":
            ctx.out.append(finding("SBX153", pos, f"write access over {text}: the command may "
                                   "change shell start-up files and anything its user runs later"))
    execs = _entries(prof, EXEC_WORDS)
    both = [(text, pos) for text, pos in _entries(prof, CREATE_WORDS)
            if not _denied(prof, text) and any(_covers(e, text) for e, _p in execs)]
    if both:                 # one finding: a profile that means it (default: builds) hears it once
        ctx.out.append(finding("SBX154", both[0][1], f"{', '.join(dict.fromkeys(t for t, _p in both))} "
                               "may be written and executed: the command may write a program "
                               "there and run it (still under this profile)"))
    for text, pos in _entries(prof, READ_WORDS):
        open_secrets = [s for s in SECRETS if _covers(text, s) or (text in HOMES and s.startswith("$HOME"))]
        open_secrets = [s for s in open_secrets if not _denied(prof, s)]
        if open_secrets:
            ctx.out.append(finding("SBX155", pos, f"read access over {text} reaches "
                                   f"{', '.join(open_secrets)}", hint="add them to deny:"))
        if _covers(text, "/dev") and not _denied(prof, "/dev"):
            ctx.out.append(finding("SBX162", pos, f"read access over {text} reaches /dev: run as "
                                   "root, the command reads the raw disks, and with them every "
                                   "file, denied ones included",
                                   hint="add /dev to deny: and grant the devices it uses by name "
                                        "(/dev/null, /dev/urandom, $TTY ...)"))
    denies = [d for d, _p in _entries(prof, ("deny",))]
    for text, pos in _entries(prof, OPEN_WORDS):
        # what covers /dev as a whole is SBX162's; a deny between the grant and the
        # terminals keeps them closed (the most specific path decides)
        if _covers(text, "/dev") or any(_covers(d, text) for d in denies):
            continue
        if _covers(text, "/dev/pts") and not any(_covers(d, "/dev/pts") and _covers(text, d)
                                                 for d in denies):
            ctx.out.append(finding("SBX163", pos, f"{text} holds every terminal of the user: the "
                                   "command may open another one, read what is typed into it "
                                   "(a password given to sudo in another window) and write to "
                                   "its screen", hint=TERMINAL_HINT))
        elif _within(text, "/dev/pts"):
            ctx.out.append(finding("SBX163", pos, f"{text} names a terminal by its number, which "
                                   "another window of the user gets once this one is closed",
                                   hint=TERMINAL_HINT))
        elif text == "/dev/tty":
            ctx.out.append(finding("SBX163", pos, "/dev/tty is the controlling terminal whatever "
                                   "the command's descriptors are: started in the background "
                                   "with its output redirected, the command may open the "
                                   "shell's terminal, take the foreground and read what is typed",
                                   hint=TERMINAL_HINT))


def _network_allowed(ctx) -> bool:
    """socket() of an IP family gets through for some arguments (on the native ABI)."""
    arch = ctx.native if ctx.policy.arch(ctx.native) else ctx.arches[0]
    nr = syscalls.table(arch).nr("socket")
    if nr is None:
        return False
    return allowing(ctx.policy, arch, nr, {0: lambda _vals: {2, 10}}) is not None


def check_capabilities(ctx) -> None:
    caps = ctx.profile.capabilities
    for name in caps.value or ():            # names as the loader normalised them (NET_RAW)
        why = ESCAPING_CAPS.get(name)
        if why:
            ctx.out.append(finding("SBX156", caps.pos, f"capabilities keeps CAP_{name}: {why}"))
        elif name in IDENTITY_CAPS:
            ctx.out.append(finding("SBX161", caps.pos, f"capabilities keeps CAP_{name}: "
                                   f"{IDENTITY_CAPS[name]}"))


def check_scope_and_mode(ctx) -> None:
    prof = ctx.profile
    for key, setting in prof.scope.items():
        if setting.value == "any":
            what = ("signal processes" if key == "signals"
                    else "connect to the abstract Unix sockets of processes")
            ctx.out.append(finding("SBX157", setting.pos, f"scope {key}: any lets the command "
                                   f"{what} outside the sandbox"))
    if prof.landlock.value == "best-effort":
        ctx.out.append(finding("SBX158", prof.landlock.pos, "landlock: best-effort runs the command "
                               "on a kernel that cannot enforce the profile's file, port and scope "
                               "rules, without them"))


def check_odd_actions(ctx) -> None:
    """notify under sbx run (no supervisor: ENOSYS) and errno(0) (a denied call that succeeds)."""
    prof = ctx.profile
    for spec in prof.rules:
        if spec.pos.file != prof.path:
            continue
        if spec.action.kind == "notify":
            ctx.out.append(finding("SBX159", spec.pos, "notify hands the call to a supervisor; sbx run "
                                   "has none, so the call fails with ENOSYS there (only sbx trace "
                                   "supervises)"))
        elif spec.action.kind == "errno" and spec.action.data == 0:
            ctx.out.append(finding("SBX160", spec.pos, "errno(0) skips the call but reports success: "
                                   "the program goes on as if it had happened"))
    for key in ("default", "unknown"):
        setting = getattr(prof, key)
        if setting.value is not None and setting.value.kind == "errno" and setting.value.data == 0:
            ctx.out.append(finding("SBX160", setting.pos, f"{key}: errno(0) makes every such call "
                                   "look successful without running it"))


CHECKERS = (check_filesystem, check_capabilities, check_scope_and_mode, check_odd_actions)

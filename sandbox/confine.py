"""What a profile asks of the kernel besides its seccomp filter, and how a run enforces it.

A ``Spec`` is the capabilities a command keeps and its Landlock policy:
scopes, ``filesystem:`` and ``network:`` rules, and whether a kernel that
cannot enforce all of it is an error (``enforce``) or a one-line note
(``best-effort``). It is plain data with a line-per-item text form, so the
filter cache can carry it and a cached ``sbx run`` needs no YAML. Paths keep
their variables (``$HOME``, ``$CWD``, ``$TMPDIR``, ``${NAME}``) until the run
expands them.

``prepare`` turns a spec into spawn steps for ``kernel.spawn``, in the order
the child applies them: no_new_privs, capabilities, then Landlock. Whatever the
profile says, every run gets a Landlock domain that keeps the command away
from sbx's filter cache (no write at or below it, no entry added, removed or
renamed in the directories above it) and, like every Landlock domain, forbids
ptrace-mode access to any process outside the sandbox (``/proc/PID/mem`` of
the launcher above all); it also carries the profile's scopes (signals and
abstract Unix sockets only within the sandbox, by default) and the profile's
``filesystem:`` and ``network:`` rules, when it has them. That is one layer
when the profile's own rules already keep the cache unwritable (no rule of it
writes at, above or below the cache: the built-in profiles, unless run from a
working directory above the cache), else two: sbx's protection of the cache,
then the profile's rules (``_layers``). The decision is made on the planned
real paths, and the rules are opened without following any symbolic link
(``Ruleset.allow_paths``), so a path swapped for a link in between cannot move
a write grant onto the cache.

File-system rules: the most specific path decides. A grant holds beneath its
path; a ``deny`` takes every right away beneath its own path, except where a
more specific grant gives some back (``deny: [/root]`` with the working
directory /root/src granted). Landlock itself only allows, so a grant with a
denied path below it is spelled as grants on the siblings along the way
(``rules``); the directories in between keep only the right to be listed.
"""
from __future__ import annotations

import os

SCOPE_NAMES = ("signals", "abstract-unix")
MODES = ("enforce", "best-effort")
# the words of filesystem: sections -> Landlock rights (kernel.landlock.FS_RIGHTS)
RIGHT_WORDS = {
    "read": ("read_file", "read_dir"),
    "list": ("read_dir",),
    "write": ("write_file", "truncate", "make_reg", "make_dir", "make_sym", "make_sock",
              "make_fifo", "remove_file", "remove_dir", "refer"),
    "exec": ("execute",),
    "modify": ("write_file", "truncate"),
    "create": ("make_reg", "make_dir", "make_sym", "make_sock", "make_fifo"),
    "remove": ("remove_file", "remove_dir"),
    "truncate": ("truncate",),
    "refer": ("refer",),
    "ioctl-dev": ("ioctl_dev",),
    "make-device": ("make_char", "make_block"),
    "all": ("execute", "write_file", "read_file", "read_dir", "remove_dir", "remove_file",
            "make_char", "make_dir", "make_reg", "make_sock", "make_fifo", "make_block",
            "make_sym", "refer", "truncate", "ioctl_dev"),
}
FS_KEYS = tuple(RIGHT_WORDS) + ("deny",)
# the words that let a command change files (kernel.landlock.WRITE_RIGHTS)
WRITING_WORDS = frozenset(w for w, rights in RIGHT_WORDS.items()
                          if set(rights) - {"read_file", "read_dir", "execute", "ioctl_dev"})
# Where a variable ($CWD, $TMPDIR ...) never grants a writing word: the system's
# directories. A command started as root from /etc or /usr would otherwise write
# /etc/cron.d, /etc/systemd/system, /etc/logrotate.d or /usr/local/bin, and from
# /home every user's files. Every top-level directory of the FHS itself, and
# everything below those that hold programs, configuration and scheduled or
# kept state; a directory of its own elsewhere (/srv/app, /var/www/site,
# /opt/app, /usr/local/src/pkg) is granted as usual.
SYSTEM_TOPS = frozenset({"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64",
                         "/libx32", "/media", "/mnt", "/opt", "/proc", "/run", "/sbin",
                         "/srv", "/sys", "/usr", "/var"})
# (/dev, /proc and /sys are not trees here: a device is granted by name, $TTY among
# them, and what may be written below /proc and /sys is the kernel's to say)
SYSTEM_TREES = ("/bin", "/boot", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/sbin", "/usr",
                "/var/lib", "/var/spool", "/var/cache", "/var/backups", "/var/log", "/var/mail",
                "/run/systemd")
OWN_TREES = ("/usr/src", "/usr/local/src")


def system_dir(real: str) -> bool:
    """*real* is a directory of the system: one of ``SYSTEM_TOPS``, or below one of
    ``SYSTEM_TREES`` but not below ``OWN_TREES`` (where one builds software)."""
    def below(top: str) -> bool:
        return real == top or real.startswith(top + "/")
    if real in SYSTEM_TOPS:
        return True
    return any(below(t) for t in SYSTEM_TREES) and not any(below(t) for t in OWN_TREES)
ALL_RIGHTS = (1 << 16) - 1           # every Landlock file-system right (kernel.landlock.FS_RIGHTS)
NET_KEYS = ("bind", "connect")
ANY = "any"


class Spec:
    """The non-seccomp part of a compiled profile.

    ``fs``: (word, path template, optional) in profile order, word being a key of
    RIGHT_WORDS or "deny"; None when the profile has no filesystem section.
    ``net``: {"bind": [...], "connect": [...]} of port templates, or "any";
    None when the profile has no network section. An optional path (from a
    built-in profile) is skipped quietly when it does not exist; so is a port
    of ``net_quiet`` (the templates a built-in profile lists, such as web's
    ``${PORT}``) whose variable is unset.
    """

    __slots__ = ("caps", "scoped", "mode", "fs", "net", "net_quiet")

    def __init__(self, caps=(), scoped=SCOPE_NAMES, mode: str = "enforce", fs=None, net=None,
                 net_quiet=()):
        self.caps = tuple(caps)              # kept capabilities, names without CAP_
        self.scoped = tuple(s for s in SCOPE_NAMES if s in scoped)
        self.mode = mode
        self.fs = None if fs is None else tuple(fs)
        self.net = None if net is None else {k: (v if v == ANY else tuple(v)) for k, v in net.items()}
        self.net_quiet = frozenset(net_quiet)   # port templates of a built-in: unset ${VARS} quiet

    def lines(self) -> list[str]:
        """The cache's text form, one item per line."""
        out = [f"caps {','.join(self.caps) or '-'}",
               f"scope {','.join(self.scoped) or '-'}",
               f"landlock {self.mode}"]
        if self.fs is not None:
            out.append("fs-section")
            out += [f"fs{'?' if optional else ''} {word} {path}" for word, path, optional in self.fs]
        if self.net is not None:
            for key in NET_KEYS:
                value = self.net.get(key, ANY)
                out.append(f"net {key} {ANY if value == ANY else ','.join(value) or '-'}")
            if self.net_quiet:
                out.append(f"net-quiet {','.join(sorted(self.net_quiet))}")
        return out

    @classmethod
    def from_lines(cls, lines: list[str]) -> "Spec":
        """Inverse of ``lines``; ValueError for anything else (a damaged cache entry)."""
        fields: dict[str, list[str]] = {}
        fs, net, net_quiet = None, None, ()
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "fs-section" and fs is None:
                fs = []
            elif key in ("fs", "fs?") and fs is not None:
                word, _, path = value.partition(" ")
                if word not in FS_KEYS or not path:
                    raise ValueError(f"bad spec line {line!r}")
                fs.append((word, path, key == "fs?"))
            elif key == "net-quiet" and net is not None and not net_quiet:
                net_quiet = value.split(",")
            elif key == "net":
                which, _, ports = value.partition(" ")
                net = net or {}
                if which not in NET_KEYS or which in net:
                    raise ValueError(f"bad spec line {line!r}")
                net[which] = ANY if ports == ANY else [p for p in ports.split(",") if p != "-"]
            elif key in ("caps", "scope", "landlock") and key not in fields:
                fields[key] = [] if value == "-" else value.split(",")
            else:
                raise ValueError(f"bad spec line {line!r}")
        if set(fields) != {"caps", "scope", "landlock"} or len(fields["landlock"]) != 1:
            raise ValueError("incomplete spec")
        from .kernel.caps import number
        if any(number(c) is None for c in fields["caps"]) or \
                not set(fields["scope"]) <= set(SCOPE_NAMES) or fields["landlock"][0] not in MODES:
            raise ValueError("bad spec values")
        return cls(fields["caps"], fields["scope"], fields["landlock"][0], fs, net, net_quiet)

    def __eq__(self, other) -> bool:
        return isinstance(other, Spec) and self.lines() == other.lines()

    def __repr__(self) -> str:
        return f"Spec({'; '.join(self.lines())})"


# -- expanding a spec at run time ----------------------------------------------------------

def exec_roots(exe: str | None) -> list[str]:
    """``$EXEC_ROOT``: the directory above the one holding the command, for the
    command as found on PATH and with its symbolic links resolved (/usr for
    /usr/bin/python3; for a virtualenv's python, the venv and the interpreter it
    links to). Never / itself."""
    if not exe:
        return []
    out = []
    for path in (os.path.abspath(exe), os.path.realpath(exe)):
        root = os.path.dirname(os.path.dirname(path))
        if root != "/" and root not in out:
            out.append(root)
    return out


def terminals() -> tuple[str, ...]:
    """``$TTY``: the command's own terminals. Those on sbx's standard input,
    output and error, which the command inherits (/dev/pts/3), each once, and
    /dev/tty when the controlling terminal is one of them; none in a pipe or a
    service.

    The built-in profiles grant these by name and not /dev/pts: every terminal
    of the user is there, mode 0620 and owned by the user, and a command that
    may open one reads what is typed into it (another window's sudo password)
    and writes to its screen. /dev/tty is the controlling terminal whatever the
    command's descriptors are: with its input and output redirected (``sbx run
    cmd </dev/null >log &`` from a shell), it is the shell's terminal, where
    the command could make itself the foreground job and read what is typed."""
    out: list[str] = []
    devices: set[tuple[int, int]] = set()
    for fd in (0, 1, 2):
        try:
            name = os.ttyname(fd)
            rdev = os.fstat(fd).st_rdev
        except OSError:                    # not a terminal, closed, or not nameable here
            continue
        devices.add((os.major(rdev), os.minor(rdev)))
        if name not in out:
            out.append(name)
    if devices:
        from .kernel.proc import controlling_terminal
        if controlling_terminal() in devices:
            out.append("/dev/tty")
    return tuple(out)


def _spans(template: str, name: str) -> list[tuple[int, int]]:
    """Where *template* holds the variable *name*: $NAME (not $NAMEX) or ${NAME}."""
    out = []
    for token in ("${" + name + "}", "$" + name):
        at = template.find(token)
        while at >= 0:
            end = at + len(token)
            if token[1] == "{" or end == len(template) or not (
                    (template[end].isascii() and template[end].isalnum()) or template[end] == "_"):
                out.append((at, end))
            at = template.find(token, end)
    return sorted(out)


def _uses(template: str, name: str) -> bool:
    return bool(_spans(template, name))


def _substitute(template: str, name: str, value: str) -> str:
    """*template* with the variable *name* replaced by *value* (nothing else touched)."""
    out, last = [], 0
    for at, end in _spans(template, name):
        out += [template[last:at], value]
        last = end
    return "".join(out) + template[last:]


def expand_all(template: str, env: dict, exe: str | None = None,
               cwd: str | None = None, ttys: tuple[str, ...] | None = None
               ) -> tuple[list[str], str | None]:
    """Every value of *template* ($EXEC_ROOT may have two, $TTY none or more:
    *ttys*, or this process's ``terminals()``), or ([], why not)."""
    if _uses(template, "TTY"):
        # a name holding "$" would be read as a variable again: never a terminal's
        ttys = [t for t in (terminals() if ttys is None else ttys) if "$" not in t]
        if not ttys:
            return [], "$TTY: sbx runs without a terminal"
        out = []
        for tty in ttys:
            values, why = expand_all(_substitute(template, "TTY", tty), env, exe, cwd, ())
            if not values:
                return [], why
            out += values
        return out, None
    if _uses(template, "EXEC_ROOT"):
        roots = exec_roots(exe)
        if not roots:
            return [], "$EXEC_ROOT is unknown here"
        out = []
        for root in roots:
            text, why = expand(_substitute(template, "EXEC_ROOT", root), env, cwd)
            if text is None:
                return [], why
            out.append(text)
        return out, None
    text, why = expand(template, env, cwd)
    return ([text], None) if text is not None else ([], why)


class _Instead:
    """*env* with one variable's value replaced (reads of the others go to *env*,
    which may record them: ``plan_cache``)."""

    def __init__(self, env, name: str, value: str):
        self.env, self.name, self.value = env, name, value

    def get(self, name, default=None):
        return self.value if name == self.name else self.env.get(name, default)


def own_places(caps=()) -> tuple[tuple[str, str], ...]:
    """(variable, the user's own value): where the user's secrets are whatever the
    environment says. The home the password database gives, and the runtime
    directory pam_systemd makes (/run/user/UID, what XDG_RUNTIME_DIR names in a
    login session); for a command that keeps *caps* SETUID as root, every
    user's (it may become any of them). Part of a kept plan's key (``plan_cache``)."""
    from .paths import may_become_others, passwd_home, users_homes
    homes = [passwd_home()]
    runtimes = [f"/run/user/{os.geteuid()}"]
    if may_become_others(caps):
        homes += users_homes()
        try:
            runtimes += sorted(f"/run/user/{n}" for n in os.listdir("/run/user") if n.isdigit())
        except OSError:
            pass
    out = [("HOME", h) for h in dict.fromkeys(homes) if h and h != "/"]
    return tuple(out + [("XDG_RUNTIME_DIR", r) for r in dict.fromkeys(runtimes)])


def expand_deny(template: str, env: dict, own: tuple[tuple[str, str], ...],
                exe: str | None = None, cwd: str | None = None,
                ttys: tuple[str, ...] | None = None) -> tuple[list[str], str | None]:
    """The paths a ``deny:`` entry takes away: ``expand_all``'s, and for one under
    ``$HOME`` or ``$XDG_RUNTIME_DIR`` the same beneath the user's own home and
    runtime directory (*own*: ``own_places``, asked once per plan) when the
    environment names others or none. A CI job sets HOME to its workspace, ``sudo -u`` and ``su`` keep the
    caller's, a session pam_systemd did not open (cron, a container) has no
    XDG_RUNTIME_DIR: the user's keys stay where they were, readable by the
    user. Grants follow the environment alone."""
    out, why = expand_all(template, env, exe, cwd, ttys)
    for name, value in own:
        if _uses(template, name) and env.get(name) != value:
            paths, _why = expand_all(template, _Instead(env, name, value), exe, cwd, ttys)
            out += [p for p in paths if p not in out]
    return out, (None if out else why)


def expand(template: str, env: dict, cwd: str | None = None) -> tuple[str | None, str | None]:
    """(value, None), or (None, why) when a variable is unset.

    ``$CWD`` is sbx's working directory (the command's), or *cwd* when given (the
    run a denial came from); ``$HOME`` and ``${NAME}`` come from the command's
    environment, ``$TMPDIR`` from it too, /tmp when unset."""
    if "$" not in template:                     # most paths: nothing to read character by character
        return template, None
    out, i = [], 0
    while i < len(template):
        ch = template[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        if template.startswith("${", i):
            end = template.find("}", i)
            name, i = template[i + 2:end], end + 1
        else:
            j = i + 1
            while j < len(template) and ((template[j].isascii() and template[j].isalnum())
                                         or template[j] == "_"):     # as the profile checker reads names
                j += 1
            name, i = template[i + 1:j], j
        if name == "CWD" and cwd is not None:
            value = cwd
        elif name == "CWD":
            try:
                value = os.getcwd()
            except OSError:
                return None, "the working directory is gone"
        elif name == "TMPDIR":
            value = env.get("TMPDIR") or "/tmp"
        else:
            value = env.get(name)
        if not value:
            return None, f"${name} is not set"
        out.append(value)
    text = "".join(out)
    return text, None


def fs_rules(entries: list[tuple[int, str]], denies: dict[str, int],
             listdir=None, seen: set[str] | None = None) -> list[tuple[str, int, bool]]:
    """The Landlock rules, (path, rights granted beneath it, is_dir), for *entries*
    ((rights, real path) grants) less *denies* (real path -> the rights it takes
    away), the most specific path deciding (see the module docstring). Pure but
    for ``listdir``, which lists a directory as [(name, is_dir)] (default: the
    real file system); the directories listed are added to *seen*
    (``plan_cache``)."""
    from .kernel.landlock import FILE_RIGHTS, FS_RIGHTS
    listdir = listdir or _listdir
    read_dir = FS_RIGHTS["read_dir"][0]
    between: dict[str, int] = {}            # proper ancestors of denied paths -> rights denied below
    for d, mask in denies.items():
        parent = os.path.dirname(d)
        while True:
            between[parent] = between.get(parent, 0) | mask
            if parent == "/":
                break
            parent = os.path.dirname(parent)
    rules: list[tuple[str, int, bool]] = []

    def grant(path: str, rights: int, is_dir: bool) -> None:
        rights &= ~denies.get(path, 0)
        below = between.get(path, 0) & rights
        keep = rights & ~below
        if below & read_dir:
            keep |= read_dir                  # the way down stays listable
        if keep:
            rules.append((path, keep if is_dir else keep & FILE_RIGHTS, is_dir))
        if not below:
            return
        prefix = path.rstrip("/") + "/"
        on_file = below & FILE_RIGHTS
        if seen is not None:
            seen.add(path)
        for name, child_is_dir in listdir(path):
            if child_is_dir is None:
                continue
            child = prefix + name
            if child in between or child in denies:
                grant(child, below, child_is_dir)
            elif child_is_dir or on_file:      # what grant() would add: no split below it
                rules.append((child, below if child_is_dir else on_file, child_is_dir))

    merged: dict[str, int] = {}
    for rights, path in entries:            # one grant per path: read / and exec / split once
        merged[path] = merged.get(path, 0) | rights
    for path, rights in merged.items():
        if os.path.isdir(path):
            grant(path, rights, True)
        elif os.path.exists(path):
            grant(path, rights, False)
    # Two splits can reach the same path (list: [/] and read: [/etc] both split at
    # /etc for a deny in it): Landlock ORs the rights of rules on one inode, so one
    # rule each says the same with half the landlock_add_rule calls.
    once: dict[str, tuple[int, bool]] = {}
    for path, rights, is_dir in rules:
        had = once.get(path)
        once[path] = (rights | had[0], is_dir) if had else (rights, is_dir)
    return [(path, rights, is_dir) for path, (rights, is_dir) in once.items()]


def rights_at(rules: list[tuple[str, int, bool]], path: str) -> int:
    """What one Landlock layer of *rules* ((path, rights, is_dir), as ``fs_rules``
    makes them) grants at the real path *path*: the union of the rights of the
    rules on it and on the directories above it, as the kernel walks a path (a
    rule on a file speaks for that file alone)."""
    out = 0
    for p, rights, is_dir in rules:
        if p == path or (is_dir and path.startswith(p.rstrip("/") + "/")):
            out |= rights
    return out


# capabilities that get past file permissions: with one of them kept, a path the
# user cannot open may still be opened, so its deny must be enforced all the same
_DAC_BYPASS = ("DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "SYS_ADMIN")


def _out_of_reach(path: str) -> bool:
    """The user cannot open *path* in any way (file permissions; no_new_privs keeps
    it so), and cannot change that: a deny there needs no Landlock rules, which
    saves splitting the grants above it (/etc for /etc/shadow is 150 rules,
    ~2 ms). A path of which the user owns the file or a directory on the way
    is within reach whatever its mode: an owner may chmod it, and Landlock does
    not govern chmod (``~/.ssh`` at mode 000 is one chmod away)."""
    uid = os.geteuid()
    probe = path
    while True:
        try:
            if os.lstat(probe).st_uid == uid:
                return False
        except OSError:
            pass                            # not there, or not searchable: nothing to own
        if probe == "/":
            break
        probe = os.path.dirname(probe)
    if os.path.isdir(path):
        return not os.access(path, os.R_OK) and not os.access(path, os.X_OK) and \
            not os.access(path, os.W_OK)
    return not os.access(path, os.R_OK) and not os.access(path, os.W_OK)


def _listdir(path: str) -> list[tuple[str, bool | None]]:
    """Entries of *path* as (name, is_dir); symbolic links as (name, None):
    they are never followed (a link may point into a denied directory)."""
    try:
        with os.scandir(path) as it:
            return [(e.name, None if e.is_symlink() else e.is_dir(follow_symlinks=False)) for e in it]
    except OSError:
        return []


def tcp_port(text: str) -> int | None:
    """The TCP port *text* spells (0..65535), or None. ASCII digits, and few of
    them, are checked before int(): int() refuses a number of over 4,300 digits
    (ValueError), and str.isdigit() takes "²" and other digits int() refuses too.
    The one reading of a port given as text (--allow-port, a profile's ${PORT},
    --var, a recording)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        return None
    return int(text)


def expand_ports(values, env: dict, notes: list[str], quiet=()) -> list[int]:
    """The TCP ports of *values* (numbers and ${VARS}); a port that cannot be
    read is left out with a note (an unset variable quietly for the templates
    in *quiet*, or for all with ``quiet=True``)."""
    out = []
    for v in values:
        text, why = expand(v, env)
        if text is None:
            if not (quiet is True or (quiet is not False and v in quiet)):
                notes.append(f"port {v} skipped: {why}")
            continue
        port = tcp_port(text)
        if port is None:
            notes.append(f"port {v} skipped: {text[:40]!r} is not a TCP port")
            continue
        out.append(port)
    return out


class Prepared:
    """Spawn steps for one run, plus what could not be enforced (best-effort)
    and notes about the profile's paths and ports (missing, unset)."""

    def __init__(self, steps: list, unenforced: list[str], notes: list[str]):
        self.steps, self.unenforced, self.notes = steps, unenforced, notes

    def close(self) -> None:
        for step in self.steps:
            close = getattr(step, "close", None)
            if close is not None:
                close()


# File systems on which creating, removing or renaming a name changes its
# directory's ctime, as POSIX asks of every file system (the kernel's local disk
# file systems and shmem; overlay reports its upper directory's times, and any
# change made through it copies the directory up). Not so on /proc, sysfs and the
# other kernel file systems (/proc/PID comes and goes unseen), nor surely on
# network and FUSE file systems, whose times are the server's.
CTIME_TRACKED = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "tmpfs", "devtmpfs",
                           "overlay", "zfs", "bcachefs"})


def _ctime_tracker():
    """A function telling whether a name appearing at or below a path would change
    the ctime of a directory a plan records: that of the nearest directory of the
    path that exists, by its file system's type (the mount table read once; a
    device not in it, such as a btrfs subvolume's, counts as untracked)."""
    from .kernel.proc import mount_table
    types = {dev: fstype for dev, fstype, _point in mount_table()}
    known: dict[str, bool] = {}

    def tracked(path: str) -> bool:
        probe = path
        while True:
            got = known.get(probe)
            if got is not None:
                break
            try:
                got = types.get(os.lstat(probe).st_dev) in CTIME_TRACKED
                break
            except OSError:
                if probe == "/":
                    got = False
                    break
                probe = os.path.dirname(probe)
        known[path] = got
        return got
    return tracked


def _fs_entry(word: str, path: str, real: str, optional: bool, dac_bypass: bool, grants: list,
              denies: dict, notes: list[str], fs_rights: dict, seen: set[str] | None,
              tracked=None) -> None:
    if word == "deny":
        exists = os.path.lexists(real)
        if exists and (dac_bypass or not _out_of_reach(real)):
            denies[real] = ALL_RIGHTS
        # What a kept plan must notice about a deny: a name appearing or going
        # there changes its directory's ctime, and real_path recorded every
        # directory on the way. Not on /proc, sysfs and the like, where the path
        # is recorded itself; nor a change of the file's own mode or owner, which
        # decides whether a user's deny takes rules at all (_out_of_reach; root
        # keeping DAC_OVERRIDE or the like is never out of reach), so an existing
        # one is recorded itself for a user. Every other deny need not be: one
        # stat fewer on every launch (a profile denies some eighty paths).
        if seen is not None and ((exists and not dac_bypass) or tracked is None
                                 or not tracked(os.path.dirname(real))):
            seen.add(real)
        return
    if not os.path.exists(real):
        if not optional:
            notes.append(f"filesystem path {path} does not exist; skipped")
        return
    grants.append((sum(fs_rights[r][0] for r in RIGHT_WORDS[word]), real))


def fs_plan(spec: Spec, env: dict, exe: str | None = None, protected: tuple[str, ...] = (),
            notes: list[str] | None = None, cwd: str | None = None,
            seen: set[str] | None = None, ttys: tuple[str, ...] | None = None
            ) -> tuple[list, dict]:
    """The grants [(rights, real path)] and denies {real path: rights taken away}
    of *spec*'s ``filesystem:`` section as it expands here and now (or for the
    run of *cwd* and *ttys*), with the
    *protected* paths kept out of every write. A path skipped (missing, a
    variable unset) is said in *notes*. ``fs_rules`` turns them into rules.
    Every path the plan depends on is added to *seen* (see ``real_path``)."""
    from .kernel import landlock
    notes = [] if notes is None else notes
    dac_bypass = any(c in _DAC_BYPASS for c in spec.caps) or os.geteuid() == 0
    grants: list[tuple[int, str]] = []
    denies: dict[str, int] = {}
    real_of: dict[str, str] = {"/": "/"}     # paths share their first components: resolved once
    tracked = _ctime_tracker() if seen is not None else None
    own = own_places(spec.caps)
    for word, template, optional in spec.fs or ():
        paths, why = (expand_deny(template, env, own, exe, cwd, ttys) if word == "deny"
                      else expand_all(template, env, exe, cwd, ttys))
        if not paths and not optional:
            notes.append(f"filesystem path {template} skipped: {why}")
        for path in paths:
            real = real_path(path, real_of, seen)
            if "$" in template and word != "deny" and (real == "/" or (
                    word in WRITING_WORDS and system_dir(real))):
                # A service's working directory is / (systemd's default), and so is
                # that of a command started from /: a grant meant for the command's
                # own directory would reach every file but the denied ones, for root
                # /etc/cron.d and /usr/bin among them; from /etc or /usr a write grant
                # reaches as much. Fail closed: not granted.
                where = "every file but the denied ones" if real == "/" else "the system's files"
                notes.append(f"{template} is {real} here, where {word} would reach {where}: not "
                             "granted; run the command from a directory of its own")
                continue
            _fs_entry(word, path, real, optional, dac_bypass, grants, denies, notes,
                      landlock.FS_RIGHTS, seen, tracked)
    said, kept = dict(denies), set()
    own = None
    for path in _every_protected(protected, real_of, seen):
        # what later runs load (sbx's code and profiles) is never writable by the
        # command, even below a directory the profile lets it write; one that does
        # not exist yet is denied all the same, so that the directories on the way
        # to it lose the right to gain entries (fs_rules) and it cannot be made
        real = real_path(path, real_of, seen)
        denies[real] = denies.get(real, 0) | landlock.WRITE_RIGHTS
        if own is None:
            from .paths import installation_dirs
            own = installation_dirs()
        # the user's start-up places are said like denies (a command run from the home
        # cannot create files there, which is otherwise a mystery); sbx's own
        # directories are not: they are below a granted directory only in a checkout
        if real not in said and not any(real == d or real.startswith(d.rstrip("/") + "/")
                                         for d in own):
            said[real] = landlock.WRITE_RIGHTS
            kept.add(real)
    _say_uncreatable(grants, said, notes, landlock.FS_RIGHTS["make_reg"][0], kept)
    return grants, denies


def _every_protected(protected: tuple[str, ...], real_of: dict[str, str],
                     seen: set[str] | None) -> list[str]:
    """*protected*, a ``DIR/.*`` in it standing for every entry of DIR whose name
    starts with a dot, as DIR holds them now (``paths.startup_places``: the
    dotfiles of a home, whatever tool reads them; one made later cannot be,
    DIR losing the right to gain entries to the protected paths in it). The
    listing depends on DIR's entries: DIR is recorded in *seen*."""
    from .paths import dotfiles_of
    out = []
    for path in protected:
        dotted = dotfiles_of(path)
        if dotted is None:
            out.append(path)
            continue
        top = real_path(dotted, real_of, seen)
        if seen is not None:
            seen.add(top)
        out += [top.rstrip("/") + "/" + name for name, _is_dir in _listdir(top)
                if name.startswith(".")]
        # (a link there is protected at its target: real_path follows it, and the
        # link itself gets no rule in a split directory)
    return out


def _say_uncreatable(grants: list, denies: dict, notes: list[str], make_reg: int,
                     kept: set[str] = frozenset()) -> None:
    """A directory the profile lets the command create files in, with a denied path
    below it, keeps that right only below: nothing may be created, removed or renamed
    directly in it or in the directories between (fs_rules: a right given there would
    reach the denied path too). Said once per directory, since a command failing to
    create a file there (mktemp in a /tmp that holds $HOME) is otherwise a mystery."""
    for rights, path in grants:
        if not rights & make_reg:
            continue
        prefix = path.rstrip("/") + "/"
        below = sorted(d for d, taken in denies.items() if d.startswith(prefix) and taken & make_reg)
        if below:
            # a deny of the profile first: it is the one to change, if any
            below.sort(key=lambda d: d in kept)
            more = f" (and {len(below) - 1} more)" if len(below) > 1 else ""
            why = ("kept out of writes (the user's start-up files: sbx keeps them so)"
                   if below[0] in kept else "denied")
            notes.append(f"nothing can be created, removed or renamed directly in {path}, only "
                         f"below it: {below[0]}{more} inside it is {why}")


UNCACHEABLE = ""          # in *seen*: the plan depends on more than the paths recorded


def real_path(path: str, known: dict[str, str], seen: set[str] | None = None,
              hops: int = 0) -> str:
    """``os.path.realpath(path)``, resolving each leading part once for all the
    paths of one plan (*known*: path -> real path, starting with {"/": "/"}):
    a profile's forty paths share a few directories, and realpath alone would
    lstat every component of every one. A path with "." or ".." components is
    left to realpath, which resolves links before it goes up.

    *seen*, if given, gets every directory a name was looked up in, those a
    symbolic link's target was resolved through included: what the result
    depends on (a name created, removed or replaced there changes the
    directory's ctime). What realpath resolves is not recorded: then *seen*
    gets ``UNCACHEABLE``."""
    real = known.get(path)
    if real is not None:
        return real
    parent, name = os.path.split(path)
    if not os.path.isabs(path) or name in ("", ".", "..") or "/./" in path or "/../" in path:
        real = os.path.realpath(path)
        if seen is not None:
            seen.add(UNCACHEABLE)
    else:
        above = real_path(parent, known, seen, hops)
        real = above.rstrip("/") + "/" + name
        if seen is not None:
            seen.add(above)
        if os.path.islink(real):
            real = _follow(real, above, known, seen, hops)
    known[path] = real
    return real


def _follow(link: str, above: str, known: dict[str, str], seen: set[str] | None, hops: int) -> str:
    """The real path of the symbolic link *link* (in directory *above*)."""
    if seen is None:
        return os.path.realpath(link)
    try:
        target = os.readlink(link)
    except OSError:
        target = None
    parts = target.split("/") if target else [".."]
    if hops >= 40 or "." in parts or ".." in parts:     # a loop, or a target that goes up
        seen.add(UNCACHEABLE)
        return os.path.realpath(link)
    joined = target if target.startswith("/") else above.rstrip("/") + "/" + target
    return real_path(os.path.normpath(joined), known, seen, hops + 1)


class _Layer:
    """One Landlock layer to build: the rights it handles, its path and port
    rules, and optionally a directory it keeps out of every write (the cache)."""

    __slots__ = ("fs", "net", "scoped", "rules", "bind", "connect", "protect")

    def __init__(self, fs: int = 0, net: int = 0, scoped: int = 0):
        self.fs, self.net, self.scoped = fs, net, scoped
        self.rules: list[tuple[str, int, bool]] = []
        self.bind: list[int] = []
        self.connect: list[int] = []
        self.protect: str | None = None

    def build(self, notes: list[str]):
        from .kernel import landlock
        ruleset = landlock.Ruleset(fs=self.fs, net=self.net, scoped=self.scoped)
        try:
            if self.protect:
                landlock.protect_from_writes(ruleset, self.protect)
            for path, err in ruleset.allow_paths(self.rules):
                notes.append(f"filesystem path {path} skipped: {err.strerror}")
            for port in self.bind:
                ruleset.allow_port(port, landlock.NET_RIGHTS["bind_tcp"][0])
            for port in self.connect:
                ruleset.allow_port(port, landlock.NET_RIGHTS["connect_tcp"][0])
        except BaseException:
            ruleset.close()
            raise
        return ruleset


def plan_rules(spec: Spec, env: dict, exe: str | None, protected: tuple[str, ...],
               notes: list[str] | None = None, cwd: str | None = None,
               seen: set[str] | None = None, ttys: tuple[str, ...] | None = None
               ) -> list[tuple[str, int, bool]]:
    """The Landlock rules of *spec*'s filesystem section, planned now: ``fs_plan``
    then ``fs_rules`` (``plan_cache.plan`` is the same with plans kept between
    runs; *seen* gets what the plan depends on, as in ``fs_plan``)."""
    grants, denies = fs_plan(spec, env, exe, protected, notes, cwd, seen, ttys)
    return fs_rules(grants, denies, seen=seen)


def _profile_layer(spec: Spec, env: dict, version: int, extra_ports: tuple[int, ...],
                   notes: list[str], missing: list[str], exe: str | None = None,
                   protected: tuple[str, ...] = (), planner=plan_rules) -> _Layer | None:
    """The layer of the profile's filesystem: and network: sections, or None."""
    from .kernel import landlock
    if spec.fs is None and spec.net is None:
        return None
    layer = _Layer()
    if spec.fs is not None:
        want = sum(bit for bit, _ in landlock.FS_RIGHTS.values())
        layer.fs = landlock.supported(want, landlock.FS_RIGHTS, version)
        lacking = want & ~layer.fs
        if lacking:
            missing.append(f"file-system rights {', '.join(landlock.names(lacking, landlock.FS_RIGHTS))} "
                           f"(Landlock ABI {landlock.needs(lacking, landlock.FS_RIGHTS)})")
        layer.rules = planner(spec, env, exe, protected, notes)
    if spec.net is not None:
        if version < 4:
            missing.append("TCP bind and connect rules (Landlock ABI 4, Linux 6.7)")
        else:
            b, c = spec.net.get("bind", ANY), spec.net.get("connect", ANY)
            if b != ANY:
                layer.net |= landlock.NET_RIGHTS["bind_tcp"][0]
                layer.bind = expand_ports(b, env, notes, spec.net_quiet) + list(extra_ports)
            if c != ANY:
                layer.net |= landlock.NET_RIGHTS["connect_tcp"][0]
                layer.connect = expand_ports(c, env, notes, spec.net_quiet) + list(extra_ports)
    return layer if layer.fs or layer.net else None


def keeps_out_of_writes(rules: list[tuple[str, int, bool]], path: str) -> bool:
    """No rule grants a right that changes the file system at *path*, above it
    (an entry of a parent could be renamed or replaced) or below it: a layer
    that handles every write right and has these rules keeps *path* as it is."""
    from .kernel.landlock import WRITE_RIGHTS
    real = os.path.realpath(path)
    for p, rights, _is_dir in rules:
        if rights & WRITE_RIGHTS and (p == real or real.startswith(p.rstrip("/") + "/")
                                      or p.startswith(real + "/")):
            return False
    return True


def _layers(profile: _Layer | None, scoped: int, base_fs: int, cache_dir: str | None) -> list[_Layer]:
    """The layers to build: as few as keep every guarantee of the module docstring.

    The profile's layer takes the scopes too (a ruleset carries scopes beside its
    rules). When it handles file-system rights and none of its rules lets the
    command write at, above or below the cache, it already keeps the cache as it
    is, and sbx's own write protection (some 40 rules for /var/cache/sbx) would
    add nothing; with no filesystem section it takes that protection itself, the
    two handling different rights. Only a profile that lets the command write
    there needs a second layer, since Landlock layers only ever narrow.
    """
    protect = cache_dir if base_fs else None
    if profile is None:
        base = _Layer(fs=base_fs, scoped=scoped)
        base.protect = protect
        return [base] if base.fs or base.scoped else []
    profile.scoped = scoped
    if not profile.fs:
        profile.fs, profile.protect = base_fs, protect
        return [profile]
    if protect is None or keeps_out_of_writes(profile.rules, protect):
        return [profile]
    base = _Layer(fs=base_fs)
    base.protect = protect
    return [base, profile]


def _writable(rules: list[tuple[str, int, bool]], watched: tuple[str, ...]) -> list[str]:
    """A note for each of *watched* (the profile's own file) that *rules* let the
    command change: written, truncated, or replaced in its directory."""
    from .kernel.landlock import FS_RIGHTS
    on_file = FS_RIGHTS["write_file"][0] | FS_RIGHTS["truncate"][0]
    out = []
    for path in watched:
        real = os.path.realpath(path)
        if rights_at(rules, real) & on_file or \
                rights_at(rules, os.path.dirname(real)) & FS_RIGHTS["remove_file"][0]:
            out.append(f"its own file {path} is one the command may change, and so what the next "
                       "run installs; keep profiles where the command may not write "
                       "(~/.config/sbx/profiles is kept out of every command's reach)")
    return out


def prepare(spec: Spec, argv0: str, cache_dir: str | None, env: dict | None = None,
            extra_ports: tuple[int, ...] = (), exe: str | None = None,
            protected: tuple[str, ...] = (), planner=None, watched: tuple[str, ...] = ()) -> Prepared:
    """The child's confinement steps for *spec*; LaunchError (125) if the kernel
    cannot enforce what *spec* asks and it does not say ``best-effort``.

    *cache_dir* is the cache location to keep out of the command's reach (None:
    there is none to protect); *env* the command's environment (variables in
    paths and ports); *extra_ports* TCP ports to allow for bind and connect on top
    of the profile's (``sbx run --allow-port``), where it restricts them; *exe*
    the command's file (``$EXEC_ROOT``); *protected* paths the profile's file
    rules must never let the command write (sbx's own code, profiles and
    site-packages: a command run from a checkout of sbx must not rewrite what
    later runs load). Where a write grant covers them, the directories between
    the grant and them lose the right to gain or lose entries (a checkout's
    top directory, for instance). *planner* makes the file-system rules
    (``plan_rules``, or ``plan_cache.plan`` for ``sbx run``). *watched*: the
    profile's own file, said in a note when the command may change it.
    """
    from .errors import LaunchError
    from .kernel import caps, landlock, seccomp

    env = dict(os.environ) if env is None else env
    steps: list = [seccomp.NoNewPrivs(), caps.CapDrop(frozenset(caps.number(c) for c in spec.caps))]
    version = landlock.abi()
    missing: list[str] = []
    notes: list[str] = []
    want_scopes = sum(landlock.SCOPES[{"signals": "signal", "abstract-unix": "abstract_unix_socket"}[s]][0]
                      for s in spec.scoped)
    scoped = landlock.supported(want_scopes, landlock.SCOPES, version)
    if scoped != want_scopes:
        missing.append("signal and abstract Unix socket scopes (Landlock ABI 6, Linux 6.12)")
    base_fs = landlock.supported(landlock.WRITE_RIGHTS, landlock.FS_RIGHTS, version) if cache_dir else 0
    layers = []
    try:
        if version == 0:
            missing.insert(0, "Landlock itself: the ptrace boundary that keeps the command away from "
                              "sbx and other processes of the user, and the filter cache protection")
            if spec.fs is not None or spec.net is not None:
                missing.append("the profile's filesystem and network rules")
        else:
            profile = _profile_layer(spec, env, version, extra_ports, notes, missing, exe, protected,
                                     planner or plan_rules)
            if profile is not None and profile.fs:
                notes += _writable(profile.rules, watched)
            for layer in _layers(profile, scoped, base_fs, cache_dir):
                layers.append(layer.build(notes))
        if missing and spec.mode != "best-effort":
            raise LaunchError(f"cannot confine {argv0}: this kernel cannot enforce "
                              f"{'; '.join(missing)} (the profile says landlock: enforce, the "
                              "default; write landlock: best-effort to run without it); the "
                              "command was not run")
    except BaseException:
        for rs in layers:
            rs.close()
        raise
    if layers:
        flags = landlock.RESTRICT_SELF_LOG_NEW_EXEC_ON if version >= 7 else 0
        steps.append(landlock.Restrict(layers, flags))
    return Prepared(steps, missing, list(dict.fromkeys(notes)))


__all__ = ["ANY", "FS_KEYS", "MODES", "NET_KEYS", "Prepared", "RIGHT_WORDS", "SCOPE_NAMES", "Spec",
           "UNCACHEABLE", "expand", "expand_all", "expand_deny", "expand_ports", "fs_plan", "fs_rules",
           "keeps_out_of_writes", "own_places", "plan_rules", "prepare", "real_path", "rights_at",
           "system_dir", "tcp_port"]

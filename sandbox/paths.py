"""Where sbx's data files are, and the one way sbx reads an input and writes an output file; nothing heavy imported."""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))

# The largest input sbx reads (a profile, a seccomp JSON, a denials log, a
# recording, a program): /dev/zero or a runaway pipe must end in a message,
# not in all the memory there is. A recording of a month-long run is ~1 MiB.
MAX_INPUT = 256 << 20


def builtin_dir() -> str:
    """The built-in profiles: package data ``sandbox/profiles`` when installed,
    ``profiles/`` beside the package in a source checkout."""
    for d in (os.path.join(_HERE, "profiles"), os.path.join(os.path.dirname(_HERE), "profiles")):
        if os.path.isfile(os.path.join(d, "groups.yaml")):
            return d
    return os.path.join(os.path.dirname(_HERE), "profiles")


def unsafe_reason(st: os.stat_result, uid: int, what: str) -> str | None:
    """Why a file or directory with status *st* may not be trusted by *uid*, or None:
    owned by someone but root and *uid*, or writable by group or others (a sticky
    directory owned by root, such as /tmp, excepted: no one can replace another's
    entry there). The filter cache and the profile search path both ask."""
    import stat
    if st.st_uid not in (0, uid):
        return f"{what} is owned by uid {st.st_uid}"
    if st.st_mode & 0o022 and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
                                   and st.st_uid == 0):
        return f"{what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


SYSTEM_DIR = "/etc/sbx/profiles"


def user_dir(env=None) -> str:
    """The user's profiles: $XDG_CONFIG_HOME/sbx/profiles (~/.config/sbx/profiles
    when XDG_CONFIG_HOME is unset, empty or relative, as the XDG base directory
    specification says)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "sbx", "profiles")


def search_dirs(env=None) -> list[tuple[str, str]]:
    """[(origin, directory)] in the order profile names are looked up (sandbox.search)."""
    return [("user", user_dir(env)), ("system", SYSTEM_DIR), ("built-in", builtin_dir())]


def installation_dirs() -> tuple[str, ...]:
    """What a later sbx run loads: its own packages, the built-in profiles, the
    site-packages it imports from, and the user's and the system's profiles. A command must never be able to change them,
    whatever its profile lets it write (see ``confine.prepare``'s *protected*)."""
    import sys
    out = [_HERE, builtin_dir()]
    bpf = sys.modules.get("bpf_filters")
    if bpf is not None and getattr(bpf, "__file__", None):
        out.append(os.path.dirname(os.path.abspath(bpf.__file__)))
    else:
        # a cached run does not import it: it is installed beside this package (a
        # venv's site-packages, a checkout, an editable install that maps both)
        sibling = os.path.join(os.path.dirname(_HERE), "bpf_filters")
        if os.path.isfile(os.path.join(sibling, "__init__.py")):
            out.append(sibling)
    out += [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    # what starts sbx: a virtualenv's bin/ (its sbx script and python link) and
    # pyvenv.cfg, the script sbx was started as, the interpreter, and where
    # PYTHONPATH sends the interpreter (a sitecustomize.py there runs at start);
    # sbx installed in a project's .venv, or PYTHONPATH=., are the command's to
    # write otherwise
    if sys.prefix != sys.base_prefix:
        out.append(sys.prefix)
    for p in (sys.argv[0] if sys.argv and os.path.isabs(sys.argv[0]) else "", sys.executable):
        if p and os.path.isfile(p):
            out.append(p)
    if not sys.flags.isolated and not sys.flags.ignore_environment:
        out += [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    # the user's and the system's profile directories even when they do not exist
    # yet: a command that could create ~/.config/sbx/profiles/default.yaml would
    # decide what every later run installs (confine.fs_plan keeps the way there
    # closed: no entry can be added in the nearest directory that exists)
    out += [d for origin, d in search_dirs() if origin != "built-in"]
    # and where a run without this environment would look: the home the password
    # database gives (sudo may keep HOME, or XDG_CONFIG_HOME point elsewhere)
    home = passwd_home()
    if home:
        out.append(user_dir({"HOME": home, "XDG_CONFIG_HOME": os.path.join(home, ".config")}))
    return tuple(dict.fromkeys(os.path.realpath(p) for p in out))


# What runs, outside any sandbox, whatever a command writes there: the shells'
# start-up files (bash reads ~/.bash_profile instead of ~/.profile once it
# exists; Debian's .bashrc sources .bash_aliases), the session's (.pam_environment,
# .xsessionrc, systemd's environment.d and user units, autostart), the directories
# early on PATH (Debian's ~/.profile adds ~/bin and ~/.local/bin), the Python user
# site (a .pth file there runs in every python3), git's configuration
# (core.fsmonitor, hooksPath and aliases run programs), npm's and yarn's (a
# script shell, a yarnPath), cargo's (a rustc wrapper, cargo's bin), vim's and
# emacs's, ssh's (authorized_keys, rc, ProxyCommand), and desktop entries.
STARTUP_PLACES = (
    ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".bash_aliases", ".bashrc.d",
    ".profile", ".zshrc", ".zshenv", ".zprofile", ".zlogin", ".zlogout", ".kshrc", ".mkshrc",
    ".cshrc", ".tcshrc", ".login", ".logout", ".pam_environment", ".xprofile", ".xsession",
    ".xsessionrc", ".xinitrc", ".config/environment.d", ".config/systemd", ".config/autostart",
    ".config/fish", ".config/git", ".local/share/systemd", ".local/share/applications",
    "bin", ".local/bin", ".local/lib", ".gitconfig", ".npmrc", ".yarnrc", ".yarnrc.yml",
    ".cargo/bin", ".cargo/config", ".cargo/config.toml", "go/bin", ".vimrc", ".vim", ".exrc",
    ".emacs", ".emacs.d", ".ssh")
# Where a home is scratch: every file there is the command's to write already
# (the profiles grant these), so guarding start-up files below them would only
# take the right to create files there away from the command
_SCRATCH = ("/tmp", "/var/tmp")


# A protected entry DIR/.* stands for every entry of DIR whose name starts with a
# dot (confine._every_protected lists them when a plan is made)
DOTFILES = "/.*"


def dotfiles_of(entry: str) -> str | None:
    """DIR for a protected entry ``DIR/.*`` (every dotfile of DIR), else None."""
    return (entry[:-len(DOTFILES)] or "/") if entry.endswith(DOTFILES) else None


def may_become_others(caps) -> bool:
    """A command that keeps CAP_SETUID as root may make itself any user (web keeps
    it, for servers that drop to www-data), and then writes and reads as that
    user: every user's home is its own."""
    return os.geteuid() == 0 and "SETUID" in caps


_USERS_HOMES: list[list[str]] = []


def users_homes() -> list[str]:
    """The homes of root and the users the password database lists with uids of
    people (1000 and up, nobody left out) that exist as directories. Read once
    per process."""
    if not _USERS_HOMES:
        import pwd
        out = []
        for pw in pwd.getpwall():
            if (pw.pw_uid == 0 or 1000 <= pw.pw_uid < 65534) and os.path.isabs(pw.pw_dir) and \
                    pw.pw_dir != "/" and os.path.isdir(pw.pw_dir):
                out.append(os.path.normpath(pw.pw_dir))
        _USERS_HOMES.append(sorted(set(out)))
    return _USERS_HOMES[0]


def startup_places(env, caps=()) -> list[str]:
    """``STARTUP_PLACES`` below the user's homes: the one the password database
    gives, and HOME of *env* unless it lies in a temporary directory (a CI job's
    scratch home). Present or not: a ~/.bash_profile or ~/.local/bin made later
    runs all the same."""
    homes = [passwd_home()] + (users_homes() if may_become_others(caps) else [])
    home = env.get("HOME") or ""
    scratch = _SCRATCH + ((env.get("TMPDIR"),) if env.get("TMPDIR") else ())

    def kept(path: str) -> bool:
        return os.path.isabs(path) and not any(path == t or path.startswith(t.rstrip("/") + "/")
                                               for t in scratch)
    if kept(home):
        homes.append(os.path.normpath(home))
    # HOME/.* : every dotfile there now (confine._every_protected), whatever reads it
    # (~/.cargo/env and ~/.nvm/nvm.sh are sourced by .bashrc, ~/.ipython runs its
    # startup scripts, ~/.gdbinit ...): the home is split entry by entry where a
    # command may write it, and cannot gain entries, so the rest stays writable
    out = [os.path.join(h, rel) for h in dict.fromkeys(homes) if h and h != "/"
           for rel in STARTUP_PLACES + (DOTFILES[1:],)]
    # and where the environment sends the user's shell and tools for programs and
    # start-up files, wherever that is (~/miniconda3/bin and ~/google-cloud-sdk/bin
    # on PATH, a PYTHONUSERBASE whose .pth files every python3 runs, a ZDOTDIR):
    # a command started from the home would plant `ls` there. Not in a temporary
    # directory (the command's to write already), nor at or below a working
    # directory other than a home (a project's own bin on PATH: its build writes there)
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    if cwd in homes:
        cwd = "\0"
    pyuser = env.get("PYTHONUSERBASE") or ""
    named = (env.get("PATH") or "").split(":") + [
        env.get("ZDOTDIR") or "", pyuser and os.path.join(pyuser, "lib"),
        pyuser and os.path.join(pyuser, "bin"), env.get("GOBIN") or "",
        env.get("CARGO_HOME") and os.path.join(env["CARGO_HOME"], "bin") or ""]
    for p in named:
        p = os.path.normpath(p) if os.path.isabs(p) else ""
        if p and p != "/" and kept(p) and not (p == cwd or p.startswith(cwd.rstrip("/") + "/")):
            out.append(p)
    return list(dict.fromkeys(out))


def kept_by(real: str, protected: tuple[str, ...]) -> tuple[str, bool] | None:
    """(the entry of *protected* that keeps the real path *real* out of writes,
    whether it is one of the user's start-up places), or None. A ``DIR/.*``
    entry keeps every dotfile of DIR and what is below it."""
    for p in protected:
        dotted = dotfiles_of(p)
        if dotted is not None:
            top = os.path.realpath(dotted).rstrip("/") + "/"
            if real.startswith(top) and real[len(top):len(top) + 1] == ".":
                return p, True
            continue
        top = os.path.realpath(p)
        if real == top or real.startswith(top.rstrip("/") + "/"):
            return p, os.path.realpath(p) not in installation_dirs()
    return None


def kept_from_writes(env, caps=()) -> tuple[str, ...]:
    """What no command may change, whatever its profile lets it write
    (``confine.prepare``'s *protected*): what later runs of sbx load
    (``installation_dirs``), and what runs outside the sandbox at the user's next
    login, shell or tool (``startup_places``; every user's, for a profile that
    keeps *caps* SETUID as root)."""
    return installation_dirs() + tuple(startup_places(env, caps))


_PASSWD_HOME: dict[int, str] = {}


def passwd_home() -> str:
    """The home the password database gives this process's effective user ("" when
    it gives none, or not an absolute path): where the user's secrets are whatever
    HOME says. Read once per process and user."""
    uid = os.geteuid()
    home = _PASSWD_HOME.get(uid)
    if home is None:
        import pwd
        try:
            home = pwd.getpwuid(uid).pw_dir
        except KeyError:
            home = ""
        home = _PASSWD_HOME[uid] = home if os.path.isabs(home) else ""
    return home


def display_path(path: str) -> str:
    """profiles/web.yaml for built-ins (and profiles/presets/...), a path relative to the cwd below it,
    else absolute."""
    rel_builtin = os.path.relpath(os.path.abspath(path), builtin_dir())
    if not rel_builtin.startswith(".."):
        return f"profiles/{rel_builtin}"
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def write_output(path: str, data: str | bytes) -> None:
    """Write *data* to the output file *path*; raises OSError.

    A regular file (or a new one) is written beside itself and renamed over
    it, so a reader never sees half of it. Anything else that exists there
    (/dev/null, /dev/stdout, a FIFO) is written into, never renamed over: as
    root, a rename would replace the device node itself."""
    mode, enc = ("wb", {}) if isinstance(data, bytes) else ("w", {"encoding": "utf-8"})
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        with open(path, mode, **enc) as fh:
            fh.write(data)
        return
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        # made afresh (O_EXCL, no link followed): the name is predictable, and what
        # another process put there first is not written through
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o666)
        with open(fd, mode, **enc) as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_input(path: str, limit: int = MAX_INPUT) -> bytes:
    """The bytes of the input file *path* (a file, a pipe such as ``<(...)``,
    a device; "-" is stdin); OSError EFBIG when there are more than *limit*."""
    import errno
    import sys
    if path == "-":
        data = sys.stdin.buffer.read(limit + 1)
    else:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit >> 20} MiB, the most sbx reads")
    return data

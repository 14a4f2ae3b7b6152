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


_PASSWD_HOME: list[str] = []


def passwd_home() -> str:
    """The home the password database gives this process's effective user ("" when
    it gives none, or not an absolute path): where the user's secrets are whatever
    HOME says. Read once per process."""
    if not _PASSWD_HOME:
        import pwd
        try:
            home = pwd.getpwuid(os.geteuid()).pw_dir
        except KeyError:
            home = ""
        _PASSWD_HOME.append(home if os.path.isabs(home) else "")
    return _PASSWD_HOME[0]


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

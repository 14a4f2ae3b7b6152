"""Find the shared libraries a program loads, the way glibc's dynamic loader (ld.so) does.

For a DT_NEEDED name without a slash, ld.so (elf/dl-load.c, ``_dl_map_object``)
searches, in order: the DT_RPATH of the object that needs it and of each
object that loaded that one up to the program (only when the needing object
has no DT_RUNPATH); LD_LIBRARY_PATH; the needing object's own DT_RUNPATH;
/etc/ld.so.cache; the system directories (on Debian x86_64, from
``ld.so --list-diagnostics``: /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu,
/lib, /usr/lib).  ``$ORIGIN``, ``$LIB`` and ``$PLATFORM`` are expanded in the
paths.  A file of another architecture is skipped, as ld.so does.  Libraries
are loaded breadth first, each soname once; that order is also the order in
which symbols are looked up.  glibc-hwcaps subdirectories are not searched.
"""
from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass, field

from .elf import AnalyzeError, Elf, open_elf

LD_SO_CACHE = "/etc/ld.so.cache"
SYSTEM_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib")
DST_LIB = "lib/x86_64-linux-gnu"       # what $LIB expands to (ld.so --list-diagnostics: dl_dst_lib)
PLATFORM = "x86_64"                    # AT_PLATFORM
_CACHE_MAGIC = b"glibc-ld.so.cache1.1"
_FLAG_X86_64_LIBC6 = 0x0303            # FLAG_ELF_LIBC6 | FLAG_X8664_LIB64 (sysdeps/generic/ldconfig.h)


@dataclass
class Loaded:
    """One object of the program, with how it was found."""
    path: str                          # as found (symlinks kept for display)
    elf: Elf                           # headers only (open_elf(full=False))
    how: str                           # "program", "interpreter", "ld.so.cache", "RUNPATH", ...
    needed_by: str | None = None
    parents: list["Loaded"] = field(default_factory=list)   # loader chain, nearest first
    interpreter: bool = False          # the program's PT_INTERP (ld.so runs its entry point)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@functools.lru_cache(maxsize=4)
def read_ld_so_cache(path: str = LD_SO_CACHE) -> dict[str, str]:
    """soname -> path for x86_64 libraries, from the new-format cache ldconfig writes.
    Header: magic, nlibs u32, len_strings u32, flags u8 + 3 pad, extension offset u32,
    3 unused u32 (48 bytes); entries: flags i32, key u32, value u32, osversion u32,
    hwcap u64 (24 bytes); string offsets count from the start of the file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return {}
    if not data.startswith(_CACHE_MAGIC) or len(data) < 48:
        return {}
    nlibs = struct.unpack_from("<I", data, 20)[0]
    out: dict[str, str] = {}

    def string(off: int) -> str:
        end = data.find(b"\0", off)
        return data[off:end].decode("utf-8", "replace") if 0 <= off < end else ""
    for i in range(min(nlibs, (len(data) - 48) // 24)):
        flags, key, value, _osv, hwcap = struct.unpack_from("<iIIIQ", data, 48 + 24 * i)
        if flags == _FLAG_X86_64_LIBC6 and hwcap == 0:
            out.setdefault(string(key), string(value))     # the first entry wins, as in ld.so
    return out


def expand(path: str, origin: str) -> str:
    for token, value in (("$ORIGIN", origin), ("${ORIGIN}", origin), ("$LIB", DST_LIB),
                         ("${LIB}", DST_LIB), ("$PLATFORM", PLATFORM), ("${PLATFORM}", PLATFORM)):
        path = path.replace(token, value)
    return path


def _usable(path: str) -> Elf | None:
    """The headers of *path* if ld.so would load it here (an x86_64 ELF), else None."""
    if not os.path.isfile(path):
        return None
    try:
        return open_elf(path, full=False)
    except AnalyzeError:
        return None


def search_path(name: str, requester: Loaded, chain: list[Loaded], env: dict[str, str]
                ) -> list[tuple[str, str]]:
    """(directory, how) in ld.so's order for *name* needed by *requester*."""
    dirs: list[tuple[str, str]] = []

    def origin(obj: Loaded) -> str:
        return os.path.dirname(os.path.realpath(obj.path))
    if not requester.elf.runpath:
        for obj in [requester] + chain:
            dirs += [(expand(d, origin(obj)), f"RPATH of {obj.name}") for d in obj.elf.rpath]
    for d in env.get("LD_LIBRARY_PATH", "").replace(";", ":").split(":"):
        if d:
            dirs.append((d, "LD_LIBRARY_PATH"))
    dirs += [(expand(d, origin(requester)), f"RUNPATH of {requester.name}")
             for d in requester.elf.runpath]
    return dirs


def find_library(name: str, requester: Loaded, chain: list[Loaded], env: dict[str, str]
                 ) -> tuple[str, Elf, str] | None:
    """(path, headers, how) of the library ld.so loads for DT_NEEDED *name*, or None."""
    if "/" in name:
        elf = _usable(expand(name, os.path.dirname(os.path.realpath(requester.path))))
        return (name, elf, "path") if elf else None
    for d, how in search_path(name, requester, chain, env):
        path = os.path.join(d, name)
        elf = _usable(path)
        if elf is not None:
            return path, elf, how
    cached = read_ld_so_cache().get(name)
    if cached:
        elf = _usable(cached)
        if elf is not None:
            return cached, elf, "ld.so.cache"
    for d in SYSTEM_DIRS:
        path = os.path.join(d, name)
        elf = _usable(path)
        if elf is not None:
            return path, elf, "system directory"
    return None


def load_order(program: Loaded, env: dict[str, str] | None = None) -> list[Loaded]:
    """The program, its libraries breadth first, then the interpreter if no library named it.
    AnalyzeError when a needed library cannot be found (ld.so would refuse to start)."""
    env = dict(os.environ) if env is None else env
    order = [program]
    seen = {program.elf.soname or program.name: program}
    by_real = {os.path.realpath(program.path): program}
    queue = [program]
    while queue:
        obj = queue.pop(0)
        for name in obj.elf.needed:
            if name in seen:
                continue
            found = find_library(name, obj, obj.parents, env)
            if found is None:
                raise AnalyzeError(f"{name} (needed by {obj.path}) not found the way ld.so searches",
                                   "install it, or set LD_LIBRARY_PATH as the program runs with")
            path, elf, how = found
            real = os.path.realpath(path)
            if real in by_real:                          # the same file under another name
                seen[name] = by_real[real]
                continue
            lib = Loaded(path, elf, how, obj.path, [obj] + obj.parents)
            seen[name] = lib
            if elf.soname:
                seen.setdefault(elf.soname, lib)
            by_real[real] = lib
            order.append(lib)
            queue.append(lib)
    interp = program.elf.interp
    if interp and os.path.realpath(interp) in by_real:
        by_real[os.path.realpath(interp)].interpreter = True
    elif interp:
        elf = _usable(interp)
        if elf is None:
            raise AnalyzeError(f"the program's interpreter {interp} is missing or not x86_64")
        order.append(Loaded(interp, elf, "interpreter", program.path, interpreter=True))
    return order


def load_dlopened(name: str, requester: Loaded, loaded: list[Loaded],
                  env: dict[str, str] | None = None) -> list[Loaded]:
    """The objects a ``dlopen(name)`` by *requester* adds to *loaded* (it and its new
    dependencies), or [] when it is already loaded or cannot be found."""
    env = dict(os.environ) if env is None else env
    known = {os.path.realpath(o.path) for o in loaded} | {o.elf.soname for o in loaded if o.elf.soname}
    if name in known:
        return []
    found = find_library(name, requester, requester.parents + [loaded[0]], env)
    if found is None or os.path.realpath(found[0]) in known:
        return []
    path, elf, how = found
    root = Loaded(path, elf, f"dlopen by {requester.name} ({how})", requester.path,
                  [requester] + requester.parents)
    try:
        deps = load_order(root, env)
    except AnalyzeError:
        return []                    # dlopen would fail: nothing of it runs
    return [o for o in deps if os.path.realpath(o.path) not in known
            and (o.elf.soname is None or o.elf.soname not in known)]

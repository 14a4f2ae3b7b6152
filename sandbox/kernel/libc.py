"""The one libc binding of sbx: import-light, usable between fork and exec.

It calls libc through the C module ``_ctypes`` directly: the ``ctypes``
package (with struct, functools and enum behind it) costs more to import than
the rest of a cached ``sbx run``. Every argument is passed as a C long
(pointers included, as addresses of ``Buffer`` objects), every result comes
back as a C long, and a failure becomes ``KernelError`` with the errno, the
one place OS errors of the kernel seam are translated.

Syscall numbers come from the generated tables (``bpf_filters.syscalls``,
and their excerpt ``sysnos`` for the calls made here) for the machine the
kernel reports; nothing here types a number by hand.
"""
from __future__ import annotations

import _ctypes
import os


class KernelError(OSError):
    """A libc call or syscall failed; ``errno`` is set, the message says which call."""


class _Long(_ctypes._SimpleCData):
    _type_ = "l"


class _Char(_ctypes._SimpleCData):
    _type_ = "c"


class _CharP(_ctypes._SimpleCData):
    _type_ = "z"                 # char *: a bytes object is passed without a copy


class _Libc:
    _handle = _ctypes.dlopen(None, os.RTLD_NOW)


class _CFunc(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Long


class _PyFunc(_ctypes.CFuncPtr):
    # keeps the GIL during the call (ctypes.PyDLL): for calls that must not let
    # another thread run in between, such as the audit reader's recv
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO | _ctypes.FUNCFLAG_PYTHONAPI
    _restype_ = _Long


_FUNCS: dict[tuple[str, bool], _ctypes.CFuncPtr] = {}


def function(name: str, *, keep_gil: bool = False):
    """The libc function *name*, called with C long arguments, returning a C long."""
    key = (name, keep_gil)
    fn = _FUNCS.get(key)
    if fn is None:
        fn = _FUNCS[key] = (_PyFunc if keep_gil else _CFunc)((name, _Libc))
    return fn


def long_function(name: str, nargs: int, strings: tuple[int, ...] = ()):
    """libc's *name* taking *nargs* C longs, callable with plain ints (the
    conversion done in C: for loops of many calls, such as Landlock rules);
    the arguments at the indices in *strings* are C strings, passed as bytes."""
    fn = _CFunc((name, _Libc))
    fn.argtypes = tuple(_CharP if i in strings else _Long for i in range(nargs))
    return fn


def call(name: str, *args: int, keep_gil: bool = False) -> int:
    """Call libc's *name*; returns its result (check it, or use ``checked``)."""
    return function(name, keep_gil=keep_gil)(*[_Long(a) for a in args])


def errno() -> int:
    """errno as the last call through this module left it."""
    return _ctypes.get_errno()


def fail(what: str, err: int | None = None) -> KernelError:
    err = errno() if err is None else err
    return KernelError(err, f"{what}: {os.strerror(err)}")


def checked(what: str, name: str, *args: int) -> int:
    """Call libc's *name*; raise KernelError("what: strerror") if it returns -1."""
    rc = call(name, *args)
    if rc == -1:
        raise fail(what)
    return rc


def machine() -> str:
    """The architecture the kernel reports (``uname -m``), in the tables' spelling.

    This is the ABI of sbx's own process whenever the Python running sbx is
    native to the kernel, which is the only case sbx supports.
    """
    m = os.uname().machine
    return {"amd64": "x86_64", "arm64": "aarch64", "i686": "i386"}.get(m, m)


_NUMBERS: dict[str, int] = {}


def sysno(name: str) -> int:
    """The number of syscall *name* on this machine, from the generated tables
    (``sysnos``, their excerpt for this seam, first)."""
    if not _NUMBERS:
        from .sysnos import NUMBERS
        _NUMBERS.update(NUMBERS.get(machine(), {}))
    nr = _NUMBERS.get(name)
    if nr is not None:
        return nr
    if "read" not in _NUMBERS:                      # the whole table, once
        from bpf_filters.syscalls import UnknownArchError, numbers
        try:
            _NUMBERS.update(numbers(machine()))
        except UnknownArchError as err:
            raise KernelError(0, f"no syscall table for {machine()}") from err
    try:
        return _NUMBERS[name]
    except KeyError:
        raise KernelError(0, f"syscall {name} does not exist on {machine()}") from None


def syscall(name: str, *args: int) -> int:
    """syscall(2) by name; returns the result or -1 with errno set."""
    return call("syscall", sysno(name), *args)


def checked_syscall(name: str, *args: int) -> int:
    rc = syscall(name, *args)
    if rc == -1:
        raise fail(name)
    return rc


_ARRAYS: dict[int, type] = {}


class Buffer:
    """A C copy of some bytes that stays put while the object lives."""

    __slots__ = ("_array", "addr", "size")

    def __init__(self, data: bytes = b"", size: int | None = None):
        self.size = max(1, len(data) if size is None else size)
        array = _ARRAYS.get(self.size)
        if array is None:           # a class per size, made once: type() costs ~20 us
            array = _ARRAYS[self.size] = type("_Buf", (_ctypes.Array,),
                                              {"_type_": _Char, "_length_": self.size})
        self._array = array.from_buffer_copy(data.ljust(self.size, b"\0"))
        self.addr = _ctypes.addressof(self._array)

    def write(self, data: bytes) -> None:
        """Overwrite the buffer's first bytes with *data* (at most its size)."""
        self._array.raw = data.ljust(self.size, b"\0")[:self.size]

    def view(self):
        """The C array itself, writable in place (``struct.pack_into``)."""
        return self._array

    def read(self, n: int | None = None) -> bytes:
        """The buffer's current bytes (after the kernel wrote into it)."""
        return bytes(memoryview(self._array).cast("B")[: self.size if n is None else n])


def cstring(text: str | bytes) -> Buffer:
    """A NUL-terminated C string."""
    raw = os.fsencode(text) if isinstance(text, str) else text
    return Buffer(raw + b"\0")


# made with its argument types when sbx starts, not in a child between fork and
# exec, which drops some 40 capabilities with it (every sbx run calls prctl first)
_PRCTL = long_function("prctl", 5)


RESOLVE_NO_SYMLINKS = 0x04       # openat2(2): fail with ELOOP on a symbolic link anywhere


def open_no_links(path: str, flags: int, mode: int = 0o644) -> int:
    """open(2) of *path* that follows no symbolic link in any component (openat2
    RESOLVE_NO_SYMLINKS): a link another process left on the way is ELOOP, not a
    detour. Raises OSError."""
    import _struct
    how = Buffer(_struct.pack("=QQQ", flags, mode if flags & os.O_CREAT else 0,
                              RESOLVE_NO_SYMLINKS))
    fd = long_function("syscall", 5, strings=(2,))(sysno("openat2"), -100, os.fsencode(path),
                                                   how.addr, 24)
    if fd < 0:
        err = errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    """prctl(2); returns its result or -1 with errno set."""
    return _PRCTL(option, a2, a3, a4, a5)


__all__ = ["Buffer", "KernelError", "call", "checked", "checked_syscall", "cstring", "errno",
           "fail", "function", "machine", "open_no_links", "prctl", "syscall", "sysno"]

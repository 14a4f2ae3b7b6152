"""The x86_64 and i386 tables against the running kernel's own dispatch.

A number the table lacks, or lists without an entry point, must fail with
ENOSYS; the newest syscalls in the table must not. Only such numbers are
called (a real syscall with junk arguments could do anything), in a forked
child. i386 numbers go through ``int $0x80``, which a 64-bit task may use when
the kernel has IA32 emulation.
"""
import ctypes
import errno
import mmap
import os
import platform

import pytest

from bpf_filters.syscalls import table
from tests.conftest import in_child, need

TBL_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "bpf_filters", "syscalls", "tbl")
PROBE_RANGE = range(0, 1024)
# Junk arguments: bad fds, unmapped pointers, invalid flags.
JUNK = (-1, 1, 1, 1, 1, 1)
NEWEST = ["statmount", "listmount", "lsm_get_self_attr", "lsm_set_self_attr",
          "lsm_list_modules", "mseal", "setxattrat", "getxattrat", "listxattrat",
          "removexattrat", "open_tree_attr", "file_getattr", "file_setattr"]

# int $0x80 with the i386 calling convention, callable as long f(nr, a0..a4):
#   push rbx; push rbp; mov eax,edi; mov ebx,esi; mov r11,rcx; mov ecx,edx;
#   mov edx,r11d; mov esi,r8d; mov edi,r9d; xor ebp,ebp; int 0x80;
#   movsxd rax,eax; pop rbp; pop rbx; ret
INT80_STUB = bytes.fromhex(
    "53 55 89f8 89f3 4989cb 89d1 4489da 4489c6 4489cf 31ed cd80 4863c0 5d 5b c3")


def _no_entry_numbers(tbl_name: str, abis: set[str]) -> set[int]:
    """Numbers listed without an entry point (or with sys_ni_syscall) for *abis*.

    On x86_64 an i386 call goes to the compat entry point when one is listed.
    """
    numbers = set()
    with open(os.path.join(TBL_DIR, tbl_name), encoding="utf-8") as f:
        for line in f:
            fields = line.split("#", 1)[0].split()
            if len(fields) < 3 or fields[1] not in abis:
                continue
            entry = fields[4] if len(fields) > 4 and fields[4] != "-" else (
                fields[3] if len(fields) > 3 else None)
            if entry in (None, "sys_ni_syscall"):
                numbers.add(int(fields[0]))
    return numbers


def _native_caller():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def call(nr, *args):
        ctypes.set_errno(0)
        ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
        return -ctypes.get_errno() if ret == -1 else ret
    return call


def _int80_caller():
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(INT80_STUB)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    proto = ctypes.CFUNCTYPE(ctypes.c_long, *[ctypes.c_long] * 6)
    stub = proto(address)

    def call(nr, *args):
        return stub(nr, *args[:5])
    call.page = page  # keep the mapping alive with the function
    return call


def _probe_table(arch, make_caller, tbl_name, abis):
    tbl = table(arch)
    no_entry = _no_entry_numbers(tbl_name, abis)

    def probe():
        call = make_caller()
        should_be_enosys = [nr for nr in PROBE_RANGE if nr not in tbl.by_nr or nr in no_entry]
        wrong = {nr: call(nr, *JUNK) for nr in should_be_enosys}
        newest = {name: call(tbl.nr(name), *JUNK) for name in NEWEST}
        return {
            "not_enosys": {nr: ret for nr, ret in wrong.items() if ret != -errno.ENOSYS},
            "newest_enosys": [name for name, ret in newest.items() if ret == -errno.ENOSYS],
            "probed": len(should_be_enosys),
        }
    return in_child(probe)


def _need_x86_64_kernel_6_18():
    need(platform.machine() == "x86_64", "the probes issue x86 syscalls")
    need(platform.release().startswith("6.18"),
         f"the tables are Linux 6.18's; running {platform.release()}")


def test_x86_64_numbers_match_the_running_kernel():
    _need_x86_64_kernel_6_18()
    result = _probe_table("x86_64", _native_caller, "syscall_64.tbl", {"common", "64"})
    assert result["probed"] > 600
    assert result["not_enosys"] == {}, "kernel has syscalls the table lacks"
    assert result["newest_enosys"] == [], "table has syscalls the kernel lacks"


def test_i386_numbers_match_the_running_kernel():
    _need_x86_64_kernel_6_18()

    def getpid_via_int80():
        return _int80_caller()(20, 0, 0, 0, 0, 0)   # i386 getpid is 20
    ret = in_child(getpid_via_int80)
    need(ret > 0, f"int $0x80 unavailable (IA32 emulation off?): returned {ret}")
    result = _probe_table("i386", _int80_caller, "syscall_32.tbl", {"i386"})
    assert result["probed"] > 500
    assert result["not_enosys"] == {}, "kernel has i386 syscalls the table lacks"
    assert result["newest_enosys"] == [], "table has i386 syscalls the kernel lacks"


@pytest.mark.parametrize("name, nr", [("getpid", 39), ("getppid", 110)])
def test_x86_64_simple_calls_return_their_values(name, nr):
    _need_x86_64_kernel_6_18()
    assert table("x86_64").nr(name) == nr
    expected = os.getpid() if name == "getpid" else os.getppid()
    assert _native_caller()(nr) == expected

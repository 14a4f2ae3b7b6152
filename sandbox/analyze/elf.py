"""Read what the syscall analysis needs from one ELF file, and refuse what it cannot read.

pyelftools parses the headers, sections, segments, dynamic tags and notes.  The
three bulk tables (symbols, RELA and RELR relocations) are fixed-size ELF64
records read with ``struct.iter_unpack``: pyelftools builds an object per
record, which costs ~0.1 s per 5,000 symbols or 18,000 relocations of
libcrypto; reading them in bulk costs a few milliseconds.

Every problem with the input (not an ELF, 32-bit, another architecture,
truncated, a script) raises ``AnalyzeError`` with one clear sentence and a hint.
"""
from __future__ import annotations

import io
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import Iterator

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

# Relocation types of x86_64 (System V ABI, AMD64 supplement, table 4.10)
R_64, R_COPY, R_GLOB_DAT, R_JUMP_SLOT, R_RELATIVE, R_IRELATIVE = 1, 5, 6, 7, 8, 37
RELR = -1                      # our tag for a relative relocation from a RELR table
STT_FUNC, STT_GNU_IFUNC = 2, 10
SHF_EXECINSTR = 0x4
_ELF_MAGIC = b"\x7fELF"
# allocated sections that may hold code pointers (.eh_frame's are PC-relative, not pointers)
_POINTER_SECTIONS = ("SHT_PROGBITS", "SHT_INIT_ARRAY", "SHT_FINI_ARRAY", "SHT_PREINIT_ARRAY")
_MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64",
             8: "mips", 21: "ppc64", 22: "s390x"}


class AnalyzeError(Exception):
    """The input cannot be analysed; str() is one sentence, .hint says what to do."""

    def __init__(self, message: str, hint: str | None = None, status: int = 2):
        super().__init__(message)
        self.hint = hint
        self.status = status


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int
    type: int                  # STT_*
    defined: bool
    dynamic: bool              # from .dynsym (exported or imported), else .symtab


@dataclass(frozen=True)
class Reloc:
    type: int                  # R_* or RELR
    symbol: str | None         # for symbol relocations (R_64, GLOB_DAT, JUMP_SLOT)
    addend: int


@dataclass
class CodeSection:
    name: str
    addr: int
    data: bytes
    entsize: int


@dataclass
class Elf:
    """One ELF object as the analysis sees it."""
    path: str
    raw: bytes
    kind: str                              # "pie", "exec", "static", "static-pie", "library"
    entry: int
    interp: str | None = None
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    soname: str | None = None
    build_id: str | None = None
    code: list[CodeSection] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)
    relocs: dict[int, Reloc] = field(default_factory=dict)
    init: list[tuple[str, int]] = field(default_factory=list)     # (what, address) run by ld.so
    data_ranges: list[tuple[int, int, int]] = field(default_factory=list)   # addr, size, offset
    loads: list[tuple[int, int, int]] = field(default_factory=list)         # vaddr, filesz, offset
    eh_frame: tuple[int, bytes] | None = None
    got: list[tuple[int, int]] = field(default_factory=list)               # .got, .got.plt

    # -- addresses ------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes | None:
        for vaddr, filesz, off in self.loads:
            if vaddr <= addr and addr + size <= vaddr + filesz:
                start = off + addr - vaddr
                return self.raw[start:start + size]
        return None

    def cstring(self, addr: int, limit: int = 4096) -> str | None:
        """The NUL-terminated string at *addr*, if it is in the file and printable."""
        for vaddr, filesz, off in self.loads:
            if vaddr <= addr < vaddr + filesz:
                start = off + addr - vaddr
                end = self.raw.find(b"\0", start, min(start + limit, off + filesz))
                if end < 0:
                    return None
                text = self.raw[start:end]
                try:
                    out = text.decode("ascii")
                except UnicodeDecodeError:
                    return None
                return out if out.isprintable() else None
        return None

    def pointer(self, addr: int) -> tuple[str, int, str | None]:
        """What the loader leaves in the 8 bytes at *addr*:
        ("addr", value, None), ("ifunc", resolver, None) or ("symbol", addend, name)."""
        rel = self.relocs.get(addr)
        if rel is not None:
            if rel.type == R_RELATIVE:
                return "addr", rel.addend, None
            if rel.type == R_IRELATIVE:
                return "ifunc", rel.addend, None
            if rel.symbol is not None and rel.type in (R_64, R_GLOB_DAT, R_JUMP_SLOT):
                return "symbol", rel.addend, rel.symbol
        raw = self.read(addr, 8)
        return "addr", struct.unpack("<Q", raw)[0] if raw and len(raw) == 8 else 0, None

    @property
    def position_independent(self) -> bool:
        return self.kind in ("pie", "static-pie", "library")

    def in_got(self, addr: int) -> bool:
        return any(a <= addr < a + n for a, n in self.got)

    def data_pointers(self) -> Iterator[tuple[int, int | None, str | None]]:
        """(where, address, symbol) for each pointer the loader leaves in data, outside the
        GOT (whose slots count where code uses them): every relocated word, with the
        address it holds or the symbol it names; and in a position-dependent file, whose
        own addresses need no relocation, every aligned word that points into code."""
        for where, rel in self.relocs.items():
            if rel.type == R_IRELATIVE or self.in_got(where):
                continue
            kind, value, symbol = self.pointer(where)
            yield where, value if kind == "addr" else None, symbol
        if self.position_independent or not self.code:
            return
        lo = min(c.addr for c in self.code)
        hi = max(c.addr + len(c.data) for c in self.code)
        for addr, size, off in self.data_ranges:
            if self.in_got(addr):
                continue
            skip = (-addr) % 8
            chunk = self.raw[off + skip:off + skip + (size - skip) // 8 * 8]
            for i, (word,) in enumerate(struct.iter_unpack("<Q", chunk)):
                if lo <= word < hi:
                    yield addr + skip + 8 * i, word, None


# -- opening -----------------------------------------------------------------------------

def _check_header(path: str, raw: bytes) -> None:
    if raw.startswith(b"#!"):
        interp = raw[2:raw.find(b"\n") if b"\n" in raw else 80].decode("utf-8", "replace").strip()
        prog = interp.split()[0] if interp else "its interpreter"
        raise AnalyzeError(f"{path}: a script for {interp or 'an interpreter'}, not an ELF program",
                           f"analyse the interpreter instead: sbx analyze {prog}")
    if not raw.startswith(_ELF_MAGIC):
        what = "an empty file" if not raw else "not an ELF file"
        raise AnalyzeError(f"{path}: {what}", "give a compiled program (ELF), such as /usr/bin/ls")
    if len(raw) < 64:
        raise AnalyzeError(f"{path}: truncated ELF file ({len(raw)} bytes, the header alone is 64)")
    ei_class, ei_data = raw[4], raw[5]
    machine = struct.unpack_from("<H" if ei_data == 1 else ">H", raw, 18)[0]
    arch = _MACHINES.get(machine, f"machine {machine}")
    if ei_class == 1:
        raise AnalyzeError(f"{path}: a 32-bit ELF file ({arch}); sbx analyze reads x86_64 programs only",
                           "record it instead: sbx trace -o OUT.yaml -- PROGRAM")
    if ei_class != 2 or ei_data != 1:
        raise AnalyzeError(f"{path}: not a 64-bit little-endian ELF file")
    if machine != 62:
        raise AnalyzeError(f"{path}: an ELF file for {arch}; sbx analyze handles x86_64 only so far",
                           "record it instead: sbx trace -o OUT.yaml -- PROGRAM")


def open_elf(path: str, raw: bytes | None = None, full: bool = True) -> Elf:
    """Read *path* (or its bytes *raw*); AnalyzeError for anything that is not an x86_64 ELF
    program or library this analysis can read.  With *full* False only the headers,
    dynamic tags and build-id are read (what library resolution and the cache need)."""
    if raw is None:
        try:
            if not stat.S_ISREG(os.stat(path).st_mode) and not os.path.isdir(path):
                raise AnalyzeError(f"{path}: not a regular file, so not a program")
            with open(path, "rb") as fh:
                raw = fh.read()
        except IsADirectoryError:
            raise AnalyzeError(f"{path}: a directory, not a program") from None
        except OSError as err:
            raise AnalyzeError(f"{path}: cannot read: {err.strerror}") from None
    _check_header(path, raw)
    try:
        return _parse(path, raw, full)
    except AnalyzeError:
        raise
    except (ELFError, struct.error, ValueError, IndexError, KeyError, TypeError,
            AttributeError, OverflowError) as err:
        # pyelftools and construct report a cut-off file with assorted exceptions
        raise AnalyzeError(f"{path}: truncated or corrupt ELF file ({type(err).__name__}: "
                           f"{str(err)[:120] or 'unreadable'})") from None
    except Exception as err:          # construct's StreamError and friends: same meaning
        if type(err).__module__.startswith(("construct", "elftools")):
            raise AnalyzeError(f"{path}: truncated or corrupt ELF file ({type(err).__name__})") \
                from None
        raise


def _parse(path: str, raw: bytes, full: bool) -> Elf:
    ef = ELFFile(io.BytesIO(raw))
    e_type = ef.header["e_type"]
    if e_type not in ("ET_EXEC", "ET_DYN"):
        raise AnalyzeError(f"{path}: an ELF {'object file' if e_type == 'ET_REL' else e_type}, "
                           "not a program", "give a linked program, such as /usr/bin/ls")
    if ef.num_sections() == 0:
        raise AnalyzeError(f"{path}: the ELF file has no section headers; this analysis needs them")
    interp, dynamic = None, False
    loads = []
    for seg in ef.iter_segments():
        ptype = seg["p_type"]
        if ptype == "PT_INTERP":
            interp = seg.get_interp_name()
        elif ptype == "PT_DYNAMIC":
            dynamic = True
        elif ptype == "PT_LOAD":
            if seg["p_offset"] + seg["p_filesz"] > len(raw):
                raise AnalyzeError(f"{path}: truncated ELF file (a segment ends at byte "
                                   f"{seg['p_offset'] + seg['p_filesz']}, the file at {len(raw)})")
            loads.append((seg["p_vaddr"], seg["p_filesz"], seg["p_offset"]))
    elf = Elf(path, raw, "", ef.header["e_entry"], interp=interp, loads=loads)
    _read_dynamic(ef, elf)
    if interp is None:
        if not dynamic:
            elf.kind = "static"
        elif e_type == "ET_DYN" and not elf.needed and elf.entry:
            elf.kind = "static-pie"
        else:
            elf.kind = "library"
    else:
        elf.kind = "pie" if e_type == "ET_DYN" else "exec"
    if full:
        _read_sections(ef, elf, raw)
    else:
        _read_build_id(ef, elf)
    return elf


def _read_build_id(ef: ELFFile, elf: Elf) -> None:
    for sec in ef.iter_sections():
        if sec["sh_type"] == "SHT_NOTE" and sec["sh_offset"] + sec["sh_size"] <= len(elf.raw):
            for note in sec.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    elf.build_id = note["n_desc"]
                    return


def _read_dynamic(ef: ELFFile, elf: Elf) -> None:
    dyn = ef.get_section_by_name(".dynamic")
    if dyn is None or not hasattr(dyn, "iter_tags"):
        return
    for tag in dyn.iter_tags():
        t = tag.entry.d_tag
        if t == "DT_NEEDED":
            elf.needed.append(tag.needed)
        elif t == "DT_RPATH":
            elf.rpath += [p for p in tag.rpath.split(":") if p]
        elif t == "DT_RUNPATH":
            elf.runpath += [p for p in tag.runpath.split(":") if p]
        elif t == "DT_SONAME":
            elf.soname = tag.soname
        elif t in ("DT_INIT", "DT_FINI"):
            elf.init.append((t[3:].lower(), tag.entry.d_val))


def _read_sections(ef: ELFFile, elf: Elf, raw: bytes) -> None:
    symtabs = []
    for sec in ef.iter_sections():
        name, stype = sec.name, sec["sh_type"]
        if stype != "SHT_NOBITS" and sec["sh_offset"] + sec["sh_size"] > len(raw):
            raise AnalyzeError(f"{elf.path}: truncated ELF file (section {name} ends at byte "
                               f"{sec['sh_offset'] + sec['sh_size']}, the file at {len(raw)})")
        if name == ".note.gnu.build-id" or (stype == "SHT_NOTE" and elf.build_id is None):
            for note in sec.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    elf.build_id = note["n_desc"]
        if stype in ("SHT_DYNSYM", "SHT_SYMTAB"):
            symtabs.append(sec)
        elif stype in ("SHT_RELA", "SHT_RELR"):
            pass                                           # after the symbol tables
        elif sec["sh_flags"] & SHF_EXECINSTR and stype == "SHT_PROGBITS":
            elf.code.append(CodeSection(name, sec["sh_addr"], sec.data(), sec["sh_entsize"]))
        elif name in (".init_array", ".fini_array", ".preinit_array") and stype != "SHT_NOBITS":
            for i in range(sec["sh_size"] // 8):
                elf.init.append((f"{name[1:]}[{i}]", sec["sh_addr"] + 8 * i))
        elif name in (".got", ".got.plt"):
            elf.got.append((sec["sh_addr"], sec["sh_size"]))
        elif name == ".eh_frame" and stype != "SHT_NOBITS":
            elf.eh_frame = (sec["sh_addr"], sec.data())
        if stype in _POINTER_SECTIONS and sec["sh_flags"] & 0x2 and not sec["sh_flags"] & SHF_EXECINSTR \
                and name not in (".eh_frame", ".eh_frame_hdr", ".gcc_except_table"):
            elf.data_ranges.append((sec["sh_addr"], sec["sh_size"], sec["sh_offset"]))
    dynsyms: list[str] = []
    for sec in symtabs:
        strtab = ef.get_section(sec["sh_link"]).data()
        syms = _symbols(sec.data(), strtab, sec["sh_type"] == "SHT_DYNSYM")
        if sec["sh_type"] == "SHT_DYNSYM":
            dynsyms = [s.name for s in syms]
        elf.symbols += [s for s in syms if s.name]
    for sec in ef.iter_sections():
        if sec["sh_type"] == "SHT_RELA":
            link = ef.get_section(sec["sh_link"]) if sec["sh_link"] else None
            names = dynsyms if link is None or link["sh_type"] == "SHT_DYNSYM" else \
                [s.name for s in _symbols(link.data(), ef.get_section(link["sh_link"]).data(), False)]
            _rela(sec.data(), names, elf.relocs)
        elif sec["sh_type"] == "SHT_RELR":
            _relr(sec.data(), elf.relocs)
    # init/fini entries are relocated pointers: read them now that relocations are known
    elf.init = [(what, elf.pointer(a)[1] if what.endswith("]") else a) for what, a in elf.init]


def _symbols(data: bytes, strtab: bytes, dynamic: bool) -> list[Symbol]:
    """Elf64_Sym: st_name u32, st_info u8, st_other u8, st_shndx u16, st_value u64, st_size u64."""
    out = []
    for st_name, info, _other, shndx, value, size in struct.iter_unpack("<IBBHQQ", data[:len(data) // 24 * 24]):
        end = strtab.find(b"\0", st_name)
        name = strtab[st_name:end if end >= 0 else None].decode("utf-8", "replace")
        out.append(Symbol(name, value, size, info & 0xF, shndx != 0, dynamic))
    return out


def _rela(data: bytes, names: list[str], out: dict[int, Reloc]) -> None:
    """Elf64_Rela: r_offset u64, r_info u64 (symbol << 32 | type), r_addend s64."""
    for offset, info, addend in struct.iter_unpack("<QQq", data[:len(data) // 24 * 24]):
        sym = info >> 32
        name = names[sym] if 0 < sym < len(names) and names[sym] else None
        out[offset] = Reloc(info & 0xFFFFFFFF, name, addend)


def _relr(data: bytes, out: dict[int, Reloc]) -> None:
    """RELR (gABI): an even entry is an address to relocate (then base = it + 8); an odd
    entry is a bitmap of the next 63 words from base (bit i -> base + (i-1)*8)."""
    base = 0
    for (entry,) in struct.iter_unpack("<Q", data[:len(data) // 8 * 8]):
        if entry & 1 == 0:
            out[entry] = Reloc(RELR, None, 0)
            base = entry + 8
        else:
            bits, i = entry >> 1, 0
            while bits:
                if bits & 1:
                    out[base + i * 8] = Reloc(RELR, None, 0)
                bits >>= 1
                i += 1
            base += 63 * 8

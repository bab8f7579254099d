"""Copy a shared library with a prefix taken off its exported symbol names, without a compiler or linker.

Why: the `scipy-openblas32` wheel ships a fast, self-contained OpenBLAS (BSD, ~8 MB download, Linux x86_64 and
aarch64), but every symbol it exports carries a `scipy_` prefix (`scipy_cblas_sgemm`) so that it never clashes
with another BLAS in the process. MLX's Linux wheel imports the plain names (`cblas_sgemm`, `sgetrf_`, ...).
`unprefix(src, dst)` writes a copy of the library whose exported names are the plain ones, which a child
process can then get in LD_PRELOAD like any system OpenBLAS.

How, in ELF terms (ELF64 little-endian: x86_64 and aarch64 alike; no machine code is touched):
- every dynamic symbol is a record whose name is an offset into the dynamic string table, and the prefixed
  names are stored whole there, so the plain name is already present 6 bytes further on: each defined
  `scipy_*` symbol gets `st_name += len(prefix)` and no string is written;
- the loader finds names through the GNU hash table, which is keyed by the name's hash, so it is rebuilt for
  the new names: with a single bucket (the only layout that needs no reordering of the symbol table, which
  relocations and version records index) and its Bloom filter recomputed at the same size. A lookup of a
  name the library does not define is still rejected by the Bloom filter; one it does define walks one chain
  of hashes (a few microseconds for ~5,000-15,000 symbols, once per symbol per process). A SysV hash table,
  if present, is rebuilt too;
- the SONAME `libscipy_openblas.so` becomes `scipy_openblas.so` (again an offset into the same string), so a
  program that links the original by SONAME never gets this copy instead.
The copy is written to a temporary file and renamed into place, so readers never see half a library.
"""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT, DT_SONAME = 0, 4, 5, 6, 10, 11, 14
DT_GNU_HASH = 0x6FFFFEF5
SHN_UNDEF = 0
SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym: st_name, st_info, st_other, st_shndx, st_value, st_size


class ElfError(ValueError):
    """The file is not a library this module can rewrite (not ELF64 little-endian, no GNU hash, ...)."""


def gnu_hash(name: bytes) -> int:
    h = 5381
    for c in name:
        h = (h * 33 + c) & 0xFFFFFFFF
    return h


def sysv_hash(name: bytes) -> int:
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


class _Elf:
    """Just enough of an ELF64 LE shared object: its dynamic section, symbols, strings and hash tables,
    located through the program headers (what the loader reads), not the optional section headers."""

    def __init__(self, data: bytearray, name: str = "library"):
        self.data, self.name = data, name
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ElfError(f"{name}: not an ELF64 little-endian file")
        e_phoff, = struct.unpack_from("<Q", data, 0x20)
        e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
        self.loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
        dyn_off = dyn_size = None
        for i in range(e_phnum):
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", data,
                                                                                    e_phoff + i * e_phentsize)
            if p_type == PT_LOAD:
                self.loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == PT_DYNAMIC:
                dyn_off, dyn_size = p_offset, p_filesz
        if dyn_off is None:
            raise ElfError(f"{name}: no dynamic section (not a shared library)")
        self.dynamic: list[tuple[int, int, int]] = []  # (file offset of the entry, tag, value)
        for off in range(dyn_off, dyn_off + dyn_size, 16):
            tag, val = struct.unpack_from("<qQ", data, off)
            if tag == DT_NULL:
                break
            self.dynamic.append((off, tag, val))
        tags = {t: v for _, t, v in self.dynamic}
        for need in (DT_STRTAB, DT_SYMTAB, DT_STRSZ):
            if need not in tags:
                raise ElfError(f"{name}: dynamic section lacks tag {need}")
        if tags.get(DT_SYMENT, SYM.size) != SYM.size:
            raise ElfError(f"{name}: unexpected symbol entry size {tags[DT_SYMENT]}")
        self.strtab, self.strsz = self.offset(tags[DT_STRTAB]), tags[DT_STRSZ]
        self.symtab = self.offset(tags[DT_SYMTAB])
        self.gnu = self.offset(tags[DT_GNU_HASH]) if DT_GNU_HASH in tags else None
        self.sysv = self.offset(tags[DT_HASH]) if DT_HASH in tags else None
        if self.gnu is None and self.sysv is None:
            raise ElfError(f"{name}: no symbol hash table")
        self.nsyms = self._count_symbols()

    def offset(self, vaddr: int) -> int:
        for v, o, size in self.loads:
            if v <= vaddr < v + size:
                return vaddr - v + o
        raise ElfError(f"{self.name}: address {vaddr:#x} is outside the file's loaded segments")

    def _count_symbols(self) -> int:
        if self.sysv is not None:
            return struct.unpack_from("<I", self.data, self.sysv + 4)[0]
        nbuckets, symoffset, bloom_size, _shift = struct.unpack_from("<IIII", self.data, self.gnu)
        buckets = self.gnu + 16 + 8 * bloom_size
        chains = buckets + 4 * nbuckets
        last = max(struct.unpack_from(f"<{nbuckets}I", self.data, buckets), default=0)
        if last < symoffset:
            return symoffset
        while not struct.unpack_from("<I", self.data, chains + 4 * (last - symoffset))[0] & 1:
            last += 1
        return last + 1

    def sym(self, i: int) -> tuple:
        return SYM.unpack_from(self.data, self.symtab + i * SYM.size)

    def string(self, off: int) -> bytes:
        if off >= self.strsz:
            raise ElfError(f"{self.name}: string offset {off} past the string table")
        end = self.data.index(b"\0", self.strtab + off)
        return bytes(self.data[self.strtab + off:end])

    def names(self) -> list[bytes]:
        return [self.string(self.sym(i)[0]) for i in range(self.nsyms)]

    def hashed_symoffset(self) -> int:
        return struct.unpack_from("<I", self.data, self.gnu + 4)[0] if self.gnu is not None else 1

    def lookup(self, name: bytes) -> int | None:
        """Index of the defined symbol `name`, found the way the dynamic loader finds it (GNU hash if present,
        else SysV), or None."""
        d = self.data
        if self.gnu is not None:
            nbuckets, symoffset, bloom_size, shift = struct.unpack_from("<IIII", d, self.gnu)
            h = gnu_hash(name)
            word, = struct.unpack_from("<Q", d, self.gnu + 16 + 8 * ((h // 64) % bloom_size))
            if not (word >> (h % 64)) & 1 or not (word >> ((h >> shift) % 64)) & 1:
                return None
            buckets = self.gnu + 16 + 8 * bloom_size
            i, = struct.unpack_from("<I", d, buckets + 4 * (h % nbuckets))
            if i < symoffset:
                return None
            chains = buckets + 4 * nbuckets
            while True:
                ch, = struct.unpack_from("<I", d, chains + 4 * (i - symoffset))
                if (ch | 1) == (h | 1) and self.string(self.sym(i)[0]) == name and self.sym(i)[3] != SHN_UNDEF:
                    return i
                if ch & 1:
                    return None
                i += 1
        nbucket, _nchain = struct.unpack_from("<II", d, self.sysv)
        i, = struct.unpack_from("<I", d, self.sysv + 8 + 4 * (sysv_hash(name) % nbucket))
        while i:
            if self.string(self.sym(i)[0]) == name and self.sym(i)[3] != SHN_UNDEF:
                return i
            i, = struct.unpack_from("<I", d, self.sysv + 8 + 4 * nbucket + 4 * i)
        return None

    # -- rewriting ---------------------------------------------------------------------------------------
    def rebuild_hashes(self) -> None:
        names = self.names()
        d = self.data
        if self.gnu is not None:
            nbuckets, symoffset, bloom_size, shift = struct.unpack_from("<IIII", d, self.gnu)
            if bloom_size == 0 or bloom_size & (bloom_size - 1):  # loaders mask the index: a power of two
                raise ElfError(f"{self.name}: GNU hash Bloom filter of {bloom_size} words (not a power of two)")
            old_size = 16 + 8 * bloom_size + 4 * nbuckets + 4 * max(0, self.nsyms - symoffset)
            bloom = [0] * bloom_size
            chain = []
            for i in range(symoffset, self.nsyms):
                h = gnu_hash(names[i])
                bloom[(h // 64) % bloom_size] |= (1 << (h % 64)) | (1 << ((h >> shift) % 64))
                chain.append((h & ~1) | (1 if i == self.nsyms - 1 else 0))
            table = struct.pack("<IIII", 1, symoffset, bloom_size, shift) + struct.pack(f"<{bloom_size}Q", *bloom)
            table += struct.pack("<I", symoffset if chain else 0) + struct.pack(f"<{len(chain)}I", *chain)
            assert len(table) <= old_size
            d[self.gnu:self.gnu + old_size] = table + bytes(old_size - len(table))
        if self.sysv is not None:
            nbucket, nchain = struct.unpack_from("<II", d, self.sysv)
            buckets, chains = [0] * nbucket, [0] * nchain
            for i in range(1, self.nsyms):
                if self.sym(i)[3] == SHN_UNDEF:
                    continue
                b = sysv_hash(names[i]) % nbucket
                chains[i], buckets[b] = buckets[b], i
            struct.pack_into(f"<{nbucket}I{nchain}I", d, self.sysv + 8, *buckets, *chains)


def unprefix(src: Path, dst: Path, prefix: bytes = b"scipy_") -> int:
    """Write to dst a copy of the shared library src in which every defined dynamic symbol named
    `<prefix>X` is named `X` (and a SONAME `lib<prefix>Y` becomes `<prefix>Y`). Returns how many symbols were
    renamed. Raises ElfError if src cannot be rewritten safely (then dst is not created)."""
    src, dst = Path(src), Path(dst)
    data = bytearray(src.read_bytes())
    elf = _Elf(data, str(src))
    names = elf.names()
    plain = {n for n in names if not n.startswith(prefix)}
    symoffset = elf.hashed_symoffset()
    renamed = 0
    for i in range(1, elf.nsyms):
        st_name, info, other, shndx, value, size = elf.sym(i)
        n = names[i]
        if not n.startswith(prefix) or len(n) == len(prefix):
            continue
        if shndx == SHN_UNDEF:
            raise ElfError(f"{src}: imports {n.decode()} (a prefixed name it does not define); not renaming")
        if i < symoffset:
            continue  # not in the hash table: invisible to the loader either way
        if n[len(prefix):] in plain:
            raise ElfError(f"{src}: defines both {n.decode()} and {n[len(prefix):].decode()}")
        SYM.pack_into(data, elf.symtab + i * SYM.size, st_name + len(prefix), info, other, shndx, value, size)
        renamed += 1
    if not renamed:
        raise ElfError(f"{src}: no defined symbol starts with {prefix.decode()!r}")
    elf.rebuild_hashes()
    for off, tag, val in elf.dynamic:
        if tag == DT_SONAME and elf.string(val).startswith(b"lib" + prefix):
            struct.pack_into("<qQ", data, off, tag, val + 3)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return renamed


def exported(path: Path, names: list[str]) -> dict[str, bool]:
    """Whether the loader would find each name defined in the library at path (read with its own hash table)."""
    elf = _Elf(bytearray(Path(path).read_bytes()), str(path))
    return {n: elf.lookup(n.encode()) is not None for n in names}


def soname(path: Path) -> str | None:
    elf = _Elf(bytearray(Path(path).read_bytes()), str(path))
    return next((elf.string(v).decode() for _, t, v in elf.dynamic if t == DT_SONAME), None)


def imported(path: Path) -> list[str]:
    """Names of the dynamic symbols the library at path needs from others (undefined in it)."""
    elf = _Elf(bytearray(Path(path).read_bytes()), str(path))
    return [elf.string(elf.sym(i)[0]).decode() for i in range(1, elf.nsyms) if elf.sym(i)[3] == SHN_UNDEF]

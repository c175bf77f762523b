"""The explanation on a real ELF library: Debian's zlib (``libz.so.1``, present wherever
Python's ``zlib`` module is), with a ``call`` and a ``lea`` written into ``deflateInit2_`` and
a ``DT_NEEDED`` entry redirected. The function comes from ``.dynsym`` (with its size)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import capstone
import pytest

from verifier.binary import elf, elf_tables, explain
from verifier.model import Blob, FileFormat

LIBZ = next(
    (
        os.path.realpath(p)
        for p in ("/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1")
        if os.path.exists(p)
    ),
    None,
)
pytestmark = pytest.mark.skipif(LIBZ is None, reason="no x86-64 libz.so.1 (Debian zlib1g)")


def test_patched_function_and_needed_library(tmp_path: Path) -> None:
    assert LIBZ is not None and zlib.ZLIB_VERSION
    data = bytearray(Path(LIBZ).read_bytes())
    up = tmp_path / "libz.so.1"
    up.write_bytes(bytes(data))
    b = Blob.of_file(up)
    info = elf.read_elf_info(b)
    syms = elf_tables.read_tables(b, info)
    assert "deflateInit2_" in syms.exports and "libc.so.6" in syms.needed
    # deflateInit2_'s address and size, read here from .dynsym independently
    dynsym = next(s for s in info.sections if s.name == ".dynsym")
    dynstr = info.sections[dynsym.link]
    strtab = bytes(data[dynstr.offset : dynstr.offset + dynstr.size])
    start = size = 0
    for i in range(dynsym.size // 24):
        name, _info, _o, _shndx, value, sz = struct.unpack_from(
            "<IBBHQQ", data, dynsym.offset + 24 * i
        )
        if strtab[name : strtab.index(b"\0", name)] == b"deflateInit2_":
            start, size = value, sz
    assert start and size > 64
    text = next(s for s in info.sections if s.addr <= start < s.addr + s.size)
    off0 = text.offset + (start - text.addr)
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    insns = list(md.disasm_lite(bytes(data[off0 : off0 + size]), start))
    at = next(a for a, _n, _m, _o in insns if a >= start + size // 3)
    off = off0 + (at - start)
    data[off : off + 12] = (
        b"\xe8" + struct.pack("<i", -0x200) + b"\x48\x8d\x0d" + struct.pack("<i", 0x40)
    )
    # redirect DT_NEEDED libc.so.6 to the tail of its own name ("c.so.6")
    dyn = next(s for s in info.sections if s.type == elf_tables.SHT_DYNAMIC)
    libc = strtab.index(b"libc.so.6\0")
    for i in range(dyn.size // 16):
        tag, val = struct.unpack_from("<qQ", data, dyn.offset + 16 * i)
        if tag == elf_tables.DT_NEEDED and val == libc:
            struct.pack_into("<qQ", data, dyn.offset + 16 * i, tag, libc + 3)
    shipped = tmp_path / "shipped.so"
    shipped.write_bytes(bytes(data))

    ev = explain.explain_blobs(Blob.of_file(shipped), b, FileFormat.ELF).evidence
    assert ev["explanation"]["status"] == "explained" and ev["explanation"]["arch"] == "x64"
    assert ev["imports_added"] == ["c.so.6"] and ev["imports_removed"] == ["libc.so.6"]
    code = next(c for c in ev["changes"] if c["executable"])
    assert code["region"] == ".text" and code["address"] == at
    assert code["functions"][0] == {
        "name": "deflateInit2_",
        "start": start,
        "end": start + size,
        "source": "dynsym",
    }
    win = next(w for w in ev["disassembly"] if w["change"]["address"] == at)
    assert win["address"] == start  # decoded from the function's start
    changed = [r for r in win["rows"] if r["kind"] == "changed"]
    assert changed[0]["shipped"]["text"] == f"call {at + 5 - 0x200:#x}"
    assert changed[1]["shipped"]["text"] == "lea rcx, [rip + 0x40]"
    original = [(a, n, f"{m} {o}".strip()) for a, n, m, o in insns if at <= a < at + 12]
    got = [
        (r["upstream"]["address"], r["upstream"]["size"], r["upstream"]["text"]) for r in changed
    ]
    assert got[: len(original)] == original

"""A minimal PE32+ writer for tests that need odd or very large files quickly.

Headers only as far as biv's parser reads them: DOS header, COFF header, optional header with
16 data directories, the section table; raw data aligned to 0x200. No imports, no checksum.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

FILE_ALIGN = 0x200
CODE = 0x60000020  # code, execute, read
DATA = 0x40000040  # initialised data, read


def _align(n: int, a: int = FILE_ALIGN) -> int:
    return (n + a - 1) // a * a


def write_pe(
    path: Path,
    sections: Sequence[tuple[str, int, bytes | int, int]],
    *,
    entry: int = 0x1000,
    machine: int = 0x8664,
) -> None:
    """Write a PE with ``sections`` [(name, virtual address, raw data or its length (zeros),
    characteristics)], streaming large sections to disk."""
    nsect = len(sections)
    opt_size = 112 + 16 * 8
    headers = _align(0x40 + 4 + 20 + opt_size + 40 * nsect)
    raws: list[int] = []
    pos = headers
    for _name, _va, data, _ch in sections:
        raws.append(pos)
        pos += _align(data if isinstance(data, int) else len(data))
    last = max(sections, key=lambda s: s[1])
    image = _align(last[1] + (last[2] if isinstance(last[2], int) else len(last[2])), 0x1000)
    image &= 0xFFFFFFFF  # bogus section addresses wrap
    dos = bytearray(0x40)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x40)
    coff = struct.pack("<HHIIIHH", machine, nsect, 0, 0, 0, opt_size, 0x2022)
    opt = struct.pack(
        "<HBBIIIIIQIIHHHHHHIIIIHHQQQQII",
        0x20B, 14, 0, 0, 0, 0, entry, 0x1000, 0x180000000, 0x1000, FILE_ALIGN,
        6, 0, 0, 0, 6, 0, 0, image, headers, 0, 3, 0x160,
        0x100000, 0x1000, 0x100000, 0x1000, 0, 16,
    )  # fmt: skip
    opt += bytes(16 * 8)
    table = b""
    for (name, va, data, ch), raw in zip(sections, raws, strict=True):
        size = data if isinstance(data, int) else len(data)
        table += struct.pack(
            "<8sIIIIIIHHI", name.encode()[:8], size, va, _align(size), raw, 0, 0, 0, 0, ch
        )
    head = bytes(dos) + b"PE\0\0" + coff + opt + table
    with path.open("wb") as fh:
        fh.write(head + bytes(headers - len(head)))
        for (_name, _va, data, _ch), raw in zip(sections, raws, strict=True):
            fh.seek(raw)
            if isinstance(data, int):
                fh.truncate(raw + _align(data))
            else:
                fh.write(data + bytes(_align(len(data)) - len(data)))
        fh.seek(0, 2)
        if fh.tell() < pos:
            fh.truncate(pos)

"""Just enough PNG decoding to check what a headless-Chromium screenshot shows (8-bit RGB or
RGBA, not interlaced)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator


def _rows(png: bytes, upto: int) -> Iterator[tuple[bytes, int]]:
    """The first ``upto`` rows, unfiltered, each as (its bytes, bytes per pixel)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", b""
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            ihdr = data
        elif kind == b"IDAT":
            idat += data
        pos += 12 + n
    w, _h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert depth == 8 and ctype in (2, 6) and interlace == 0
    bpp = 4 if ctype == 6 else 3
    stride = w * bpp
    raw = zlib.decompressobj().decompress(idat, (stride + 1) * upto)
    prev = bytearray(stride)
    for row in range(upto):
        ft = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)])
        if ft == 2:
            line = bytearray((x + y) & 0xFF for x, y in zip(line, prev, strict=True))
        elif ft:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                if ft == 1:
                    line[i] = (line[i] + a) & 0xFF
                elif ft == 3:
                    line[i] = (line[i] + (a + b) // 2) & 0xFF
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    line[i] = (
                        line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)
                    ) & 0xFF
        prev = line
        yield bytes(line), bpp


def pixel(png: bytes, x: int, y: int) -> tuple[int, ...]:
    """The RGB of the pixel at (x, y)."""
    line, bpp = list(_rows(png, y + 1))[-1]
    return tuple(line[x * bpp : x * bpp + 3])


def find_row(png: bytes, needle: bytes, upto: int) -> int | None:
    """The first row (< ``upto``) of an 8-bit RGB(A) PNG whose RGB bytes contain ``needle``."""
    for row, (line, bpp) in enumerate(_rows(png, upto)):
        rgb = line if bpp == 3 else bytes(line[i] for i in range(len(line)) if i % 4 != 3)
        if needle in rgb:
            return row
    return None

"""A small UDIF (.dmg) writer: wraps a disk image in Apple's UDIF container (zlib chunks,
a ``blkx`` table in the XML plist, the 512-byte ``koly`` trailer).

No Debian tool writes DMGs; this is enough for 7-Zip's DMG handler and for biv's tests and
demo. ``make_dmg(src_dir, out)`` builds the inner image with ``genisoimage`` (ISO 9660 with
Joliet long names plus an HFS hybrid: 7-Zip reads the ISO side, since its HFS handler reads
HFS+ only) and wraps it.
"""

from __future__ import annotations

import plistlib
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

from verifier.errors import ToolMissingError

SECTOR = 512
CHUNK_SECTORS = 2048  # 1 MiB of input per compressed chunk

ENTRY_ZLIB = 0x80000005
ENTRY_ZERO = 0x00000002
ENTRY_END = 0xFFFFFFFF


def _mish(sector_count: int, chunks: list[tuple[int, int, int, int, int]]) -> bytes:
    """A BLKX table: (type, first sector, sector count, data offset, data length) chunks."""
    out = struct.pack(
        ">4sIQQQII24x",
        b"mish",
        1,
        0,
        sector_count,
        0,
        0x208,
        0,
    )
    out += struct.pack(">II", 0, 0) + b"\0" * 128  # checksum (none)
    out += struct.pack(">I", len(chunks))
    for etype, first, count, off, length in chunks:
        out += struct.pack(">IIQQQQ", etype, 0, first, count, off, length)
    return out


def wrap_udif(image: bytes | Path, out: Path) -> None:
    """Write ``image`` (a raw disk image) as a zlib-compressed UDIF file at ``out``."""
    raw = image.read_bytes() if isinstance(image, Path) else image
    if len(raw) % SECTOR:
        raw += b"\0" * (SECTOR - len(raw) % SECTOR)
    sectors = len(raw) // SECTOR
    data = bytearray()
    chunks: list[tuple[int, int, int, int, int]] = []
    for first in range(0, sectors, CHUNK_SECTORS):
        count = min(CHUNK_SECTORS, sectors - first)
        piece = raw[first * SECTOR : (first + count) * SECTOR]
        if not any(piece):
            chunks.append((ENTRY_ZERO, first, count, len(data), 0))
            continue
        comp = zlib.compress(piece, 6)
        chunks.append((ENTRY_ZLIB, first, count, len(data), len(comp)))
        data += comp
    chunks.append((ENTRY_END, sectors, 0, len(data), 0))
    plist = plistlib.dumps(
        {
            "resource-fork": {
                "blkx": [
                    {
                        "Attributes": "0x0050",
                        "CFName": "disk image (Apple_HFS : 0)",
                        "Data": _mish(sectors, chunks),
                        "ID": "0",
                        "Name": "disk image (Apple_HFS : 0)",
                    }
                ]
            }
        },
        fmt=plistlib.FMT_XML,
    )
    xml_off = len(data)
    koly = bytearray(512)
    struct.pack_into(">4sIIIQQQQQII", koly, 0, b"koly", 4, 512, 1, 0, 0, len(data), 0, 0, 1, 1)
    struct.pack_into(">QQ", koly, 216, xml_off, len(plist))
    struct.pack_into(">IQ", koly, 488, 1, sectors)
    out.write_bytes(bytes(data) + plist + bytes(koly))


def make_dmg(src_dir: Path, out: Path, volume: str = "Install") -> None:
    """Build a DMG holding the contents of ``src_dir`` (needs ``genisoimage``)."""
    tool = shutil.which("genisoimage")
    if tool is None:
        raise ToolMissingError("genisoimage is needed to build a test DMG (Debian: genisoimage)")
    with tempfile.TemporaryDirectory() as tmp:
        img = Path(tmp) / "volume.iso"
        subprocess.run(
            [
                tool,
                "-quiet",
                "-R",
                "-J",
                "-joliet-long",
                "-hfs",
                "-V",
                volume,
                "-o",
                str(img),
                str(src_dir),
            ],
            check=True,
            capture_output=True,
        )
        wrap_udif(img, out)

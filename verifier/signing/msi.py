"""The Authenticode signature of an MSI (an OLE compound file), verified like a PE's.

A bounded compound-file reader (sector chains, directory entries, streams: every index and
length checked, counts and sizes capped) computes the MSI's Authenticode digest; the PKCS#7
from the "\x05DigitalSignature" stream then goes through ``signing.authenticode``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

from verifier.errors import MalformedInputError
from verifier.model import Anomaly, SignatureFacts, SignatureKind
from verifier.signing import authenticode
from verifier.signing.trust import TrustConfig

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _read_at(filename: str, offset: int, length: int) -> bytes:
    with open(filename, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


# --- MSI Authenticode ----------------------------------------------------------------------------
#
# An MSI (OLE compound file) keeps its Authenticode PKCS#7 in the root stream
# "\x05DigitalSignature". The signed digest covers every stream's content, storage by storage:
# children sorted by their raw UTF-16LE names (memcmp, the longer name wins a tie), the two
# signature streams of the root skipped, each storage's CLSID appended after its children.

_FREESECT, _ENDOFCHAIN = 0xFFFFFFFF, 0xFFFFFFFE
_MAXREGSECT = 0xFFFFFFFA
_NOSTREAM = 0xFFFFFFFF
MSI_SIG_STREAM = "\x05DigitalSignature"
MSI_SIG_EX_STREAM = "\x05MsiDigitalSignatureEx"
MAX_OLE_ENTRIES = 1 << 16
MAX_SIGNATURE_STREAM = 16 << 20


class _DirEntry:
    __slots__ = ("child", "clsid", "left", "name", "name_raw", "right", "size", "start", "type")

    def __init__(self, raw: bytes) -> None:
        nlen = min(struct.unpack_from("<H", raw, 0x40)[0], 64)
        self.name_raw = raw[: max(0, nlen)]
        self.name = raw[: max(0, nlen - 2)].decode("utf-16-le", "replace")
        self.type = raw[0x42]
        self.left, self.right, self.child = struct.unpack_from("<III", raw, 0x44)
        self.clsid = raw[0x50:0x60]
        self.start = struct.unpack_from("<I", raw, 0x74)[0]
        self.size = struct.unpack_from("<Q", raw, 0x78)[0]


class CompoundFile:
    """A bounded, read-only reader of OLE compound files (MS-CFB), enough for MSI signatures.

    Every sector number, chain and size is checked; loops and out-of-range references raise
    ``MalformedInputError``.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.file_size = Path(path).stat().st_size
        with open(path, "rb") as fh:
            hdr = fh.read(512)
        if len(hdr) < 512 or hdr[:8] != OLE_MAGIC:
            raise MalformedInputError("not an OLE compound file")
        shift, mini_shift = struct.unpack_from("<HH", hdr, 0x1E)
        if shift not in (9, 12) or mini_shift != 6:
            raise MalformedInputError(f"OLE: unsupported sector sizes ({shift}, {mini_shift})")
        self.ssize = 1 << shift
        self.msize = 64
        self.nsectors = max(0, (self.file_size - self.ssize) // self.ssize + 1)
        (n_fat,) = struct.unpack_from("<I", hdr, 0x2C)
        (self.first_dir,) = struct.unpack_from("<I", hdr, 0x30)
        (self.cutoff,) = struct.unpack_from("<I", hdr, 0x38)
        first_minifat, n_minifat, first_difat, n_difat = struct.unpack_from("<IIII", hdr, 0x3C)
        if n_fat > self.nsectors or n_difat > self.nsectors or n_minifat > self.nsectors:
            raise MalformedInputError("OLE: sector counts larger than the file")
        difat = list(struct.unpack_from("<109I", hdr, 0x4C))
        sect, per = first_difat, self.ssize // 4 - 1
        seen: set[int] = set()
        while sect <= _MAXREGSECT and len(seen) < n_difat:
            if sect in seen:
                raise MalformedInputError("OLE: DIFAT chain loops")
            seen.add(sect)
            vals = struct.unpack(f"<{per + 1}I", self._sector(sect))
            difat += vals[:per]
            sect = vals[per]
        fat_sectors = [s for s in difat[:n_fat] if s <= _MAXREGSECT]
        if len(fat_sectors) != n_fat:
            raise MalformedInputError("OLE: FAT sectors missing from the DIFAT")
        self.fat: list[int] = []
        for s in fat_sectors:
            self.fat += struct.unpack(f"<{self.ssize // 4}I", self._sector(s))
        dir_data = self._chain_bytes(self.first_dir, self.fat, self.ssize, self._sector)
        count = min(len(dir_data) // 128, MAX_OLE_ENTRIES)
        self.entries = [_DirEntry(dir_data[i * 128 : (i + 1) * 128]) for i in range(count)]
        if not self.entries or self.entries[0].type != 5:
            raise MalformedInputError("OLE: no root entry")
        minifat_raw = (
            self._chain_bytes(first_minifat, self.fat, self.ssize, self._sector)
            if first_minifat <= _MAXREGSECT
            else b""
        )
        self.minifat = list(
            struct.unpack(f"<{len(minifat_raw) // 4}I", minifat_raw[: len(minifat_raw) // 4 * 4])
        )
        root = self.entries[0]
        self._ministream = (
            self._chain_bytes(root.start, self.fat, self.ssize, self._sector, root.size)
            if root.start <= _MAXREGSECT
            else b""
        )

    def _sector(self, n: int) -> bytes:
        if n >= self.nsectors:
            raise MalformedInputError(f"OLE: sector {n} beyond the end of the file")
        data = _read_at(self.path, (n + 1) * self.ssize, self.ssize)
        if len(data) < self.ssize:
            data += bytes(self.ssize - len(data))  # a short last sector
        return data

    def _mini_sector(self, n: int) -> bytes:
        off = n * self.msize
        if off + self.msize > len(self._ministream):
            raise MalformedInputError(f"OLE: mini sector {n} beyond the mini stream")
        return self._ministream[off : off + self.msize]

    def _chain_bytes(
        self,
        start: int,
        fat: list[int],
        size: int,
        read: Callable[[int], bytes],
        want: int | None = None,
    ) -> bytes:
        limit = len(fat)
        if want is not None and want > self.file_size:
            raise MalformedInputError("OLE: stream larger than the file")
        out: list[bytes] = []
        got = 0
        seen: set[int] = set()
        sect = start
        while sect != _ENDOFCHAIN and (want is None or got < want):
            if sect > _MAXREGSECT or sect >= limit or sect in seen:
                raise MalformedInputError(f"OLE: broken sector chain at {sect:#x}")
            seen.add(sect)
            chunk = read(sect)
            out.append(chunk)
            got += len(chunk)
            sect = fat[sect]
        data = b"".join(out)
        if want is not None:
            if len(data) < want:
                raise MalformedInputError("OLE: stream shorter than its size")
            data = data[:want]
        return data

    def stream(self, e: _DirEntry) -> bytes:
        if e.type != 2:
            raise MalformedInputError("OLE: not a stream")
        if e.size == 0:
            return b""
        if e.size < self.cutoff:
            return self._chain_bytes(e.start, self.minifat, self.msize, self._mini_sector, e.size)
        return self._chain_bytes(e.start, self.fat, self.ssize, self._sector, e.size)

    def children(self, e: _DirEntry) -> list[_DirEntry]:
        out: list[_DirEntry] = []
        stack = [e.child]
        seen: set[int] = set()
        while stack:
            i = stack.pop()
            if i == _NOSTREAM:
                continue
            if i >= len(self.entries) or i in seen:
                raise MalformedInputError("OLE: broken directory tree")
            seen.add(i)
            c = self.entries[i]
            out.append(c)
            stack += [c.left, c.right]
        return out


def _name_cmp(a: _DirEntry, b: _DirEntry) -> int:
    n = min(len(a.name_raw), len(b.name_raw))
    if a.name_raw[:n] != b.name_raw[:n]:
        return -1 if a.name_raw[:n] < b.name_raw[:n] else 1
    return 1 if len(a.name_raw) > len(b.name_raw) else -1


_name_key = functools.cmp_to_key(_name_cmp)


def msi_authenticode(
    path: str, algorithms: tuple[str, ...] = ("sha1", "sha256")
) -> tuple[bytes | None, dict[str, str]]:
    """(PKCS#7 DER of the MSI's signature or None, {algorithm: hex Authenticode digest})."""
    cf = CompoundFile(path)
    hashers = {a: hashlib.new(a) for a in algorithms}
    root = cf.entries[0]
    der: bytes | None = None
    depth_cap = 64

    def walk(e: _DirEntry, is_root: bool, depth: int) -> None:
        nonlocal der
        if depth > depth_cap:
            raise MalformedInputError("OLE: storages nested too deep")
        for c in sorted(cf.children(e), key=_name_key):
            if is_root and c.name == MSI_SIG_STREAM:
                if c.size > MAX_SIGNATURE_STREAM:
                    raise MalformedInputError("MSI: signature stream too large")
                der = cf.stream(c)
                continue
            if is_root and c.name == MSI_SIG_EX_STREAM:
                raise MalformedInputError(
                    "MSI: MsiDigitalSignatureEx (metadata pre-hash) is not supported"
                )
            if c.type == 2:
                data = cf.stream(c)
                for h in hashers.values():
                    h.update(data)
            elif c.type == 1:
                walk(c, False, depth + 1)
        for h in hashers.values():
            h.update(e.clsid)

    walk(root, True, 0)
    return der, {a: h.hexdigest() for a, h in hashers.items()}


def msi_signature_facts(
    path: str, trust: TrustConfig | None = None, at: dt.datetime | None = None
) -> tuple[SignatureFacts, tuple[Anomaly, ...]]:
    """The Authenticode signature of an MSI, verified like a PE's (``signing.authenticode``).

    The PKCS#7 of the "\\x05DigitalSignature" stream is wrapped as a WIN_CERTIFICATE so the
    same parser and verifier apply; byte ranges in anomalies are offsets within that wrapper.
    An unreadable compound file gives an ``invalid-signature`` anomaly, never a pass.
    """
    try:
        der, _ = msi_authenticode(path, ())
        if der is None:
            return SignatureFacts(), ()
        pad = (-(8 + len(der))) % 8
        table = struct.pack("<IHH", 8 + len(der), 0x0200, 0x0002) + der + bytes(pad)
        parsed = authenticode.parse_table(
            table, table_offset=0, dir_size=len(table), file_size=len(table), last_section_end=0
        )
        algs = tuple(sorted(parsed.digest_algorithms)) or ("sha256",)
        _, digests = msi_authenticode(path, algs)
    except (MalformedInputError, ValueError) as e:
        msg = e.message if isinstance(e, MalformedInputError) else str(e)
        return SignatureFacts(SignatureKind.AUTHENTICODE, True, False), (
            Anomaly("invalid-signature", f"MSI signature cannot be checked: {msg}"),
        )
    facts, anomalies = authenticode.verify(parsed, digests, pe_checksum_ok=True, trust=trust, at=at)
    return facts, anomalies

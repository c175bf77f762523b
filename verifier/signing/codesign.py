"""macOS code signatures: the embedded-signature SuperBlob of a Mach-O slice, parsed.

``parse_superblob`` reads the blob that ``LC_CODE_SIGNATURE`` points at (bounded, capped):
CodeDirectories (primary and alternates, SHA-1/SHA-256/...), requirements, entitlements (XML
and DER) and the CMS signature, each kept as the bytes it was found as. Verification is
elsewhere in ``signing``: ``codesign_pages`` (code-page hashes, checked while the slice
streams past), ``codesign_cms`` (the CMS signature and cdhashes), ``codesign_slack``
(bytes after the SuperBlob), ``codesign_verify`` (one slice's verdict) and
``macho_signature`` (the dispatcher the analysis calls).
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Mapping
from dataclasses import field

from verifier.errors import MalformedInputError
from verifier.model import CodeDirectoryFacts
from verifier.record import record
from verifier.signing.certs import CODE_SIGNING

# --- constants ----------------------------------------------------------------------------

CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CSMAGIC_REQUIREMENTS = 0xFADE0C01
CSMAGIC_REQUIREMENT = 0xFADE0C00
CSMAGIC_EMBEDDED_ENTITLEMENTS = 0xFADE7171
CSMAGIC_EMBEDDED_DER_ENTITLEMENTS = 0xFADE7172
CSMAGIC_BLOBWRAPPER = 0xFADE0B01

CSSLOT_CODEDIRECTORY = 0
CSSLOT_INFOSLOT = 1
CSSLOT_REQUIREMENTS = 2
CSSLOT_RESOURCEDIR = 3
CSSLOT_APPLICATION = 4
CSSLOT_ENTITLEMENTS = 5
CSSLOT_DER_ENTITLEMENTS = 7
CSSLOT_ALTERNATE_CODEDIRECTORIES = 0x1000
CSSLOT_ALTERNATE_CODEDIRECTORY_MAX = 5
CSSLOT_SIGNATURESLOT = 0x10000

SPECIAL_SLOT_NAMES = {
    1: "info-plist",
    2: "requirements",
    3: "resources",
    4: "application",
    5: "entitlements",
    6: "rep-specific",
    7: "der-entitlements",
}

CS_ADHOC = 0x2
CS_LINKER_SIGNED = 0x20000
CS_RUNTIME = 0x10000
FLAG_NAMES = {
    0x1: "host",
    0x2: "adhoc",
    0x4: "force-hard",
    0x8: "force-kill",
    0x10: "force-expiration",
    0x100: "hard",
    0x200: "kill",
    0x400: "expires",
    0x800: "restrict",
    0x1000: "enforcement",
    0x2000: "library-validation",
    0x10000: "runtime",
    0x20000: "linker-signed",
}

HASH_TYPES: dict[int, tuple[str, int]] = {
    1: ("sha1", 20),
    2: ("sha256", 32),
    3: ("sha256", 20),  # sha256 truncated to 20 bytes
    4: ("sha384", 48),
}
HASH_TYPE_NAMES = {1: "sha1", 2: "sha256", 3: "sha256-truncated", 4: "sha384"}

# caps on untrusted input
MAX_SIGNATURE_SIZE = 32 << 20
MAX_BLOBS = 64
MAX_SPECIAL_SLOTS = 64
MAX_CODE_SLOTS = 1 << 24
MAX_PAGES_REPORTED = 32

OID_CDHASHES_PLIST = "1.2.840.113635.100.9.1"
OID_CDHASHES_2 = "1.2.840.113635.100.9.2"
OID_TIMESTAMP_TOKEN = "1.2.840.113549.1.9.16.2.14"  # noqa: S105
OID_CODE_SIGNING = CODE_SIGNING


# --- the SuperBlob ------------------------------------------------------------------------


@record
class CodeDirectory:
    slot: int
    raw: bytes
    version: int
    flags: int
    hash_offset: int
    identifier: str
    team_id: str | None
    n_special_slots: int
    n_code_slots: int
    code_limit: int
    hash_size: int
    hash_type: int
    platform: int
    page_size: int  # bytes; 0 means one page covering the whole codeLimit
    exec_seg_base: int | None = None
    exec_seg_limit: int | None = None
    exec_seg_flags: int | None = None
    runtime: int | None = None

    @property
    def algorithm(self) -> str:
        return HASH_TYPES[self.hash_type][0]

    def hash(self, data: bytes) -> bytes:
        return hashlib.new(self.algorithm, data).digest()[: self.hash_size]

    @property
    def cdhash_full(self) -> bytes:
        return hashlib.new(self.algorithm, self.raw).digest()

    @property
    def cdhash(self) -> str:
        """The cdhash as codesign prints it (the first 20 bytes, hex)."""
        return self.cdhash_full[:20].hex()

    def code_hash(self, i: int) -> bytes:
        o = self.hash_offset + i * self.hash_size
        return self.raw[o : o + self.hash_size]

    def special_hash(self, n: int) -> bytes | None:
        """The hash in special slot ``n`` (1-based), None when absent or all zeros."""
        if n < 1 or n > self.n_special_slots:
            return None
        o = self.hash_offset - n * self.hash_size
        h = self.raw[o : o + self.hash_size]
        return None if not any(h) else h

    @property
    def flag_names(self) -> list[str]:
        return [name for bit, name in sorted(FLAG_NAMES.items()) if self.flags & bit]

    def facts(self) -> CodeDirectoryFacts:
        return CodeDirectoryFacts(
            slot=self.slot,
            version=self.version,
            flags=self.flags,
            flag_names=tuple(self.flag_names),
            identifier=self.identifier,
            team_id=self.team_id,
            hash_type=HASH_TYPE_NAMES.get(self.hash_type, str(self.hash_type)),
            hash_size=self.hash_size,
            page_size=self.page_size,
            code_limit=self.code_limit,
            n_code_slots=self.n_code_slots,
            n_special_slots=self.n_special_slots,
            cdhash=self.cdhash,
            platform=self.platform,
            runtime=self.runtime,
            special_hashes=tuple(
                (n, h.hex())
                for n in range(1, self.n_special_slots + 1)
                if (h := self.special_hash(n)) is not None
            ),
        )


@record
class EmbeddedSignature:
    size: int
    sha256: str
    code_directories: tuple[CodeDirectory, ...]
    requirements: bytes | None = None
    entitlements: bytes | None = None
    der_entitlements: bytes | None = None
    cms: bytes | None = None  # the CMS blob's payload (without the wrapper header)
    blobs: Mapping[int, bytes] = field(default_factory=dict)  # slot -> whole blob
    # the bytes between the end of the SuperBlob and the end of LC_CODE_SIGNATURE's data:
    # space the signer reserved; zero, or the remnant of an earlier signature, or a payload
    slack: bytes = b""

    @property
    def trailing_nonzero(self) -> int:
        return len(self.slack) - self.slack.count(0)

    @property
    def primary(self) -> CodeDirectory:
        return self.code_directories[0]

    @property
    def best(self) -> CodeDirectory:
        """The strongest CodeDirectory (the one macOS uses)."""
        order = {4: 3, 2: 2, 3: 1, 1: 0}
        return max(self.code_directories, key=lambda c: order.get(c.hash_type, -1))


def _u32(data: bytes, off: int) -> int:
    if off < 0 or off + 4 > len(data):
        raise MalformedInputError(f"code signature truncated at offset {off}")
    v: int = struct.unpack_from(">I", data, off)[0]
    return v


def _cstr(data: bytes, off: int, end: int, what: str) -> str:
    if off <= 0 or off >= end:
        raise MalformedInputError(f"CodeDirectory {what} offset {off} out of bounds")
    z = data.find(b"\0", off, end)
    if z < 0:
        raise MalformedInputError(f"CodeDirectory {what} not terminated")
    return data[off:z].decode("utf-8", "replace")


def parse_code_directory(raw: bytes, slot: int) -> CodeDirectory:
    if len(raw) < 44:
        raise MalformedInputError("CodeDirectory shorter than its header")
    magic, length, version, flags, hash_off, ident_off, nspecial, ncode, limit = struct.unpack_from(
        ">9I", raw, 0
    )
    if magic != CSMAGIC_CODEDIRECTORY:
        raise MalformedInputError(f"slot {slot:#x} is not a CodeDirectory (magic {magic:#x})")
    if length != len(raw):
        raise MalformedInputError("CodeDirectory length disagrees with its blob")
    hash_size, hash_type, platform, page_log2 = raw[36], raw[37], raw[38], raw[39]
    if hash_type not in HASH_TYPES:
        raise MalformedInputError(f"CodeDirectory has unknown hash type {hash_type}")
    if hash_size != HASH_TYPES[hash_type][1]:
        raise MalformedInputError(f"CodeDirectory hash size {hash_size} wrong for its type")
    if nspecial > MAX_SPECIAL_SLOTS:
        raise MalformedInputError(f"CodeDirectory claims {nspecial} special slots")
    if ncode > MAX_CODE_SLOTS:
        raise MalformedInputError(f"CodeDirectory claims {ncode} code slots (nCodeSlots overflow)")
    if page_log2 > 31 or (page_log2 and page_log2 < 9):
        raise MalformedInputError(f"CodeDirectory page size 2^{page_log2} not supported")
    lo = hash_off - nspecial * hash_size
    hi = hash_off + ncode * hash_size
    if hash_off < 44 or lo < 44 or hi > len(raw):
        raise MalformedInputError("CodeDirectory hash slots out of bounds (nCodeSlots overflow)")
    team_id = None
    code_limit = limit
    exec_base = exec_limit = exec_flags = runtime = None
    if version >= 0x20200 and len(raw) >= 52:
        team_off = _u32(raw, 48)
        if team_off:
            team_id = _cstr(raw, team_off, len(raw), "team id")
    if version >= 0x20300 and len(raw) >= 64:
        limit64 = struct.unpack_from(">Q", raw, 56)[0]
        if limit64:
            code_limit = limit64
    if version >= 0x20400 and len(raw) >= 88:
        exec_base, exec_limit, exec_flags = struct.unpack_from(">3Q", raw, 64)
    if version >= 0x20500 and len(raw) >= 92:
        runtime = _u32(raw, 88)
    page_size = (1 << page_log2) if page_log2 else 0
    need = -(-code_limit // page_size) if page_size else int(code_limit > 0)
    if need != ncode:
        raise MalformedInputError(
            f"CodeDirectory nCodeSlots {ncode} does not cover codeLimit {code_limit} ({need} pages)"
        )
    return CodeDirectory(
        slot=slot,
        raw=raw,
        version=version,
        flags=flags,
        hash_offset=hash_off,
        identifier=_cstr(raw, ident_off, len(raw), "identifier"),
        team_id=team_id,
        n_special_slots=nspecial,
        n_code_slots=ncode,
        code_limit=code_limit,
        hash_size=hash_size,
        hash_type=hash_type,
        platform=platform,
        page_size=page_size,
        exec_seg_base=exec_base,
        exec_seg_limit=exec_limit,
        exec_seg_flags=exec_flags,
        runtime=runtime,
    )


def parse_superblob(data: bytes) -> EmbeddedSignature:
    """Parse the embedded signature; raise ``MalformedInputError`` on anything hostile."""
    if len(data) > MAX_SIGNATURE_SIZE:
        raise MalformedInputError(f"code signature of {len(data)} bytes exceeds the cap")
    if len(data) < 12:
        raise MalformedInputError("code signature truncated (no SuperBlob header)")
    magic, length, count = struct.unpack_from(">3I", data, 0)
    if magic != CSMAGIC_EMBEDDED_SIGNATURE:
        raise MalformedInputError(f"code signature has bad SuperBlob magic {magic:#x}")
    if length > len(data) or length < 12:
        raise MalformedInputError(
            f"SuperBlob length {length} exceeds the {len(data)} bytes of LC_CODE_SIGNATURE "
            "(truncated SuperBlob)"
        )
    if count > MAX_BLOBS:
        raise MalformedInputError(f"SuperBlob claims {count} blobs (cap {MAX_BLOBS})")
    if 12 + 8 * count > length:
        raise MalformedInputError("SuperBlob index runs past its end (truncated SuperBlob)")
    entries: list[tuple[int, int, int]] = []
    for i in range(count):
        slot, off = struct.unpack_from(">2I", data, 12 + 8 * i)
        if off < 12 + 8 * count or off + 8 > length:
            raise MalformedInputError(f"SuperBlob entry {slot:#x} at offset {off} out of bounds")
        blen = _u32(data, off + 4)
        if blen < 8 or off + blen > length:
            raise MalformedInputError(f"SuperBlob entry {slot:#x} runs past the SuperBlob")
        entries.append((slot, off, blen))
    ranges = sorted((off, off + blen, slot) for slot, off, blen in entries)
    for (_a0, a1, s0), (b0, _b1, s1) in itertools.pairwise(ranges):
        if b0 < a1:
            raise MalformedInputError(f"SuperBlob entries {s0:#x} and {s1:#x} overlap")
    blobs: dict[int, bytes] = {}
    for slot, off, blen in entries:
        if slot in blobs:
            raise MalformedInputError(f"SuperBlob has slot {slot:#x} twice")
        blobs[slot] = data[off : off + blen]
    cds: list[CodeDirectory] = []
    if CSSLOT_CODEDIRECTORY not in blobs:
        raise MalformedInputError("code signature has no CodeDirectory")
    cds.append(parse_code_directory(blobs[CSSLOT_CODEDIRECTORY], CSSLOT_CODEDIRECTORY))
    for k in range(CSSLOT_ALTERNATE_CODEDIRECTORY_MAX):
        s = CSSLOT_ALTERNATE_CODEDIRECTORIES + k
        if s in blobs:
            cds.append(parse_code_directory(blobs[s], s))

    def payload(slot: int, want: int) -> bytes | None:
        b = blobs.get(slot)
        if b is None:
            return None
        if _u32(b, 0) != want:
            raise MalformedInputError(f"slot {slot:#x} has magic {_u32(b, 0):#x}")
        return b

    cms_blob = payload(CSSLOT_SIGNATURESLOT, CSMAGIC_BLOBWRAPPER)
    return EmbeddedSignature(
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        code_directories=tuple(cds),
        requirements=payload(CSSLOT_REQUIREMENTS, CSMAGIC_REQUIREMENTS),
        entitlements=payload(CSSLOT_ENTITLEMENTS, CSMAGIC_EMBEDDED_ENTITLEMENTS),
        der_entitlements=payload(CSSLOT_DER_ENTITLEMENTS, CSMAGIC_EMBEDDED_DER_ENTITLEMENTS),
        cms=cms_blob[8:] if cms_blob is not None else None,
        blobs=blobs,
        slack=data[length:],
    )


REQUIREMENT_TYPES = {1: "host", 2: "guest", 3: "designated", 4: "library", 5: "plugin"}


def requirement_types(blob: bytes) -> list[str]:
    """The kinds of requirement a requirements set holds (bounded; [] when unreadable)."""
    if len(blob) < 12:
        return []
    count = _u32(blob, 8)
    out: list[str] = []
    for i in range(min(count, 16)):
        if 12 + 8 * i + 8 > len(blob):
            break
        t = _u32(blob, 12 + 8 * i)
        out.append(REQUIREMENT_TYPES.get(t, f"type-{t}"))
    return out

"""macOS code signatures: the embedded-signature SuperBlob of a Mach-O slice.

``parse_superblob`` reads the blob that ``LC_CODE_SIGNATURE`` points at (bounded, capped):
CodeDirectories (primary and alternates, SHA-1/SHA-256/...), requirements, entitlements (XML
and DER) and the CMS signature. ``PageHasher`` is a streaming view that checks every code-page
hash while ``hashing.digest_views`` reads the slice once. ``verify_slice`` then checks the
special slots, the CMS signature over the primary CodeDirectory (messageDigest, the
``cdhashes`` attributes 1.2.840.113635.100.9.1 and .2), the certificate chain to Apple's roots
(package data ``verifier/data/apple``) plus ``--trust-store`` roots, and classifies ad-hoc and
linker-signed signatures (which do not count as ``signed``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import plistlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from verifier.errors import MalformedInputError, UsageError
from verifier.hashing import View
from verifier.model import Anomaly, SignatureFacts, SignatureKind, Signer
from verifier.signing import asn1, cms, timestamp
from verifier.signing.algorithms import DIGEST_OIDS
from verifier.signing.certs import CODE_SIGNING, Cert, iso, name_attributes
from verifier.signing.chain import build_chain, issued_by
from verifier.signing.timestamp import Timestamp
from verifier.signing.trust import Anchor, RootStore, load_pem_roots

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


@dataclass(frozen=True)
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

    def details(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "version": f"0x{self.version:x}",
            "flags": f"0x{self.flags:x}",
            "flag_names": self.flag_names,
            "identifier": self.identifier,
            "team_id": self.team_id,
            "hash_type": HASH_TYPE_NAMES.get(self.hash_type, str(self.hash_type)),
            "hash_size": self.hash_size,
            "page_size": self.page_size,
            "code_limit": self.code_limit,
            "n_code_slots": self.n_code_slots,
            "n_special_slots": self.n_special_slots,
            "cdhash": self.cdhash,
            "platform": self.platform,
            "runtime": f"0x{self.runtime:x}" if self.runtime is not None else None,
            "special_hashes": {
                str(n): h.hex()
                for n in range(1, self.n_special_slots + 1)
                if (h := self.special_hash(n)) is not None
            },
        }


@dataclass(frozen=True)
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


# --- streaming page hashes ----------------------------------------------------------------


class PageHasher(View):
    """Checks one CodeDirectory's code-page hashes while the slice streams past.

    ``base`` is the slice's offset in the blob being streamed; pages cover
    ``[base, base + codeLimit)``. Mismatching page indices are collected in ``bad_pages``.
    """

    def __init__(self, cd: CodeDirectory, base: int, slice_size: int) -> None:
        super().__init__(name=f"pages-{cd.slot:#x}", algorithm=cd.algorithm)
        self.cd = cd
        self.base = base
        self.limit = min(cd.code_limit, slice_size)
        self.past_eof = cd.code_limit > slice_size
        self.page = cd.page_size or max(cd.code_limit, 1)
        self._cur = hashlib.new(cd.algorithm)
        self._filled = 0
        self._index = 0
        self.bad_pages: list[int] = []
        self.checked = 0

    def _finish_page(self) -> None:
        if self._index < self.cd.n_code_slots:
            if self._cur.digest()[: self.cd.hash_size] != self.cd.code_hash(self._index):
                self.bad_pages.append(self._index)
            self.checked += 1
        self._index += 1
        self._filled = 0
        self._cur = hashlib.new(self.cd.algorithm)

    def feed(self, pos: int, chunk: memoryview) -> None:
        lo = max(pos, self.base)
        hi = min(pos + len(chunk), self.base + self.limit)
        while lo < hi:
            take = min(hi - lo, self.page - self._filled)
            self._cur.update(chunk[lo - pos : lo - pos + take])
            self._filled += take
            lo += take
            rel = lo - self.base
            if self._filled == self.page or rel == self.limit:
                self._finish_page()

    def finish(self) -> None:
        """Call after streaming: a partial last page (file shorter than codeLimit) fails."""
        if self._filled:
            self._finish_page()
        while self._index < self.cd.n_code_slots:  # pages past EOF cannot match
            self.bad_pages.append(self._index)
            self._index += 1

    def hexdigest(self) -> str:
        return ""


class PageDigestIndex(View):
    """The digests of every page of a slice, for the page sizes and hashes code signatures
    have used, collected while the slice streams past. Used only when a signature's slack
    holds non-zero bytes: an earlier signature's hash slots are hashes of this very code."""

    KINDS = (("sha256", 4096), ("sha256", 16384), ("sha1", 4096))

    def __init__(self, base: int, limit: int) -> None:
        super().__init__(name="page-digest-index", algorithm="sha256")
        self.base = base
        self.limit = limit
        self.digests: dict[tuple[str, int], set[bytes]] = {k: set() for k in self.KINDS}
        self._cur = {k: hashlib.new(k[0]) for k in self.KINDS}
        self._filled = dict.fromkeys(self.KINDS, 0)

    def feed(self, pos: int, chunk: memoryview) -> None:
        lo = max(pos, self.base)
        hi = min(pos + len(chunk), self.base + self.limit)
        for k in self.KINDS:
            a = lo
            page = k[1]
            while a < hi:
                take = min(hi - a, page - self._filled[k])
                self._cur[k].update(chunk[a - pos : a - pos + take])
                self._filled[k] += take
                a += take
                if self._filled[k] == page or a - self.base == self.limit:
                    self.digests[k].add(self._cur[k].digest())
                    self._cur[k] = hashlib.new(k[0])
                    self._filled[k] = 0

    def hexdigest(self) -> str:
        return ""


MAX_SLACK_EXAMINED = 256 << 10
MAX_REMNANT_SLICE = 512 << 20


def remnant_of_signature(slack: bytes, index: PageDigestIndex | None) -> dict[str, Any] | None:
    """How ``slack`` parses as the remnant of an earlier signature, or None.

    It does when its non-zero bytes are, but for a partial hash at each end, hash slots of an
    earlier CodeDirectory: digests of this slice's own pages (at 4 KiB or 16 KiB, SHA-256 or
    SHA-1). A payload cannot hide there: every byte is a digest of the signed code.
    """
    if index is None or not slack.strip(b"\0"):
        return None
    data = slack[:MAX_SLACK_EXAMINED]
    best: dict[str, Any] | None = None
    for (alg, page), digests in index.digests.items():
        n = hashlib.new(alg).digest_size
        for align in range(n):
            matched = 0
            for i in range(align, len(data) - n + 1, n):
                if data[i : i + n] in digests:
                    matched += 1
            if matched and (best is None or matched > best["matched_hashes"]):
                best = {
                    "kind": "page-hashes",
                    "algorithm": alg,
                    "page_size": page,
                    "alignment": align,
                    "matched_hashes": matched,
                }
    if best is None or best["matched_hashes"] < 4:
        return None
    n = hashlib.new(best["algorithm"]).digest_size
    digests = index.digests[(best["algorithm"], best["page_size"])]
    outside = 0
    for i, b in enumerate(data):
        if not b:
            continue
        start = best["alignment"] + ((i - best["alignment"]) // n) * n
        if start >= 0 and data[start : start + n] in digests and len(data[start : start + n]) == n:
            continue
        outside += 1
    best["unexplained_nonzero_bytes"] = outside
    return best if outside <= 2 * n else None


def slack_anomaly(
    sig: EmbeddedSignature,
    arch: str,
    sig_offset: int | None,
    index: PageDigestIndex | None,
) -> Anomaly | None:
    """``signature-slack`` for non-zero bytes after the SuperBlob (None when all zero)."""
    slack = sig.slack
    nz = [i for i, b in enumerate(slack[:MAX_SLACK_EXAMINED]) if b]
    if not nz and not slack[MAX_SLACK_EXAMINED:].strip(b"\0"):
        return None
    lo = nz[0] if nz else 0
    payload = slack[lo : (nz[-1] + 1) if nz else len(slack)]
    superblob_len = sig.size - len(slack)
    offset = None if sig_offset is None else sig_offset + superblob_len
    remnant = remnant_of_signature(slack, index)
    from verifier.model import Severity

    what = (
        "the remnant of an earlier signature (hashes of this slice's own pages)"
        if remnant
        else "not covered by any signature"
    )
    return Anomaly(
        "signature-slack",
        f"{sig.trailing_nonzero} non-zero bytes in the {len(slack)} bytes {arch}'s code "
        f"signature reserved after its SuperBlob: {what}",
        {
            "arch": arch,
            "ranges": [{"offset": offset, "length": len(slack)}] if offset is not None else [],
            "offset": offset,
            "length": len(slack),
            "nonzero_bytes": sig.trailing_nonzero,
            "entropy": round(_entropy(payload), 3),
            "first_bytes": payload[:32].hex(),
            "remnant": remnant,
        },
        arch=arch,
        region_sha256=hashlib.sha256(slack).hexdigest(),
        severity=Severity.LOW if remnant else None,
    )


def _entropy(data: bytes) -> float:
    if not data:
        return 0.0
    n = len(data)
    counts = [0] * 256
    for b in data:
        counts[b] += 1
    return -sum(c / n * math.log2(c / n) for c in counts if c)


def page_ranges(pages: Sequence[int], page_size: int) -> list[dict[str, int]]:
    """Coalesce page indices into {offset, length} ranges (slice-relative), capped."""
    out: list[dict[str, int]] = []
    for p in sorted(pages):
        off = p * page_size
        if out and out[-1]["offset"] + out[-1]["length"] == off:
            out[-1]["length"] += page_size
        else:
            if len(out) >= MAX_PAGES_REPORTED:
                break
            out.append({"offset": off, "length": page_size})
    return out


# --- trust ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def apple_certificates() -> tuple[Cert, ...]:
    """Apple Root CA(s) and Developer ID intermediates shipped as package data."""
    from verifier.signing.trust import _pem_certs

    certs: list[Cert] = []
    root = resources.files("verifier") / "data" / "apple"
    if not root.is_dir():
        return ()
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".pem"):
            for der in _pem_certs(entry.read_bytes()):
                with contextlib.suppress(ValueError):
                    certs.append(Cert.from_der(der))
    return tuple(certs)


def apple_roots() -> tuple[Cert, ...]:
    """The self-signed certificates among Apple's package data: the trust anchors."""
    return tuple(c for c in apple_certificates() if c.self_issued and issued_by(c, c))


@lru_cache(maxsize=8)
def macho_roots(extra_pem: tuple[str, ...] = ()) -> RootStore:
    """Apple's roots plus ``--trust-store`` roots (unreadable files were refused earlier, by
    the CLI; here they add nothing)."""
    store = RootStore(Anchor(c, "apple") for c in apple_roots())
    if extra_pem:
        with contextlib.suppress(UsageError):
            store = store + load_pem_roots(extra_pem)
    return store


def _roots_for(trust: Any) -> RootStore:
    extra = getattr(trust, "extra_pem", ()) or ()
    return macho_roots(tuple(str(p) for p in extra))


def signer_of(cert: Cert) -> Signer:
    team = None
    with contextlib.suppress(MalformedInputError):
        for rdn in name_attributes(cert.subject_der):
            for oid, _tag, raw in rdn:
                if oid == "2.5.4.11" and team is None:
                    team = raw.decode("utf-8", "replace")
    return Signer(
        subject=cert.subject,
        issuer=cert.issuer,
        serial=cert.serial,
        sha256=cert.sha256,
        team_id=team,
    )


def _chain_entry(cert: Cert) -> dict[str, Any]:
    return {
        "subject": cert.subject,
        "issuer": cert.issuer,
        "sha256": cert.sha256,
        "not_after": iso(cert.not_after),
    }


# --- CMS ----------------------------------------------------------------------------------


@dataclass
class CmsResult:
    ok: bool
    problems: list[str]
    signer_cert: Cert | None = None
    certs: tuple[Cert, ...] = ()
    signing_time: datetime | None = None
    digest_algorithm: str | None = None
    cdhashes_plist: list[str] = field(default_factory=list)
    cdhashes2: dict[str, str] = field(default_factory=dict)
    timestamps: list[Timestamp] = field(default_factory=list)

    @property
    def timestamp_time(self) -> datetime | None:
        """The time a valid timestamp proves (None without one)."""
        return next((t.time for t in self.timestamps if t.valid and t.time), None)


def _cdhashes2(raw: bytes) -> tuple[str, str]:
    doc = asn1.parse(raw)
    k = doc.children(doc.top)
    if len(k) != 2 or k[0].tag != asn1.OID or k[1].tag != asn1.OCTET_STRING:
        raise MalformedInputError("malformed cdhashes2 value")
    oid = asn1.oid(doc.value(k[0]))
    return DIGEST_OIDS.get(oid, oid), doc.value(k[1]).hex()


def verify_cms(
    cms_der: bytes,
    content: bytes,
    cds: Sequence[CodeDirectory],
    roots: RootStore | None = None,
) -> CmsResult:
    """Verify Apple's CMS blob (BER, detached) over the primary CodeDirectory bytes; its
    RFC 3161 timestamps are verified against ``roots`` (Apple's when None)."""
    res = CmsResult(ok=False, problems=[])
    try:
        sd = cms.parse_signed_data(cms_der, ber=True)
    except MalformedInputError as exc:
        res.problems.append(f"CMS blob unreadable: {exc.message}"[:300])
        return res
    res.certs, bad = cms.load_certs(sd.certificates)
    res.problems.extend(bad)
    if len(sd.signer_infos) != 1:
        res.problems.append(f"CMS has {len(sd.signer_infos)} signers (expected 1)")
        return res
    si = sd.signer_infos[0]
    cert = cms.find_signer(si, res.certs)
    if cert is None:
        res.problems.append("CMS signer certificate not included")
        return res
    res.signer_cert = cert
    res.digest_algorithm = si.digest_algorithm
    res.signing_time = cms.signing_time(si)
    errs = cms.check_signed_attributes(si, content, None)
    res.problems.extend(
        "CMS messageDigest does not match the CodeDirectory"
        if e == "messageDigest does not match the signed content"
        else f"CMS {e}"
        for e in errs
    )
    for v in si.signed(OID_CDHASHES_PLIST):
        try:
            doc = asn1.parse(v.raw)
            pl = plistlib.loads(doc.octets(doc.top))
            res.cdhashes_plist = [bytes(h).hex() for h in pl.get("cdhashes", [])]
        except Exception:
            res.problems.append("cdhashes plist attribute unreadable")
    for v in si.signed(OID_CDHASHES_2):
        try:
            name, hexd = _cdhashes2(v.raw)
            res.cdhashes2[name] = hexd
        except MalformedInputError:
            res.problems.append("cdhashes2 attribute unreadable")
    if not errs:
        bad_sig = cms.verify_signer_info(si, cert)
        if bad_sig:
            res.problems.append(f"CMS signature: {bad_sig}")
    # cdhash attributes: each CodeDirectory's cdhash must be listed, in order
    if res.cdhashes_plist:
        mine = [cd.cdhash for cd in cds]
        if res.cdhashes_plist != mine:
            res.problems.append("cdhashes attribute does not match the CodeDirectories")
    for name, hexd in res.cdhashes2.items():
        matches = [cd for cd in cds if cd.algorithm == name]
        if matches and all(cd.cdhash_full.hex() != hexd for cd in matches):
            res.problems.append(f"cdhashes2 {name} does not match the CodeDirectory")
    store = roots if roots is not None else macho_roots()
    for v in si.unsigned(OID_TIMESTAMP_TOKEN):
        res.timestamps.append(timestamp.rfc3161(v.raw, si.signature, res.certs, store, ber=True))
    res.ok = not res.problems
    return res


# --- slice verification --------------------------------------------------------------------


def verify_slice(
    sig: EmbeddedSignature,
    pagers: Sequence[PageHasher],
    *,
    arch: str,
    specials: Mapping[int, bytes] | None = None,
    trust: Any = None,
    at: datetime | None = None,
    verify_signatures: bool = True,
    sig_offset: int | None = None,
    remnant_index: PageDigestIndex | None = None,
) -> tuple[SignatureFacts, tuple[Anomaly, ...]]:
    """Turn a parsed signature plus streamed page results into facts and anomalies.

    ``sig_offset``: the signature's absolute offset in the file (for evidence);
    ``remnant_index``: page digests of the slice, streamed when the signature's slack holds
    non-zero bytes (``PageDigestIndex``), to tell a remnant of an earlier signature.
    """
    specials = dict(specials or {})
    problems: list[str] = []
    evidence: dict[str, Any] = {"arch": arch}
    anomalies: list[Anomaly] = []
    cd_details = [cd.details() for cd in sig.code_directories]
    best = sig.best
    details: dict[str, Any] = {
        "code_directories": cd_details,
        "identifier": best.identifier,
        "team_id": best.team_id,
        "cdhash": best.cdhash,
        "flags": ", ".join(best.flag_names),
        "adhoc": bool(best.flags & CS_ADHOC),
        "linker_signed": bool(best.flags & CS_LINKER_SIGNED),
        "runtime": bool(best.flags & CS_RUNTIME),
        "page_size": best.page_size,
        "code_limit": best.code_limit,
        "hash_types": [HASH_TYPE_NAMES.get(cd.hash_type, "?") for cd in sig.code_directories],
        "signature_size": sig.size,
    }
    # code pages
    bad: dict[str, list[dict[str, int]]] = {}
    pages_checked = 0
    for p in pagers:
        pages_checked += p.checked
        if p.past_eof:
            problems.append(f"codeLimit {p.cd.code_limit} runs past the end of the slice")
        if p.bad_pages:
            bad[HASH_TYPE_NAMES.get(p.cd.hash_type, "?")] = page_ranges(
                p.bad_pages, p.cd.page_size or p.cd.code_limit
            )
            problems.append(
                f"{len(p.bad_pages)} code page(s) of {arch} do not match CodeDirectory "
                f"{p.cd.slot:#x}"
            )
    details["pages_checked"] = pages_checked
    if bad:
        evidence["ranges"] = next(iter(bad.values()))
        evidence["page_mismatches"] = bad
    # special slots
    slot_results: dict[str, str] = {}
    internal = {
        CSSLOT_REQUIREMENTS: sig.requirements,
        CSSLOT_ENTITLEMENTS: sig.entitlements,
        CSSLOT_DER_ENTITLEMENTS: sig.der_entitlements,
    }
    for cd in sig.code_directories:
        for n in range(1, cd.n_special_slots + 1):
            name = SPECIAL_SLOT_NAMES.get(n, f"slot-{n}")
            want = cd.special_hash(n)
            content = internal.get(n) if n in internal else specials.get(n)
            if want is None:
                if content is not None and n in internal:
                    slot_results[name] = "unhashed"
                    problems.append(f"special slot {name} present but not hashed")
                else:
                    slot_results.setdefault(name, "absent")
                continue
            if content is None:
                if n in internal:
                    slot_results[name] = "missing"
                    problems.append(f"special slot {name} hashed but its blob is missing")
                else:
                    slot_results.setdefault(name, "external")
                continue
            ok = cd.hash(content) == want
            if not ok:
                problems.append(f"special slot {name} does not match its content")
                slot_results[name] = "mismatch"
            else:
                slot_results.setdefault(name, "ok")
    details["special_slots"] = slot_results
    if sig.entitlements is not None:
        details["entitlements"] = sig.entitlements[8:].decode("utf-8", "replace")[:4096]
    if sig.der_entitlements is not None:
        details["der_entitlements_size"] = len(sig.der_entitlements) - 8
    if sig.requirements is not None:
        details["requirements_sha256"] = hashlib.sha256(sig.requirements).hexdigest()
        details["requirements"] = requirement_types(sig.requirements)
    # the CMS signature
    signed = False
    signers: tuple[Signer, ...] = ()
    untrusted = ""
    cms_present = sig.cms is not None and len(sig.cms) > 0
    details["cms"] = cms_present
    if cms_present and verify_signatures:
        assert sig.cms is not None
        roots = _roots_for(trust)
        res = verify_cms(sig.cms, sig.primary.raw, sig.code_directories, roots)
        problems.extend(res.problems)
        if res.timestamps:
            details["timestamps"] = [t.to_dict() for t in res.timestamps]
        if res.signer_cert is not None:
            signed = True
            leaf = res.signer_cert
            signers = (signer_of(leaf),)
            details["digest_algorithm"] = res.digest_algorithm
            proven = res.timestamp_time
            when = proven or at or datetime.now(UTC)
            details["time_source"] = "timestamp" if proven else ("--at" if at else "now")
            details["signing_time"] = iso(res.signing_time)
            details["verified_at"] = iso(when)
            pool = [*res.certs, *apple_certificates()]
            chain = build_chain(leaf, pool, roots, CODE_SIGNING, when)
            details["chain"] = [_chain_entry(c) for c in chain.chain]
            if not chain.trusted:
                untrusted = chain.reason
                bad_ts = [t for t in res.timestamps if not t.valid]
                if bad_ts and proven is None:
                    untrusted += f" (timestamp not valid: {bad_ts[0].reason})"
            details["trusted"] = chain.trusted
            details["trust_reason"] = untrusted or (
                f"chains to {details['chain'][-1]['subject']}" if details.get("chain") else ""
            )
            if signers[0].team_id and best.team_id and signers[0].team_id != best.team_id:
                problems.append(
                    f"CodeDirectory team id {best.team_id} differs from the certificate's "
                    f"{signers[0].team_id}"
                )
    elif cms_present:
        signed = True
    slack = slack_anomaly(sig, arch, sig_offset, remnant_index)
    if slack is not None:
        anomalies.append(slack)
    valid: bool | None
    if problems:
        valid = False
        anomalies.append(
            Anomaly(
                "invalid-signature",
                f"{arch}: " + "; ".join(dict.fromkeys(problems)),
                {**evidence, "problems": list(dict.fromkeys(problems))},
                arch=arch,
            )
        )
    elif cms_present and not verify_signatures:
        valid = None
    else:
        valid = True
    if untrusted and signed:
        anomalies.append(
            Anomaly(
                "untrusted-signer",
                f"{arch}: {untrusted}",
                {"arch": arch, "signer_actual": signers[0].subject if signers else None},
                arch=arch,
            )
        )
        details["untrusted"] = untrusted
        if valid is True:
            # as for Authenticode: a signature is valid only when intact AND its chain
            # reaches a trusted root (the untrusted-signer finding says why not)
            valid = False
    facts = SignatureFacts(
        kind=SignatureKind.MACHO,
        signed=signed,
        valid=valid,
        signers=signers,
        anomalies=tuple(a.rule for a in anomalies),
        container_sha256=sig.sha256,
        primary_container_sha256=sig.sha256,
        details=details,
    )
    return facts, tuple(anomalies)


def summarize(
    per_slice: Iterable[SignatureFacts],
) -> SignatureFacts:
    """One SignatureFacts for a file from its slices: valid only if every slice is."""
    items = list(per_slice)
    if not items or all(s.kind == SignatureKind.NONE for s in items):
        return SignatureFacts()
    signers: list[Signer] = []
    for s in items:
        for g in s.signers:
            if g not in signers:
                signers.append(g)
    valids = [s.valid if s.kind != SignatureKind.NONE else None for s in items]
    valid: bool | None
    if any(v is False for v in valids):
        valid = False
    elif all(v is True for v in valids):
        valid = True
    else:
        valid = None  # some slice unsigned or not verified
    containers = [s.container_sha256 or "" for s in items]
    agg = hashlib.sha256("\n".join(containers).encode()).hexdigest()
    return SignatureFacts(
        kind=SignatureKind.MACHO,
        signed=any(s.signed for s in items),
        valid=valid,
        signers=tuple(signers),
        anomalies=tuple(sorted({a for s in items for a in s.anomalies})),
        container_sha256=agg,
        primary_container_sha256=agg,
        details={"slices": len(items)},
    )

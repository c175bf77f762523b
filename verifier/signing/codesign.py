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

import hashlib
import itertools
import plistlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from verifier.errors import MalformedInputError
from verifier.hashing import View
from verifier.model import Anomaly, SignatureFacts, SignatureKind, Signer

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
OID_CODE_SIGNING = "1.3.6.1.5.5.7.3.3"


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
    # the SuperBlob's declared length is shorter than the LC_CODE_SIGNATURE datasize; the
    # rest should be zero padding (non-zero bytes there are 'data-after-signature')
    trailing_nonzero: int = 0

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
    trailing = data[length:]
    return EmbeddedSignature(
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        code_directories=tuple(cds),
        requirements=payload(CSSLOT_REQUIREMENTS, CSMAGIC_REQUIREMENTS),
        entitlements=payload(CSSLOT_ENTITLEMENTS, CSMAGIC_EMBEDDED_ENTITLEMENTS),
        der_entitlements=payload(CSSLOT_DER_ENTITLEMENTS, CSMAGIC_EMBEDDED_DER_ENTITLEMENTS),
        cms=cms_blob[8:] if cms_blob is not None else None,
        blobs=blobs,
        trailing_nonzero=len(trailing) - trailing.count(0),
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
def apple_certificates() -> tuple[x509.Certificate, ...]:
    """Apple Root CA(s) and Developer ID intermediates shipped as package data."""
    certs: list[x509.Certificate] = []
    root = resources.files("verifier") / "data" / "apple"
    if not root.is_dir():
        return ()
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".pem"):
            certs.extend(x509.load_pem_x509_certificates(entry.read_bytes()))
    return tuple(certs)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key signed ``cert`` (SHA-1 allowed: Apple Root CA uses it)."""
    if cert.issuer != issuer.subject:
        return False
    try:  # an algorithm cryptography does not know cannot have signed anything we trust
        halg = cert.signature_hash_algorithm
        if halg is None:
            return False
        pss = cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSASSA_PSS
        _verify_sig(issuer.public_key(), cert.signature, cert.tbs_certificate_bytes, halg, pss)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _is_self_signed(cert: x509.Certificate) -> bool:
    return issued_by(cert, cert)


def apple_roots() -> tuple[x509.Certificate, ...]:
    return tuple(c for c in apple_certificates() if _is_self_signed(c))


def extra_roots_from(trust: Any) -> tuple[x509.Certificate, ...]:
    """``--trust-store`` roots from a TrustConfig-like object (loosely typed on purpose)."""
    if trust is None:
        return ()
    out: list[x509.Certificate] = []
    for attr in ("extra_roots", "macho_roots", "roots_for_macho"):
        val = getattr(trust, attr, None)
        if val:
            for c in val:
                if isinstance(c, x509.Certificate):
                    out.append(c)
    for attr in ("extra_pem", "extra_pem_paths", "trust_store_paths", "pem_paths"):
        val = getattr(trust, attr, None)
        if val:
            for p in val:
                try:
                    with open(p, "rb") as fh:
                        out.extend(x509.load_pem_x509_certificates(fh.read()))
                except (OSError, ValueError):
                    continue
    if isinstance(trust, list | tuple):
        out.extend(c for c in trust if isinstance(c, x509.Certificate))
    return tuple(out)


def cert_name(name: x509.Name) -> str:
    return name.rfc4514_string()


def _chain_entry(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "subject": cert_name(cert.subject),
        "issuer": cert_name(cert.issuer),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def signer_of(cert: x509.Certificate) -> Signer:
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        ou = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
        team = str(ou[0].value) if ou else None
    except ValueError:
        team = None
    return Signer(
        subject=cert_name(cert.subject),
        issuer=cert_name(cert.issuer),
        serial=format(cert.serial_number, "x"),
        sha256=hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(),
        team_id=team,
    )


def _verify_sig(
    pub: Any, signature: bytes, data: bytes, hash_alg: hashes.HashAlgorithm, rsa_pss: bool = False
) -> None:
    if isinstance(pub, rsa.RSAPublicKey):
        pad: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(hash_alg), padding.PSS.AUTO) if rsa_pss else padding.PKCS1v15()
        )
        pub.verify(signature, data, pad, hash_alg)
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(signature, data, ec.ECDSA(hash_alg))
    else:
        raise InvalidSignature("unsupported public key type")


def _valid_at(cert: x509.Certificate, at: datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def build_chain(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime,
    *,
    max_depth: int = 8,
) -> tuple[list[x509.Certificate] | None, str]:
    """Find a path leaf -> ... -> a root in ``roots``; each link's signature and validity
    at ``at`` checked. Returns (chain, "") or (None, reason)."""
    root_ders = {r.fingerprint(hashes.SHA256()) for r in roots}
    candidates = list(pool) + list(roots)
    reason = "no issuer found for the certificate chain"
    chain = [leaf]
    seen = {leaf.fingerprint(hashes.SHA256())}
    cur = leaf
    for _ in range(max_depth):
        if not _valid_at(cur, at):
            return None, f"certificate {cert_name(cur.subject)} not valid at {at.isoformat()}"
        if cur.fingerprint(hashes.SHA256()) in root_ders:
            return chain, ""
        nxt = None
        for cand in candidates:
            if cand.subject != cur.issuer:
                continue
            if not issued_by(cur, cand):
                reason = f"signature of {cert_name(cur.subject)} does not verify"
                continue
            fp = cand.fingerprint(hashes.SHA256())
            # prefer a trusted root with the same subject over an untrusted copy
            if nxt is None or fp in root_ders:
                nxt = cand
        if nxt is None:
            return None, reason
        fp = nxt.fingerprint(hashes.SHA256())
        if fp in seen:
            if fp in root_ders:
                return chain, ""
            return None, f"certificate chain ends at an untrusted root {cert_name(nxt.subject)}"
        seen.add(fp)
        chain.append(nxt)
        cur = nxt
    return None, "certificate chain too deep"


# --- CMS ----------------------------------------------------------------------------------

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass
class CmsResult:
    ok: bool
    problems: list[str]
    signer_cert: x509.Certificate | None = None
    certs: list[x509.Certificate] = field(default_factory=list)
    signing_time: datetime | None = None
    timestamp_time: datetime | None = None
    digest_algorithm: str | None = None
    cdhashes_plist: list[str] = field(default_factory=list)
    cdhashes2: dict[str, str] = field(default_factory=dict)
    timestamp_signer: Signer | None = None
    timestamp_chain: list[x509.Certificate] = field(default_factory=list)


def _cdhash2_spec() -> Any:
    from asn1crypto import algos, core

    class CdHash2(core.Sequence):  # type: ignore[misc]
        _fields = [  # noqa: RUF012 - asn1crypto's declaration style
            ("algorithm", algos.DigestAlgorithmId),
            ("digest", core.OctetString),
        ]

    return CdHash2


_CdHash2 = _cdhash2_spec()


def verify_cms(cms_der: bytes, content: bytes, cds: Sequence[CodeDirectory]) -> CmsResult:
    """Verify Apple's CMS blob (BER, detached) over the primary CodeDirectory bytes."""
    from asn1crypto import cms as acms

    res = CmsResult(ok=False, problems=[])
    try:
        ci = acms.ContentInfo.load(cms_der)
        if ci["content_type"].native != "signed_data":
            res.problems.append("CMS blob is not SignedData")
            return res
        sd = ci["content"]
        infos = list(sd["signer_infos"])
        for c in sd["certificates"] or []:
            if c.name == "certificate":
                res.certs.append(x509.load_der_x509_certificate(c.chosen.dump()))
        if len(infos) != 1:
            res.problems.append(f"CMS has {len(infos)} signers (expected 1)")
            return res
        si = infos[0]
        sid = si["sid"]
        signer_cert = None
        if sid.name == "issuer_and_serial_number":
            serial = sid.chosen["serial_number"].native
            issuer_der = sid.chosen["issuer"].dump(force=True)
            for cert in res.certs:
                from cryptography.hazmat.primitives.serialization import Encoding

                if cert.serial_number == serial and cert.issuer.public_bytes() == issuer_der:
                    signer_cert = cert
                    break
                _ = Encoding
        else:
            ski = sid.chosen.native
            for cert in res.certs:
                try:
                    ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
                except x509.ExtensionNotFound:
                    continue
                if ext.value.digest == ski:
                    signer_cert = cert
        if signer_cert is None:
            res.problems.append("CMS signer certificate not included")
            return res
        res.signer_cert = signer_cert
        dalg = si["digest_algorithm"]["algorithm"].native
        res.digest_algorithm = dalg
        if dalg not in _HASHES:
            res.problems.append(f"CMS digest algorithm {dalg} not supported")
            return res
        halg = _HASHES[dalg]()
        attrs = si["signed_attrs"]
        if not attrs or len(attrs) == 0:
            res.problems.append("CMS has no signed attributes")
            return res
        message_digest = None
        for attr in attrs:
            t = attr["type"].dotted
            vals = attr["values"]
            if t == "1.2.840.113549.1.9.4":
                message_digest = vals[0].native
            elif t == "1.2.840.113549.1.9.5":
                st = vals[0].native
                if isinstance(st, datetime):
                    res.signing_time = st
            elif t == OID_CDHASHES_PLIST:
                try:
                    pl = plistlib.loads(vals[0].native)
                    res.cdhashes_plist = [bytes(h).hex() for h in pl.get("cdhashes", [])]
                except Exception:
                    res.problems.append("cdhashes plist attribute unreadable")
            elif t == OID_CDHASHES_2:
                for v in vals:
                    try:
                        item = _CdHash2.load(v.dump())
                        name = str(item["algorithm"].native)
                        res.cdhashes2[name] = bytes(item["digest"].native).hex()
                    except Exception:
                        res.problems.append("cdhashes2 attribute unreadable")
        want = hashlib.new(dalg, content).digest()
        if message_digest != want:
            res.problems.append("CMS messageDigest does not match the CodeDirectory")
        signed = _attrs_der(attrs)
        sig_alg = si["signature_algorithm"]
        sig_name = sig_alg["algorithm"].native
        try:
            _verify_sig(
                signer_cert.public_key(),
                si["signature"].native,
                signed,
                halg,
                rsa_pss=sig_name == "rsassa_pss",
            )
        except InvalidSignature:
            res.problems.append("CMS signature does not verify with the signer's key")
        # cdhash attributes: each CodeDirectory's cdhash must be listed, in order
        if res.cdhashes_plist:
            mine = [cd.cdhash for cd in cds]
            if res.cdhashes_plist != mine:
                res.problems.append("cdhashes attribute does not match the CodeDirectories")
        for name, hexd in res.cdhashes2.items():
            matches = [cd for cd in cds if cd.algorithm == name]
            if matches and all(cd.cdhash_full.hex() != hexd for cd in matches):
                res.problems.append(f"cdhashes2 {name} does not match the CodeDirectory")
        # timestamp (unsigned attribute): time only; the token's own signature is checked
        unsigned = si["unsigned_attrs"]
        if unsigned and len(unsigned):
            for attr in unsigned:
                if attr["type"].dotted == OID_TIMESTAMP_TOKEN:
                    ts = _timestamp_time(attr["values"][0], si["signature"].native)
                    if ts is not None:
                        res.timestamp_time, tsa_cert, res.timestamp_chain = ts
                        res.timestamp_signer = signer_of(tsa_cert)
        res.ok = not res.problems
        return res
    except MalformedInputError:
        raise
    except Exception as exc:
        res.problems.append(f"CMS blob unreadable: {type(exc).__name__}: {exc}"[:300])
        res.ok = False
        return res


def _attrs_der(attrs: Any) -> bytes:
    """The signed attributes as the SET OF the signature covers (DER, universal tag)."""
    raw: bytes = attrs.dump()
    if len(raw) > 1 and raw[1] == 0x80:  # indefinite length: not DER, re-encode
        raw = attrs.dump(force=True)
    return b"\x31" + raw[1:]


def _timestamp_time(
    token: Any, signature: bytes
) -> tuple[datetime, x509.Certificate, list[x509.Certificate]] | None:
    """genTime of an RFC 3161 token over ``signature``, if the token verifies."""
    from asn1crypto import tsp

    try:
        sd = token["content"]
        econtent = sd["encap_content_info"]["content"]
        content = bytes(econtent)
        tst = tsp.TSTInfo.load(content)
        imprint = tst["message_imprint"]
        alg = imprint["hash_algorithm"]["algorithm"].native
        if hashlib.new(alg, signature).digest() != imprint["hashed_message"].native:
            return None
        certs = [
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in sd["certificates"] or []
            if c.name == "certificate"
        ]
        si = sd["signer_infos"][0]
        signer = None
        if si["sid"].name == "issuer_and_serial_number":
            serial = si["sid"].chosen["serial_number"].native
            for c in certs:
                if c.serial_number == serial:
                    signer = c
        if signer is None:
            return None
        dalg = si["digest_algorithm"]["algorithm"].native
        attrs = si["signed_attrs"]
        md = None
        for a in attrs:
            if a["type"].dotted == "1.2.840.113549.1.9.4":
                md = a["values"][0].native
        if md != hashlib.new(dalg, content).digest():
            return None
        signed = _attrs_der(attrs)
        _verify_sig(signer.public_key(), si["signature"].native, signed, _HASHES[dalg]())
        gen: datetime = tst["gen_time"].native
        return gen, signer, certs
    except Exception:
        return None


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
) -> tuple[SignatureFacts, tuple[Anomaly, ...]]:
    """Turn a parsed signature plus streamed page results into facts and anomalies."""
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
        res = verify_cms(sig.cms, sig.primary.raw, sig.code_directories)
        problems.extend(res.problems)
        if res.signer_cert is not None:
            signed = True
            leaf = res.signer_cert
            signers = (signer_of(leaf),)
            when = at or datetime.now(UTC)
            details["digest_algorithm"] = res.digest_algorithm
            if res.timestamp_time is not None:
                # the timestamp proves the signing time only if its TSA chains to a root
                tsa = res.timestamp_chain
                ts_leaf = next(
                    (
                        c
                        for c in tsa
                        if res.timestamp_signer and signer_of(c) == res.timestamp_signer
                    ),
                    None,
                )
                ts_ok = False
                if ts_leaf is not None:
                    roots_ts = [*apple_roots(), *extra_roots_from(trust)]
                    ts_chain, _why = build_chain(ts_leaf, tsa, roots_ts, res.timestamp_time)
                    ts_ok = ts_chain is not None
                if ts_ok and at is None:
                    when = res.timestamp_time
                details["timestamps"] = [
                    {
                        "kind": "rfc3161",
                        "time": res.timestamp_time.isoformat(),
                        "valid": ts_ok,
                        "signer": res.timestamp_signer.subject if res.timestamp_signer else None,
                    }
                ]
            details["signing_time"] = res.signing_time.isoformat() if res.signing_time else None
            details["verified_at"] = when.isoformat()
            roots = [*apple_roots(), *extra_roots_from(trust)]
            pool = [*res.certs, *apple_certificates()]
            chain, reason = build_chain(leaf, pool, roots, when)
            if chain is None:
                untrusted = reason
            else:
                details["chain"] = [_chain_entry(c) for c in chain]
                try:
                    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
                    if x509.ObjectIdentifier(OID_CODE_SIGNING) not in eku:
                        untrusted = "signer certificate is not for code signing"
                except x509.ExtensionNotFound:
                    pass
            details["trusted"] = not untrusted
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
    if sig.trailing_nonzero:
        anomalies.append(
            Anomaly(
                "data-after-signature",
                f"{sig.trailing_nonzero} non-zero bytes after the SuperBlob in {arch}",
                {"arch": arch},
                arch=arch,
            )
        )
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

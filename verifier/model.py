"""Frozen dataclasses shared by every stage (docs/contract.md "Data flow").

    unpack    -> Inventory(FileEntry...)          (FileEntry.facts from analysis.analyze)
    upstream  -> Reference(Component, FileEntry...)  (same shape; blob may be None)
    compare   -> FileResult per path
    policy    -> Finding per problem
    report    -> Report -> text | json | sarif | html

Everything that ends up in the JSON report has ``to_dict``; data that is also read back
(reference inventories, cache records) has ``from_dict``, which accepts exactly what the
writer writes: a missing required key, a wrong type, an unknown key or enum value is a
``SchemaError`` naming the key path (``verifier.jsonread``), never a default or a coercion.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import field, fields, replace
from enum import StrEnum
from operator import attrgetter
from typing import Any

from verifier.errors import SchemaError
from verifier.jsonread import Fields, is_lower_hex64
from verifier.record import record

JSON = dict[str, Any]

# The empty mapping every defaulted ``markers``/``evidence`` field shares: a fresh ``{}`` per
# object is 64 bytes for each of 100,000 files, twice. Never written to: those fields are
# read-only ``Mapping``s (mypy rejects a write), and the code builds a new dict to change one.
_EMPTY: Mapping[str, Any] = {}


def _empty() -> Mapping[str, Any]:
    return _EMPTY


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for critical ... 4 for info (sort key: most severe first)."""
        return _SEVERITY_ORDER.index(self)

    def at_least(self, threshold: Severity) -> bool:
        return self.rank <= threshold.rank


_SEVERITY_ORDER = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO]


class Status(StrEnum):
    IDENTICAL = "identical"
    IDENTICAL_EXCEPT_SIGNATURE = "identical-except-signature"
    RESOURCES_ONLY = "resources-only"
    DIVERGENT = "divergent"
    MISSING = "missing"
    UNEXPECTED = "unexpected"
    OWN = "own"


class FileFormat(StrEnum):
    PE = "pe"
    MACHO = "macho"
    ELF = "elf"
    ASAR = "asar"
    DATA = "data"

    @property
    def is_code(self) -> bool:
        return self in (FileFormat.PE, FileFormat.MACHO, FileFormat.ELF)


class SignatureKind(StrEnum):
    AUTHENTICODE = "authenticode"
    MACHO = "macho"
    NONE = "none"


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


# --- bytes ---------------------------------------------------------------------------------


@record(slots=True)
class Blob:
    """A byte range of a file on disk: a whole file, or a member stored in place (asar)."""

    path: str
    offset: int
    size: int

    @classmethod
    def of_file(cls, path: str | os.PathLike[str]) -> Blob:
        p = os.fspath(path)
        return cls(p, 0, os.path.getsize(p))

    def read(self, offset: int = 0, length: int | None = None) -> bytes:
        """Read ``length`` bytes at ``offset`` within the blob (clamped to the blob)."""
        if offset < 0 or offset > self.size:
            return b""
        n = self.size - offset if length is None else max(0, min(length, self.size - offset))
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + offset)
            return fh.read(n)

    def chunks(self, chunk: int = 1 << 20) -> Iterator[bytes]:
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            left = self.size
            while left > 0:
                data = fh.read(min(chunk, left))
                if not data:
                    return
                left -= len(data)
                yield data


# --- signatures ----------------------------------------------------------------------------


@record(slots=True)
class Signer:
    subject: str
    issuer: str
    serial: str
    sha256: str  # sha256 of the certificate's DER: the "thumbprint" everywhere in biv
    team_id: str | None = None

    def to_dict(self) -> JSON:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "sha256": self.sha256,
            "team_id": self.team_id,
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "") -> Signer:
        return cls._read(Fields(d, where))

    @classmethod
    def _read(cls, f: Fields) -> Signer:
        f.known(_SIGNER_KEYS)
        return cls(
            subject=f.text("subject"),
            issuer=f.text("issuer"),
            serial=f.text("serial"),
            sha256=f.sha256("sha256"),
            team_id=f.opt_text("team_id"),
        )


@record(slots=True)
class Anomaly:
    """A problem a parser or signature check found in one file; policy turns it into a Finding."""

    rule: str
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    arch: str | None = None
    # sha256 of the bytes the anomaly is about (the padding, the slack, the trailing data, the
    # unauthenticated attributes...): content, not offsets, decides whether upstream's file has
    # the same anomaly (docs/contract.md "Judge the change"). None when the anomaly
    # is not about a region of bytes.
    region_sha256: str | None = None
    # the finding's severity when the rule's default does not fit this case (e.g.
    # signature-slack that is the remnant of an earlier signature: low); None: the default
    severity: Severity | None = None

    def to_ref_dict(self) -> JSON:
        """What a reference inventory keeps of an upstream file's anomaly: enough to tell
        whether a shipped file's anomaly is inherited, without the upstream bytes."""
        return {
            "rule": self.rule,
            "arch": self.arch,
            "region_sha256": self.region_sha256,
            "message": self.message,
        }

    @classmethod
    def from_ref_dict(cls, d: object, where: str = "") -> Anomaly:
        f = Fields(d, where)
        f.known(_ANOMALY_KEYS)
        return cls._read(f)

    @classmethod
    def _read(cls, f: Fields) -> Anomaly:
        message = f.opt_text("message")
        return cls(
            rule=f.text("rule"),
            message=message or "",
            arch=f.opt_text("arch"),
            region_sha256=f.opt_sha256("region_sha256"),
        )


_ANOMALY_KEYS = frozenset(("rule", "arch", "region_sha256", "message"))


# --- signature details ---------------------------------------------------------------------
# What signature verification found beyond the verdict (``SignatureFacts.details``): chains,
# timestamps, each signature of an Authenticode table, each CodeDirectory of a Mach-O slice.
# ``to_dict`` gives the JSON ``biv inspect`` prints (``signature.details``); times are ISO 8601
# strings in UTC ("...Z"), as there.


@record(slots=True)
class CertSummary:
    """A certificate as reports show it."""

    subject: str
    issuer: str
    serial: str
    sha256: str
    not_before: str | None
    not_after: str | None

    def to_dict(self) -> JSON:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "sha256": self.sha256,
            "not_before": self.not_before,
            "not_after": self.not_after,
        }

    def chain_entry(self) -> JSON:
        """The shorter form a Mach-O signature's chain lists."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "sha256": self.sha256,
            "not_after": self.not_after,
        }


@record(slots=True)
class ChainFacts:
    """A certificate path the chain engine built (or the best it found) and its verdict."""

    trusted: bool
    reason: str
    eku: str
    at: str | None
    anchor_source: str | None
    chain: tuple[CertSummary, ...] = ()  # leaf first

    def to_dict(self) -> JSON:
        return {
            "trusted": self.trusted,
            "reason": self.reason,
            "eku": self.eku,
            "at": self.at,
            "anchor_source": self.anchor_source,
            "chain": [c.to_dict() for c in self.chain],
        }


@record(slots=True)
class TimestampFacts:
    """A legacy countersignature or an RFC 3161 token, verified."""

    kind: str  # "legacy" | "rfc3161"
    time: str | None
    signer: CertSummary | None
    valid: bool
    reason: str
    chain: ChainFacts | None = None

    def to_dict(self) -> JSON:
        return {
            "kind": self.kind,
            "time": self.time,
            "signer": self.signer.to_dict() if self.signer else None,
            "valid": self.valid,
            "reason": self.reason,
            "chain": self.chain.to_dict() if self.chain else None,
        }


@record(slots=True)
class CertTableEntry:
    """One WIN_CERTIFICATE of a PE certificate table (absolute file offsets)."""

    offset: int
    length: int  # dwLength
    revision: int
    cert_type: int
    der_offset: int
    der_length: int | None  # None when the PKCS#7 could not be delimited
    slack_offset: int
    slack_length: int
    alignment_allowed: int
    clean: bool  # the slack is zero bytes, no more than 8-byte alignment needs

    def to_dict(self) -> JSON:
        return {
            "offset": self.offset,
            "length": self.length,
            "revision": f"0x{self.revision:04x}",
            "type": f"0x{self.cert_type:04x}",
            "der_offset": self.der_offset,
            "der_length": self.der_length,
            "slack_offset": self.slack_offset,
            "slack_length": self.slack_length,
            "alignment_allowed": self.alignment_allowed,
        }

    def padding(self) -> JSON:
        """The bytes after the entry's PKCS#7, and whether they are clean alignment."""
        return {
            "offset": self.slack_offset,
            "length": self.slack_length,
            "alignment_allowed": self.alignment_allowed,
            "clean": self.clean,
        }


@record(slots=True)
class TrustVerdict:
    """Whether an Authenticode signer's chain reaches a trusted root, and why (not)."""

    ok: bool
    reason: str
    anchor: str | None

    def to_dict(self) -> JSON:
        return {"ok": self.ok, "reason": self.reason, "anchor": self.anchor}


@record(slots=True)
class SignerCheck:
    """What was checked of an Authenticode PKCS#7 that parsed."""

    signed_digest: str
    computed_digest: str | None
    digest_ok: bool
    signer: CertSummary | None
    signature_ok: bool
    unauthenticated_attributes: tuple[tuple[str, int], ...]  # (oid, size)
    timestamps: tuple[TimestampFacts, ...]
    verified_at: str | None
    time_source: str
    chain: tuple[CertSummary, ...] | None = None  # None when there is no signer certificate
    trusted: TrustVerdict | None = None


@record(slots=True)
class AuthenticodeSignatureDetails:
    """One PKCS#7 of a certificate table: the primary signature or a nested one."""

    role: str  # "primary", "nested 1", "nested 1.1"...
    digest_algorithm: str | None
    errors: tuple[str, ...]
    valid: bool
    check: SignerCheck | None = None  # None when the PKCS#7 did not parse
    crashed: bool = False  # verification failed unexpectedly: only ``errors`` is known

    def to_dict(self) -> JSON:
        if self.crashed:
            return {"errors": list(self.errors)}
        d: JSON = {"role": self.role, "digest_algorithm": self.digest_algorithm}
        c = self.check
        if c is not None:
            d["signed_digest"] = c.signed_digest
            d["computed_digest"] = c.computed_digest
            d["digest_ok"] = c.digest_ok
            if c.signer is not None:
                d["signer"] = c.signer.to_dict()
            d["signature_ok"] = c.signature_ok
            d["unauthenticated_attributes"] = [
                {"oid": o, "size": n} for o, n in c.unauthenticated_attributes
            ]
            d["timestamps"] = [t.to_dict() for t in c.timestamps]
            d["verified_at"] = c.verified_at
            d["time_source"] = c.time_source
            if c.chain is not None and c.trusted is not None:
                d["chain"] = [x.to_dict() for x in c.chain]
                d["trusted"] = c.trusted.to_dict()
        d["errors"] = list(self.errors)
        d["valid"] = self.valid
        return d


@record(slots=True)
class AuthenticodeDetails:
    """An Authenticode certificate table (PE or MSI) and each signature in it."""

    table_offset: int
    table_size: int
    entries: tuple[CertTableEntry, ...]
    signatures: tuple[AuthenticodeSignatureDetails, ...]  # the primary first

    @property
    def timestamps(self) -> tuple[TimestampFacts, ...]:
        """The primary signature's timestamps."""
        c = self.signatures[0].check if self.signatures else None
        return c.timestamps if c is not None else ()

    def to_dict(self) -> JSON:
        d: JSON = {
            "table": {"offset": self.table_offset, "size": self.table_size},
            "entries": [e.to_dict() for e in self.entries],
            "signatures": [s.to_dict() for s in self.signatures],
            "padding": [e.padding() for e in self.entries],
        }
        if self.signatures:
            # the primary signature's timestamps and judging time, where every consumer of
            # the facts (distrust lists, reports) finds them
            c = self.signatures[0].check
            d["timestamps"] = [t.to_dict() for t in self.timestamps]
            d["verified_at"] = c.verified_at if c is not None else None
            d["time_source"] = c.time_source if c is not None else None
        return d


@record(slots=True)
class CodeDirectoryFacts:
    """One CodeDirectory of a Mach-O code signature."""

    slot: int
    version: int
    flags: int
    flag_names: tuple[str, ...]
    identifier: str
    team_id: str | None
    hash_type: str  # "sha1", "sha256", "sha256-truncated", "sha384"
    hash_size: int
    page_size: int
    code_limit: int
    n_code_slots: int
    n_special_slots: int
    cdhash: str
    platform: int
    runtime: int | None
    special_hashes: tuple[tuple[int, str], ...]  # (slot, hex) for the slots with a hash

    def to_dict(self) -> JSON:
        return {
            "slot": self.slot,
            "version": f"0x{self.version:x}",
            "flags": f"0x{self.flags:x}",
            "flag_names": list(self.flag_names),
            "identifier": self.identifier,
            "team_id": self.team_id,
            "hash_type": self.hash_type,
            "hash_size": self.hash_size,
            "page_size": self.page_size,
            "code_limit": self.code_limit,
            "n_code_slots": self.n_code_slots,
            "n_special_slots": self.n_special_slots,
            "cdhash": self.cdhash,
            "platform": self.platform,
            "runtime": f"0x{self.runtime:x}" if self.runtime is not None else None,
            "special_hashes": {str(n): h for n, h in self.special_hashes},
        }


@record(slots=True)
class MachOSigner:
    """Who signed a Mach-O slice's CMS signature, when, and whether the chain is trusted."""

    digest_algorithm: str | None
    time_source: str  # "timestamp", "--at" or "now"
    signing_time: str | None
    verified_at: str | None
    chain: tuple[CertSummary, ...]
    trusted: bool
    trust_reason: str


@record(slots=True)
class MachOSignatureDetails:
    """A Mach-O slice's embedded code signature, verified."""

    code_directories: tuple[CodeDirectoryFacts, ...]
    identifier: str
    team_id: str | None
    cdhash: str
    flags: str
    adhoc: bool
    linker_signed: bool
    runtime: bool
    page_size: int
    code_limit: int
    hash_types: tuple[str, ...]
    signature_size: int
    pages_checked: int
    special_slots: tuple[tuple[str, str], ...]  # (slot name, "ok"/"mismatch"/...) in order
    entitlements: str | None = None
    der_entitlements_size: int | None = None
    requirements_sha256: str | None = None
    requirements: tuple[str, ...] = ()
    cms: bool = False
    timestamps: tuple[TimestampFacts, ...] = ()
    signer: MachOSigner | None = None
    untrusted: str | None = None

    def to_dict(self) -> JSON:
        d: JSON = {
            "code_directories": [cd.to_dict() for cd in self.code_directories],
            "identifier": self.identifier,
            "team_id": self.team_id,
            "cdhash": self.cdhash,
            "flags": self.flags,
            "adhoc": self.adhoc,
            "linker_signed": self.linker_signed,
            "runtime": self.runtime,
            "page_size": self.page_size,
            "code_limit": self.code_limit,
            "hash_types": list(self.hash_types),
            "signature_size": self.signature_size,
            "pages_checked": self.pages_checked,
            "special_slots": dict(self.special_slots),
        }
        if self.entitlements is not None:
            d["entitlements"] = self.entitlements
        if self.der_entitlements_size is not None:
            d["der_entitlements_size"] = self.der_entitlements_size
        if self.requirements_sha256 is not None:
            d["requirements_sha256"] = self.requirements_sha256
            d["requirements"] = list(self.requirements)
        d["cms"] = self.cms
        if self.timestamps:
            d["timestamps"] = [t.to_dict() for t in self.timestamps]
        s = self.signer
        if s is not None:
            d["digest_algorithm"] = s.digest_algorithm
            d["time_source"] = s.time_source
            d["signing_time"] = s.signing_time
            d["verified_at"] = s.verified_at
            d["chain"] = [c.chain_entry() for c in s.chain]
            d["trusted"] = s.trusted
            d["trust_reason"] = s.trust_reason
        if self.untrusted is not None:
            d["untrusted"] = self.untrusted
        return d


@record(slots=True)
class MachOSignatureError:
    """A Mach-O slice's code signature that could not be parsed."""

    error: str

    def to_dict(self) -> JSON:
        return {"error": self.error}


@record(slots=True)
class MachOFileDetails:
    """A Mach-O file's signature: how many slices were judged and each one's details."""

    slices: int
    per_slice: tuple[tuple[str, MachOSignatureDetails | MachOSignatureError | None], ...]

    def to_dict(self) -> JSON:
        per: JSON = {}
        for arch, d in self.per_slice:
            per[arch] = d.to_dict() if d is not None else {}
        return {"slices": self.slices, "per_slice": per}


SignatureDetails = (
    AuthenticodeDetails | MachOSignatureDetails | MachOSignatureError | MachOFileDetails
)


@record(slots=True)
class SignatureFacts:
    kind: SignatureKind = SignatureKind.NONE
    signed: bool = False
    valid: bool | None = None  # None until verified cryptographically
    signers: tuple[Signer, ...] = ()
    anomalies: tuple[str, ...] = ()  # rule ids, mirrored from BinaryFacts.anomalies
    # sha256 of the whole certificate table / signature blob (None when unsigned)
    container_sha256: str | None = None
    # sha256 of the container with a vendor-appended nested signature set aside
    # (equal to container_sha256 when there is no nested signature)
    primary_container_sha256: str | None = None
    # signers of nested (appended) signatures, outermost first
    nested_signers: tuple[Signer, ...] = ()
    details: SignatureDetails | None = None  # chain, timestamps, digests...
    # sha256 of each nested signature's PKCS#7 DER, sorted (Authenticode); with
    # primary_container_sha256 it tells "vendor appended a nested signature" (upstream's
    # nested digests all still present) from "upstream's nested signature was changed"
    nested_sha256: tuple[str, ...] = ()

    def to_dict(self) -> JSON:
        if self is UNSIGNED:  # most files: the same dict, made without sorting anything
            return {"kind": "none", "signed": False, "valid": None, "signers": [], "anomalies": []}
        return {
            "kind": self.kind.value,
            "signed": self.signed,
            "valid": self.valid,
            "signers": [s.to_dict() for s in self.signers],
            "anomalies": sorted(set(self.anomalies)),
        }

    def details_dict(self) -> JSON:
        """``details`` as ``biv inspect`` prints them ({} when there are none)."""
        return self.details.to_dict() if self.details is not None else {}

    def to_ref_dict(self) -> JSON:
        d = self.to_dict()
        d["container_sha256"] = self.container_sha256
        d["primary_container_sha256"] = self.primary_container_sha256
        d["nested_signers"] = [s.to_dict() for s in self.nested_signers]
        d["nested_sha256"] = list(self.nested_sha256)
        return d

    @classmethod
    def from_dict(cls, d: object, where: str = "") -> SignatureFacts:
        return cls._read(Fields(d, where))

    @classmethod
    def _read(cls, f: Fields) -> SignatureFacts:
        f.known(_SIGNATURE_FACTS_KEYS)
        return cls(
            kind=f.enum("kind", SignatureKind) if "kind" in f else SignatureKind.NONE,
            signed=f.flag("signed", False),
            valid=f.opt_flag("valid"),
            signers=tuple(Signer._read(s) for s in f.objects("signers")),
            anomalies=f.str_list("anomalies"),
            container_sha256=f.opt_sha256("container_sha256"),
            primary_container_sha256=f.opt_sha256("primary_container_sha256"),
            nested_signers=tuple(Signer._read(s) for s in f.objects("nested_signers")),
            nested_sha256=f.sha256_list("nested_sha256"),
        )


UNSIGNED = SignatureFacts()


# --- binary facts --------------------------------------------------------------------------


@record(slots=True)
class SectionDigest:
    """A PE section or a Mach-O section/segment, hashed by content (not file offset)."""

    name: str
    size: int
    sha256: str  # over the raw bytes (SizeOfRawData for PE)
    executable: bool = False
    # sha256 with Electron fuse bytes zeroed (equal to sha256 when the section has none)
    masked_sha256: str | None = None

    def to_dict(self) -> JSON:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "executable": self.executable,
            "masked_sha256": self.masked_sha256 or self.sha256,
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "") -> SectionDigest:
        return cls._read(Fields(d, where))

    @classmethod
    def _read(cls, f: Fields) -> SectionDigest:
        f.known(_SECTION_DIGEST_KEYS)
        return cls(
            name=f.text("name"),
            size=f.number("size"),
            sha256=f.sha256("sha256"),
            executable=f.flag("executable", False),
            masked_sha256=f.opt_sha256("masked_sha256"),
        )


@record(slots=True)
class FuseWire:
    """Electron's fuse wire: sentinel, version byte, length byte, then one byte per fuse."""

    offset: int  # file offset (within the slice for Mach-O) of the first fuse byte
    version: int
    values: str  # the fuse bytes as text: '0' off, '1' on, 'r' removed, '?' other

    def to_dict(self) -> JSON:
        return {"offset": self.offset, "version": self.version, "values": self.values}

    @classmethod
    def from_dict(cls, d: object, where: str = "") -> FuseWire:
        return cls._read(Fields(d, where))

    @classmethod
    def _read(cls, f: Fields) -> FuseWire:
        f.known(_FUSE_WIRE_KEYS)
        return cls(f.number("offset"), f.number("version"), f.text("values"))


@record(slots=True)
class CodeShape:
    """What a person triaging a divergent binary wants compared (per PE file or slice)."""

    entry_point: int | None = None
    imports_sha256: str | None = None
    exports_sha256: str | None = None
    tls_callbacks: tuple[int, ...] = ()
    executable_sections: tuple[str, ...] = ()

    def to_dict(self) -> JSON:
        return {
            "entry_point": self.entry_point,
            "imports_sha256": self.imports_sha256,
            "exports_sha256": self.exports_sha256,
            "tls_callbacks": list(self.tls_callbacks),
            "executable_sections": list(self.executable_sections),
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "") -> CodeShape:
        return cls._read(Fields(d, where))

    @classmethod
    def _read(cls, f: Fields) -> CodeShape:
        f.known(_CODE_SHAPE_KEYS)
        return cls(
            entry_point=f.opt_number("entry_point"),
            imports_sha256=f.opt_sha256("imports_sha256"),
            exports_sha256=f.opt_sha256("exports_sha256"),
            tls_callbacks=f.int_list("tls_callbacks"),
            executable_sections=f.str_list("executable_sections"),
        )


@record(slots=True)
class SliceFacts:
    """One architecture of a Mach-O file (a thin file has exactly one slice)."""

    arch: str
    offset: int
    size: int
    sha256: str
    normalized_sha256: str
    sections: tuple[SectionDigest, ...] = ()
    fuses: FuseWire | None = None
    shape: CodeShape = CodeShape()
    signature: SignatureFacts = UNSIGNED

    def to_ref_dict(self) -> JSON:
        return {
            "arch": self.arch,
            "offset": self.offset,
            "size": self.size,
            "sha256": self.sha256,
            "normalized_sha256": self.normalized_sha256,
            "sections": [s.to_dict() for s in self.sections],
            "fuses": self.fuses.to_dict() if self.fuses else None,
            "shape": self.shape.to_dict(),
            "signature": self.signature.to_ref_dict(),
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "") -> SliceFacts:
        return cls._read(Fields(d, where))

    @classmethod
    def _read(cls, f: Fields) -> SliceFacts:
        f.known(_SLICE_FACTS_KEYS)
        fuses, shape, signature = f.opt_obj("fuses"), f.opt_obj("shape"), f.opt_obj("signature")
        return cls(
            arch=f.text("arch"),
            offset=f.opt_number("offset") or 0,
            size=f.opt_number("size") or 0,
            sha256=f.sha256("sha256"),
            normalized_sha256=f.sha256("normalized_sha256"),
            sections=tuple(SectionDigest._read(s) for s in f.objects("sections")),
            fuses=FuseWire._read(fuses) if fuses is not None else None,
            shape=_shape(shape),
            signature=_signature(signature),
        )


@record(slots=True)
class BinaryFacts:
    """What ``analysis.analyze`` learns about one file in one pass."""

    format: FileFormat = FileFormat.DATA
    archs: tuple[str, ...] = ()
    # sha256 of the bytes that remain once signatures are removed (docs/contract.md), file order
    normalized_sha256: str | None = None
    # PE: headers with the rcedit-movable fields zeroed, for the resources-only test
    header_sha256: str | None = None
    sections: tuple[SectionDigest, ...] = ()
    # PE: sha256 of data after the last section, certificate table and alignment removed
    overlay_sha256: str | None = None
    fuses: FuseWire | None = None
    shape: CodeShape = CodeShape()
    slices: tuple[SliceFacts, ...] = ()
    signature: SignatureFacts = UNSIGNED
    anomalies: tuple[Anomaly, ...] = ()
    # strings of interest found while scanning (e.g. "Electron/28.1.0"); small, bounded
    markers: Mapping[str, str] = field(default_factory=_empty)

    def to_ref_dict(self) -> JSON:
        return {
            "format": self.format.value,
            "archs": list(self.archs),
            "normalized_sha256": self.normalized_sha256,
            "header_sha256": self.header_sha256,
            "sections": [s.to_dict() for s in self.sections],
            "overlay_sha256": self.overlay_sha256,
            "fuses": self.fuses.to_dict() if self.fuses else None,
            "shape": self.shape.to_dict(),
            "slices": [s.to_ref_dict() for s in self.slices],
            "signature": self.signature.to_ref_dict(),
            "markers": dict(self.markers),
            "anomalies": [a.to_ref_dict() for a in self.anomalies],
        }

    @classmethod
    def from_dict(cls, d: object, where: str = "") -> BinaryFacts:
        f = Fields(d, where)
        f.known(_FACTS_KEYS)
        return cls._read(f)

    @classmethod
    def _read(cls, f: Fields, sha256: str | None = None) -> BinaryFacts:
        """The facts of a reference file (its other keys are the caller's to check).

        ``sha256``: the file's digest; a normalised digest equal to it shares its string
        (a data file's always does: one string fewer per file of a large inventory)."""
        fuses, shape, signature = f.opt_obj("fuses"), f.opt_obj("shape"), f.opt_obj("signature")
        anomalies = []
        for a in f.objects("anomalies"):
            a.known(_ANOMALY_KEYS)
            anomalies.append(Anomaly._read(a))
        normalized = f.opt_sha256("normalized_sha256")
        return cls(
            format=f.enum("format", FileFormat),
            archs=f.str_list("archs"),
            normalized_sha256=sha256 if normalized == sha256 else normalized,
            header_sha256=f.opt_sha256("header_sha256"),
            sections=tuple(SectionDigest._read(s) for s in f.objects("sections")),
            overlay_sha256=f.opt_sha256("overlay_sha256"),
            fuses=FuseWire._read(fuses) if fuses is not None else None,
            shape=_shape(shape),
            slices=tuple(SliceFacts._read(s) for s in f.objects("slices")),
            signature=_signature(signature),
            anomalies=tuple(anomalies),
            markers=f.str_map("markers") or _EMPTY,
        )


_FACTS_KEYS = frozenset(
    (
        "format",
        "archs",
        "normalized_sha256",
        "header_sha256",
        "sections",
        "overlay_sha256",
        "fuses",
        "shape",
        "slices",
        "signature",
        "markers",
        "anomalies",
    )
)

# Reference inventories hold thousands of data files: their empty shape and signature are
# the shared defaults rather than new objects (equal either way), recognised before the
# strict reading (an empty one holds only nulls and empty lists, nothing to check further).
_NO_SHAPE = CodeShape()
_SHAPE_NULLS = ("entry_point", "imports_sha256", "exports_sha256")
_SHAPE_LISTS = ("tls_callbacks", "executable_sections")
_SIG_NULLS = ("valid", "container_sha256", "primary_container_sha256")
_SIG_LISTS = ("signers", "anomalies", "nested_signers", "nested_sha256")


# a data file's entry in a reference inventory, as ``to_ref_dict`` writes it
_EMPTY_SHAPE: dict[str, object] = {
    **dict.fromkeys(_SHAPE_NULLS),
    "tls_callbacks": [],
    "executable_sections": [],
}
_EMPTY_SIGNATURE: dict[str, object] = {
    **dict.fromkeys(_SIG_NULLS),
    **{k: [] for k in _SIG_LISTS},
    "kind": "none",
    "signed": False,
}
_PLAIN_NULLS = ("header_sha256", "overlay_sha256", "fuses")
_PLAIN_LISTS = ("archs", "sections", "slices", "anomalies")


def _shape(f: Fields | None) -> CodeShape:
    if f is None or f.is_empty(_SHAPE_NULLS, _SHAPE_LISTS):
        return _NO_SHAPE
    return CodeShape._read(f)


def _signature(f: Fields | None) -> SignatureFacts:
    if f is None or f.is_empty(_SIG_NULLS, _SIG_LISTS, {"kind": "none", "signed": False}):
        return UNSIGNED
    return SignatureFacts._read(f)


# the keys each reader accepts: exactly what the matching writer writes
_SIGNER_KEYS = frozenset(("subject", "issuer", "serial", "sha256", "team_id"))
_SIGNATURE_FACTS_KEYS = frozenset(
    (
        "kind",
        "signed",
        "valid",
        "signers",
        "anomalies",
        "container_sha256",
        "primary_container_sha256",
        "nested_signers",
        "nested_sha256",
    )
)
_SECTION_DIGEST_KEYS = frozenset(("name", "size", "sha256", "executable", "masked_sha256"))
_FUSE_WIRE_KEYS = frozenset(("offset", "version", "values"))
_CODE_SHAPE_KEYS = frozenset(
    (
        "entry_point",
        "imports_sha256",
        "exports_sha256",
        "tls_callbacks",
        "executable_sections",
    )
)
_SLICE_FACTS_KEYS = frozenset(
    (
        "arch",
        "offset",
        "size",
        "sha256",
        "normalized_sha256",
        "sections",
        "fuses",
        "shape",
        "signature",
    )
)
_FILE_ENTRY_KEYS = _FACTS_KEYS | {"path", "size", "sha256"}
_COMPONENT_KEYS = frozenset(
    ("name", "version", "source", "platform", "arch", "digests", "proof", "target", "npm")
)
_REFS_KEYS = frozenset(("schema", "component", "files", "anomalies", "links"))
_LINK_KEYS = frozenset(("path", "target", "kind"))
_REF_ANOMALY_KEYS = _ANOMALY_KEYS | {"path", "bundle"}


# --- inventory -----------------------------------------------------------------------------


@record(slots=True)
class FileEntry:
    """One file of a shipped artifact or of a reference."""

    path: str  # relative, '/'-separated (relative to the app root once it is known)
    location: str  # full path through containers, '!/' between archive and member
    container: tuple[str, ...]  # archive layers, outermost first
    size: int
    sha256: str
    facts: BinaryFacts = BinaryFacts()
    blob: Blob | None = None  # None for references known only by their digests

    @property
    def format(self) -> FileFormat:
        return self.facts.format

    def to_ref_dict(self) -> JSON:
        d: JSON = {"path": self.path, "size": self.size, "sha256": self.sha256}
        d.update(self.facts.to_ref_dict())
        return d

    @classmethod
    def from_ref_dict(cls, d: object, location_prefix: str = "") -> FileEntry:
        return cls.read(Fields(d), location_prefix)

    @classmethod
    def read(cls, f: Fields, location_prefix: str = "") -> FileEntry:
        """One file of a reference inventory (what ``to_ref_dict`` writes)."""
        f.known(_FILE_ENTRY_KEYS)
        path = f.text("path")
        size = f.number("size")
        sha256 = f.sha256("sha256")
        return cls(
            path=path,
            location=location_prefix + path if location_prefix else path,
            container=(),
            size=size,
            sha256=sha256,
            facts=BinaryFacts._read(f, sha256),
            blob=None,
        )

    @classmethod
    def read_plain(
        cls, d: dict[str, Any], location_prefix: str = "", like: FileEntry | None = None
    ) -> FileEntry | None:
        """The entry of the most common file of a reference inventory, a data file with
        every key written and nothing but its digest (``normalized_sha256`` the same string
        as ``sha256``), exactly as ``read`` gives it; None for any other object, which
        ``read`` then reads strictly (and names what is wrong).

        ``like``: the shipped file at that path. When it is this very data file (same size,
        digest and facts), the entry holds its path, digest and facts objects rather than
        copies: equal values, one copy of each for a tree identical to its upstream."""
        if d.keys() != _FILE_ENTRY_KEYS or d["format"] != "data":
            return None
        path, size, sha = d["path"], d["size"], d["sha256"]
        if not (
            type(path) is str
            and type(size) is int
            and size >= 0
            and d["normalized_sha256"] is sha
            and type(sha) is str
            and is_lower_hex64(sha)
            and d["shape"] == _EMPTY_SHAPE
            and d["signature"] == _EMPTY_SIGNATURE
            and d["signature"]["signed"] is False  # 0 == False: only false is false
            and all(d[k] is None for k in _PLAIN_NULLS)
            and all(d[k] == [] for k in _PLAIN_LISTS)
            and d["markers"] == {}
        ):
            return None
        return cls.plain(path, size, sha, like, location_prefix)

    @classmethod
    def plain(
        cls,
        path: str,
        size: int,
        sha256: str,
        like: FileEntry | None = None,
        location_prefix: str = "",
    ) -> FileEntry:
        """A reference's data file with nothing but its digest (``read_plain`` checked the
        values); it shares ``like``'s objects when ``like`` is this very file."""
        if (
            like is not None
            and like.sha256 == sha256
            and like.size == size
            and like.path == path
            and is_plain_data(like.facts, sha256)
        ):
            path, sha256, facts = like.path, like.sha256, like.facts
        else:
            facts = BinaryFacts(
                FileFormat.DATA, (), sha256, None, (), None, None, _NO_SHAPE, (), UNSIGNED
            )
        location = f"{location_prefix}{path}" if location_prefix else path
        return cls(path, location, (), size, sha256, facts, None)


# every field of BinaryFacts but format and normalized_sha256, and their defaults: a data
# file's facts hold nothing else (read generically, so a field added later is compared too)
_REST_OF_FACTS = attrgetter(
    *(f.name for f in fields(BinaryFacts) if f.name not in ("format", "normalized_sha256"))
)
_PLAIN_REST = _REST_OF_FACTS(BinaryFacts())


def is_plain_data(facts: BinaryFacts, sha256: str) -> bool:
    """``facts`` are those of a data file whose digest is ``sha256`` and nothing else, as
    ``FileEntry.read_plain`` makes them."""
    return (
        facts.format is FileFormat.DATA
        and facts.normalized_sha256 == sha256
        and _REST_OF_FACTS(facts) == _PLAIN_REST
    )


@record
class Link:
    """A link of an artifact or a reference: compared like a file (docs/contract.md "Archives
    as real extractors see them"), never followed.

    ``kind``: "symlink", or "hardlink" (a tar's hard links: a name sharing another member's
    file; that name is also a file of the tree). ``target`` is normalised: '/'-separated,
    relative to the link's own directory (an asar link, stored relative to the archive
    root, is rewritten to that form; a hard link names the first, in sorted order, of the
    names that share its file).
    """

    path: str
    target: str
    location: str = ""
    container: tuple[str, ...] = ()
    kind: str = "symlink"

    def to_dict(self) -> JSON:
        d: JSON = {"path": self.path, "target": self.target}
        if self.kind != "symlink":
            d["kind"] = self.kind
        return d

    @classmethod
    def from_dict(cls, d: object, location_prefix: str = "") -> Link:
        return cls.read(Fields(d), location_prefix)

    @classmethod
    def read(cls, f: Fields, location_prefix: str = "") -> Link:
        f.known(_LINK_KEYS)
        path = f.text("path")
        kind = f.text("kind") if "kind" in f else "symlink"
        if kind not in LINK_KINDS:
            raise f.error("kind", f"expected one of {', '.join(LINK_KINDS)}; got {kind!r}")
        return cls(path, f.text("target"), f"{location_prefix}{path}", (), kind)


LINK_KINDS = ("symlink", "hardlink")


@record
class Note:
    """Something the tree biv compared cannot show, met in this artifact (docs/contract.md
    "Archives as real extractors see them": for formats unpacked by external tools, what the
    tool cannot represent is named in the report's notes). Informational: never a finding,
    never changes the verdict.

    ``kind`` is a stable id (``dmg-symlinks-flattened``, ``deb-absolute-links``,
    ``msi-binary-streams``, ``msi-no-files``, ``tool-links-dropped``); ``location`` is the
    archive layer (``outer.zip!/inner.msi``); ``message`` is untrusted text (member names).
    """

    kind: str
    location: str
    message: str

    def to_dict(self) -> JSON:
        return {"kind": self.kind, "location": self.location, "message": self.message}


@record
class Inventory:
    """Everything inside one artifact, plus what could not be read safely."""

    source: str  # the artifact's path or URL as given
    sha256: str  # file digest, or tree digest for a directory
    size: int
    entries: tuple[FileEntry, ...]
    problems: tuple[Anomaly, ...] = ()  # malformed-input, one per hostile member
    links: tuple[Link, ...] = ()  # symlinks and hard links (never followed), sorted by path
    # reader names of the archive layers opened ('zip', 'msi', 'nsis', 'dmg'...)
    formats: frozenset[str] = frozenset()
    notes: tuple[Note, ...] = ()  # what the external extractors cannot represent

    def by_path(self) -> dict[str, FileEntry]:
        return {e.path: e for e in self.entries}


# --- references ----------------------------------------------------------------------------


@record
class Component:
    name: str  # e.g. "electron", "electron-ffmpeg", "path"
    version: str | None
    source: str  # the SOURCE string as given
    platform: str | None = None
    arch: str | None = None
    digests: Mapping[str, str] = field(default_factory=dict)  # e.g. zip name -> sha256
    proof: tuple[str, ...] = ()  # how the reference was proven, human-readable steps
    # how the platform/arch was chosen when the artifact's code has several targets:
    # {candidates: [{target, code_bytes}], chosen: [target], reason, scores: {option: files}}
    target: Mapping[str, Any] | None = None
    # an npm dependency of the app (deps:npm): {package, status, paths, integrity, proven_by}
    npm: Mapping[str, Any] | None = None

    def to_dict(self) -> JSON:
        d: JSON = {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "platform": self.platform,
            "arch": self.arch,
            "digests": dict(sorted(self.digests.items())),
            "proof": list(self.proof),
        }
        if self.target is not None:
            d["target"] = dict(self.target)
        if self.npm is not None:
            d["npm"] = dict(self.npm)
        return d

    @classmethod
    def from_dict(cls, d: object, where: str = "") -> Component:
        return cls._read(Fields(d, where))

    @classmethod
    def _read(cls, f: Fields) -> Component:
        f.known(_COMPONENT_KEYS)
        return cls(
            name=f.text("name"),
            version=f.opt_text("version"),
            source=f.opt_text("source") or "",
            platform=f.opt_text("platform"),
            arch=f.opt_text("arch"),
            digests=f.sha256_map("digests"),
            proof=f.str_list("proof"),
            target=f.json_object("target"),
            npm=f.json_object("npm"),
        )


@record
class SigstoreIdentity:
    """Who must have signed a source's Sigstore bundle (exact values or regular expressions).

    Given by a SOURCE's options or a policy component's ``sigstore`` entry; checked by the
    upstream stage before a reference is used (``upstream.sigstore.check_source``).
    """

    identity: str | None = None
    identity_regex: str | None = None
    issuer: str | None = None
    issuer_regex: str | None = None
    bundle: str | None = None  # path or URL of the bundle; None: ``<artifact>.sigstore``
    instance: str = "production"  # or "staging"


REFS_SCHEMA = "biv.refs/v1"


@record
class Reference:
    """An upstream release as an inventory (docs/contract.md ``biv.refs/v1``)."""

    component: Component
    files: tuple[FileEntry, ...]
    # problems proving it: reference-mismatch anomalies (path "" = the reference itself)
    problems: tuple[Anomaly, ...] = ()
    # anomalies of the release beyond single files (macOS bundle seals), evidence["path"] and
    # evidence["bundle"] set: what a shipped bundle may inherit (never findings themselves)
    anomalies: tuple[Anomaly, ...] = ()
    links: tuple[Link, ...] = ()  # the release's links (an additive biv.refs/v1 key)

    def to_dict(self) -> JSON:
        d: JSON = {
            "schema": REFS_SCHEMA,
            "component": self.component.to_dict(),
            "files": [f.to_ref_dict() for f in sorted(self.files, key=lambda f: f.path)],
            "anomalies": [
                {
                    **a.to_ref_dict(),
                    "path": str(a.evidence.get("path", "")),
                    "bundle": str(a.evidence.get("bundle", "")),
                }
                for a in self.anomalies
            ],
        }
        if self.links:
            d["links"] = [k.to_dict() for k in sorted(self.links, key=lambda k: k.path)]
        return d

    @classmethod
    def from_dict(cls, d: object) -> Reference:
        """A ``biv.refs/v1`` document; ``SchemaError`` names the first key that is not right."""
        f = Fields(d)
        schema = f.opt_text("schema")
        if schema != REFS_SCHEMA:
            raise SchemaError(f"not a {REFS_SCHEMA} document (schema={schema!r})", where="schema")
        f.known(_REFS_KEYS)
        comp = Component._read(f.obj("component"))
        anomalies = []
        for a in f.objects("anomalies"):
            a.known(_REF_ANOMALY_KEYS)
            evidence = {"path": a.opt_text("path") or "", "bundle": a.opt_text("bundle") or ""}
            anomalies.append(replace(Anomaly._read(a), evidence=evidence))
        if "files" not in f:
            raise SchemaError("missing required key 'files'")
        files = tuple(FileEntry.read(x) for x in f.objects("files"))
        links = tuple(Link.read(k) for k in f.objects("links"))
        return cls(comp, files, (), tuple(anomalies), links)


# --- comparison ----------------------------------------------------------------------------


@record(slots=True)
class SliceResult:
    arch: str
    status: Status
    sha256: str | None
    normalized_sha256: str | None
    signature: SignatureFacts = UNSIGNED
    evidence: Mapping[str, Any] = field(default_factory=_empty)

    def to_dict(self) -> JSON:
        return {
            "arch": self.arch,
            "status": self.status.value,
            "sha256": self.sha256,
            "normalized_sha256": self.normalized_sha256,
            "signature": self.signature.to_dict(),
        }


@record(slots=True)
class FileResult:
    """The comparison of one path: shipped entry, matching reference file, status."""

    path: str
    status: Status
    shipped: FileEntry | None
    reference: FileEntry | None
    component: str | None = None
    # evidence for divergence: sections, shape changes, fuse values, matched reference...
    evidence: Mapping[str, Any] = field(default_factory=_empty)
    slices: tuple[SliceResult, ...] = ()
    # how the shipped file was paired with its reference file (docs/contract.md "Pairing"): "path",
    # "versioned-path", "main-exe", "content" or "name"; None when unpaired
    paired_by: str | None = None

    def to_dict(self) -> JSON:
        e = self.shipped or self.reference
        assert e is not None
        sig = self.shipped.facts.signature if self.shipped else UNSIGNED
        d: JSON = {
            "path": self.path,
            "location": e.location,
            "container": list(e.container),
            "size": e.size,
            "sha256": e.sha256,
            "format": e.format.value,
            "component": self.component,
            "status": self.status.value,
            "paired_by": self.paired_by,
            "signature": sig.to_dict(),
        }
        if (
            self.reference is not None
            and self.shipped is not None
            and self.reference.path != self.path
        ):
            d["upstream_path"] = self.reference.path
        if self.shipped and self.shipped.facts.anomalies:
            d["signature"]["anomalies"] = sorted(
                set(d["signature"]["anomalies"]) | {a.rule for a in self.shipped.facts.anomalies}
            )
        if e.format == FileFormat.MACHO or self.slices:
            d["slices"] = [s.to_dict() for s in self.slices]
        if e.facts.fuses is not None:
            d["fuses"] = e.facts.fuses.to_dict()
        return d


# --- findings and report -------------------------------------------------------------------


@record
class Waiver:
    reason: str
    expires: str  # ISO date
    sha256: str

    def to_dict(self) -> JSON:
        return {"reason": self.reason, "expires": self.expires, "sha256": self.sha256}


@record(slots=True)
class Finding:
    rule: str
    severity: Severity
    path: str
    location: str
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    suppressed: bool = False
    waiver: Waiver | None = None

    def sort_key(self) -> tuple[int, str, str, str]:
        return (self.severity.rank, self.path, self.rule, self.message)

    def to_dict(self) -> JSON:
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "path": self.path,
            "location": self.location,
            "message": self.message,
            "suppressed": self.suppressed,
            "waiver": self.waiver.to_dict() if self.waiver else None,
            "evidence": dict(self.evidence),
        }


REPORT_SCHEMA = "biv.report/v1"


@record
class Report:
    tool_version: str
    generated_at: str
    artifact: Mapping[str, Any]  # {path, sha256, size}
    verdict: Verdict
    components: tuple[Component, ...]
    files: tuple[FileResult, ...]
    findings: tuple[Finding, ...]
    fail_on: Severity = Severity.HIGH
    inconclusive_reasons: tuple[str, ...] = ()
    app_root: str = ""
    policy: Mapping[str, Any] = field(default_factory=dict)  # {name, path, sha256}
    notes: tuple[Note, ...] = ()  # what the unpacked tree cannot show (Note)

    def to_dict(self) -> JSON:
        return {
            "notes": [n.to_dict() for n in self.notes],
            "schema": REPORT_SCHEMA,
            "tool": {"name": "biv", "version": self.tool_version},
            "generated_at": self.generated_at,
            "artifact": dict(self.artifact),
            "verdict": self.verdict.value,
            "fail_on": self.fail_on.value,
            "app_root": self.app_root,
            "policy": dict(self.policy),
            "inconclusive": list(self.inconclusive_reasons),
            "components": [c.to_dict() for c in self.components],
            "files": [f.to_dict() for f in sorted(self.files, key=lambda f: f.path)],
            "findings": [f.to_dict() for f in sorted(self.findings, key=Finding.sort_key)],
        }

"""The Authenticode signature of a PE file, around the one pass over it (the dispatcher the
analysis calls for PE; ``macho_signature`` is Mach-O's).

``prepare`` parses the certificate table the PE headers point at (``authenticode``) and says
which Authenticode digests the pass must compute; ``finish`` verifies the signatures against
them once the pass is done. Without verification (``verify_signatures=False``) a signed file
is reported as signed, never as valid.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import replace

from verifier.binary.pe import PEInfo
from verifier.model import UNSIGNED, Anomaly, SignatureFacts, SignatureKind
from verifier.record import record
from verifier.signing import authenticode
from verifier.signing.trust import TrustConfig


@record
class PESignature:
    """A PE file's certificate table between parsing and verification."""

    table_bytes: bytes | None  # None: unsigned, or a table over the cap
    table: authenticode.CertificateTable | None  # None: not parsed (not verifying)

    @property
    def digest_algorithms(self) -> frozenset[str]:
        """The Authenticode digests (hashlib names) the pass over the file must compute."""
        return self.table.digest_algorithms if self.table is not None else frozenset()


def prepare(table_bytes: bytes | None, info: PEInfo, *, verify: bool) -> PESignature:
    if not verify or table_bytes is None:
        return PESignature(table_bytes, None)
    table = authenticode.parse_table(
        table_bytes,
        table_offset=info.cert_offset,
        dir_size=info.cert_size,
        file_size=info.file_size,
        last_section_end=info.last_section_end,
    )
    return PESignature(table_bytes, table)


def finish(
    sig: PESignature,
    digests: Mapping[str, str],
    *,
    checksum_ok: bool,
    after_table_sha256: str | None,
    trust: TrustConfig | None,
    at: dt.datetime | None,
) -> tuple[SignatureFacts, tuple[Anomaly, ...]] | None:
    """The verified signature and its anomalies; None when the signature was not parsed
    (unsigned, or not verifying: see ``unverified``). ``after_table_sha256``: the digest of
    the bytes after the certificate table (the region of ``data-after-signature``)."""
    if sig.table is None:
        return None
    facts, anomalies = authenticode.verify(
        sig.table, digests, pe_checksum_ok=checksum_ok, trust=trust, at=at
    )
    return facts, tuple(
        replace(a, region_sha256=after_table_sha256)
        if a.rule == "data-after-signature" and a.region_sha256 is None
        else a
        for a in anomalies
    )


def unverified(sig: PESignature) -> SignatureFacts:
    """Signature facts without verification: present or not, never 'valid'."""
    if sig.table_bytes is None:
        return UNSIGNED
    digest = hashlib.sha256(sig.table_bytes).hexdigest()
    return SignatureFacts(
        kind=SignatureKind.AUTHENTICODE,
        signed=True,
        valid=None,
        container_sha256=digest,
        primary_container_sha256=digest,
    )

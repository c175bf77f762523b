"""Authenticode in depth: the PE certificate table, PKCS#7 SignedData, nested signatures,
timestamps, chains, and what the signature does not cover.

Two calls (``signing.pe_signature`` makes them around the single streaming pass over a PE
file; ``signing.msi`` for an MSI's signature stream):

``parse_table(data, ...)``
    Walks the WIN_CERTIFICATE entries of the certificate table (``data`` = the table's bytes
    as found in the file; ``authenticode_table``), parses each PKCS#7 with the bounded reader
    (``authenticode_spc``, ``signing.cms``: DER size, depth, element and certificate counts
    capped; every part kept as the slice of bytes it was found as, never re-encoded),
    collects nested signatures, and records structural anomalies (padding after the DER:
    CVE-2013-3900, data after the table, several entries). Never raises on bad input.
    ``CertificateTable.digest_algorithms`` says which Authenticode digests (hashlib names)
    the caller must compute.

``verify(table, digests, ...)``
    Verifies every signature (``authenticode_check``: signed digest against the computed
    one, the signer's signature, timestamps, the chain) and returns ``SignatureFacts`` plus
    anomalies. The primary signature decides validity; nested ones are reported each on its
    own (``invalid-nested-signature`` when one fails under a valid primary).

``primary_container_sha256`` (``authenticode_container``) sets the nested signatures aside;
``SignatureFacts.nested_sha256`` lists the sha256 of each nested PKCS#7 so a comparison can
check that upstream's own nested signatures are still there, unchanged: same
``primary_container_sha256`` and upstream's ``nested_sha256`` a subset of the shipped file's
= a vendor appended a signature; otherwise the container was modified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence

from verifier.model import (
    Anomaly,
    AuthenticodeDetails,
    SignatureFacts,
    SignatureKind,
)
from verifier.record import record
from verifier.signing.authenticode_anomalies import anomaly
from verifier.signing.authenticode_check import WEAK, SignatureCheck, signer_of, verify_safely
from verifier.signing.authenticode_container import primary_container
from verifier.signing.authenticode_spc import ParsedSignature, parse_signature
from verifier.signing.authenticode_table import WIN_CERT_TYPE_PKCS_SIGNED_DATA, Entry, walk_entries
from verifier.signing.trust import TrustConfig

MAX_TABLE = 64 << 20  # bytes of certificate table looked at
# Unauthenticated attributes other than nested signatures and timestamps, in bytes: a few
# hundred is normal (e.g. an opus-info blob); kilobytes are room for a payload.
OVERSIZED_UNAUTH = 4096


@record
class CertificateTable:
    table_offset: int
    dir_size: int
    file_size: int
    container_sha256: str
    primary_container_sha256: str
    entries: tuple[Entry, ...]
    signatures: tuple[ParsedSignature, ...]  # primary first, then nested in document order
    problems: tuple[Anomaly, ...]

    @property
    def digest_algorithms(self) -> frozenset[str]:
        return frozenset(s.digest_algorithm for s in self.signatures if s.digest_algorithm)


# --- parse -----------------------------------------------------------------------------------


def _placement_problems(
    table_offset: int, dir_size: int, file_size: int, last_section_end: int
) -> list[Anomaly]:
    """Where the table lies: past the end of the file, not at its end, over section data."""
    problems: list[Anomaly] = []
    table_end = table_offset + dir_size
    if table_end > file_size:
        problems.append(
            anomaly(
                "invalid-signature",
                f"certificate table ({dir_size} bytes at {table_offset}) runs past the end of "
                f"the file ({file_size} bytes)",
                [(table_offset, max(0, file_size - table_offset))],
            )
        )
    elif table_end < file_size:
        problems.append(
            anomaly(
                "data-after-signature",
                f"{file_size - table_end} bytes after the certificate table: the certificate "
                "table is not at the end of the file",
                [(table_end, file_size - table_end)],
            )
        )
    if table_offset < last_section_end:
        problems.append(
            anomaly(
                "invalid-signature",
                f"certificate table at {table_offset} overlaps section data (which ends at "
                f"{last_section_end}); the digest would skip those bytes",
                [(table_offset, min(dir_size, last_section_end - table_offset))],
            )
        )
    return problems


def _entry_problems(
    data: bytes,
    entries: Sequence[Entry],
    problems: list[Anomaly],
    usable: int,
    table: tuple[int, int],
) -> None:
    """No entry at all, or more than one (Windows uses only the first)."""
    table_offset, dir_size = table
    if not entries and not any(p.rule == "invalid-signature" for p in problems):
        problems.append(
            anomaly(
                "invalid-signature",
                f"no WIN_CERTIFICATE in the {dir_size}-byte certificate table",
                [(table_offset, usable)],
            )
        )
    if len(entries) > 1:
        problems.append(
            anomaly(
                "multiple-certificates",
                f"{len(entries)} WIN_CERTIFICATE entries; Windows uses only the first, the "
                "others are unverified bytes",
                [(e.offset, e.length) for e in entries[1:]],
                region=data[entries[1].offset - table_offset : usable],
            )
        )


def _signatures(entries: Sequence[Entry], problems: list[Anomaly]) -> list[ParsedSignature]:
    """The first entry's PKCS#7 and its nested signatures (the only ones Windows reads)."""
    signatures: list[ParsedSignature] = []
    first = entries[0] if entries else None
    if first is not None and first.der is not None:
        if first.cert_type != WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            problems.append(
                anomaly(
                    "invalid-signature",
                    f"WIN_CERTIFICATE type 0x{first.cert_type:04x} is not PKCS_SIGNED_DATA",
                    [(first.offset, first.length)],
                )
            )
        else:
            parse_signature(first.der, "primary", 0, first.der_offset, signatures)
    for s in signatures:
        if s.errors and s.signed_data is None:
            problems.append(
                anomaly(
                    "invalid-signature",
                    f"{s.role} signature is malformed: {'; '.join(s.errors)}",
                    [s.range],
                )
            )
    return signatures


def parse_table(
    data: bytes, *, table_offset: int, dir_size: int, file_size: int, last_section_end: int
) -> CertificateTable:
    """Parse the certificate table (``data``: its bytes as read from the file). Never raises."""
    data = bytes(data[:MAX_TABLE])
    problems = _placement_problems(table_offset, dir_size, file_size, last_section_end)
    usable = min(dir_size, len(data), max(0, file_size - table_offset))
    entries, entry_problems = walk_entries(data, usable, table_offset)
    problems.extend(entry_problems)
    _entry_problems(data, entries, problems, usable, (table_offset, dir_size))
    signatures = _signatures(entries, problems)
    whole = hashlib.sha256(data[:usable] if usable < len(data) else data).hexdigest()
    primary = primary_container(data[:usable], entries, table_offset) or whole
    return CertificateTable(
        table_offset,
        dir_size,
        file_size,
        whole,
        primary,
        tuple(entries),
        tuple(signatures),
        tuple(problems),
    )


# --- verify ------------------------------------------------------------------------------------


def _signature_anomalies(
    r: SignatureCheck, s: ParsedSignature, is_primary: bool, valid: bool
) -> list[Anomaly]:
    out: list[Anomaly] = []
    signer = r.signer.subject if r.signer else None
    if not is_primary and not r.valid:
        if valid:
            out.append(
                anomaly(
                    "invalid-nested-signature",
                    f"{r.role} signature does not verify under a valid primary signature: "
                    f"{r.why_not()}",
                    [s.range],
                    region=s.der,
                    digest_algorithm=s.digest_algorithm,
                    signer_actual=signer,
                )
            )
    elif is_primary and not r.intact and s.signed_data is not None:
        check = r.details.check
        out.append(
            anomaly(
                "invalid-signature",
                f"{r.role} signature: {r.why_not()}",
                [s.range],
                digest_algorithm=s.digest_algorithm,
                signed_digest=check.signed_digest if check is not None else None,
                computed_digest=check.computed_digest if check is not None else None,
            )
        )
    elif is_primary and r.intact and not r.trusted:
        out.append(
            anomaly(
                "untrusted-signer",
                f"{r.role} signer {signer or '?'}: {r.why_not()}",
                [s.range],
                signer_actual=signer,
            )
        )
    other = sum(n for _, n, _, _ in r.other_unauth)
    if other > OVERSIZED_UNAUTH:
        out.append(
            anomaly(
                "oversized-unauthenticated-attributes",
                f"{r.role} signature carries {other} bytes of unauthenticated attributes "
                "other than timestamps and nested signatures "
                f"({', '.join(o for o, _, _, _ in r.other_unauth)})",
                [(off, n) for _, n, off, _ in r.other_unauth],
                region=b"".join(raw for _, _, _, raw in r.other_unauth),
                bytes=other,
            )
        )
    return out


def verify(
    table: CertificateTable,
    digests: Mapping[str, str],
    *,
    pe_checksum_ok: bool,
    trust: TrustConfig | None,
    at: dt.datetime | None,
) -> tuple[SignatureFacts, tuple[Anomaly, ...]]:
    """Verify every signature of ``table`` against the file's Authenticode ``digests``.

    The primary signature decides validity (Windows' rule); each nested signature is verified
    and reported on its own, and one that fails under a valid primary is an
    ``invalid-nested-signature`` anomaly.
    """
    cfg = trust if trust is not None else TrustConfig()
    when = at if at is not None else cfg.at
    anomalies: list[Anomaly] = list(table.problems)
    roots = cfg.roots()
    results = [verify_safely(s, digests, roots, when) for s in table.signatures]
    primary = results[0] if results and results[0].role == "primary" else None
    structural = any(a.rule == "invalid-signature" for a in table.problems)
    valid = primary is not None and primary.valid and not structural
    for r, s in zip(results, table.signatures, strict=True):
        anomalies += _signature_anomalies(r, s, r is primary, valid)
    algs = {s.digest_algorithm for s in table.signatures if s.digest_algorithm}
    if algs and algs <= WEAK:
        anomalies.append(
            anomaly(
                "weak-digest",
                f"the signature relies on {'/'.join(sorted(algs)).upper()} only",
                [],
                algorithms=sorted(algs),
            )
        )
    if not pe_checksum_ok:
        anomalies.append(anomaly("pe-checksum-mismatch", "the PE checksum field is wrong"))
    facts = SignatureFacts(
        kind=SignatureKind.AUTHENTICODE,
        signed=True,
        valid=valid,
        signers=(signer_of(primary.signer),) if primary and primary.signer else (),
        anomalies=tuple(dict.fromkeys(a.rule for a in anomalies)),
        container_sha256=table.container_sha256,
        primary_container_sha256=table.primary_container_sha256,
        nested_signers=tuple(signer_of(r.signer) for r in results[1:] if r.signer is not None),
        details=AuthenticodeDetails(
            table_offset=table.table_offset,
            table_size=table.dir_size,
            entries=tuple(e.facts() for e in table.entries),
            signatures=tuple(r.details for r in results),
        ),
        nested_sha256=tuple(
            sorted(hashlib.sha256(x.der).hexdigest() for x in table.signatures[1:])
        ),
    )
    return facts, tuple(anomalies)

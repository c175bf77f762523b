"""Test-only helpers for Authenticode tests: digest a PE file and run biv's verifier on it.

Uses ``verifier.binary.pe`` (headers) and ``hashing.View`` (one streaming pass), the same
ingredients ``analysis.analyze`` uses, so the tests exercise ``signing.authenticode`` alone.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from verifier.binary import pe
from verifier.hashing import View, digest_views
from verifier.model import Anomaly, Blob, SignatureFacts
from verifier.signing import authenticode
from verifier.signing.trust import TrustConfig


def check_file(
    path: str | Path,
    trust: TrustConfig | None = None,
    at: dt.datetime | None = None,
) -> tuple[SignatureFacts, tuple[Anomaly, ...], authenticode.CertificateTable]:
    """Parse, digest (one pass) and verify the Authenticode signature of ``path``."""
    blob = Blob.of_file(path)
    info = pe.read_pe_info(blob)
    assert info.cert_size, f"{path} is not signed"
    data = blob.read(info.cert_offset, info.cert_size)
    table = authenticode.parse_table(
        data,
        table_offset=info.cert_offset,
        dir_size=info.cert_size,
        file_size=blob.size,
        last_section_end=info.last_section_end,
    )
    views = [View(a, a, skip=info.authenticode_skip()) for a in sorted(table.digest_algorithms)]
    checksum = pe.PEChecksum(info.checksum_offset, blob.size)
    digest_views(blob.path, [*views, checksum])
    facts, anomalies = authenticode.verify(
        table,
        {v.name: v.hexdigest() for v in views},
        pe_checksum_ok=checksum.value == info.checksum or info.checksum == 0,
        trust=trust,
        at=at,
    )
    return facts, anomalies, table


def rules(anomalies: tuple[Anomaly, ...]) -> set[str]:
    return {a.rule for a in anomalies}

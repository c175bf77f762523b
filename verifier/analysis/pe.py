"""A PE file in one pass: headers (``binary.pe``), the views of the pass
(``binary.pe_digests``), its Authenticode signature (``signing.pe_signature``)."""

from __future__ import annotations

from verifier.analysis.context import AnalysisContext
from verifier.binary import pe
from verifier.binary.pe_digests import (
    checksum_anomaly,
    checksum_ok,
    pe_facts,
    pe_shape,
    pe_views,
    read_cert_table,
)
from verifier.hashing import View, digest_beside
from verifier.model import Anomaly, BinaryFacts, Blob
from verifier.signing import pe_signature


def analyze_pe(
    blob: Blob, name: str, ctx: AnalysisContext, head: bytes, known: str | None = None
) -> tuple[str, BinaryFacts]:
    """``(sha256, facts)`` of a PE file (``head``: its first bytes, ``known``: its sha256
    when the caller has it). Raises ``MalformedInputError`` for headers that do not parse."""
    info = pe.parse_pe(head, blob.size)
    anomalies: list[Anomaly] = []
    table_bytes = read_cert_table(blob, info, name, anomalies)
    sig = pe_signature.prepare(table_bytes, info, verify=ctx.verify_signatures)
    v = pe_views(info, pe.read_alignment_pad(blob, info), sig.digest_algorithms)
    table_end = info.cert_offset + info.cert_size
    after = View("after-table", start=table_end) if 0 < table_end < info.file_size else None
    views = [*v.all(with_sha=known is None, core=ctx.core), *((after,) if after else ())]
    # the import and export tables are parsed while the pass hashes a large file
    shape_anomalies: list[Anomaly] = []
    shape = digest_beside(
        blob.path,
        views,
        blob.offset,
        blob.size,
        lambda: pe_shape(blob, info, name, shape_anomalies),
    )
    anomalies[:0] = shape_anomalies
    if ctx.core:
        v.sections = []
    good_checksum = checksum_ok(info, v)
    verified = pe_signature.finish(
        sig,
        {alg: view.hexdigest() for alg, view in v.authenticode.items()},
        checksum_ok=good_checksum,
        after_table_sha256=after.hexdigest() if after is not None else None,
        trust=ctx.trust,
        at=ctx.at,
    )
    if verified is not None:
        facts, extra = verified
        anomalies.extend(extra)
    else:
        facts = pe_signature.unverified(sig)
        if not good_checksum:
            anomalies.append(checksum_anomaly(info, v.checksum.value))
    return known or v.sha.hexdigest(), pe_facts(info, v, shape, facts, anomalies)

"""``signature-slack``: the bytes a Mach-O code signature reserved after its SuperBlob.

Signers reserve room in ``LC_CODE_SIGNATURE``'s data beyond the SuperBlob; it should be
zero. Non-zero bytes there are covered by no signature: either the remnant of an earlier,
larger signature (its CodeDirectory's hash slots are hashes of this slice's own pages, which
``PageDigestIndex`` collects during the pass) or room for a payload. Both are reported; a
remnant with a low severity.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from verifier.model import Anomaly, Severity
from verifier.signing.codesign import EmbeddedSignature
from verifier.signing.codesign_pages import PageDigestIndex

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

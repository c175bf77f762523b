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
from collections import Counter

from verifier.model import Anomaly, Severity
from verifier.record import record
from verifier.signing.codesign import EmbeddedSignature
from verifier.signing.codesign_pages import PageDigestIndex

MAX_SLACK_EXAMINED = 256 << 10
MAX_REMNANT_SLICE = 512 << 20


@record
class Remnant:
    """Slack read as the hash slots of an earlier CodeDirectory of this very slice."""

    algorithm: str
    page_size: int
    alignment: int  # where the first whole hash starts in the slack
    matched_hashes: int
    unexplained_nonzero_bytes: int

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "page-hashes",
            "algorithm": self.algorithm,
            "page_size": self.page_size,
            "alignment": self.alignment,
            "matched_hashes": self.matched_hashes,
            "unexplained_nonzero_bytes": self.unexplained_nonzero_bytes,
        }


def remnant_of_signature(slack: bytes, index: PageDigestIndex | None) -> Remnant | None:
    """How ``slack`` parses as the remnant of an earlier signature, or None.

    It does when its non-zero bytes are, but for a partial hash at each end, hash slots of an
    earlier CodeDirectory: digests of this slice's own pages (at 4 KiB or 16 KiB, SHA-256 or
    SHA-1). A payload cannot hide there: every byte is a digest of the signed code.
    """
    if index is None or not slack.strip(b"\0"):
        return None
    data = slack[:MAX_SLACK_EXAMINED]
    best: tuple[int, str, int, int] | None = None  # matched, algorithm, page size, alignment
    starts: dict[tuple[str, int], set[int]] = {}  # where a page digest starts in the slack
    for (alg, page), digests in index.digests.items():
        n = hashlib.new(alg).digest_size
        hits = [i for i in range(len(data) - n + 1) if data[i : i + n] in digests]
        starts[(alg, page)] = set(hits)
        per_alignment = Counter(i % n for i in hits)
        for align in range(n):  # whole hashes at align, align + n, ...: the first best wins
            matched = per_alignment.get(align, 0)
            if matched and (best is None or matched > best[0]):
                best = (matched, alg, page, align)
    if best is None or best[0] < 4:
        return None
    matched, alg, page, align = best
    n = hashlib.new(alg).digest_size
    ok = starts[(alg, page)]
    outside = sum(1 for i, b in enumerate(data) if b and (align + ((i - align) // n) * n) not in ok)
    if outside > 2 * n:
        return None
    return Remnant(alg, page, align, matched, outside)


def slack_anomaly(
    sig: EmbeddedSignature,
    arch: str,
    sig_offset: int | None,
    index: PageDigestIndex | None,
) -> Anomaly | None:
    """``signature-slack`` for non-zero bytes after the SuperBlob (None when all zero)."""
    slack = sig.slack
    head = slack[:MAX_SLACK_EXAMINED]
    nonzero = bool(head.strip(b"\0"))
    if not nonzero and not slack[MAX_SLACK_EXAMINED:].strip(b"\0"):
        return None
    if nonzero:  # from the first to the last non-zero byte examined
        payload = slack[len(head) - len(head.lstrip(b"\0")) : len(head.rstrip(b"\0"))]
    else:
        payload = slack
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
            "remnant": remnant.to_dict() if remnant else None,
        },
        arch=arch,
        region_sha256=hashlib.sha256(slack).hexdigest(),
        severity=Severity.LOW if remnant else None,
    )


def _entropy(data: bytes) -> float:
    if not data:
        return 0.0
    n = len(data)
    counts = Counter(data)
    return -sum(c / n * math.log2(c / n) for c in (counts[b] for b in sorted(counts)))

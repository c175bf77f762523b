"""The anomalies an Authenticode certificate table and its signatures can carry, each with
the byte ranges it is about and the sha256 of those bytes (which decides inheritance:
docs/contract.md "Judge the change")."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from verifier.model import Anomaly

PADDING_NOTE = (
    "Windows' default Authenticode check (WinVerifyTrust) accepts this file because the "
    "digest skips the certificate table; it fails when EnableCertPaddingCheck is on "
    "(CVE-2013-3900)"
)


def shannon_entropy(data: bytes) -> float:
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


def anomaly(
    rule: str,
    message: str,
    ranges: Sequence[tuple[int, int]] = (),
    *,
    region: bytes | None = None,
    **extra: Any,
) -> Anomaly:
    """An anomaly; ``region``: the bytes it is about (their sha256 decides inheritance)."""
    ev: dict[str, Any] = {"ranges": [{"offset": o, "length": n} for o, n in ranges if n > 0]}
    ev.update(extra)
    digest = hashlib.sha256(region).hexdigest() if region is not None else None
    return Anomaly(rule, message, ev, region_sha256=digest)


def padding_anomaly(
    slack: bytes,
    slack_offset: int,
    allowed: int,
    entry_offset: int,
    entry_length: int,
    table_end: int,
) -> Anomaly:
    """``signature-padding``: bytes after a PKCS#7 inside its WIN_CERTIFICATE that are not
    clean 8-byte alignment (CVE-2013-3900)."""
    nz = [i for i, b in enumerate(slack) if b]
    if nz:
        lo, hi = nz[0], nz[-1] + 1
    else:
        lo, hi = allowed, len(slack)
    payload = slack[lo:hi]
    entry_end = entry_offset + entry_length
    why = []
    if nz:
        why.append(f"{len(payload)} non-zero bytes")
    if len(slack) > allowed:
        why.append(f"{len(slack)} bytes where 8-byte alignment needs {allowed}")
    aligned_end = (entry_end + 7) & ~7
    if entry_end - (slack_offset + len(slack)) < -7 or slack_offset + len(slack) > aligned_end:
        why.append(f"dwLength ends at {entry_end} but the directory runs to {table_end}")
    return anomaly(
        "signature-padding",
        f"bytes after the PKCS#7 signature inside the certificate table at {slack_offset}: "
        f"{', '.join(why)}. {PADDING_NOTE}.",
        [(slack_offset, len(slack))],
        region=slack,
        windows_default_check="passes",
        enable_cert_padding_check="fails",
        payload={
            "offset": slack_offset + lo,
            "length": len(payload),
            "entropy": round(shannon_entropy(payload), 3),
            "first_bytes": payload[:32].hex(),
        },
        alignment_allowed=allowed,
        dw_length=entry_length,
    )

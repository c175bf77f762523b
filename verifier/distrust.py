"""Known-bad digests and revoked signing certificates -> anomalies.

The public 3CX indicators ship with biv and are always checked (offline); a TUF reference
repository (``--refs``) adds its own known-bad list and revoked certificates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from verifier.model import (
    Anomaly,
    AuthenticodeDetails,
    FileEntry,
    FileResult,
    MachOSignatureDetails,
    SignatureDetails,
)
from verifier.upstream.distrust_lists import THREECX_KNOWN_BAD, KnownBad, RevokedCert, parse_time

BUILTIN_KNOWN_BAD: Mapping[str, KnownBad] = {k.sha256: k for k in THREECX_KNOWN_BAD}


def _shipped(results: Iterable[FileResult]) -> Iterable[tuple[str, FileEntry]]:
    for r in results:
        if r.shipped is not None:
            yield r.path, r.shipped


def known_bad_anomalies(
    results: Sequence[FileResult], known_bad: Mapping[str, KnownBad]
) -> list[Anomaly]:
    """A ``known-malicious`` anomaly for every shipped file (or Mach-O slice) on the list."""
    out: list[Anomaly] = []
    for path, e in _shipped(results):
        digests = [(e.sha256, None)] + [(s.sha256, s.arch) for s in e.facts.slices]
        for sha, arch in digests:
            hit = known_bad.get(sha.lower())
            if hit is None:
                continue
            where = f" ({arch} slice)" if arch else ""
            out.append(
                Anomaly(
                    "known-malicious",
                    f"{path}{where} has sha256 {sha}, a known-bad digest: {hit.reason}"
                    + (f" ({hit.name})" if hit.name else ""),
                    {
                        "path": path,
                        "location": e.location,
                        "actual_sha256": sha,
                        "indicator": hit.to_dict(),
                        **({"arch": arch} if arch else {}),
                    },
                    arch,
                )
            )
    return out


def _signing_time(details: SignatureDetails | None) -> datetime | None:
    """The signing time proven by a valid timestamp, if any."""
    stamps = (
        details.timestamps
        if isinstance(details, AuthenticodeDetails | MachOSignatureDetails)
        else ()
    )
    for ts in stamps:
        if ts.valid and ts.time:
            try:
                return parse_time(ts.time)
            except ValueError:
                continue
    return None


def revoked_signer_anomalies(
    results: Sequence[FileResult], revoked: Sequence[RevokedCert]
) -> list[Anomaly]:
    """``untrusted-signer`` for signatures by a revoked certificate made after its distrust date.

    Without a proven signing time (a valid timestamp) the signature is distrusted whatever
    date it claims.
    """
    if not revoked:
        return []
    by_thumb = {r.sha256.lower(): r for r in revoked}
    out: list[Anomaly] = []
    for path, e in _shipped(results):
        sig = e.facts.signature
        for signer in (*sig.signers, *sig.nested_signers):
            r = by_thumb.get(signer.sha256.lower())
            if r is None:
                continue
            signed_at = _signing_time(sig.details)
            if signed_at is not None and signed_at < r.distrust_datetime:
                continue
            when = f"at {signed_at.isoformat()}" if signed_at else "at an unproven time"
            out.append(
                Anomaly(
                    "untrusted-signer",
                    f"{path} is signed by a revoked certificate ({signer.subject}, sha256 "
                    f"{signer.sha256}) {when}, distrusted from {r.distrust_after}"
                    + (f": {r.reason}" if r.reason else ""),
                    {
                        "path": path,
                        "location": e.location,
                        "actual_sha256": e.sha256,
                        "signer_actual": signer.subject,
                        "revoked": r.to_dict(),
                    },
                )
            )
    return out

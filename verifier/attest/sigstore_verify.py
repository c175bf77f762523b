"""Verify a VSA signed keyless with Sigstore (``biv attest verify --cert-identity ...``).

The bundle holds a DSSE envelope (what ``attest.sigstore_sign.sign_vsa_keyless`` writes); it is
checked with sigstore-python's verifier and an exact identity and issuer. ``attest.vsa`` then
checks the Statement inside. Offline verification uses sigstore-python's embedded trust root.
"""

from __future__ import annotations

from pathlib import Path

from verifier.attest.dsse import AttestationError
from verifier.errors import UsageError
from verifier.upstream.sigstore import quiet_sigstore_logs


def verify_sigstore_vsa(
    path: str,
    cert_identity: str,
    cert_oidc_issuer: str,
    *,
    staging: bool = False,
    offline: bool = False,
) -> tuple[str, bytes]:
    """Verify a Sigstore bundle holding a DSSE envelope; returns (payloadType, payload)."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

    quiet_sigstore_logs()
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read attestation: {e.strerror or e}", where=path) from None
    try:
        bundle = Bundle.from_json(raw)
        verifier = (
            Verifier.staging(offline=offline) if staging else Verifier.production(offline=offline)
        )
        ptype, payload = verifier.verify_dsse(
            bundle, Identity(identity=cert_identity, issuer=cert_oidc_issuer)
        )
    except (SigstoreError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AttestationError(f"Sigstore bundle does not verify: {msg}", where=path) from None
    return ptype, payload

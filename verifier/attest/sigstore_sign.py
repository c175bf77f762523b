"""Keyless signing of the VSA with Sigstore (``biv verify --attest OUT --sigstore``).

Builds on sigstore-python's signing API: an ambient OIDC token (``detect_credential()``, e.g.
GitHub Actions with ``permissions: id-token: write``) gets a short-lived Fulcio certificate,
the Statement is signed as a DSSE envelope and logged in Rekor, and the result is written as a
Sigstore bundle (JSON) around the DSSE envelope.

UNTESTED HERE: signing needs an OIDC identity and network access to Fulcio and Rekor, which
biv's test environment does not have. What is tested offline: the Statement is accepted by
sigstore-python's in-toto ``Statement`` model and a missing credential is a clear usage error;
verifying such a bundle is ``attest.sigstore_verify.verify_sigstore_vsa``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from verifier.attest.vsa import statement_bytes
from verifier.errors import UsageError


def to_sigstore_statement(statement: Mapping[str, Any]) -> Any:
    """The Statement as sigstore-python's ``dsse.Statement`` (validates its shape)."""
    from sigstore.dsse import Statement

    try:
        return Statement(statement_bytes(statement))
    except Exception as e:  # pydantic validation errors and sigstore.errors.Error
        raise UsageError(f"statement rejected by sigstore-python: {e}") from None


def sign_vsa_keyless(
    statement: Mapping[str, Any],
    out: str,
    *,
    identity_token: str | None = None,
    staging: bool = False,
) -> None:
    """Sign ``statement`` keyless with Sigstore; write the bundle JSON to ``out``."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken, detect_credential
    from sigstore.sign import SigningContext

    stmt = to_sigstore_statement(statement)
    try:
        raw = identity_token or detect_credential()
    except SigstoreError as e:
        raise UsageError(f"--sigstore: cannot get an OIDC identity token: {e}") from None
    if not raw:
        raise UsageError(
            "--sigstore needs ambient OIDC credentials (e.g. GitHub Actions with "
            "'permissions: id-token: write'); none were detected. Use --signing-key KEY instead"
        )
    try:
        token = IdentityToken(raw)
        trust = ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
        ctx = SigningContext.from_trust_config(trust)
        with ctx.signer(token, cache=True) as signer:
            bundle = signer.sign_dsse(stmt)
    except SigstoreError as e:
        raise UsageError(f"--sigstore: signing failed: {e}") from None
    try:
        Path(out).write_text(bundle.to_json())
    except OSError as e:
        raise UsageError(f"cannot write attestation: {e.strerror or e}", where=out) from None

"""Sigstore bundles for upstream sources, verified offline with the real public bundles in
tests/fixtures/sigstore (production: the rfc8785 wheel, fetched from PyPI pinned;
staging: bundle_v3.txt)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.fixtures import SigstoreFiles

from verifier.attest.dsse import AttestationError
from verifier.attest.sigstore_verify import verify_sigstore_vsa
from verifier.errors import ReferenceMismatchError, UsageError
from verifier.model import SigstoreIdentity
from verifier.upstream.sigstore import (
    IdentityPolicy,
    source_bundle_anomaly,
    verify_source_bundle,
)

PROD_ID = "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
PROD_ISSUER = "https://token.actions.githubusercontent.com"
STAGING_ID = "william@yossarian.net"
STAGING_ISSUER = "https://github.com/login/oauth"


def test_production_bundle_verifies_exact_identity(sig: SigstoreFiles) -> None:
    proof = verify_source_bundle(
        str(sig.wheel), str(sig.wheel_bundle), IdentityPolicy(identity=PROD_ID, issuer=PROD_ISSUER)
    )
    assert proof[0].startswith(
        "sha256 c4e92e9ecc828bef2aa7dba1de8ac983511f7532a0df11c770d39099a25cf201 signed in "
        "Sigstore bundle rfc8785-0.1.2-py3-none-any.whl.sigstore (production trust root, offline)"
    )


def test_production_bundle_verifies_regex_identity_from_policy(sig: SigstoreFiles) -> None:
    ident = SigstoreIdentity(
        identity_regex=r"https://github\.com/trailofbits/rfc8785\.py/\.github/workflows/"
        r"release\.yml@refs/tags/v[0-9.]+",
        issuer_regex=r"https://token\.actions\.githubusercontent\.com",
    )
    assert (
        source_bundle_anomaly(str(sig.wheel), str(sig.wheel_bundle), IdentityPolicy.of(ident))
        is None
    )
    # regexes match in full: a prefix is not enough
    prefix = IdentityPolicy(identity_regex=r"https://github\.com/trailofbits", issuer=PROD_ISSUER)
    assert source_bundle_anomaly(str(sig.wheel), str(sig.wheel_bundle), prefix) is not None


def test_wrong_identity_or_issuer_is_reference_mismatch(sig: SigstoreFiles) -> None:
    wrong = IdentityPolicy(
        identity="https://github.com/evil/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2",
        issuer=PROD_ISSUER,
    )
    a = source_bundle_anomaly(str(sig.wheel), str(sig.wheel_bundle), wrong)
    assert a is not None and a.rule == "reference-mismatch"
    assert a.message.startswith(
        "Sigstore bundle does not verify for rfc8785-0.1.2-py3-none-any.whl: certificate "
        "identity ['https://github.com/trailofbits/"
    )
    bad_issuer = IdentityPolicy(identity=PROD_ID, issuer="https://accounts.google.com")
    with pytest.raises(ReferenceMismatchError, match="OIDC issuer is"):
        verify_source_bundle(str(sig.wheel), str(sig.wheel_bundle), bad_issuer)


def test_one_changed_byte_in_artifact_or_bundle_fails(sig: SigstoreFiles, tmp_path: Path) -> None:
    pol = IdentityPolicy(identity=PROD_ID, issuer=PROD_ISSUER)
    data = bytearray(sig.wheel.read_bytes())
    data[1000] ^= 1
    wheel = tmp_path / sig.wheel.name
    wheel.write_bytes(bytes(data))
    with pytest.raises(ReferenceMismatchError, match="does not verify"):
        verify_source_bundle(str(wheel), str(sig.wheel_bundle), pol)

    doc = json.loads(sig.wheel_bundle.read_text())
    b64 = doc["messageSignature"]["signature"]
    doc["messageSignature"]["signature"] = b64[:10] + ("A" if b64[10] != "A" else "B") + b64[11:]
    bundle = tmp_path / "changed.sigstore"
    bundle.write_text(json.dumps(doc))
    with pytest.raises(ReferenceMismatchError):
        verify_source_bundle(str(sig.wheel), str(bundle), pol)
    bundle.write_text("{not json")
    with pytest.raises(ReferenceMismatchError, match="not a valid Sigstore bundle"):
        verify_source_bundle(str(sig.wheel), str(bundle), pol)


def test_staging_bundle_against_staging_root_only(sig: SigstoreFiles, tmp_path: Path) -> None:
    pol = IdentityPolicy(identity=STAGING_ID, issuer=STAGING_ISSUER)
    proof = verify_source_bundle(str(sig.staging), str(sig.staging_bundle), pol, staging=True)
    assert "(staging trust root, offline)" in proof[0]
    with pytest.raises(ReferenceMismatchError):  # not trusted by the production root
        verify_source_bundle(str(sig.staging), str(sig.staging_bundle), pol)
    with pytest.raises(ReferenceMismatchError):
        verify_source_bundle(
            str(sig.staging),
            str(sig.staging_bundle),
            IdentityPolicy(identity="someone@example.com", issuer=STAGING_ISSUER),
            staging=True,
        )
    changed = tmp_path / "bundle_v3.txt"
    shutil.copy(sig.staging, changed)
    changed.write_bytes(changed.read_bytes() + b"!")
    with pytest.raises(ReferenceMismatchError):
        verify_source_bundle(str(changed), str(sig.staging_bundle), pol, staging=True)


def test_identity_policy_arguments() -> None:
    with pytest.raises(UsageError, match="exactly one of identity"):
        IdentityPolicy(issuer=PROD_ISSUER)
    with pytest.raises(UsageError, match="invalid regular expression"):
        IdentityPolicy(identity_regex="(", issuer=PROD_ISSUER)


def test_attest_verify_keyless_rejects_non_dsse_bundle(sig: SigstoreFiles) -> None:
    """The Sigstore route of ``biv attest verify`` runs offline; a bundle that signs a file
    (hashedrekord), not a DSSE envelope, is refused."""
    with pytest.raises(AttestationError, match="does not verify"):
        verify_sigstore_vsa(str(sig.wheel_bundle), PROD_ID, PROD_ISSUER, offline=True)


def test_source_options_and_policy_identity(sig: SigstoreFiles, tmp_path: Path) -> None:
    from verifier.upstream.sigstore import check_source, identity_for_source

    assert identity_for_source({"platform": "win32"}) is None
    declared = SigstoreIdentity(identity="someone-else", issuer=PROD_ISSUER)
    ident = identity_for_source(
        {"bundle": str(sig.wheel_bundle), "identity-regexp": r"https://github\.com/trailofbits/.*"},
        declared,
    )
    assert ident is not None and ident.identity is None and ident.issuer == PROD_ISSUER
    proof, problems = check_source(str(sig.wheel), ident)
    assert problems == () and "production trust root" in proof[0]

    proof, problems = check_source(str(sig.wheel), declared)  # bundle: WHEEL.sigstore
    assert proof == ()
    assert [p.rule for p in problems] == ["reference-mismatch"]
    assert "does not match someone-else" in problems[0].message

    staged = identity_for_source(
        {"instance": "staging", "identity": STAGING_ID, "issuer": STAGING_ISSUER}
    )
    assert staged is not None
    assert check_source(str(sig.staging), staged)[1] == ()
    lone = tmp_path / "x.whl"
    lone.write_bytes(b"x")
    _, problems = check_source(str(lone), staged)
    assert "not found: the source cannot be proven" in problems[0].message
    with pytest.raises(UsageError):
        check_source(str(sig.wheel), SigstoreIdentity(identity=PROD_ID))  # no issuer

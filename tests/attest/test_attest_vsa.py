"""Signed verdict: SLSA VSA v1 in an in-toto Statement, DSSE-signed; verified by biv and,
independently, by securesystemslib's DSSE implementation."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError as SslibVerificationError
from securesystemslib.signer import SSlibKey
from support.paths import REPO

from verifier.attest.dsse import AttestationError, keyid, load_public_key, pae
from verifier.attest.sigstore_sign import sign_vsa_keyless, to_sigstore_statement
from verifier.attest.vsa import (
    LEVEL_MATCH_L1,
    LEVEL_MATCH_L2,
    STATEMENT_TYPE,
    VSA_PREDICATE_TYPE,
    InputAttestation,
    VsaOptions,
    build_statement,
    verify_attestation,
    write_vsa,
)
from verifier.errors import UsageError
from verifier.model import Component, Finding, Report, Severity, Verdict


def make_keys(tmp_path: Path, kind: str) -> tuple[str, str]:
    priv: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    if kind == "ed25519":
        priv = ed25519.Ed25519PrivateKey.generate()
    else:
        priv = ec.generate_private_key(ec.SECP256R1())
    key = tmp_path / f"{kind}.key"
    pub = tmp_path / f"{kind}.pub"
    key.write_bytes(
        priv.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(key), str(pub)


def make_report(
    artifact: Path, verdict: Verdict = Verdict.PASS, findings: tuple[Finding, ...] = ()
) -> Report:
    data = artifact.read_bytes()
    return Report(
        tool_version="0.1.0",
        generated_at="2026-11-27T14:00:00Z",
        artifact={
            "path": str(artifact),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        },
        verdict=verdict,
        components=(
            Component(
                "electron",
                "28.1.0",
                "electron:28.1.0",
                "win32",
                "x64",
                {"electron-v28.1.0-win32-x64.zip": "ab" * 32},
            ),
        ),
        files=(),
        findings=findings,
        policy={"name": "3cx", "path": "policies/3cx.yaml", "sha256": "cd" * 32},
    )


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    p = tmp_path / "3CXDesktopApp-18.12.416.msi"
    p.write_bytes(b"MSI" + bytes(range(256)) * 8)
    return p


def sslib_verify(env_path: Path, pub_path: str) -> dict[str, object]:
    """Independent route: securesystemslib's DSSE Envelope + SSlibKey, then the subject."""
    env = SslibEnvelope.from_dict(json.loads(env_path.read_text()))
    pub = load_public_key(pub_path)
    key = SSlibKey.from_crypto(pub, keyid=keyid(pub))
    env.verify([key], 1)  # raises VerificationError
    assert env.payload_type == "application/vnd.in-toto+json"
    stmt: dict[str, object] = json.loads(env.payload)
    return stmt


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p256"])
def test_vsa_verifies_with_biv_and_securesystemslib(
    tmp_path: Path, artifact: Path, kind: str
) -> None:
    key, pub = make_keys(tmp_path, kind)
    out = tmp_path / "vsa.intoto.json"
    bundle = tmp_path / "ref.sigstore"
    bundle.write_text("{}")
    opts = VsaOptions(
        resource_uri="https://example.com/3CXDesktopApp-18.12.416.msi",
        input_attestations=(InputAttestation.of_file(str(bundle), "sigstore-bundle"),),
    )
    stmt = write_vsa(make_report(artifact), str(out), key, opts)

    assert stmt["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == VSA_PREDICATE_TYPE
    assert stmt["subject"] == [
        {
            "name": artifact.name,
            "digest": {"sha256": hashlib.sha256(artifact.read_bytes()).hexdigest()},
        }
    ]
    pred = stmt["predicate"]
    assert pred["verificationResult"] == "PASSED"
    assert pred["verifiedLevels"] == [LEVEL_MATCH_L1, LEVEL_MATCH_L2]
    assert not any(lv.startswith("SLSA_") for lv in pred["verifiedLevels"])
    assert pred["resourceUri"] == "https://example.com/3CXDesktopApp-18.12.416.msi"
    assert pred["policy"] == {"uri": "policies/3cx.yaml", "digest": {"sha256": "cd" * 32}}
    assert pred["inputAttestations"] == [
        {"uri": str(bundle), "digest": {"sha256": hashlib.sha256(b"{}").hexdigest()}}
    ]
    assert pred["verifier"]["id"] and pred["timeVerified"] == "2026-11-27T14:00:00Z"
    assert pred["biv"]["references"][0]["digests"] == {"electron-v28.1.0-win32-x64.zip": "ab" * 32}

    got = verify_attestation(str(out), str(artifact), key=pub)
    assert got.passed and got.statement == stmt
    assert "verificationResult PASSED" in got.summary()
    assert sslib_verify(out, pub) == stmt


def test_failed_verdict_still_gets_a_vsa(tmp_path: Path, artifact: Path) -> None:
    key, pub = make_keys(tmp_path, "ed25519")
    out = tmp_path / "vsa.json"
    f = Finding("signed-divergent-content", Severity.CRITICAL, "ffmpeg.dll", "ffmpeg.dll", "m")
    write_vsa(make_report(artifact, Verdict.FAIL, (f,)), str(out), key)
    got = verify_attestation(str(out), str(artifact), key=pub)
    assert not got.passed and got.result == "FAILED" and got.levels == []
    assert got.statement["predicate"]["biv"]["rules"] == ["signed-divergent-content"]


def test_one_changed_byte_fails_both_routes(tmp_path: Path, artifact: Path) -> None:
    key, pub = make_keys(tmp_path, "ecdsa-p256")
    out = tmp_path / "vsa.json"
    write_vsa(make_report(artifact), str(out), key)
    env = json.loads(out.read_text())

    # one changed byte in the envelope's payload
    payload = bytearray(base64.b64decode(env["payload"]))
    i = payload.index(b"PASSED")
    payload[i : i + 6] = b"PASSEX"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**env, "payload": base64.b64encode(bytes(payload)).decode()}))
    with pytest.raises(AttestationError, match="no signature in the envelope verifies"):
        verify_attestation(str(bad), str(artifact), key=pub)
    with pytest.raises(SslibVerificationError):
        sslib_verify(bad, pub)

    # one changed byte in the signature
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[-1] ^= 1
    env2 = {
        **env,
        "signatures": [{**env["signatures"][0], "sig": base64.b64encode(bytes(sig)).decode()}],
    }
    bad.write_text(json.dumps(env2))
    with pytest.raises(AttestationError):
        verify_attestation(str(bad), str(artifact), key=pub)
    with pytest.raises(SslibVerificationError):
        sslib_verify(bad, pub)

    # one changed byte in the artifact: the signature holds, the subject does not
    data = bytearray(artifact.read_bytes())
    data[100] ^= 0xFF
    changed = tmp_path / "changed.msi"
    changed.write_bytes(bytes(data))
    with pytest.raises(AttestationError, match="is not the attested subject"):
        verify_attestation(str(out), str(changed), key=pub)
    stmt = sslib_verify(out, pub)
    subject_digest = stmt["subject"][0]["digest"]["sha256"]  # type: ignore[index]
    assert hashlib.sha256(changed.read_bytes()).hexdigest() != subject_digest


def test_wrong_key_and_bad_inputs(tmp_path: Path, artifact: Path) -> None:
    key, _ = make_keys(tmp_path, "ed25519")
    _, other_pub = make_keys(tmp_path, "ecdsa-p256")
    out = tmp_path / "vsa.json"
    write_vsa(make_report(artifact), str(out), key)
    with pytest.raises(AttestationError, match=r"no signature .* verifies with the given key"):
        verify_attestation(str(out), str(artifact), key=other_pub)
    with pytest.raises(UsageError, match="give --key PEM"):
        verify_attestation(str(out), str(artifact))
    rsa_like = tmp_path / "junk.pem"
    rsa_like.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(UsageError, match="not a usable PEM public key"):
        verify_attestation(str(out), str(artifact), key=str(rsa_like))
    notjson = tmp_path / "x.json"
    notjson.write_text("not json")
    with pytest.raises(AttestationError, match="not JSON"):
        verify_attestation(str(notjson), str(artifact), key=key)
    with pytest.raises(UsageError, match="cannot read signing key"):
        write_vsa(make_report(artifact), str(out), str(tmp_path / "missing.key"))


def test_directory_artifact_uses_tree_digest(tmp_path: Path) -> None:
    from verifier.unpack import tree_digest

    d = tmp_path / "app"
    (d / "resources").mkdir(parents=True)
    (d / "a.exe").write_bytes(b"MZ" + b"\0" * 10)
    (d / "resources" / "app.asar").write_bytes(b"asar")
    digest = tree_digest(
        [
            ("a.exe", hashlib.sha256(b"MZ" + b"\0" * 10).hexdigest()),
            ("resources/app.asar", hashlib.sha256(b"asar").hexdigest()),
        ]
    )
    rep = make_report(d / "a.exe")
    rep = Report(**{**rep.__dict__, "artifact": {"path": str(d), "sha256": digest, "size": 16}})
    key, pub = make_keys(tmp_path, "ed25519")
    out = tmp_path / "vsa.json"
    stmt = write_vsa(rep, str(out), key)
    assert stmt["subject"][0]["name"] == "app"
    assert verify_attestation(str(out), str(d), key=pub).passed
    (d / "resources" / "app.asar").write_bytes(b"asaR")
    with pytest.raises(AttestationError):
        verify_attestation(str(out), str(d), key=pub)


def test_pae_matches_spec() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_sigstore_keyless_offline_parts(tmp_path: Path, artifact: Path) -> None:
    """Keyless signing cannot run here (no OIDC, no network): check what can be checked."""
    stmt = build_statement(make_report(artifact))
    s = to_sigstore_statement(stmt)  # sigstore-python accepts biv's Statement
    assert s is not None
    with pytest.raises(UsageError, match="--sigstore: signing failed: Identity token"):
        sign_vsa_keyless(stmt, str(tmp_path / "o.json"), identity_token="not-a-jwt")
    assert not (tmp_path / "o.json").exists()


def test_statement_matches_shipped_schema(artifact: Path) -> None:
    import jsonschema

    root = REPO
    schema = json.loads((root / "attestations" / "biv-vsa.schema.json").read_text())
    for v in (Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE):
        stmt = build_statement(make_report(artifact, v))
        jsonschema.Draft202012Validator(schema).validate(stmt)
    bad = build_statement(make_report(artifact))
    bad["predicate"]["verifiedLevels"] = ["SLSA_BUILD_LEVEL_3"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)


def test_reference_files_digest_in_biv_fields(artifact: Path) -> None:
    from verifier.model import FileEntry, FileResult, Status
    from verifier.unpack import tree_digest

    up = FileEntry("ffmpeg.dll", "ffmpeg.dll", (), 3, "ab" * 32)
    files = (
        FileResult("ffmpeg.dll", Status.IDENTICAL, up, up, "electron"),
        FileResult("app.exe", Status.OWN, up, None, None),
    )
    rep = Report(**{**make_report(artifact).__dict__, "files": files})
    ref = build_statement(rep)["predicate"]["biv"]["references"][0]
    assert ref["files"] == {"count": 1, "tree_sha256": tree_digest([("ffmpeg.dll", "ab" * 32)])}


def test_envelope_signed_by_securesystemslib_verifies_with_biv(
    tmp_path: Path, artifact: Path
) -> None:
    from securesystemslib.signer import CryptoSigner

    from verifier.attest.vsa import statement_bytes

    _, pub = make_keys(tmp_path, "ecdsa-p256")
    key_path = tmp_path / "ecdsa-p256.key"
    priv = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    signer = CryptoSigner(priv)  # securesystemslib's own keyid, not biv's
    env = SslibEnvelope(
        statement_bytes(build_statement(make_report(artifact))),
        "application/vnd.in-toto+json",
        {},
    )
    env.sign(signer)
    out = tmp_path / "sslib.json"
    out.write_text(json.dumps(env.to_dict()))
    assert verify_attestation(str(out), str(artifact), key=pub).passed
    many = env.to_dict()
    many["signatures"] = many["signatures"] * 17
    out.write_text(json.dumps(many))
    with pytest.raises(AttestationError, match="more than 16 signatures"):
        verify_attestation(str(out), str(artifact), key=pub)

"""Policies, signed verdicts and Sigstore bundles through biv's own command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from support.cli import biv
from support.fixtures import SigstoreFiles
from support.paths import REPO

from verifier._scenarios.scenario import Scenario

ROOT = REPO
PROD_ID = "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
PROD_ISSUER = "https://token.actions.githubusercontent.com"


def keypair(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    key = (
        ed25519.Ed25519PrivateKey.generate()
        if kind == "ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    )
    priv, pub = tmp_path / f"{kind}.pem", tmp_path / f"{kind}.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


def test_policy_check_good_and_bad(tmp_path: Path) -> None:
    for name in ("electron-app.yaml", "3cx.yaml", "strict.yaml"):
        r = biv("policy", "check", str(ROOT / "policies" / name))
        assert r.returncode == 0, r.stderr
        assert "OK" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nextends: electron-app\nalow:\n  - '*.dll'\n")
    r = biv("policy", "check", str(bad))
    assert r.returncode == 2
    assert r.stderr.strip().startswith(f"biv: error: {bad}:3: alow: unknown key")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_signed_verdict_for_pass_and_fail_verifies_and_detects_tampering(
    scenario: Scenario, tmp_path: Path, kind: str
) -> None:
    priv, pub = keypair(tmp_path, kind)
    common = [
        "--against",
        f"path:{scenario.upstream}",
        "--trust-store",
        scenario.trust_store,
        "--signing-key",
        str(priv),
    ]
    ok = biv("verify", scenario.clean, *common, "--attest", str(tmp_path / "ok.json"))
    bad = biv(
        "verify",
        scenario.compromised,
        *common,
        "--attest",
        str(tmp_path / "bad.json"),
        "--resource-uri",
        "https://vendor.example/3cx-setup",
    )
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode == 1, bad.stderr
    envelope = json.loads((tmp_path / "bad.json").read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"

    r = biv(
        "attest",
        "verify",
        str(tmp_path / "ok.json"),
        "--artifact",
        scenario.clean,
        "--key",
        str(pub),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED" in r.stdout
    # a VSA is written for failed verdicts too, and says so
    r = biv(
        "attest",
        "verify",
        str(tmp_path / "bad.json"),
        "--artifact",
        scenario.compromised,
        "--key",
        str(pub),
    )
    assert r.returncode == 1
    assert "FAILED" in r.stdout + r.stderr
    # the clean VSA does not vouch for the compromised build
    r = biv(
        "attest",
        "verify",
        str(tmp_path / "ok.json"),
        "--artifact",
        scenario.compromised,
        "--key",
        str(pub),
    )
    assert r.returncode != 0
    # one changed byte in the envelope
    raw = bytearray((tmp_path / "ok.json").read_bytes())
    i = raw.index(b'"sig"') + 10
    raw[i] = ord("A") if raw[i] != ord("A") else ord("B")
    (tmp_path / "tampered.json").write_bytes(bytes(raw))
    r = biv(
        "attest",
        "verify",
        str(tmp_path / "tampered.json"),
        "--artifact",
        scenario.clean,
        "--key",
        str(pub),
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr


def test_attest_without_key_is_usage_error(scenario: Scenario, tmp_path: Path) -> None:
    r = biv(
        "verify",
        scenario.clean,
        "--against",
        f"path:{scenario.upstream}",
        "--attest",
        str(tmp_path / "x.json"),
    )
    assert r.returncode == 2
    assert "--signing-key" in r.stderr


def test_sigstore_bundle_of_an_upstream_through_biv(sig: SigstoreFiles, tmp_path: Path) -> None:
    wheel = sig.wheel
    r = biv(
        "attest",
        "verify-bundle",
        str(wheel),
        "--cert-identity",
        PROD_ID,
        "--cert-oidc-issuer",
        PROD_ISSUER,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    r = biv(
        "attest",
        "verify-bundle",
        str(wheel),
        "--cert-identity",
        "https://evil.example/x",
        "--cert-oidc-issuer",
        PROD_ISSUER,
    )
    assert r.returncode == 1
    changed = tmp_path / wheel.name
    data = bytearray(wheel.read_bytes())
    data[100] ^= 1
    changed.write_bytes(bytes(data))
    r = biv(
        "attest",
        "verify-bundle",
        str(changed),
        "--bundle",
        f"{wheel}.sigstore",
        "--cert-identity",
        PROD_ID,
        "--cert-oidc-issuer",
        PROD_ISSUER,
    )
    assert r.returncode == 1
    assert "reference-mismatch" in r.stderr


def test_user_policy_waiver_covers_exact_bytes_only(scenario: Scenario, tmp_path: Path) -> None:
    import hashlib

    ffmpeg = Path(scenario.compromised, "ffmpeg.dll").read_bytes()
    sha = hashlib.sha256(ffmpeg).hexdigest()
    pol = tmp_path / "p.yaml"
    pol.write_text(
        "name: waived\nextends: electron-app\nwaivers:\n"
        f"  - rule: signed-divergent-content\n    path: ffmpeg.dll\n    sha256: {sha}\n"
        "    reason: vendor patch reviewed\n    expires: 2999-01-01\n"
    )
    args = [
        "--against",
        f"path:{scenario.upstream}",
        "--trust-store",
        scenario.trust_store,
        "--policy",
        str(pol),
        "--format",
        "json",
    ]
    r = biv("verify", scenario.compromised, *args)
    d = json.loads(r.stdout)
    waived = [f for f in d["findings"] if f["rule"] == "signed-divergent-content"]
    assert waived and waived[0]["suppressed"] is True
    assert waived[0]["waiver"]["reason"] == "vendor patch reviewed"
    # the d3dcompiler payload is not covered: still fails
    assert r.returncode == 1
    assert d["policy"]["name"] == "waived"

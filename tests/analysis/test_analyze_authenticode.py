"""analyze() feeds signing.authenticode the digests it asks for, from the one streaming pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.selfsigned import make_signer, sign

from verifier._scenarios import pewriter as w
from verifier.analysis import AnalysisContext, analyze
from verifier.binary import pe
from verifier.model import Blob, SignatureKind
from verifier.signing import trust as trust_mod

pytestmark = pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="needs osslsigncode")


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("auth")
    cert, key = make_signer(d)
    src = d / "ffmpeg.dll"
    src.write_bytes(w.build_pe(w.ffmpeg_dll()))
    out = {"cert": cert, "unsigned": src}
    sign(src, d / "sha1.dll", cert, key, "-h", "sha1")
    sign(d / "sha1.dll", d / "dual.dll", cert, key, "-h", "sha256", "-nest")
    sign(src, d / "sha256.dll", cert, key, "-h", "sha256")
    for n in ("sha1", "dual", "sha256"):
        out[n] = d / f"{n}.dll"
    return out


def _ctx(cert: Path) -> AnalysisContext:
    return AnalysisContext(trust=trust_mod.TrustConfig(extra_pem=(str(cert),)))


@pytest.mark.parametrize("name", ["sha1", "dual", "sha256"])
def test_valid_signatures(name: str, signed: dict[str, Path]) -> None:
    _, facts = analyze(Blob.of_file(signed[name]), name, _ctx(signed["cert"]))
    sig = facts.signature
    assert sig.kind == SignatureKind.AUTHENTICODE and sig.signed and sig.valid is True
    assert sig.signers and "biv test signer" in sig.signers[0].subject
    assert len(sig.nested_signers) == (1 if name == "dual" else 0)
    assert "invalid-signature" not in {a.rule for a in facts.anomalies}


@pytest.mark.parametrize("name", ["sha1", "dual"])
def test_one_changed_byte_breaks_every_digest(
    name: str, signed: dict[str, Path], tmp_path: Path
) -> None:
    data = bytearray(signed[name].read_bytes())
    info = pe.parse_pe(bytes(data), len(data))
    text = info.find_section(".text")
    assert text is not None
    data[text.raw_pointer + 1] ^= 0x40
    p = tmp_path / "t.dll"
    p.write_bytes(data)
    _, facts = analyze(Blob.of_file(p), "t.dll", _ctx(signed["cert"]))
    assert facts.signature.signed and facts.signature.valid is False
    assert "invalid-signature" in {a.rule for a in facts.anomalies}


def test_untrusted_without_the_root(signed: dict[str, Path]) -> None:
    _, facts = analyze(Blob.of_file(signed["sha256"]), "x", AnalysisContext())
    assert "untrusted-signer" in {a.rule for a in facts.anomalies}


def test_verify_signatures_off_reports_presence_only(signed: dict[str, Path]) -> None:
    ctx = AnalysisContext(verify_signatures=False)
    _, facts = analyze(Blob.of_file(signed["sha256"]), "x", ctx)
    assert facts.signature.signed and facts.signature.valid is None
    assert facts.signature.container_sha256
    _, plain = analyze(Blob.of_file(signed["unsigned"]), "x", ctx)
    assert not plain.signature.signed and plain.signature.kind == SignatureKind.NONE

"""Authenticode through ``analysis.analyze``: one streaming pass gives sha256 and the digest."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from support.authenticode import check_file

from verifier._scenarios import osslsign, pewriter
from verifier._scenarios import pki as P
from verifier.analysis import AnalysisContext, analyze
from verifier.model import Blob, SignatureKind
from verifier.signing.trust import TrustConfig

pytestmark = pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="no osslsigncode")


def test_analyze_verifies_authenticode(tmp_path: Path) -> None:
    pki = P.vendor_pki()
    paths = pki.write(tmp_path / "pki")
    src = tmp_path / "u.exe"
    src.write_bytes(pewriter.build_pe(pewriter.PESpec()))
    f = tmp_path / "s.exe"
    osslsign.sign(src, f, paths.signer_cert, paths.signer_key, paths.intermediate_cert)
    ctx = AnalysisContext(trust=TrustConfig(extra_pem=(paths.root_cert,)))
    sha, facts = analyze(Blob.of_file(f), "s.exe", ctx)
    assert sha == hashlib.sha256(f.read_bytes()).hexdigest()
    sig = facts.signature
    assert sig.kind == SignatureKind.AUTHENTICODE and sig.signed and sig.valid is True
    assert sig.signers[0].subject.startswith("CN=ACME Desktop Ltd")
    ours, _, _ = check_file(f, TrustConfig(extra_pem=(paths.root_cert,)))
    assert sig.container_sha256 == ours.container_sha256
    assert (
        sig.details_dict()["signatures"][0]["computed_digest"]
        == (ours.details_dict()["signatures"][0]["computed_digest"])
    )
    # default context: Microsoft roots only, so the test signer is not trusted
    _, facts2 = analyze(Blob.of_file(f), "s.exe", AnalysisContext())
    assert facts2.signature.valid is False
    assert "untrusted-signer" in {a.rule for a in facts2.anomalies}

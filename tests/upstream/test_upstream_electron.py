"""Electron references: detection, @electron/get URLs, two-source proof over real HTTP."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest
from support.electron_release import ReleaseWorld, ZipAnalyzer, make_zip, sha256
from support.httpserver import LocalServer

from verifier.errors import ReferenceUnavailableError, UsageError
from verifier.model import BinaryFacts, Blob, FileEntry, FileFormat, Inventory, SliceFacts
from verifier.upstream import electron
from verifier.upstream.options import DEFAULT_ELECTRON_BASE, FetchOptions
from verifier.upstream.sources import resolve_remote


def _inv(*entries: FileEntry) -> Inventory:
    return Inventory("app", "0" * 64, 0, entries)


def _code(
    path: str, fmt: FileFormat, archs: tuple[str, ...], marker: str | None = None
) -> FileEntry:
    markers = {"electron_version": marker} if marker else {}
    return FileEntry(
        path, path, (), 1, "0" * 64, BinaryFacts(format=fmt, archs=archs, markers=markers)
    )


# --- detection ----------------------------------------------------------------------------


def test_detect_version_from_marker_and_pe_target() -> None:
    inv = _inv(_code("MyApp.exe", FileFormat.PE, ("x64",), "Electron/28.1.0"))
    assert electron.detect_version(inv) == "28.1.0"
    assert electron.detect_targets(inv) == [("win32", "x64")]


def test_detect_universal_macos_gives_both_slices() -> None:
    slices = tuple(SliceFacts(a, 0, 1, "0" * 64, "0" * 64) for a in ("x86_64", "arm64"))
    facts = BinaryFacts(format=FileFormat.MACHO, archs=("x86_64", "arm64"), slices=slices)
    e = FileEntry(
        "Frameworks/Electron Framework.framework/Electron Framework", "x", (), 1, "0" * 64, facts
    )
    assert electron.detect_targets(_inv(e)) == [("darwin", "arm64"), ("darwin", "x64")]


def test_detect_linux_arm64_and_version_file(tmp_path: Path) -> None:
    vf = tmp_path / "version"
    vf.write_bytes(b"30.0.2")
    ver = FileEntry("version", "version", (), 6, "0" * 64, blob=Blob.of_file(vf))
    inv = _inv(_code("electron", FileFormat.ELF, ("aarch64",)), ver)
    assert electron.detect_version(inv) == "30.0.2"
    assert electron.detect_targets(inv) == [("linux", "arm64")]


def test_detect_version_from_framework_info_plist(tmp_path: Path) -> None:
    p = tmp_path / "Info.plist"
    p.write_bytes(plistlib.dumps({"CFBundleVersion": "27.3.1"}))
    path = "Contents/Frameworks/Electron Framework.framework/Resources/Info.plist"
    inv = _inv(FileEntry(path, path, (), p.stat().st_size, "0" * 64, blob=Blob.of_file(p)))
    assert electron.detect_version(inv) == "27.3.1"


def test_hostile_version_file_is_ignored(tmp_path: Path) -> None:
    vf = tmp_path / "version"
    vf.write_bytes(b"../../etc/passwd\x00" * 2)
    inv = _inv(
        FileEntry("version", "version", (), vf.stat().st_size, "0" * 64, blob=Blob.of_file(vf))
    )
    assert electron.detect_version(inv) is None


def test_auto_without_detectable_version_is_usage_error(tmp_path: Path) -> None:
    inv = _inv(_code("MyApp.exe", FileFormat.PE, ("x64",)))
    with pytest.raises(UsageError, match="cannot detect the Electron version"):
        resolve_remote("electron:auto", inv, FetchOptions(cache_dir=str(tmp_path)), str(tmp_path))


# --- URLs (@electron/get semantics) ---------------------------------------------------------


def test_default_release_url() -> None:
    opts = FetchOptions(env={})
    assert electron.release_base(opts, "28.1.0") == f"{DEFAULT_ELECTRON_BASE}v28.1.0/"


def test_electron_mirror_and_custom_dir_env_like_electron_get() -> None:
    env = {
        "ELECTRON_MIRROR": "https://npmmirror.com/mirrors/electron/",
        "ELECTRON_CUSTOM_DIR": "{{ version }}",
    }
    assert (
        electron.release_base(FetchOptions(env=env), "28.1.0")
        == "https://npmmirror.com/mirrors/electron/28.1.0/"
    )
    env2 = {
        "npm_config_electron_mirror": "https://m.example/e",
        "ELECTRON_CUSTOM_DIR": "ver-{{ version }}-x",
    }
    assert (
        electron.release_base(FetchOptions(env=env2), "1.2.3") == "https://m.example/e/ver-1.2.3-x/"
    )
    # --mirror beats the environment
    assert electron.release_base(FetchOptions(env=env, mirror="http://127.0.0.1:1/"), "1.2.3") == (
        "http://127.0.0.1:1/1.2.3/"
    )


def test_shasums_parser_refuses_malformed_lines() -> None:
    from verifier.errors import ReferenceMismatchError

    good = electron.parse_shasums(f"{'a' * 64} *x.zip\n{'b' * 64}  y.zip\n", "u")
    assert good == {"x.zip": "a" * 64, "y.zip": "b" * 64}
    with pytest.raises(ReferenceMismatchError):
        electron.parse_shasums("nothex *x.zip\n", "u")
    with pytest.raises(ReferenceMismatchError):
        electron.parse_shasums(f"{'a' * 64} *x.zip\n{'b' * 64} *x.zip\n", "u")


# --- fetch + prove over HTTP --------------------------------------------------------------


def test_release_host_proven_by_shasums_and_npm(tmp_path: Path) -> None:
    an = ZipAnalyzer()
    with ReleaseWorld() as w:
        refs = resolve_remote(
            "electron:auto",
            w.shipped(),
            w.opts(tmp_path / "c"),
            str(tmp_path),
            analyzer=an.analyzer(),
        )
    assert [r.component.name for r in refs] == ["electron", "electron-ffmpeg"]
    main = refs[0]
    assert not main.problems
    assert main.component.version == "28.1.0"
    assert (main.component.platform, main.component.arch) == ("win32", "x64")
    zname = "electron-v28.1.0-win32-x64.zip"
    assert main.component.digests == {zname: sha256(w.zips[zname])}
    proof = " ".join(main.component.proof)
    assert "SHASUMS256.txt" in proof and "checksums.json" in proof and "dist.integrity" in proof
    assert {f.path for f in main.files} >= {"electron.exe", "ffmpeg.dll"}
    assert {f.path for f in refs[1].files} == {"ffmpeg.dll"}


def test_universal_macos_fetches_x64_and_arm64(tmp_path: Path) -> None:
    an = ZipAnalyzer()
    targets = [("darwin", "x64"), ("darwin", "arm64")]
    with ReleaseWorld(targets=targets) as w:
        refs = resolve_remote(
            "electron:28.1.0",
            w.shipped("darwin", ("x86_64", "arm64")),
            w.opts(tmp_path / "c"),
            str(tmp_path),
            analyzer=an.analyzer(),
        )
    got = {(r.component.name, r.component.arch) for r in refs}
    assert got == {(n, a) for n in ("electron", "electron-ffmpeg") for a in ("x64", "arm64")}
    assert all(not r.problems and r.files for r in refs)


def test_tampered_mirror_with_matching_shasums_caught_by_npm_checksums(tmp_path: Path) -> None:
    an = ZipAnalyzer()
    with ReleaseWorld() as w, LocalServer() as evil:
        zname = "electron-v28.1.0-win32-x64.zip"
        bad = dict(w.zips)
        bad[zname] = make_zip({"electron.exe": b"MZ evil", "ffmpeg.dll": b"loader+payload"})
        for n, d in bad.items():
            evil.put(f"v28.1.0/{n}", d)
        evil.put("v28.1.0/SHASUMS256.txt", w.shasums_text(bad))  # consistent with the tampered zip
        opts = w.opts(tmp_path / "c", mirror=evil.url)
        refs = resolve_remote(
            "electron:auto", w.shipped(), opts, str(tmp_path), analyzer=an.analyzer()
        )
        main = next(r for r in refs if r.component.name == "electron")
        assert main.files == ()
        assert [p.rule for p in main.problems] == ["reference-mismatch"]
        assert "disagree" in main.problems[0].message
        assert main.problems[0].evidence["npm_sha256"] == sha256(w.zips[zname])
        assert main.problems[0].evidence["shasums_sha256"] == sha256(bad[zname])
        # the tampered zip was never downloaded, and nothing about it was cached
        assert f"v28.1.0/{zname}" not in evil.paths
        ff = next(r for r in refs if r.component.name == "electron-ffmpeg")
        assert not ff.problems and ff.files  # the untouched ffmpeg zip still proves
        evil.reset_count()
        with pytest.raises(ReferenceUnavailableError):
            resolve_remote(
                "electron:auto",
                w.shipped(),
                w.opts(tmp_path / "c", offline=True, ffmpeg=False),
                str(tmp_path),
                analyzer=an.analyzer(),
            )


def test_tampered_zip_with_honest_checksums_is_mismatch(tmp_path: Path) -> None:
    an = ZipAnalyzer()
    with ReleaseWorld() as w:
        zname = "electron-v28.1.0-win32-x64.zip"
        w.release.put(f"v28.1.0/{zname}", make_zip({"electron.exe": b"MZ evil"}))
        refs = resolve_remote(
            "electron:auto",
            w.shipped(),
            w.opts(tmp_path / "c", ffmpeg=False),
            str(tmp_path),
            analyzer=an.analyzer(),
        )
    (main,) = refs
    assert main.files == () and main.problems[0].rule == "reference-mismatch"
    assert main.problems[0].evidence["expected_sha256"] == sha256(w.zips[zname])
    assert an.calls == 0
    assert not list((tmp_path / "c" / "blobs").rglob("*")) or all(
        p.name != main.problems[0].evidence["actual_sha256"]
        for p in (tmp_path / "c" / "blobs").rglob("*")
    )


def test_npm_tarball_not_matching_integrity_is_mismatch(tmp_path: Path) -> None:
    with ReleaseWorld() as w:
        w.publish(integrity="sha512-" + "A" * 86 + "==")
        refs = resolve_remote(
            "electron:auto",
            w.shipped(),
            w.opts(tmp_path / "c", ffmpeg=False),
            str(tmp_path),
            analyzer=ZipAnalyzer().analyzer(),
        )
    assert refs[0].files == ()
    assert "dist.integrity" in refs[0].problems[0].message


def test_zip_missing_from_npm_checksums_is_mismatch(tmp_path: Path) -> None:
    with ReleaseWorld() as w:
        w.publish(checksums=b'{"other.zip": "' + b"0" * 64 + b'"}')
        refs = resolve_remote(
            "electron:auto",
            w.shipped(),
            w.opts(tmp_path / "c", ffmpeg=False),
            str(tmp_path),
            analyzer=ZipAnalyzer().analyzer(),
        )
    assert refs[0].files == () and "not listed in npm checksums.json" in refs[0].problems[0].message


def test_release_not_on_host_is_unavailable_naming_url(tmp_path: Path) -> None:
    with ReleaseWorld() as w:
        shipped = w.shipped()
        w.release.files.clear()
        with pytest.raises(ReferenceUnavailableError) as ei:
            resolve_remote(
                "electron:auto",
                shipped,
                w.opts(tmp_path / "c"),
                str(tmp_path),
                analyzer=ZipAnalyzer().analyzer(),
            )
    assert ei.value.exit_code == 3
    assert "SHASUMS256.txt" in ei.value.diagnostics() and "404" in ei.value.diagnostics()


def test_explicit_platform_and_arch_options(tmp_path: Path) -> None:
    with ReleaseWorld(targets=[("linux", "arm64")]) as w:
        refs = resolve_remote(
            "electron:28.1.0,platform=linux,arch=aarch64",
            Inventory("none", "0" * 64, 0, ()),
            w.opts(tmp_path / "c"),
            str(tmp_path),
            analyzer=ZipAnalyzer().analyzer(),
        )
    assert {(r.component.platform, r.component.arch) for r in refs} == {("linux", "arm64")}
    with pytest.raises(UsageError, match="platform="):
        resolve_remote(
            "electron:28.1.0,platform=beos,arch=x64",
            Inventory("n", "", 0, ()),
            w.opts(tmp_path / "c"),
            str(tmp_path),
        )


def test_electron_mirror_env_used_for_download(tmp_path: Path) -> None:
    with ReleaseWorld() as w:
        opts = w.opts(tmp_path / "c", mirror=None, env={"ELECTRON_MIRROR": w.release.url})
        refs = resolve_remote(
            "electron:28.1.0", w.shipped(), opts, str(tmp_path), analyzer=ZipAnalyzer().analyzer()
        )
        assert "v28.1.0/electron-v28.1.0-win32-x64.zip" in w.release.paths
    assert all(r.files for r in refs)


def test_fetch_source_returns_proven_archives_and_refuses_mismatch(tmp_path: Path) -> None:
    from verifier.errors import ReferenceMismatchError
    from verifier.upstream.sources import fetch_source

    with ReleaseWorld() as w:
        got = fetch_source("electron:auto", w.shipped(), w.opts(tmp_path / "c"))
        assert [c.name for c, _ in got] == ["electron", "electron-ffmpeg"]
        for comp, path in got:
            ((name, digest),) = comp.digests.items()
            assert Path(path).read_bytes() == w.zips[name] and sha256(w.zips[name]) == digest
        w.release.reset_count()
        again = fetch_source("electron:auto", w.shipped(), w.opts(tmp_path / "c"))
        assert w.release.count == 0 and [p for _, p in again] == [p for _, p in got]
        # then a full resolve reuses the proven archives without downloading
        refs = resolve_remote(
            "electron:auto",
            w.shipped(),
            w.opts(tmp_path / "c"),
            str(tmp_path),
            analyzer=ZipAnalyzer().analyzer(),
        )
        assert w.release.count == 0 and all(r.files for r in refs)
        w.release.put("v28.1.0/electron-v28.1.0-win32-x64.zip", b"PK tampered")
        with pytest.raises(ReferenceMismatchError):
            fetch_source("electron:auto", w.shipped(), w.opts(tmp_path / "c2"))


def test_missing_ffmpeg_zip_is_skipped_not_inconclusive(tmp_path: Path) -> None:
    with ReleaseWorld() as w:
        w.release.fault("v28.1.0/ffmpeg-v28.1.0-win32-x64.zip", "404")
        refs = resolve_remote(
            "electron:auto",
            w.shipped(),
            w.opts(tmp_path / "c"),
            str(tmp_path),
            analyzer=ZipAnalyzer().analyzer(),
        )
    assert [r.component.name for r in refs] == ["electron"] and refs[0].files

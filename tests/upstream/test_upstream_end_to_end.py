"""electron:auto end to end with the real analysis: detect, fetch, prove, cache, TUF parity.

A release host and npm registry on 127.0.0.1 serve an Electron release made of real PE files
(``verifier._scenarios.pewriter``); the shipped app carries a trojaned ffmpeg.dll (3CX). The version
and architecture are detected by the real analysis of the shipped files, and a comparison
against the TUF-delivered reference gives the same statuses as one against the download.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

from support import asar
from support.electron_release import ReleaseWorld, make_zip

from verifier import compare as compare_mod
from verifier import inventory
from verifier._scenarios import pewriter
from verifier.analysis import AnalysisContext
from verifier.model import FileEntry, Status
from verifier.unpack import unpack
from verifier.upstream import electron
from verifier.upstream.sources import default_analyzer, resolve_remote
from verifier.upstream.tuf_client import load_refs
from verifier.upstream.tuf_publish import RoleKeys, generate_key, publish

VERSION = "28.1.0"


def _release_files() -> dict[str, bytes]:
    return {
        "electron.exe": pewriter.build_pe(pewriter.electron_exe(VERSION)),
        "ffmpeg.dll": pewriter.build_pe(pewriter.ffmpeg_dll()),
        "resources/default_app.asar": asar.build({"main.js": b"// default app\n"})[0],
        "version": VERSION.encode(),
        "LICENSE": b"MIT\n",
    }


def _never_own(path: str, entry: FileEntry) -> bool:
    return False


def test_electron_auto_detect_fetch_prove_and_tuf_parity(tmp_path: Path) -> None:
    files = _release_files()
    with ReleaseWorld(VERSION) as w:
        w.zips[f"electron-v{VERSION}-win32-x64.zip"] = make_zip(files)
        w.zips[f"ffmpeg-v{VERSION}-win32-x64.zip"] = make_zip({"ffmpeg.dll": files["ffmpeg.dll"]})
        w.publish()

        # the shipped app: the release, electron.exe renamed, ffmpeg.dll trojaned
        app = tmp_path / "app"
        app.mkdir()
        with zipfile.ZipFile(tmp_path / "rel.zip", "w") as zf:
            for n, d in files.items():
                zf.writestr(n, d)
        shutil.unpack_archive(tmp_path / "rel.zip", app)
        (app / "electron.exe").rename(app / "MyApp.exe")
        evil = pewriter.build_pe(pewriter.trojaned_ffmpeg_dll())
        (app / "ffmpeg.dll").write_bytes(evil)
        ctx = AnalysisContext()
        shipped = inventory.build(unpack(str(app), str(tmp_path / "u1")), ctx)
        # the version comes from the PE scanner's "Electron/X.Y.Z" marker
        assert (
            electron.detect_version(
                replace(shipped, entries=tuple(e for e in shipped.entries if e.path != "version"))
            )
            == VERSION
        )

        opts = w.opts(tmp_path / "cache")
        refs = resolve_remote("electron:auto", shipped, opts, str(tmp_path / "w"), ctx)
        assert {(r.component.name, r.component.version, r.component.arch) for r in refs} == {
            ("electron", VERSION, "x64"),
            ("electron-ffmpeg", VERSION, "x64"),
        }
        assert [p for r in refs for p in r.problems] == []

        # warm: no network, same reference
        w.release.reset_count()
        w.npm.reset_count()
        warm = resolve_remote("electron:auto", shipped, opts, str(tmp_path / "w2"), ctx)
        assert w.release.count == 0 and w.npm.count == 0
        assert [r.to_dict()["files"] for r in warm] == [r.to_dict()["files"] for r in refs]
        assert [r.component.digests for r in warm] == [r.component.digests for r in refs]

    # publish the proven references over TUF and read them back over HTTP
    key = tmp_path / "k.pem"
    generate_key(key)
    res = publish(tmp_path / "repo", RoleKeys.single(str(key)), refs)
    trusted_root = tmp_path / "trusted-root.json"
    shutil.copyfile(res.root_path, trusted_root)
    from support.httpserver import LocalServer

    with LocalServer(root=tmp_path / "repo") as srv:
        bundle = load_refs(srv.url, str(trusted_root), str(tmp_path / "cache"))
    tuf_refs = sorted(bundle.references, key=lambda r: r.component.name)
    assert [r.to_dict() for r in tuf_refs] == [
        r.to_dict() for r in sorted(refs, key=lambda r: r.component.name)
    ]

    direct = compare_mod.compare(shipped, refs, _never_own)
    via_tuf = compare_mod.compare(shipped, tuf_refs, _never_own)
    statuses = {r.path: r.status for r in direct.results}
    assert statuses == {r.path: r.status for r in via_tuf.results}
    assert statuses["ffmpeg.dll"] == Status.DIVERGENT
    assert statuses["LICENSE"] == Status.IDENTICAL
    assert default_analyzer().version.startswith("0.")

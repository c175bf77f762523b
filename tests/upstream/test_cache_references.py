"""The reference cache: warm runs without network, re-verification, offline, concurrency."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from support.electron_release import ReleaseWorld, ZipAnalyzer, sha256
from support.paths import REPO

from verifier.errors import ReferenceUnavailableError
from verifier.model import Reference
from verifier.upstream.cache import Cache
from verifier.upstream.sources import resolve_remote

ZIP = "electron-v28.1.0-win32-x64.zip"


def _run(w: ReleaseWorld, cache: Path, an: ZipAnalyzer, **kw: object) -> list[Reference]:
    return resolve_remote(
        "electron:auto",
        w.shipped(),
        w.opts(cache, **kw),
        str(cache.parent / "work"),
        analyzer=an.analyzer(),
    )


def _files(refs: list[Reference]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    return [
        (
            r.component.name,
            r.component.digests.get(next(iter(r.component.digests), ""), ""),
            sorted((f.path, f.sha256) for f in r.files),
        )
        for r in refs
    ]


def test_warm_cache_second_run_makes_no_request_and_no_rehash(tmp_path: Path) -> None:
    an = ZipAnalyzer()
    with ReleaseWorld() as w:
        first = _run(w, tmp_path / "c", an)
        assert w.release.count > 0 and w.npm.count > 0
        w.release.reset_count()
        w.npm.reset_count()
        calls = an.calls
        second = _run(w, tmp_path / "c", an)
        assert w.release.count == 0 and w.npm.count == 0  # counting servers saw nothing
    assert an.calls == calls  # no re-analysis (and so no re-hash of the archive)
    assert _files(first) == _files(second)
    assert all(r.files and not r.problems for r in second)
    assert any("from the cache" in p for p in second[0].component.proof)


def test_offline_cold_cache_is_exit_3_naming_source(tmp_path: Path) -> None:
    with ReleaseWorld() as w:
        with pytest.raises(ReferenceUnavailableError) as ei:
            _run(w, tmp_path / "c", ZipAnalyzer(), offline=True)
        assert w.release.count == 0 and w.npm.count == 0
    assert ei.value.exit_code == 3
    assert "offline" in ei.value.diagnostics() and "electron:auto" in ei.value.diagnostics()


def test_offline_warm_cache_works(tmp_path: Path) -> None:
    an = ZipAnalyzer()
    with ReleaseWorld() as w:
        _run(w, tmp_path / "c", an)
    # servers are gone now: offline must not even try
    refs = _run(w, tmp_path / "c", an, offline=True)
    assert len(refs) == 2 and all(r.files for r in refs)


def _blob(cache: Path, data: bytes) -> Path:
    return Cache(cache).blob_path(sha256(data))


def test_corrupted_cache_entry_is_refetched_never_trusted(tmp_path: Path) -> None:
    an = ZipAnalyzer()
    c = tmp_path / "c"
    with ReleaseWorld() as w:
        _run(w, c, an)
        blob = _blob(c, w.zips[ZIP])
        assert blob.is_file()
        blob.write_bytes(b"corrupted" + blob.read_bytes()[9:])
        for p in (c / "refs").iterdir():  # force a re-read of the archive
            p.unlink()
        w.release.reset_count()
        refs = _run(w, c, an)
        assert f"v28.1.0/{ZIP}" in w.release.paths  # fetched again
    assert refs[0].files and not refs[0].problems
    assert sha256(blob.read_bytes()) == sha256(w.zips[ZIP])  # repaired


def test_swapped_cache_entry_offline_is_a_miss(tmp_path: Path) -> None:
    an = ZipAnalyzer()
    c = tmp_path / "c"
    with ReleaseWorld() as w:
        _run(w, c, an)
    blob = _blob(c, w.zips[ZIP])
    blob.write_bytes(w.zips["ffmpeg-v28.1.0-win32-x64.zip"])  # a valid zip, wrong content
    for p in (c / "refs").iterdir():
        p.unlink()
    with pytest.raises(ReferenceUnavailableError):
        _run(w, c, an, offline=True)


def test_tampered_cached_inventory_is_rebuilt_from_verified_archive(tmp_path: Path) -> None:
    an = ZipAnalyzer()
    c = tmp_path / "c"
    with ReleaseWorld() as w:
        _run(w, c, an)
    calls = an.calls
    for p in (c / "refs").iterdir():
        d = json.loads(p.read_bytes())
        for f in d["files"]:
            f["sha256"] = "f" * 64  # an attacker trying to make a trojan look "identical"
        p.write_text(json.dumps(d))
    refs = _run(w, c, an, offline=True)
    assert an.calls == calls + 2  # re-analysed from the (re-hashed) archives
    assert all(f.sha256 != "f" * 64 for r in refs for f in r.files)


def test_new_analysis_version_reanalyses_without_download(tmp_path: Path) -> None:
    c = tmp_path / "c"
    with ReleaseWorld() as w:
        _run(w, c, ZipAnalyzer())
        w.release.reset_count()
        an2 = ZipAnalyzer()
        refs = resolve_remote(
            "electron:auto",
            w.shipped(),
            w.opts(c),
            str(tmp_path / "w"),
            analyzer=an2.analyzer("test-2"),
        )
        assert w.release.count == 0
    assert an2.calls == 2 and all(r.files for r in refs)


def test_concurrent_runs_share_one_cache_safely(tmp_path: Path) -> None:
    c = tmp_path / "c"
    results: list[list[Reference]] = []
    errors: list[BaseException] = []
    with ReleaseWorld() as w:

        def go() -> None:
            try:
                results.append(_run(w, c, ZipAnalyzer()))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=go) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        zip_downloads = w.release.paths.count(f"v28.1.0/{ZIP}")
    assert not errors
    assert len(results) == 4 and len({str(_files(r)) for r in results}) == 1
    assert zip_downloads == 1  # the lock made the others wait for the cache
    assert not [p for p in (c / "tmp").iterdir() if p.name.startswith(".download-")]


def test_cache_blob_roundtrip_and_atomic_names(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    sha, path = cache.put_blob_bytes(b"hello")
    assert cache.get_blob_bytes(sha) == b"hello" and cache.get_blob(sha) == path
    Path(path).write_bytes(b"jello")
    assert cache.get_blob(sha) is None and not Path(path).exists()
    with pytest.raises(ValueError):
        cache.blob_path("../../etc/passwd")


_CHILD = """
import sys
from verifier.model import Inventory
from verifier.upstream.options import FetchOptions
from verifier.upstream.sources import Analyzer, resolve_remote
from verifier.model import Reference

def build(comp, path, workdir, ctx):
    return Reference(comp, ())

opts = FetchOptions(cache_dir=sys.argv[2], progress=False, retries=0, timeout=10)
refs = resolve_remote(sys.argv[1], Inventory("a", "", 0, ()), opts, sys.argv[3],
                      analyzer=Analyzer(build, "child-1"))
print(refs[0].component.digests)
"""


def test_concurrent_processes_share_one_cache_safely(tmp_path: Path) -> None:
    import subprocess
    import sys

    from support.electron_release import make_zip
    from support.httpserver import LocalServer

    data = make_zip({"big.bin": bytes(range(256)) * 4096})
    with LocalServer() as srv:
        src = f"url:{srv.put('x/app.zip', data)}#sha256={sha256(data)}"
        root = REPO
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, src, str(tmp_path / "c"), str(tmp_path / f"w{i}")],
                cwd=root,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(3)
        ]
        outs = [p.communicate(timeout=60) for p in procs]
        downloads = srv.paths.count("x/app.zip")
    assert all(p.returncode == 0 for p in procs), outs
    assert len({o for o, _ in outs}) == 1 and sha256(data) in outs[0][0]
    assert downloads == 1
    assert Cache(tmp_path / "c").get_blob(sha256(data)) is not None

"""Network behaviour against real servers on 127.0.0.1: stall, drop, truncate, 404, 500, retries."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from support.electron_release import ZipAnalyzer, make_zip, sha256
from support.httpserver import LocalServer

from verifier.errors import ReferenceUnavailableError
from verifier.model import Inventory
from verifier.upstream.http import HttpClient, Progress
from verifier.upstream.options import FetchOptions
from verifier.upstream.sources import resolve_remote

DATA = make_zip({"a.txt": b"hello", "b.bin": bytes(range(256)) * 64})


def _opts(tmp: Path, **kw: object) -> FetchOptions:
    base: dict[str, object] = {
        "cache_dir": str(tmp / "c"),
        "timeout": 0.5,
        "retries": 2,
        "backoff": 0.01,
        "progress": False,
    }
    base.update(kw)
    return FetchOptions(**base)  # type: ignore[arg-type]


def _url_source(srv: LocalServer, data: bytes = DATA) -> str:
    return f"url:{srv.put('dl/app.zip', data)}#sha256={sha256(data)}"


def _fail(srv: LocalServer, tmp: Path, **kw: object) -> ReferenceUnavailableError:
    src = _url_source(srv)
    with pytest.raises(ReferenceUnavailableError) as ei:
        resolve_remote(src, _empty(), _opts(tmp, **kw), str(tmp), analyzer=ZipAnalyzer().analyzer())
    assert ei.value.exit_code == 3
    assert srv.url + "dl/app.zip" in ei.value.diagnostics()  # names the URL
    return ei.value


def _empty() -> Inventory:
    return Inventory("app", "0" * 64, 0, ())


def test_url_source_downloads_and_proves(tmp_path: Path) -> None:
    with LocalServer() as srv:
        refs = resolve_remote(
            _url_source(srv),
            _empty(),
            _opts(tmp_path),
            str(tmp_path),
            analyzer=ZipAnalyzer().analyzer(),
        )
    (r,) = refs
    assert not r.problems and {f.path for f in r.files} == {"a.txt", "b.bin"}
    assert r.component.digests == {"app.zip": sha256(DATA)}


def test_url_source_wrong_digest_is_mismatch(tmp_path: Path) -> None:
    with LocalServer() as srv:
        url = srv.put("dl/app.zip", DATA)
        refs = resolve_remote(
            f"url:{url}#sha256={'0' * 64}",
            _empty(),
            _opts(tmp_path),
            str(tmp_path),
            analyzer=ZipAnalyzer().analyzer(),
        )
    assert refs[0].files == () and refs[0].problems[0].rule == "reference-mismatch"
    assert refs[0].problems[0].evidence["actual_sha256"] == sha256(DATA)


def test_stalled_server_times_out_with_clear_error(tmp_path: Path) -> None:
    with LocalServer() as srv:
        srv.fault("dl/app.zip", "stall")
        t0 = time.monotonic()
        err = _fail(srv, tmp_path, retries=1)
        elapsed = time.monotonic() - t0
    assert "timed out" in err.diagnostics()
    assert elapsed < 5  # two attempts of 0.5 s, not the 10 s stall
    assert "(after 2 attempt(s))" in err.diagnostics()


def test_server_that_never_answers_times_out(tmp_path: Path) -> None:
    with LocalServer() as srv:
        srv.fault("dl/app.zip", "hang")
        err = _fail(srv, tmp_path, retries=0)
    assert "timed out" in err.diagnostics()


def test_dropped_connection_is_retried_then_reported(tmp_path: Path) -> None:
    with LocalServer() as srv:
        srv.fault("dl/app.zip", "drop")
        err = _fail(srv, tmp_path)
        assert srv.paths.count("dl/app.zip") == 3  # 1 + 2 retries, bounded
    assert "connection" in err.diagnostics()


def test_truncated_body_is_not_accepted(tmp_path: Path) -> None:
    with LocalServer() as srv:
        srv.fault("dl/app.zip", "truncate")
        err = _fail(srv, tmp_path)
    assert "connection" in err.diagnostics() or "bytes" in err.diagnostics()
    assert not list((tmp_path / "c" / "blobs").rglob("*.zip"))


def test_404_is_not_retried(tmp_path: Path) -> None:
    with LocalServer() as srv:
        srv.fault("dl/app.zip", "404")
        err = _fail(srv, tmp_path)
        assert srv.paths.count("dl/app.zip") == 1
    assert "HTTP 404" in err.diagnostics()


def test_500_is_retried_with_backoff_then_reported(tmp_path: Path) -> None:
    with LocalServer() as srv:
        srv.fault("dl/app.zip", "500")
        err = _fail(srv, tmp_path)
        assert srv.paths.count("dl/app.zip") == 3
    assert "HTTP 500" in err.diagnostics()


def test_transient_500_then_success(tmp_path: Path) -> None:
    with LocalServer() as srv:
        src = _url_source(srv)
        srv.fault("dl/app.zip", "503", times=2)
        refs = resolve_remote(
            src, _empty(), _opts(tmp_path), str(tmp_path), analyzer=ZipAnalyzer().analyzer()
        )
        assert srv.paths.count("dl/app.zip") == 3
    assert refs[0].files and not refs[0].problems


def test_connection_refused_is_unavailable(tmp_path: Path) -> None:
    with LocalServer() as srv:
        url = srv.url
    src = f"url:{url}dl/app.zip#sha256={sha256(DATA)}"
    with pytest.raises(ReferenceUnavailableError, match="connection"):
        resolve_remote(
            src,
            _empty(),
            _opts(tmp_path, retries=0),
            str(tmp_path),
            analyzer=ZipAnalyzer().analyzer(),
        )


def test_oversized_download_is_refused(tmp_path: Path) -> None:
    with LocalServer() as srv:
        _fail(srv, tmp_path, max_download_bytes=100)


def test_metadata_size_cap(tmp_path: Path) -> None:
    with LocalServer() as srv:
        url = srv.put("big.json", b"x" * 5000)
        with (
            HttpClient(_opts(tmp_path, max_metadata_bytes=1000)) as http,
            pytest.raises(ReferenceUnavailableError, match="larger than"),
        ):
            http.get_bytes(url)


def test_offline_client_makes_no_request(tmp_path: Path) -> None:
    with LocalServer() as srv:
        url = srv.put("x", b"x")
        with (
            HttpClient(_opts(tmp_path, offline=True)) as http,
            pytest.raises(ReferenceUnavailableError),
        ):
            http.get_bytes(url)
        assert srv.count == 0


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_tty() -> None:
    quiet = io.StringIO()
    p = Progress("electron.zip", 1000, True, quiet)
    p.update(500)
    p.close()
    assert quiet.getvalue() == ""
    tty = _Tty()
    p = Progress("electron.zip", 1000, True, tty)
    p.update(1000)
    p.close()
    assert "100%" in tty.getvalue()
    off = _Tty()
    p = Progress("electron.zip", 1000, False, off)
    p.update(1000)
    p.close()
    assert off.getvalue() == ""

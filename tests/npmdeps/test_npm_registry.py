"""deps:npm's registry client against a real HTTP server on 127.0.0.1: what the registry
answers (missing names and versions, wrong documents, weak integrity, faults, outages) and
what the cache keeps. The tarballs are small ones made here."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from support.httpserver import LocalServer
from support.npm_registry import Registry

from verifier.npmdeps.registry import Fetcher, registries
from verifier.upstream.options import DEFAULT_NPM_REGISTRY, FetchOptions


def tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


PKG = tgz({"package.json": b'{"name": "a", "version": "1.0.0"}', "index.js": b"a"})


def opts(srv: LocalServer, cache: Path, **kw: object) -> FetchOptions:
    env = {"npm_config_registry": srv.url, "BIV_NPM_PUBLIC_REGISTRY": ""}
    base: dict[str, object] = {"retries": 1, "backoff": 0.0, "timeout": 2.0, "progress": False}
    base.update(kw)
    return FetchOptions(cache_dir=str(cache), env=env, **base)  # type: ignore[arg-type]


def fetch(o: FetchOptions, tmp: Path, name: str = "a", version: str = "1.0.0") -> object:
    with Fetcher(o, str(tmp / "work"), None) as f:
        return f.obtain(name, version)


def test_registries_from_the_environment() -> None:
    r = registries(FetchOptions(env={}))
    assert (r.primary, r.public) == (DEFAULT_NPM_REGISTRY, None)
    r = registries(FetchOptions(env={"npm_config_registry": "http://mirror.example/npm"}))
    assert (r.primary, r.public) == ("http://mirror.example/npm/", DEFAULT_NPM_REGISTRY)
    r = registries(
        FetchOptions(env={"NPM_CONFIG_REGISTRY": "http://m/", "BIV_NPM_PUBLIC_REGISTRY": ""})
    )
    assert (r.primary, r.public) == ("http://m/", None)
    explicit = FetchOptions(npm_registry="http://given/", env={"npm_config_registry": "http://x/"})
    assert registries(explicit).primary == "http://given/"


def test_ok_then_warm_from_the_cache(tmp_path: Path) -> None:
    with LocalServer() as srv:
        Registry(srv).publish("a", "1.0.0", PKG)
        got = fetch(opts(srv, tmp_path / "c"), tmp_path)
        assert got.status == "ok" and got.published is not None  # type: ignore[attr-defined]
        assert got.digests.sha256 == hashlib.sha256(PKG).hexdigest()  # type: ignore[attr-defined]
        srv.reset_count()
        again = fetch(opts(srv, tmp_path / "c"), tmp_path)
        assert again.status == "ok" and srv.count == 0  # type: ignore[attr-defined]
        # a swapped cached tarball and inventory: detected, fetched again
        cache = tmp_path / "c"
        for p in (cache / "refs").glob("*.json"):
            p.unlink()
        for p in (cache / "blobs").rglob("*"):
            if p.is_file():
                p.write_bytes(b"swapped")
        third = fetch(opts(srv, cache), tmp_path)
        assert third.status == "ok" and srv.count > 0  # type: ignore[attr-defined]


def test_unknown_name_and_version_are_cached_answers(tmp_path: Path) -> None:
    with LocalServer() as srv:
        Registry(srv).publish("a", "1.0.0", PKG)
        o = opts(srv, tmp_path / "c")
        assert fetch(o, tmp_path, "a", "9.9.9").status == "unknown-version"  # type: ignore[attr-defined]
        assert fetch(o, tmp_path, "@private/x", "1.0.0").status == "unknown-name"  # type: ignore[attr-defined]
        srv.reset_count()
        assert fetch(o, tmp_path, "@private/x", "1.0.0").status == "unknown-name"  # type: ignore[attr-defined]
        off = opts(srv, tmp_path / "c", offline=True)
        assert fetch(off, tmp_path, "a", "9.9.9").status == "unknown-version"  # type: ignore[attr-defined]
        assert srv.count == 0


def publish_doc(srv: LocalServer, doc: object, name: str = "a", version: str = "1.0.0") -> None:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    srv.put(f"{name}/{version}", body)
    srv.put(f"{name}/latest", body)


@pytest.mark.parametrize(
    ("doc", "status", "why"),
    [
        (b"<html>not json", "unavailable", "invalid JSON"),
        (b"[" * 100_000, "unavailable", "invalid JSON"),
        ({"name": "b", "version": "1.0.0", "dist": {}}, "mismatch", "answered with 'b'"),
        ({"name": "a", "version": "2.0.0", "dist": {}}, "mismatch", "answered with"),
        ({"name": "a", "version": "1.0.0"}, "mismatch", "no 'dist'"),
        (
            {"name": "a", "version": "1.0.0", "dist": {"integrity": "sha1-" + "A" * 28}},
            "mismatch",
            "no sha512",
        ),
    ],
)
def test_bad_version_documents(tmp_path: Path, doc: object, status: str, why: str) -> None:
    with LocalServer() as srv:
        publish_doc(srv, doc)
        got = fetch(opts(srv, tmp_path / "c"), tmp_path)
        assert got.status == status and why in got.reason, got  # type: ignore[attr-defined]


def test_tarball_url_and_shasum_checks(tmp_path: Path) -> None:
    with LocalServer() as srv:
        reg = Registry(srv)
        reg.publish("a", "1.0.0", PKG)
        doc = json.loads(srv.files["a/1.0.0"])
        doc["dist"]["tarball"] = "file:///etc/passwd"
        publish_doc(srv, doc)
        got = fetch(opts(srv, tmp_path / "c1"), tmp_path)
        assert got.status == "unavailable" and "no tarball URL" in got.reason  # type: ignore[attr-defined]
        reg.publish("a", "1.0.0", PKG)
        doc = json.loads(srv.files["a/1.0.0"])
        doc["dist"]["shasum"] = "0" * 40
        publish_doc(srv, doc)
        got = fetch(opts(srv, tmp_path / "c2"), tmp_path)
        assert got.status == "mismatch" and "dist.shasum" in got.reason  # type: ignore[attr-defined]


def test_proven_but_unreadable_tarball(tmp_path: Path) -> None:
    with LocalServer() as srv:
        Registry(srv).publish("a", "1.0.0", b"this is not a tarball")
        got = fetch(opts(srv, tmp_path / "c"), tmp_path)
        assert got.status == "unavailable" and "cannot be read" in got.reason  # type: ignore[attr-defined]


def test_outage_stops_asking_after_a_few_failures(tmp_path: Path) -> None:
    with LocalServer() as srv:
        srv.fault_all("503")
        o = opts(srv, tmp_path / "c")
        with Fetcher(o, str(tmp_path / "w"), None) as f:
            got = [f.obtain(f"p{i}", "1.0.0") for i in range(8)]
        assert all(g.status == "unavailable" for g in got)
        assert "HTTP 503" in got[0].reason and "not asked again" in got[-1].reason
        assert srv.count == 3 * 2  # three packages, two attempts each, then no more


def test_stalled_registry_times_out(tmp_path: Path) -> None:
    with LocalServer(stall_seconds=5) as srv:
        Registry(srv).publish("a", "1.0.0", PKG)
        srv.fault("a/-/a-1.0.0.tgz", "stall")
        got = fetch(opts(srv, tmp_path / "c", timeout=0.5, retries=0), tmp_path)
        assert got.status == "unavailable" and "timed out" in got.reason  # type: ignore[attr-defined]


def test_deps_alone_on_an_app_without_dependencies(tmp_path: Path) -> None:
    from verifier.api import VerifyRequest, verify
    from verifier.model import Verdict

    app = tmp_path / "app" / "resources" / "app"
    app.mkdir(parents=True)
    (app / "main.js").write_text("console.log('bundled by webpack')\n")
    env = {"npm_config_registry": "http://127.0.0.1:9/", "BIV_NPM_PUBLIC_REGISTRY": ""}
    rep = verify(VerifyRequest(str(tmp_path / "app"), against=("deps:npm",), env=env))
    assert rep.verdict == Verdict.INCONCLUSIVE and not rep.components and not rep.files
    assert "no npm dependency was found" in rep.inconclusive_reasons[0]

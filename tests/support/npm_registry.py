"""Real npm packages for tests, and a local npm registry on 127.0.0.1 that serves them.

``PACKAGES`` pins real registry tarballs by sha256 (``fetch.npm_tarball`` downloads each once
into the shared test cache; offline afterwards). ``Registry`` publishes tarballs on a
``LocalServer`` the way registry.npmjs.org answers: ``/NAME/VERSION`` (version document with
``dist.tarball``, ``dist.integrity``, ``dist.shasum``), ``/NAME/latest`` and the tarball.
``install`` lays a tarball out as npm installs it (first path component removed);
``electron_builder_strip`` rewrites a package.json the way electron-builder does.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from support.fetch import npm_tarball
from support.httpserver import LocalServer

# (name, version) -> sha256 of the registry's tarball (dist.integrity checked when pinned)
PACKAGES: dict[tuple[str, str], str] = {
    ("bufferutil", "4.0.8"): "5c2fd962b75fb890764a7ee2815a95691a70ece8d2ade67579a19e43b9e8e991",
    ("node-gyp-build", "4.8.4"): "940450fb4158bddc23ae156432a67338a4d7ab6a585b639c61b3b0a14d2bac24",
    ("ms", "2.1.3"): "f6616e15e530ed552f9daa2d3ce71963947c6bc7c98c9b64fd3e673fd02622c6",
    ("ms", "2.1.2"): "1157a6e30d3ffe1b9fcaf3a39caf159f8dc981199a3380c78ddd89f73bcefb48",
    ("debug", "4.3.4"): "04922c9b2e37a6858df2b870a278d1d3a8aaad7ec4c3bd84427f0d53cbf28bcf",
    ("@types/ms", "0.7.34"): "257c1b82075575a739fc034d7de5d526fd43e3892152b64d98f0da52fd79fd4d",
    ("@tootallnate/once", "2.0.0"): (
        "cfd126e31fc0549c41626d3388647f3d90aaa480850a9efcdea861475cfe7bbf"
    ),
    ("semver", "7.6.0"): "49ef76bfe28857daa79115d5acc80bfbec8a7852f15dc3c2ac2e6b8777255c0f",
    ("lru-cache", "6.0.0"): "5ce40deb031cf6968f3832502a68f8d26be09764dc4f8fc07957a2fd7e8cdf5e",
    ("yallist", "4.0.0"): "a80c78aa276536615891ef66efbc17d3bd07c8cb14e3bd5298eed3006bfa4d49",
    ("inherits", "2.0.4"): "d94dbc6c1bb3c5ac0fb12a73ade187108fc60de273a1b754f55044eb5e24afaf",
    ("safe-buffer", "5.2.1"): "5d181804516c4a693a384272a7bd0e42d17e0d4b301ccfbe408669ccafdcb3e8",
    ("escape-html", "1.0.3"): "a101155c3cbdfb1e4f98f2f83c8b5e392db6accfa606df0eba8b87a5762b0366",
    ("isarray", "1.0.0"): "e23c76f14f5222e07e39d89858b61e8e33f96956de9e0df3659cbdf8db950c87",
}


def tarball(name: str, version: str) -> bytes:
    """The pinned registry tarball (skips the test when it cannot be downloaded)."""
    return npm_tarball(name, version, PACKAGES[(name, version)]).read_bytes()


def sri512(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class Registry:
    """An npm registry on a LocalServer: publish tarballs, answer like the real one."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url

    def publish(
        self,
        name: str,
        version: str,
        data: bytes,
        *,
        integrity: str | None = None,
        serve: bytes | None = None,
    ) -> str:
        """Publish ``data`` as NAME@VERSION. ``integrity`` overrides dist.integrity;
        ``serve`` makes the tarball URL answer other bytes than the ones published."""
        base = name.rsplit("/", 1)[-1]
        url = self.server.put(
            f"{name}/-/{base}-{version}.tgz", serve if serve is not None else data
        )
        doc: dict[str, Any] = {
            "name": name,
            "version": version,
            "dist": {
                "tarball": url,
                "integrity": integrity or sri512(data),
                "shasum": hashlib.sha1(data).hexdigest(),
            },
        }
        body = json.dumps(doc).encode()
        self.server.put(f"{name}/{version}", body)
        self.server.put(f"{name}/latest", body)
        return url


def members(data: bytes) -> dict[str, bytes]:
    """The regular files of a tarball, first path component removed (as npm installs)."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        for info in tf:
            if not info.isfile():
                continue
            rel = info.name.split("/", 1)[1] if "/" in info.name else ""
            fh = tf.extractfile(info)
            if rel and fh is not None:
                out[rel] = fh.read()
    return out


def install(data: bytes, folder: Path) -> None:
    """Lay the tarball out in ``folder`` as npm installs it."""
    for rel, content in members(data).items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)


# electron-builder (app-builder-lib fileTransformer cleanupPackageJson) removes these from a
# dependency's package.json, with every "_" key, and writes JSON.stringify(data, null, 2)
_EB_STRIPPED = {
    "dist", "gitHead", "keywords", "build", "jspm", "ava", "xo", "nyc", "eslintConfig",
    "contributors", "bundleDependencies", "tags", "scripts", "devDependencies", "readme",
}  # fmt: skip


def electron_builder_strip(manifest: bytes) -> bytes:
    doc = json.loads(manifest)
    kept = {k: v for k, v in doc.items() if not k.startswith("_") and k not in _EB_STRIPPED}
    return json.dumps(kept, indent=2).encode()

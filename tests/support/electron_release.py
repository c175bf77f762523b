"""A fake upstream world on 127.0.0.1: a GitHub-like release host and an npm registry.

    world = ReleaseWorld(version="28.1.0", targets=[("win32", "x64")]).start()
    world.release   # LocalServer laid out like github.com/electron/electron/releases/download/
    world.npm       # LocalServer answering GET /electron/28.1.0 and the tarball
    world.opts(tmp_path)   # FetchOptions pointing at both, no retries delay
    world.shipped()        # an Inventory of an app built on that release

Zips hold small files (enough for fetch/prove/cache tests); analysis is ``zip_analyzer``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from support.httpserver import LocalServer
from verifier.model import BinaryFacts, Component, FileEntry, FileFormat, Inventory, Reference
from verifier.upstream.options import FetchOptions
from verifier.upstream.sources import Analyzer


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            zf.writestr(info, data)
    return buf.getvalue()


def make_tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ZipAnalyzer:
    """Lists zip/tar members with their sha256 (stands in for inventory.build_reference)."""

    def __init__(self) -> None:
        self.calls = 0

    def build(self, comp: Component, archive: str, workdir: str, ctx: Any) -> Reference:
        self.calls += 1
        entries = []
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    data = zf.read(info)
                    entries.append(_entry(info.filename, data, archive))
        else:
            with tarfile.open(archive, "r:*") as tf:
                for m in tf.getmembers():
                    fh = tf.extractfile(m) if m.isfile() else None
                    if fh is not None:
                        entries.append(_entry(m.name, fh.read(), archive))
        return Reference(comp, tuple(entries))

    def analyzer(self, version: str = "test-1") -> Analyzer:
        return Analyzer(self.build, version)


def _entry(path: str, data: bytes, archive: str) -> FileEntry:
    return FileEntry(path, f"{archive}!/{path}", (archive,), len(data), sha256(data))


def electron_files(version: str, platform: str, arch: str) -> dict[str, bytes]:
    exe = {
        "win32": "electron.exe",
        "linux": "electron",
        "darwin": "Electron.app/Contents/MacOS/Electron",
    }
    return {
        exe[platform]: f"MZ fake electron {version} {platform} {arch}".encode(),
        "ffmpeg.dll" if platform == "win32" else "libffmpeg.so": f"ffmpeg {arch}".encode(),
        "resources/default_app.asar": b"asar",
        "version": version.encode(),
    }


class ReleaseWorld:
    def __init__(
        self,
        version: str = "28.1.0",
        targets: Iterable[tuple[str, str]] = (("win32", "x64"),),
    ) -> None:
        self.version = version
        self.targets = list(targets)
        self.release = LocalServer()
        self.npm = LocalServer()
        self.zips: dict[str, bytes] = {}
        for platform, arch in self.targets:
            v = version
            self.zips[f"electron-v{v}-{platform}-{arch}.zip"] = make_zip(
                electron_files(v, platform, arch)
            )
            ffname = "ffmpeg.dll" if platform == "win32" else "libffmpeg.so"
            self.zips[f"ffmpeg-v{v}-{platform}-{arch}.zip"] = make_zip(
                {ffname: f"ffmpeg {arch}".encode()}
            )

    def start(self) -> ReleaseWorld:
        self.release.start()
        self.npm.start()
        self.publish()
        return self

    def stop(self) -> None:
        self.release.stop()
        self.npm.stop()

    def __enter__(self) -> ReleaseWorld:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def shasums_text(self, zips: dict[str, bytes] | None = None) -> bytes:
        zips = self.zips if zips is None else zips
        return "".join(f"{sha256(d)} *{n}\n" for n, d in sorted(zips.items())).encode()

    def checksums_json(self) -> bytes:
        return json.dumps({n: sha256(d) for n, d in sorted(self.zips.items())}, indent=2).encode()

    def publish(self, checksums: bytes | None = None, integrity: str | None = None) -> None:
        """(Re)publish the release host and the npm registry from ``self.zips``."""
        d = f"v{self.version}"
        for name, data in self.zips.items():
            self.release.put(f"{d}/{name}", data)
        self.release.put(f"{d}/SHASUMS256.txt", self.shasums_text())
        tgz = make_tgz(
            {
                "package/package.json": json.dumps(
                    {"name": "electron", "version": self.version}
                ).encode(),
                "package/checksums.json": checksums
                if checksums is not None
                else self.checksums_json(),
            }
        )
        self.publish_npm("electron", self.version, tgz, integrity)

    def publish_npm(self, name: str, version: str, tgz: bytes, integrity: str | None = None) -> str:
        base = name.rsplit("/", 1)[-1]
        tar_path = f"{name}/-/{base}-{version}.tgz"
        self.npm.put(tar_path, tgz)
        doc = {
            "name": name,
            "version": version,
            "dist": {
                "tarball": self.npm.url + tar_path,
                "integrity": integrity or sri(tgz),
                "shasum": hashlib.sha1(tgz).hexdigest(),
            },
        }
        self.npm.put(f"{name}/{version}", json.dumps(doc).encode())
        return tar_path

    def opts(self, cache: Path, **kw: Any) -> FetchOptions:
        base: dict[str, Any] = {
            "cache_dir": str(cache),
            "mirror": self.release.url,
            "npm_registry": self.npm.url,
            "timeout": 2.0,
            "retries": 1,
            "backoff": 0.0,
            "progress": False,
            "env": {},
        }
        base.update(kw)
        return FetchOptions(**base)

    def shipped(self, platform: str = "win32", archs: tuple[str, ...] = ("x64",)) -> Inventory:
        fmt = {"win32": FileFormat.PE, "darwin": FileFormat.MACHO, "linux": FileFormat.ELF}[
            platform
        ]
        name = {
            "win32": "MyApp.exe",
            "darwin": "Frameworks/Electron Framework.framework/Electron Framework",
            "linux": "myapp",
        }[platform]
        facts = BinaryFacts(
            format=fmt, archs=archs, markers={"electron_version": f"Electron/{self.version}"}
        )
        e = FileEntry(name, name, (), 10, "0" * 64, facts)
        return Inventory("app", "0" * 64, 10, (e,))

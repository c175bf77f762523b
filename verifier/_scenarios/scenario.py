"""Build the 3CX scenario on disk: an upstream release, a clean vendor build, a compromised one.

    root/
      upstream/      Electron-like release: electron.exe (fuse wire, "Electron/X.Y.Z"),
                     ffmpeg.dll (unsigned), libEGL.dll, d3dcompiler_47.dll (signed by the
                     "Electron Upstream Test CA", RFC 3161 timestamp), resources/default_app.asar,
                     LICENSE, version, locales/*.pak, *.pak, icudtl.dat, snapshot blobs
      clean/         the vendor build: electron.exe renamed 3CXDesktopApp.exe with rcedit-like
                     resources and signed by the "Vendor Test CA"; ffmpeg.dll re-signed by the
                     vendor (identical except signature); d3dcompiler_47.dll untouched;
                     resources/app.asar (the app's own code and its npm dependencies, which
                     ``verifier._scenarios.npm_deps`` writes and serves from a local registry);
                     default_app.asar removed
      compromised/   clean, except ffmpeg.dll has a loader added (then vendor-signed),
                     d3dcompiler_47.dll carries an RC4 payload (FE ED FA CE) inside its
                     signature, and one npm dependency in app.asar has a line added
      trust.pem      both test roots (what a user passes as --trust-store)
      pki/           the test PKIs' PEM files

Everything is generated locally, offline, in a few seconds. File contents are deterministic
apart from signatures (test keys are generated per process).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

from verifier._scenarios import osslsign, pewriter
from verifier._scenarios.npm_deps import app_files
from verifier._scenarios.payload import PaddingResult, inject_signature_padding, make_payload
from verifier._scenarios.pki import PkiPaths, upstream_pki, vendor_pki
from verifier.record import record

ELECTRON_VERSION = "30.0.0"
PRODUCT = "3CXDesktopApp"
PRODUCT_VERSION = "18.12.416"
# Fixed signing/timestamp times: the signed attributes do not depend on the clock.
UPSTREAM_SIGNING_TIME = dt.datetime(2024, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
VENDOR_SIGNING_TIME = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=dt.UTC)

StrPath = str | os.PathLike[str]


@record
class Scenario:
    root: str
    upstream: str
    clean: str
    compromised: str
    trust_store: str  # PEM with both test roots
    upstream_pki: PkiPaths
    vendor_pki: PkiPaths
    padding: PaddingResult  # where the payload sits in compromised/d3dcompiler_47.dll
    electron_version: str = ELECTRON_VERSION
    product_exe: str = f"{PRODUCT}.exe"


# --- a tiny asar writer --------------------------------------------------------------------


def write_asar(path: StrPath, files: dict[str, bytes]) -> None:
    """Write an Electron asar archive (Chromium pickle header + JSON index + file data).

    ``files`` maps '/'-separated paths to contents; directories are implied.
    """
    tree: dict[str, object] = {"files": {}}
    data = bytearray()
    for name in sorted(files):
        content = files[name]
        node = tree
        parts = name.split("/")
        for d in parts[:-1]:
            children = node["files"]
            assert isinstance(children, dict)
            node = children.setdefault(d, {"files": {}})
        children = node["files"]
        assert isinstance(children, dict)
        children[parts[-1]] = {
            "size": len(content),
            "offset": str(len(data)),
            "integrity": {
                "algorithm": "SHA256",
                "hash": hashlib.sha256(content).hexdigest(),
                "blockSize": 4 * 1024 * 1024,
                "blocks": [hashlib.sha256(content).hexdigest()],
            },
        }
        data += content
    js = json.dumps(tree, separators=(",", ":"), sort_keys=True).encode()
    pad = (4 - len(js) % 4) % 4
    header_pickle = struct.pack("<II", 4 + len(js) + pad, len(js)) + js + b"\0" * pad
    size_pickle = struct.pack("<II", 4, len(header_pickle))
    Path(path).write_bytes(size_pickle + header_pickle + bytes(data))


# --- data files ----------------------------------------------------------------------------


def _filler(label: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes (sha256 counter mode)."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}:{i}".encode()).digest()
        i += 1
    return bytes(out[:size])


def _default_app() -> dict[str, bytes]:
    return {
        "package.json": b'{"name":"electron","productName":"Electron","main":"main.js"}\n',
        "main.js": b"const { app, BrowserWindow } = require('electron');\n"
        b"app.whenReady().then(() => new BrowserWindow().loadFile('index.html'));\n",
        "index.html": b"<!doctype html><title>Electron</title><h1>Electron default app</h1>\n",
    }


def _vendor_app(*, patched: bool = False) -> dict[str, bytes]:
    return {
        **app_files(patched=patched),
        "package.json": json.dumps(
            {
                "name": "3cxdesktopapp",
                "version": PRODUCT_VERSION,
                "main": "dist/main.js",
                "dependencies": {"@demo/sip-client": "^2.4.0"},
            },
            sort_keys=True,
        ).encode()
        + b"\n",
        "dist/main.js": b"const { app, BrowserWindow } = require('electron');\n"
        b"app.whenReady().then(() => {\n"
        b"  const w = new BrowserWindow({ width: 1024, height: 768 });\n"
        b"  w.loadFile('dist/index.html');\n"
        b"});\n",
        "dist/index.html": b"<!doctype html><title>3CX</title><div id=app></div>"
        b"<script src=renderer.js></script>\n",
        "dist/renderer.js": b"document.getElementById('app').textContent = 'Softphone';\n",
    }


_DATA_FILES = {
    "LICENSE": b"Copyright (c) Electron contributors\nCopyright (c) 2013-2020 GitHub Inc.\n\n"
    b"Permission is hereby granted, free of charge, to any person obtaining a copy of this "
    b"software (MIT License).\n",
    "version": ELECTRON_VERSION.encode(),
}
_BLOBS = {
    "LICENSES.chromium.html": 6000,
    "chrome_100_percent.pak": 9000,
    "chrome_200_percent.pak": 12000,
    "resources.pak": 40000,
    "icudtl.dat": 30000,
    "snapshot_blob.bin": 20000,
    "v8_context_snapshot.bin": 24000,
    "locales/en-US.pak": 5000,
    "locales/de.pak": 5200,
    "locales/fr.pak": 5100,
}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --- the build -----------------------------------------------------------------------------


def build_scenario(out_dir: StrPath, *, timestamp: bool = True) -> Scenario:
    """Build the three trees under ``out_dir`` (which must be empty or absent).

    ``timestamp`` adds an RFC 3161 timestamp to the upstream d3dcompiler_47.dll signature,
    made by osslsigncode's built-in TSA with the upstream test TSA certificate (no server).
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    up, clean, bad = root / "upstream", root / "clean", root / "compromised"
    work = root / ".work"
    work.mkdir()
    upki = upstream_pki().write(root / "pki" / "upstream")
    vpki = vendor_pki().write(root / "pki" / "vendor")
    trust = root / "trust.pem"
    trust.write_bytes(Path(upki.root_cert).read_bytes() + Path(vpki.root_cert).read_bytes())
    exe_spec = pewriter.electron_exe(ELECTRON_VERSION)
    _build_upstream(up, work, exe_spec, upki, timestamp=timestamp)
    _build_clean(up, clean, work, exe_spec, vpki)
    padding = _build_compromised(clean, bad, work, vpki)
    shutil.rmtree(work)
    return Scenario(
        root=str(root),
        upstream=str(up),
        clean=str(clean),
        compromised=str(bad),
        trust_store=str(trust),
        upstream_pki=upki,
        vendor_pki=vpki,
        padding=padding,
    )


def _build_upstream(
    up: Path, work: Path, exe_spec: pewriter.PESpec, upki: PkiPaths, *, timestamp: bool
) -> None:
    """The Electron-like release: PE files, d3dcompiler_47.dll signed by upstream's CA."""
    _write(up / "electron.exe", pewriter.build_pe(exe_spec))
    _write(up / "ffmpeg.dll", pewriter.build_pe(pewriter.ffmpeg_dll()))
    _write(up / "libEGL.dll", pewriter.build_pe(pewriter.libegl_dll()))
    d3d_unsigned = work / "d3dcompiler_47.unsigned.dll"
    _write(d3d_unsigned, pewriter.build_pe(pewriter.d3dcompiler_dll()))
    osslsign.sign(
        d3d_unsigned,
        up / "d3dcompiler_47.dll",
        upki.signer_chain,
        upki.signer_key,
        description="Direct3D HLSL Compiler",
        signing_time=UPSTREAM_SIGNING_TIME,
        tsa_cert=upki.tsa_chain if timestamp else None,
        tsa_key=upki.tsa_key if timestamp else None,
        tsa_time=UPSTREAM_SIGNING_TIME if timestamp else None,
    )
    (up / "resources").mkdir()
    write_asar(up / "resources" / "default_app.asar", _default_app())
    for name, content in _DATA_FILES.items():
        _write(up / name, content)
    for name, size in _BLOBS.items():
        _write(up / name, _filler(name, size))


def _build_clean(
    up: Path, clean: Path, work: Path, exe_spec: pewriter.PESpec, vpki: PkiPaths
) -> None:
    """The vendor's honest build: electron.exe renamed and rebranded, ffmpeg.dll re-signed,
    the app's own app.asar."""
    shutil.copytree(up, clean)
    (clean / "electron.exe").unlink()
    (clean / "resources" / "default_app.asar").unlink()
    exe_unsigned = work / f"{PRODUCT}.unsigned.exe"
    _write(exe_unsigned, pewriter.build_pe(pewriter.vendor_exe(exe_spec, PRODUCT, PRODUCT_VERSION)))
    _vendor_sign(vpki, exe_unsigned, clean / f"{PRODUCT}.exe")
    (clean / "ffmpeg.dll").unlink()
    _vendor_sign(vpki, up / "ffmpeg.dll", clean / "ffmpeg.dll")
    write_asar(clean / "resources" / "app.asar", _vendor_app())


def _build_compromised(clean: Path, bad: Path, work: Path, vpki: PkiPaths) -> PaddingResult:
    """The 3CX build: a trojaned, vendor-signed ffmpeg.dll, a payload in d3dcompiler_47.dll's
    signature padding, a patched npm dependency in app.asar."""
    shutil.copytree(clean, bad)
    trojan = work / "ffmpeg.trojaned.dll"
    _write(trojan, pewriter.build_pe(pewriter.trojaned_ffmpeg_dll()))
    (bad / "ffmpeg.dll").unlink()
    _vendor_sign(vpki, trojan, bad / "ffmpeg.dll")
    padding = inject_signature_padding(bad / "d3dcompiler_47.dll", make_payload())
    write_asar(bad / "resources" / "app.asar", _vendor_app(patched=True))
    return padding


def _vendor_sign(vpki: PkiPaths, src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    osslsign.sign(
        src,
        dst,
        vpki.signer_chain,
        vpki.signer_key,
        description=PRODUCT,
        url="https://www.example.com/3cx-demo",
        signing_time=VENDOR_SIGNING_TIME,
    )

"""An Electron-like macOS app bundle fixture, sealed like ``codesign`` does (for the demo).

``build_upstream(dest, arch, identity)`` writes a thin ``Electron.app`` (what Electron's
``darwin-x64`` / ``darwin-arm64`` zips hold): ``Contents/MacOS/Electron``,
``Contents/Frameworks/Electron Framework.framework`` (its binary carries the fuse wire,
``Versions/A/Libraries/libffmpeg.dylib``), ``Resources/default_app.asar``, each binary signed
and every bundle sealed with ``_CodeSignature/CodeResources``.

``build_vendor(dest, upstream_x64, upstream_arm64, identity, tamper_x86_ffmpeg=...)`` joins
the two into a universal ``Acme.app`` the way @electron/universal does, adds the app's own
``app.asar``, flips a fuse, and re-signs/re-seals everything with the vendor's identity. With
``tamper_x86_ffmpeg`` the x86_64 slice of libffmpeg.dylib gets a few changed code bytes before
re-signing: the 3CX pattern (x86_64 changed, arm64 clean, valid vendor signature).
"""

from __future__ import annotations

import hashlib
import os
import plistlib
import shutil
from pathlib import Path

from verifier._scenarios import macho as w
from verifier.binary import macho as mo
from verifier.signing import codesign as cs

FRAMEWORK = "Electron Framework.framework"
FW_VERSION = f"Contents/Frameworks/{FRAMEWORK}/Versions/A"
FFMPEG = f"{FW_VERSION}/Libraries/libffmpeg.dylib"
ELECTRON_VERSION = "30.0.0"

RULES = {
    "^Resources/": True,
    "^Resources/.*\\.lproj/": {"optional": True, "weight": 1000.0},
    "^version.plist$": True,
}
RULES2 = {
    ".*\\.dSYM($|/)": {"weight": 11.0},
    "^(.*/)?\\.DS_Store$": {"omit": True, "weight": 2000.0},
    "^.*": True,
    "^Info\\.plist$": {"omit": True, "weight": 20.0},
    "^PkgInfo$": {"omit": True, "weight": 20.0},
    "^Resources/": {"weight": 20.0},
    "^[^/]+$": {"nested": True, "weight": 10.0},
    "^_MASReceipt/receipt$": {"nested": True, "weight": 10.0},
    "^(Frameworks|SharedFrameworks|PlugIns|Plug-ins|XPCServices|Helpers|MacOS|Library/("
    "Automator|Spotlight|LoginItems))/": {"nested": True, "weight": 10.0},
}


def _code(seed: str, arch: str, size: int = 12000) -> bytes:
    """Deterministic 'code' bytes for one binary and arch."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{arch}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def _binary(seed: str, arch: str, *, dylib: str | None, data: bytes = b"") -> bytes:
    marker = f"Electron/{ELECTRON_VERSION}\0".encode()
    return w.build_thin(arch, _code(seed, arch), marker + data, dylib=dylib)


def _sign_any(data: bytes, identifier: str, identity: w.TestIdentity | None, **kw: object) -> bytes:
    """Sign a thin or universal Mach-O (each slice)."""
    if mo.sniff(data[:8]) == "fat":
        return w.build_fat([_sign_any(s, identifier, identity, **kw) for s in w.thin_slices(data)])
    return w.sign(data, identifier, identity=identity, **kw)  # type: ignore[arg-type]


def _first_cdhash(data: bytes) -> bytes:
    thin = w.thin_slices(data)[0] if mo.sniff(data[:8]) == "fat" else data
    h = mo.parse_slice_header(thin[:65536], len(thin))
    assert h.code_signature is not None
    _c, off, size = h.code_signature
    sig = cs.parse_superblob(thin[off : off + size])
    return sig.primary.cdhash_full[:20]


def _is_macho(p: Path) -> bool:
    with p.open("rb") as fh:
        return mo.sniff(fh.read(8)) is not None


def seal_bundle(bundle: Path, identity: w.TestIdentity | None, identifier: str) -> None:
    """(Re-)sign every Mach-O of the bundle and seal it, nested bundles first."""
    versions = bundle / "Versions"
    is_fw = bundle.name.endswith(".framework")
    content = versions / "A" if is_fw else bundle / "Contents"
    info_path = content / ("Resources/Info.plist" if is_fw else "Info.plist")
    info = plistlib.loads(info_path.read_bytes())
    exe = (
        content / info["CFBundleExecutable"]
        if is_fw
        else content / "MacOS" / info["CFBundleExecutable"]
    )
    # nested bundles first
    nested: dict[str, Path] = {}
    fw_dir = content / "Frameworks"
    if fw_dir.is_dir():
        for sub in sorted(fw_dir.iterdir()):
            if sub.suffix in (".framework", ".app") and not sub.is_symlink():
                seal_bundle(sub, identity, f"{identifier}.{sub.stem.replace(' ', '')}")
                nested[sub.relative_to(content).as_posix()] = sub
    # loose code: sign in place
    for root, dirs, loose in os.walk(content):
        rp = Path(root)
        dirs[:] = [d for d in dirs if (rp / d) not in nested.values() and d != "_CodeSignature"]
        for fn in loose:
            p = rp / fn
            if p == exe or p.is_symlink() or not _is_macho(p):
                continue
            p.write_bytes(_sign_any(p.read_bytes(), p.stem, identity))
    files: dict[str, object] = {}
    files2: dict[str, object] = {}
    for root, dirs, fnames in os.walk(content):
        rp = Path(root)
        dirs[:] = sorted(
            d for d in dirs if (rp / d) not in nested.values() and d != "_CodeSignature"
        )
        for name in sorted(fnames) + [d for d in dirs if (rp / d).is_symlink()]:
            p = rp / name
            rel = p.relative_to(content).as_posix()
            if p == exe or (not is_fw and rel in ("Info.plist", "PkgInfo")):
                continue
            if p.is_symlink():
                files2[rel] = {"symlink": str(p.readlink())}
                continue
            data = p.read_bytes()
            sha1 = hashlib.sha1(data).digest()
            files[rel] = sha1
            files2[rel] = {"hash": sha1, "hash2": hashlib.sha256(data).digest()}
    for rel, sub in nested.items():
        sub_info = (
            plistlib.loads((sub / "Versions/A/Resources/Info.plist").read_bytes())
            if (sub.suffix == ".framework")
            else plistlib.loads((sub / "Contents/Info.plist").read_bytes())
        )
        sub_exe = (
            sub / "Versions/A" / sub_info["CFBundleExecutable"]
            if sub.suffix == ".framework"
            else sub / "Contents/MacOS" / sub_info["CFBundleExecutable"]
        )
        files2[rel] = {
            "cdhash": _first_cdhash(sub_exe.read_bytes()),
            "requirement": f'identifier "{sub_info.get("CFBundleIdentifier", "")}"',
        }
    seal = plistlib.dumps(
        {"files": files, "files2": files2, "rules": RULES, "rules2": RULES2},
        fmt=plistlib.FMT_XML,
        sort_keys=True,
    )
    (content / "_CodeSignature").mkdir(exist_ok=True)
    (content / "_CodeSignature" / "CodeResources").write_bytes(seal)
    exe.write_bytes(
        _sign_any(
            exe.read_bytes(),
            identifier,
            identity,
            info_plist=info_path.read_bytes(),
            resources=seal,
        )
    )


def _write_framework(app: Path, arch_bins: dict[str, bytes], ffmpeg: bytes) -> None:
    fw = app / "Contents" / "Frameworks" / FRAMEWORK
    va = fw / "Versions" / "A"
    (va / "Resources").mkdir(parents=True)
    (va / "Libraries").mkdir()
    (va / "Electron Framework").write_bytes(arch_bins["framework"])
    (va / "Libraries" / "libffmpeg.dylib").write_bytes(ffmpeg)
    (va / "Resources" / "Info.plist").write_bytes(
        plistlib.dumps(
            {
                "CFBundleExecutable": "Electron Framework",
                "CFBundleIdentifier": "com.github.Electron.framework",
                "CFBundleVersion": ELECTRON_VERSION,
            }
        )
    )
    (va / "Resources" / "MainMenu.nib").write_bytes(b"nib" * 100)
    (fw / "Versions" / "Current").symlink_to("A")
    (fw / "Electron Framework").symlink_to("Versions/Current/Electron Framework")
    (fw / "Libraries").symlink_to("Versions/Current/Libraries")
    (fw / "Resources").symlink_to("Versions/Current/Resources")


def _app_info(name: str, bundle_id: str) -> bytes:
    return plistlib.dumps(
        {
            "CFBundleExecutable": name,
            "CFBundleIdentifier": bundle_id,
            "CFBundleName": name,
            "CFBundlePackageType": "APPL",
            "CFBundleVersion": ELECTRON_VERSION,
        }
    )


def thin_binaries(arch: str, fuses: str = "1101") -> dict[str, bytes]:
    """The unsigned upstream binaries for one arch: main, framework, ffmpeg."""
    return {
        "main": _binary("electron-main", arch, dylib=None),
        "framework": _binary(
            "electron-framework",
            arch,
            dylib="@rpath/Electron Framework.framework/Electron Framework",
            data=w.fuse_wire(fuses),
        ),
        "ffmpeg": _binary("ffmpeg", arch, dylib="@rpath/libffmpeg.dylib"),
    }


def build_upstream(dest: Path, arch: str, identity: w.TestIdentity) -> Path:
    """A thin, signed and sealed ``Electron.app`` under ``dest``; returns the app path."""
    bins = thin_binaries(arch)
    app = dest / "Electron.app"
    (app / "Contents" / "MacOS").mkdir(parents=True)
    (app / "Contents" / "Resources").mkdir()
    (app / "Contents" / "Info.plist").write_bytes(_app_info("Electron", "com.github.Electron"))
    (app / "Contents" / "PkgInfo").write_bytes(b"APPL????")
    (app / "Contents" / "MacOS" / "Electron").write_bytes(bins["main"])
    (app / "Contents" / "Resources" / "default_app.asar").write_bytes(b"default app" * 50)
    (app / "Contents" / "Resources" / "electron.icns").write_bytes(b"icns" * 64)
    _write_framework(app, bins, bins["ffmpeg"])
    seal_bundle(app, identity, "com.github.Electron")
    return app


def _tamper_x86(fat: bytes) -> bytes:
    slices = w.thin_slices(fat)
    out = []
    for s in slices:
        h = mo.parse_slice_header(s[:65536], len(s))
        if h.arch == "x86_64":
            text = next(x for x in h.sections if x.name == "__TEXT,__text")
            b = bytearray(s)
            # a "loader": a few bytes of the code replaced
            b[text.offset + 64 : text.offset + 72] = b"\xe8\x00\x00\x00\x00\x58\xff\xe0"
            s = bytes(b)
        out.append(s)
    return w.build_fat(out)


def build_vendor(
    dest: Path,
    upstream_x64: Path,
    upstream_arm64: Path,
    identity: w.TestIdentity,
    *,
    name: str = "Acme",
    tamper_x86_ffmpeg: bool = False,
    fuses: str = "1001",
) -> Path:
    """A universal vendor app made from the two upstream apps, re-signed by ``identity``."""
    app = dest / f"{name}.app"
    shutil.copytree(upstream_x64, app, symlinks=True)
    for root, _dirs, files in os.walk(app):
        for fn in files:
            p = Path(root) / fn
            if p.is_symlink() or not _is_macho(p):
                continue
            other = upstream_arm64 / p.relative_to(app)
            p.write_bytes(w.build_fat([p.read_bytes(), other.read_bytes()]))
    contents = app / "Contents"
    # the renamed main executable, the app's own code and metadata
    (contents / "MacOS" / "Electron").rename(contents / "MacOS" / name)
    (contents / "Info.plist").write_bytes(_app_info(name, f"com.acme.{name.lower()}"))
    (contents / "Resources" / "app.asar").write_bytes(b"vendor app code" * 100)
    # flip a fuse in every slice of Electron Framework (what @electron/fuses does)
    fwbin = app / FW_VERSION / "Electron Framework"
    data = bytearray(fwbin.read_bytes())
    i = data.find(mo.FUSE_SENTINEL)
    while i >= 0:
        n = data[i + len(mo.FUSE_SENTINEL) + 1]
        start = i + len(mo.FUSE_SENTINEL) + 2
        data[start : start + n] = fuses.encode()[:n].ljust(n, b"0")
        i = data.find(mo.FUSE_SENTINEL, i + 1)
    fwbin.write_bytes(bytes(data))
    if tamper_x86_ffmpeg:
        ff = app / FFMPEG
        ff.write_bytes(_tamper_x86(ff.read_bytes()))
    for cs_dir in app.rglob("_CodeSignature"):
        shutil.rmtree(cs_dir)
    seal_bundle(app, identity, f"com.acme.{name.lower()}")
    return app


def electron_identity() -> w.TestIdentity:
    return w.TestIdentity(org="Electron Test", team_id="ELECTRON01", root_name="biv test root A")


def vendor_identity() -> w.TestIdentity:
    return w.TestIdentity(org="Acme Corp", team_id="ACME000001", root_name="biv test root B")


def build_scenario(dest: Path) -> dict[str, Path]:
    """Upstream x64/arm64 apps, a clean vendor app, a 3CX-style vendor app, and a PEM file
    with the two test roots (pass it as ``--trust-store``)."""
    up_id, vendor_id = electron_identity(), vendor_identity()
    out: dict[str, Path] = {}
    for arch, key in (("x86_64", "upstream-x64"), ("arm64", "upstream-arm64")):
        out[key] = build_upstream(dest / key, arch, up_id)
    out["vendor-clean"] = build_vendor(
        dest / "vendor-clean", out["upstream-x64"], out["upstream-arm64"], vendor_id
    )
    out["vendor-3cx"] = build_vendor(
        dest / "vendor-3cx",
        out["upstream-x64"],
        out["upstream-arm64"],
        vendor_id,
        tamper_x86_ffmpeg=True,
    )
    roots = dest / "test-roots.pem"
    roots.write_bytes(up_id.root_pem() + vendor_id.root_pem())
    out["roots"] = roots
    return out

"""Real installers built with real tools (wixl, makensis, dpkg-deb, rpmbuild, mksquashfs, 7z),
then read back through the unpack engine: paths, locations, containers and bytes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from verifier.errors import ArtifactError
from verifier.unpack import unpack
from verifier.unpack.installers import (
    AppImageReader,
    DebReader,
    MsiReader,
    NsisReader,
    RpmReader,
    SevenZipReader,
    appimage_offset,
    extract_deb,
    nsis_header_offset,
)
from verifier.unpack.registry import HEAD_SIZE

PAYLOAD = {
    "DemoApp.exe": b"MZ" + b"\x90" * 62 + b"demo main executable",
    "ffmpeg.dll": b"MZ" + b"ffmpeg-bytes " * 40,
    "d3dcompiler_47.dll": b"MZ" + bytes(range(256)) * 4,
    "resources/app.asar": b"asar payload",
    "locales/en-US.pak": b"pak " * 100,
}


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (make system-deps)")


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    for rel, data in PAYLOAD.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def run(*cmd: str, cwd: Path | None = None) -> None:
    res = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, timeout=60)
    assert res.returncode == 0, f"{cmd[0]} failed: {res.stderr.decode(errors='replace')[-1500:]}"


def members(artifact: Path, work: Path, strip: str = "") -> dict[str, tuple[str, str]]:
    """path (minus ``strip``) -> (location, sha256 of the bytes) for every member."""
    u = unpack(str(artifact), str(work))
    assert not u.problems, u.problems
    out = {}
    for m in u.members:
        assert m.location == "!/".join((*m.container, m.path.rsplit("/", 1)[-1])) or "!/" in (
            m.location
        )
        rel = m.path[len(strip) :] if m.path.startswith(strip) else m.path
        out[rel] = (m.location, sha(m.blob.read()))
    return out


def assert_payload(found: dict[str, tuple[str, str]], prefix: str) -> None:
    for rel, data in PAYLOAD.items():
        assert rel in found, f"{rel} missing from {sorted(found)}"
        loc, digest = found[rel]
        assert loc == prefix + rel
        assert digest == sha(data)


# --- MSI (wixl) --------------------------------------------------------------------------------


def build_msi(app: Path, out: Path) -> Path:
    need("wixl")
    comps, refs = [], []
    dirs: dict[str, list[str]] = {}
    for i, rel in enumerate(sorted(PAYLOAD)):
        d, _, _ = rel.rpartition("/")
        dirs.setdefault(d, []).append(
            f'<Component Id="C{i}" Guid="11111111-2222-3333-4444-{i:012d}">'
            f'<File Id="F{i}" Source="{rel}" KeyPath="yes"/></Component>'
        )
        refs.append(f'<ComponentRef Id="C{i}"/>')
    inner = "".join(dirs.get("", []))
    for j, d in enumerate(k for k in sorted(dirs) if k):
        inner += f'<Directory Id="D{j}" Name="{d}">{"".join(dirs[d])}</Directory>'
    comps.append(inner)
    wxs = out.with_suffix(".wxs")
    wxs.write_text(
        '<?xml version="1.0" encoding="utf-8"?>'
        '<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">'
        '<Product Id="*" Name="DemoApp" Language="1033" Version="1.0.0" Manufacturer="Demo" '
        'UpgradeCode="12345678-1234-1234-1234-123456789012">'
        '<Package InstallerVersion="200" Compressed="yes" InstallScope="perUser"/>'
        '<Media Id="1" Cabinet="app.cab" EmbedCab="yes"/>'
        '<Directory Id="TARGETDIR" Name="SourceDir"><Directory Id="ProgramFilesFolder">'
        f'<Directory Id="INSTALLDIR" Name="DemoApp">{"".join(comps)}</Directory>'
        "</Directory></Directory>"
        f'<Feature Id="F" Level="1">{"".join(refs)}</Feature></Product></Wix>'
    )
    run("wixl", "-o", str(out), str(wxs), cwd=app)  # wixl wants relative sources
    return out


def test_msi_built_with_wixl(app: Path, tmp_path: Path) -> None:
    need("msiextract")
    msi = build_msi(app, tmp_path / "setup.msi")
    head = msi.read_bytes()[:HEAD_SIZE]
    assert MsiReader().sniff(head, str(msi))
    assert not NsisReader().sniff(head, str(msi))
    found = members(msi, tmp_path / "w", strip="Program Files/DemoApp/")
    assert_payload(found, "setup.msi!/Program Files/DemoApp/")


def test_ole_file_that_is_not_msi_is_not_sniffed(tmp_path: Path, app: Path) -> None:
    msi = build_msi(app, tmp_path / "setup.msi")
    data = bytearray(msi.read_bytes())
    i = data.find(bytes.fromhex("84100c0000000000c000000000000046"))
    assert i > 0
    data[i : i + 16] = bytes(16)  # a different root CLSID: a .doc, not an installer
    other = tmp_path / "doc.bin"
    other.write_bytes(bytes(data))
    assert not MsiReader().sniff(bytes(data[:HEAD_SIZE]), str(other))


def test_truncated_msi_is_malformed_not_a_crash(tmp_path: Path, app: Path) -> None:
    need("msiextract")
    msi = build_msi(app, tmp_path / "setup.msi")
    data = msi.read_bytes()
    bad = tmp_path / "bad.msi"
    first_dir = int.from_bytes(data[0x30:0x34], "little")
    cut = (first_dir + 2) * 512  # keep the header and the root directory sector only
    assert cut < len(data)
    bad.write_bytes(data[:cut])
    assert MsiReader().sniff(data[:cut], str(bad))
    _unreadable_top(bad, tmp_path)
    # nested inside a zip: a malformed-input problem, not an exception
    z = tmp_path / "outer.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(bad, "bad.msi")
    u = unpack(str(z), str(tmp_path / "w2"))
    assert [p.rule for p in u.problems] == ["malformed-input"]
    assert u.problems[0].evidence["location"] == "outer.zip!/bad.msi"


# --- NSIS (makensis) ---------------------------------------------------------------------------


def build_nsis(app: Path, out: Path, extra: str = "") -> Path:
    need("makensis")
    lines = [
        'Name "DemoApp"',
        f'OutFile "{out}"',
        'InstallDir "$LOCALAPPDATA\\Programs\\DemoApp"',
        "RequestExecutionLevel user",
        "Section",
    ]
    for d in sorted({rel.rpartition("/")[0] for rel in PAYLOAD}):
        lines.append(f'SetOutPath "$INSTDIR{chr(92) + d if d else ""}"')
        for rel in sorted(PAYLOAD):
            if rel.rpartition("/")[0] == d:
                lines.append(f'File "{app / rel}"')
    lines += [extra, 'WriteUninstaller "$INSTDIR\\Uninstall DemoApp.exe"', "SectionEnd"]
    lines += ['Section "Uninstall"', 'Delete "$INSTDIR\\DemoApp.exe"', "SectionEnd"]
    nsi = out.with_suffix(".nsi")
    nsi.write_text("\n".join(lines) + "\n")
    run("makensis", "-V1", "-NOCD", str(nsi))
    return out


def test_nsis_built_with_makensis(app: Path, tmp_path: Path) -> None:
    need("7z")
    exe = build_nsis(app, tmp_path / "DemoApp Setup.exe")
    data = exe.read_bytes()
    off = nsis_header_offset(data[:HEAD_SIZE], str(exe))
    assert off is not None and off % 512 == 0
    assert data[off + 8 : off + 20] == b"NullsoftInst"
    found = members(exe, tmp_path / "w")
    assert_payload(found, "DemoApp Setup.exe!/")
    assert "Uninstall DemoApp.exe" in found  # the generated uninstaller is a member too


def test_plain_pe_is_not_nsis(tmp_path: Path) -> None:
    pe = tmp_path / "plain.exe"
    pe.write_bytes(b"MZ" + b"\0" * 58 + (64).to_bytes(4, "little") + b"PE\0\0" + b"\0" * 2000)
    assert not NsisReader().sniff(pe.read_bytes(), str(pe))


def test_nsis_hostile_paths_are_problems_not_writes(app: Path, tmp_path: Path) -> None:
    need("7z")
    extra = (
        'SetOutPath "$INSTDIR\\..\\.."\n'
        f'File "{app / "ffmpeg.dll"}"\n'
        'SetOutPath "C:\\Windows\\System32"\n'
        f'File "{app / "DemoApp.exe"}"\n'
    )
    exe = build_nsis(app, tmp_path / "evil.exe", extra)
    work = tmp_path / "w"
    u = unpack(str(exe), str(work))
    msgs = sorted(p.evidence["path"] for p in u.problems)
    assert any("C:" in m for m in msgs) and any(".." in m for m in msgs), msgs
    assert all(p.rule == "malformed-input" for p in u.problems)
    paths = {m.path for m in u.members}
    assert set(PAYLOAD) <= paths
    assert not (tmp_path / "ffmpeg.dll").exists()
    assert not any(
        p.name in ("ffmpeg.dll", "DemoApp.exe") for p in tmp_path.iterdir() if p.is_file()
    )


# --- 7z, nupkg ---------------------------------------------------------------------------------


def test_7z_archive(app: Path, tmp_path: Path) -> None:
    need("7z")
    arc = tmp_path / "app-64.7z"
    run("7z", "a", "-bd", str(arc), ".", cwd=app)
    assert SevenZipReader().sniff(arc.read_bytes()[:HEAD_SIZE], str(arc))
    assert_payload(members(arc, tmp_path / "w"), "app-64.7z!/")


def test_nupkg_is_read_as_zip(app: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "DemoApp-1.0.0-full.nupkg"
    with zipfile.ZipFile(pkg, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("DemoApp.nuspec", "<package/>")
        for rel in PAYLOAD:
            zf.write(app / rel, f"lib/net45/{rel}")
    found = members(pkg, tmp_path / "w", strip="lib/net45/")
    assert_payload(found, "DemoApp-1.0.0-full.nupkg!/lib/net45/")


# --- deb, rpm ----------------------------------------------------------------------------------


def build_deb(app: Path, tmp: Path) -> Path:
    need("dpkg-deb")
    root = tmp / "debroot"
    shutil.copytree(app, root / "opt" / "DemoApp")
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        "Package: demoapp\nVersion: 1.0.0\nArchitecture: amd64\n"
        "Maintainer: Demo <demo@example.invalid>\nDescription: demo\n"
    )
    (root / "usr" / "bin").mkdir(parents=True)
    os.symlink("../../opt/DemoApp/DemoApp.exe", root / "usr" / "bin" / "demoapp")
    out = tmp / "demoapp_1.0.0_amd64.deb"
    run("dpkg-deb", "--root-owner-group", "-Zxz", "-b", str(root), str(out))
    return out


def test_deb_built_with_dpkg_deb(app: Path, tmp_path: Path) -> None:
    deb = build_deb(app, tmp_path)
    assert DebReader().sniff(deb.read_bytes()[:HEAD_SIZE], str(deb))
    found = members(deb, tmp_path / "w", strip="opt/DemoApp/")
    assert_payload(found, "demoapp_1.0.0_amd64.deb!/opt/DemoApp/")
    assert "usr/bin/demoapp" not in found  # symlinks are not members


def test_deb_without_dpkg_uses_python_ar_reader(app: Path, tmp_path: Path) -> None:
    deb = build_deb(app, tmp_path)
    dest = tmp_path / "out"
    dest.mkdir()
    ext = extract_deb(str(deb), str(dest), use_dpkg=False)
    assert ext.problems == [] and ext.notes == []
    # the link is recorded (and compared like a file), never created
    assert [(k.member, k.target) for k in ext.links] == [
        ("usr/bin/demoapp", "../../opt/DemoApp/DemoApp.exe")
    ]
    assert not (dest / "usr" / "bin" / "demoapp").exists()
    for rel, data in PAYLOAD.items():
        assert (dest / "opt" / "DemoApp" / rel).read_bytes() == data


def test_truncated_deb(app: Path, tmp_path: Path) -> None:
    deb = build_deb(app, tmp_path)
    bad = tmp_path / "bad.deb"
    bad.write_bytes(deb.read_bytes()[:200])
    _unreadable_top(bad, tmp_path)


def build_rpm(app: Path, tmp: Path) -> Path:
    need("rpmbuild")
    top = tmp / "rpmbuild"
    for d in ("BUILD", "RPMS", "SOURCES", "SPECS", "SRPMS", "BUILDROOT"):
        (top / d).mkdir(parents=True)
    install = "\n".join(
        f"install -D -m 0644 '{app / rel}' %{{buildroot}}/opt/DemoApp/{rel}" for rel in PAYLOAD
    )
    files = "\n".join(f"/opt/DemoApp/{rel}" for rel in PAYLOAD)
    spec = top / "SPECS" / "demoapp.spec"
    spec.write_text(
        "Name: demoapp\nVersion: 1.0.0\nRelease: 1\nSummary: demo\nLicense: MIT\n"
        "BuildArch: noarch\n%description\ndemo\n%prep\n%build\n"
        f"%install\n{install}\n%files\n{files}\n"
    )
    run(
        "rpmbuild",
        "-bb",
        "--define",
        f"_topdir {top}",
        "--define",
        "__os_install_post %{nil}",
        "--define",
        "debug_package %{nil}",
        str(spec),
    )
    (rpm,) = (top / "RPMS").rglob("*.rpm")
    return rpm


def test_rpm_built_with_rpmbuild(app: Path, tmp_path: Path) -> None:
    need("rpm2cpio")
    rpm = build_rpm(app, tmp_path)
    assert RpmReader().sniff(rpm.read_bytes()[:HEAD_SIZE], str(rpm))
    found = members(rpm, tmp_path / "w", strip="opt/DemoApp/")
    assert_payload(found, f"{rpm.name}!/opt/DemoApp/")


def test_rpm_hostile_cpio_entries(tmp_path: Path) -> None:
    """A cpio payload (made by GNU cpio) with traversal and an escaping symlink."""
    need("cpio")
    from verifier.unpack.installers import cpio_stream
    from verifier.unpack.limits import Limits
    from verifier.unpack.sink import Sink

    base = tmp_path / "src" / "a"
    base.mkdir(parents=True)
    (base / "ok.txt").write_bytes(b"fine")
    (tmp_path / "src" / "evil.txt").write_bytes(b"evil")
    os.symlink("../../../etc/passwd", base / "link")
    names = "ok.txt\n../evil.txt\nlink\n"
    arc = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"],
        input=names.encode(),
        cwd=base,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    dest = tmp_path / "dest"
    dest.mkdir()
    sink = Sink(str(dest), Limits())
    import io

    cpio_stream(io.BytesIO(arc), sink)
    assert (dest / "ok.txt").read_bytes() == b"fine"
    assert sorted(os.listdir(dest)) == ["ok.txt"]
    assert "traversal" in " ".join(p.message for p in sink.problems)
    # the symlink is recorded, never created, and refused with the whole layer (links.py)
    from verifier.unpack import links

    _, problems, bad = links.check(["ok.txt"], sink.result().links)
    assert bad == {"link"} and "symlink escapes" in problems[0].message
    assert not (tmp_path / "evil.txt").exists() or (tmp_path / "evil.txt").read_bytes() == b"evil"
    # truncated stream: an error, not a hang or a partial silent pass
    from verifier.errors import MalformedInputError

    with pytest.raises((MalformedInputError, EOFError)):
        cpio_stream(io.BytesIO(arc[: len(arc) // 2]), Sink(str(tmp_path / "d2"), Limits()))


# --- AppImage ----------------------------------------------------------------------------------


def build_appimage(app: Path, tmp: Path) -> Path:
    """An AppImage type 2: an ELF runtime with 'AI\\x02' at offset 8, then a squashfs."""
    need("mksquashfs")
    appdir = tmp / "DemoApp.AppDir"
    shutil.copytree(app, appdir, symlinks=True)
    os.symlink("DemoApp.exe", appdir / "AppRun")
    fs = tmp / "fs.squashfs"
    run("mksquashfs", str(appdir), str(fs), "-noappend", "-quiet", "-all-root")
    runtime = bytearray(Path("/bin/true").read_bytes())
    runtime[8:11] = b"AI\x02"
    out = tmp / "DemoApp-x86_64.AppImage"
    out.write_bytes(bytes(runtime) + fs.read_bytes())
    return out


def test_appimage_squashfs(app: Path, tmp_path: Path) -> None:
    need("unsquashfs")
    img = build_appimage(app, tmp_path)
    head = img.read_bytes()[:HEAD_SIZE]
    assert AppImageReader().sniff(head, str(img))
    assert appimage_offset(head, str(img)) == Path("/bin/true").stat().st_size
    found = members(img, tmp_path / "w")
    assert_payload(found, "DemoApp-x86_64.AppImage!/")
    assert "AppRun" not in found


def test_plain_elf_is_not_appimage() -> None:
    data = Path("/bin/true").read_bytes()
    assert not AppImageReader().sniff(data[:HEAD_SIZE], "/bin/true")


def test_msi_hostile_directory_names_stay_in_the_jail(app: Path, tmp_path: Path) -> None:
    """msiextract follows '..' in Directory names: those members become problems, and
    nothing is written outside the work directory."""
    need("wixl", "msiextract")
    wxs = tmp_path / "evil.wxs"
    wxs.write_text(
        '<?xml version="1.0" encoding="utf-8"?>'
        '<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">'
        '<Product Id="*" Name="Evil" Language="1033" Version="1.0.0" Manufacturer="Demo" '
        'UpgradeCode="12345678-1234-1234-1234-123456789013">'
        '<Package InstallerVersion="200" Compressed="yes" InstallScope="perUser"/>'
        '<Media Id="1" Cabinet="app.cab" EmbedCab="yes"/>'
        '<Directory Id="TARGETDIR" Name="SourceDir"><Directory Id="ProgramFilesFolder">'
        '<Directory Id="INSTALLDIR" Name="Evil">'
        '<Component Id="Good" Guid="11111111-2222-3333-4444-000000000001">'
        '<File Id="good" Source="ffmpeg.dll" KeyPath="yes"/></Component>'
        '<Directory Id="UP" Name="../../../../../../../../../../../../pwned">'
        '<Component Id="Bad" Guid="11111111-2222-3333-4444-000000000002">'
        '<File Id="bad" Source="DemoApp.exe" KeyPath="yes"/></Component>'
        "</Directory></Directory></Directory></Directory>"
        '<Feature Id="F" Level="1"><ComponentRef Id="Good"/><ComponentRef Id="Bad"/>'
        "</Feature></Product></Wix>"
    )
    msi = tmp_path / "evil.msi"
    run("wixl", "-o", str(msi), str(wxs), cwd=app)
    work = tmp_path / "work"
    u = unpack(str(msi), str(work))
    assert [m.path for m in u.members] == ["Program Files/Evil/ffmpeg.dll"]
    assert len(u.problems) == 1 and "traversal" in u.problems[0].message
    assert u.problems[0].rule == "malformed-input"
    assert not Path("/pwned").exists()
    leftovers = [p for p in tmp_path.rglob("DemoApp.exe") if "app" not in p.parts]
    assert leftovers == []


def test_appimage_escaping_symlink_is_a_problem(app: Path, tmp_path: Path) -> None:
    need("mksquashfs", "unsquashfs")
    os.symlink("../../../../etc/passwd", app / "evil-link")
    img = build_appimage(app, tmp_path)
    u = unpack(str(img), str(tmp_path / "w"))
    assert [p.evidence["path"] for p in u.problems] == ["evil-link"]
    assert "symlink escapes" in u.problems[0].message
    paths = {m.path for m in u.members}
    assert "evil-link" not in paths and set(PAYLOAD) <= paths


def test_7z_listing_over_the_caps_is_refused(app: Path, tmp_path: Path) -> None:
    need("7z")
    from verifier.errors import LimitExceededError
    from verifier.unpack.installers import extract_7z
    from verifier.unpack.limits import Limits

    arc = tmp_path / "big.7z"
    (app / "zeros.bin").write_bytes(bytes(2_000_000))
    run("7z", "a", "-bd", str(arc), ".", cwd=app)
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(LimitExceededError):
        extract_7z(str(arc), str(dest), Limits(max_total_bytes=1_000_000))
    with pytest.raises(LimitExceededError):
        extract_7z(str(arc), str(dest), Limits(max_members=2))
    assert list(dest.iterdir()) == []  # refused before anything was written


def test_corrupt_rpm(app: Path, tmp_path: Path) -> None:
    need("rpm2cpio")
    rpm = build_rpm(app, tmp_path)
    data = rpm.read_bytes()
    bad = tmp_path / "bad.rpm"
    bad.write_bytes(data[: len(data) * 2 // 3])
    _unreadable_top(bad, tmp_path)


def test_electron_builder_style_nsis_with_nested_7z(app: Path, tmp_path: Path) -> None:
    """electron-builder's NSIS installers carry the app as $PLUGINSDIR/app-64.7z."""
    need("makensis", "7z")
    arc = tmp_path / "app-64.7z"
    run("7z", "a", "-bd", str(arc), ".", cwd=app)
    nsi = tmp_path / "eb.nsi"
    out = tmp_path / "DemoApp Setup 1.0.0.exe"
    nsi.write_text(
        f'Name "DemoApp"\nOutFile "{out}"\nRequestExecutionLevel user\n'
        'InstallDir "$LOCALAPPDATA\\Programs\\DemoApp"\n'
        f'Section\nInitPluginsDir\nSetOutPath "$PLUGINSDIR"\nFile "{arc}"\nSectionEnd\n'
    )
    run("makensis", "-V1", "-NOCD", str(nsi))
    u = unpack(str(out), str(tmp_path / "w"))
    assert not u.problems
    by_path = {m.path: m for m in u.members}
    m = by_path["$PLUGINSDIR/app-64.7z/ffmpeg.dll"]
    assert m.location == f"{out.name}!/$PLUGINSDIR/app-64.7z!/ffmpeg.dll"
    assert m.container == (out.name, "$PLUGINSDIR/app-64.7z")
    assert m.blob.read() == PAYLOAD["ffmpeg.dll"]
    assert "$PLUGINSDIR/app-64.7z" in by_path  # the archive itself is a member too


# --- MSI Authenticode (signed with osslsigncode, verified by signing.authenticode) ------------


def _sign_msi(msi: Path, out: Path, tmp: Path) -> Any:
    need("osslsigncode")
    from verifier._scenarios import osslsign
    from verifier._scenarios.pki import vendor_pki

    pki = vendor_pki().write(tmp / "pki")
    osslsign.sign(msi, out, pki.signer_chain, pki.signer_key)
    return pki


def test_msi_authenticode_signature(app: Path, tmp_path: Path) -> None:
    from verifier.signing.msi import msi_authenticode, msi_signature_facts
    from verifier.signing.trust import TrustConfig

    msi = build_msi(app, tmp_path / "setup.msi")
    signed = tmp_path / "signed.msi"
    pki = _sign_msi(msi, signed, tmp_path)
    # the digest skips the signature stream: the same before and after signing
    der0, d0 = msi_authenticode(str(msi))
    der1, d1 = msi_authenticode(str(signed))
    assert der0 is None and der1 is not None and d0 == d1
    # osslsigncode computes the same digest ("Calculated DigitalSignature")
    out = subprocess.run(
        ["osslsigncode", "verify", "-CAfile", pki.root_cert, "-in", str(signed)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    assert d1["sha256"].upper() in out

    trust = TrustConfig(extra_pem=(pki.root_cert,))
    facts, anomalies = msi_signature_facts(str(signed), trust)
    assert facts.signed and facts.valid is True and not anomalies
    assert "ACME Desktop Ltd" in facts.signers[0].subject
    unsigned, none = msi_signature_facts(str(msi), trust)
    assert not unsigned.signed and none == ()
    _, untrusted = msi_signature_facts(str(signed), TrustConfig(use_microsoft_roots=False))
    assert [a.rule for a in untrusted] == ["untrusted-signer"]


def test_msi_authenticode_detects_tampering(app: Path, tmp_path: Path) -> None:
    from verifier.signing.msi import msi_signature_facts
    from verifier.signing.trust import TrustConfig

    msi = build_msi(app, tmp_path / "setup.msi")
    signed = tmp_path / "signed.msi"
    pki = _sign_msi(msi, signed, tmp_path)
    data = bytearray(signed.read_bytes())
    i = data.find(b"MSCF")
    assert i > 0, "no embedded cabinet"
    data[i + 40] ^= 0x20  # one byte of the embedded cabinet's headers
    bad = tmp_path / "tampered.msi"
    bad.write_bytes(bytes(data))
    facts, anomalies = msi_signature_facts(str(bad), TrustConfig(extra_pem=(pki.root_cert,)))
    assert facts.valid is False
    assert "invalid-signature" in [a.rule for a in anomalies]
    # a broken compound file: never a pass
    (tmp_path / "cut.msi").write_bytes(signed.read_bytes()[:2048])
    facts, anomalies = msi_signature_facts(str(tmp_path / "cut.msi"))
    assert facts.valid is False and anomalies[0].rule == "invalid-signature"


def test_ole_reader_hostile_chains(app: Path, tmp_path: Path) -> None:
    """A directory chain that loops, and sector numbers past the end: errors, not hangs."""
    import struct as st

    from verifier.errors import MalformedInputError
    from verifier.signing.msi import CompoundFile, msi_signature_facts

    msi = build_msi(app, tmp_path / "setup.msi")
    data = bytearray(msi.read_bytes())
    first_dir = st.unpack_from("<I", data, 0x30)[0]
    fat0 = st.unpack_from("<I", data, 0x4C)[0]
    looped = bytearray(data)
    st.pack_into("<I", looped, (fat0 + 1) * 512 + 4 * first_dir, first_dir)
    (tmp_path / "loop.msi").write_bytes(bytes(looped))
    with pytest.raises(MalformedInputError, match="chain"):
        CompoundFile(str(tmp_path / "loop.msi"))
    facts, anomalies = msi_signature_facts(str(tmp_path / "loop.msi"))
    assert facts.valid is False and anomalies[0].rule == "invalid-signature"
    far = bytearray(data)
    st.pack_into("<I", far, 0x30, 0x00FFFFFF)
    (tmp_path / "far.msi").write_bytes(bytes(far))
    with pytest.raises(MalformedInputError):
        CompoundFile(str(tmp_path / "far.msi"))
    assert not MsiReader().sniff(bytes(far[:HEAD_SIZE]), str(tmp_path / "far.msi"))


def _unreadable_top(bad: Path, tmp_path: Path) -> None:
    """A top-level installer that cannot be read: a malformed-input problem
    (docs/contract.md "Exit codes and precedence"), an
    ArtifactError only for an upstream release (``strict_top``)."""
    u = unpack(str(bad), str(tmp_path / "w"))
    assert u.members == ()
    assert [a.rule for a in u.problems] == ["malformed-input"]
    assert u.problems[0].evidence["location"] == bad.name
    with pytest.raises(ArtifactError):
        unpack(str(bad), str(tmp_path / "w2"), strict_top=True)

"""What external extractors cannot represent is named in the report's notes
(docs/contract.md "Archives as real extractors see them"), and an MSI database that installs
no file is not malformed. Real tools build the artifacts (wixl, dpkg-deb, 7z); the MSI
validation module is the one a genuine npm package ships (``electron-winstaller@2.6.4``'s
``vendor/darice.cub``).
The DMG note (7-Zip writes symlinks as empty files) is checked in ``test_dmg_read.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from support.fetch import npm_tarball

from verifier.cli import main
from verifier.unpack import unpack

WINSTALLER_SHA = "93865dfe50a036f25fa1e4df87685b21b23dff21e64370278239742805161b06"


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


def biv(fmt: str, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["verify", *args, "--format", fmt, "-q"])
    assert "internal error" not in err.getvalue(), err.getvalue()
    return rc, out.getvalue()


def notes(report: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for n in report["notes"]:
        out.setdefault(n["kind"], []).append(n)
    return out


@pytest.fixture(scope="module")
def cub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("msiextract")
    need("msiinfo")
    tgz = npm_tarball("electron-winstaller", "2.6.4", WINSTALLER_SHA)
    out = tmp_path_factory.mktemp("cub") / "darice.cub"
    with tarfile.open(tgz) as tf:
        f = tf.extractfile("package/vendor/darice.cub")
        assert f is not None
        out.write_bytes(f.read())
    return out


def test_msi_database_without_files_is_data_with_a_note(cub: Path, tmp_path: Path) -> None:
    # msiextract refuses it; msiinfo reads its tables: an ICE validation module, no File table
    listed = subprocess.run(["msiextract", "--list", str(cub)], capture_output=True)
    assert listed.returncode != 0
    tables = subprocess.run(["msiinfo", "tables", str(cub)], capture_output=True, check=True)
    assert b"_Validation" in tables.stdout and b"\nFile\n" not in tables.stdout
    u = unpack(str(cub), str(tmp_path / "w"))
    assert u.problems == () and u.members == () and u.formats == {"msi"}
    kinds = {n.kind: n for n in u.notes}
    assert set(kinds) == {"msi-no-files", "msi-binary-streams"}
    assert "msiice.dll" in kinds["msi-binary-streams"].message
    assert kinds["msi-no-files"].location == "darice.cub"


@pytest.mark.parametrize("damage", ["truncated", "directory"])
def test_corrupt_msi_database_stays_malformed(cub: Path, tmp_path: Path, damage: str) -> None:
    data = bytearray(cub.read_bytes())
    first_dir = int.from_bytes(data[0x30:0x34], "little")
    if damage == "truncated":
        data = data[: (first_dir + 2) * 512]
    else:  # every directory entry but the root's overwritten
        off = (first_dir + 1) * 512
        data[off + 0x80 : off + 512] = b"\xff" * (512 - 0x80)
    bad = tmp_path / "bad.cub"
    bad.write_bytes(bytes(data))
    u = unpack(str(bad), str(tmp_path / "w"))
    assert [a.rule for a in u.problems] == ["malformed-input"] and not u.notes


def test_genuine_package_with_a_validation_module_passes(tmp_path: Path) -> None:
    need("msiextract")
    tgz = npm_tarball("electron-winstaller", "2.6.4", WINSTALLER_SHA)
    rc, out = biv("json", str(tgz), "--against", f"path:{tgz}")
    report = json.loads(out)
    assert rc == 0 and report["verdict"] == "pass", report["findings"]
    assert not [f for f in report["findings"] if f["rule"] == "malformed-input"]
    [n] = notes(report)["msi-no-files"]
    assert n["location"].endswith("!/package/vendor/darice.cub")
    rc, text = biv("text", str(tgz), "--against", f"path:{tgz}")
    assert rc == 0 and "msi-no-files" in text and "Notes (" in text
    rc, html = biv("html", str(tgz), "--against", f"path:{tgz}")
    assert rc == 0 and "msi-binary-streams" in html
    rc, sarif = biv("sarif", str(tgz), "--against", f"path:{tgz}")
    inv = json.loads(sarif)["runs"][0]["invocations"][0]
    ids = {n["descriptor"]["id"] for n in inv["toolExecutionNotifications"]}
    assert ids == {"msi-no-files", "msi-binary-streams"}


def test_msi_binary_table_is_named(tmp_path: Path) -> None:
    """wixl puts a <Binary> (a custom action's DLL) in the Binary table: msiextract writes
    the installed files only, so the note names it."""
    need("wixl")
    need("msiextract")
    (tmp_path / "app.txt").write_text("hello\n")
    (tmp_path / "ca.dll").write_bytes(b"MZ custom action")
    wxs = tmp_path / "p.wxs"
    wxs.write_text(
        '<?xml version="1.0" encoding="utf-8"?>'
        '<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">'
        '<Product Id="*" Name="N" Language="1033" Version="1.0.0" Manufacturer="M" '
        'UpgradeCode="12345678-1234-1234-1234-123456789012">'
        '<Package InstallerVersion="200" Compressed="yes" InstallScope="perUser"/>'
        '<Media Id="1" Cabinet="a.cab" EmbedCab="yes"/>'
        '<Binary Id="CustomActionDll" SourceFile="ca.dll"/>'
        '<Directory Id="TARGETDIR" Name="SourceDir"><Directory Id="ProgramFilesFolder">'
        '<Directory Id="INSTALLDIR" Name="N"><Component Id="C" Guid="11111111-2222-3333-'
        '4444-000000000001"><File Id="F" Source="app.txt" KeyPath="yes"/></Component>'
        '</Directory></Directory></Directory><Feature Id="F" Level="1"><ComponentRef Id="C"/>'
        "</Feature></Product></Wix>"
    )
    subprocess.run(["wixl", "-o", "n.msi", "p.wxs"], cwd=tmp_path, check=True, capture_output=True)
    u = unpack(str(tmp_path / "n.msi"), str(tmp_path / "w"))
    assert u.problems == ()
    assert [m.path for m in u.members] == ["Program Files/N/app.txt"]
    [n] = u.notes
    assert n.kind == "msi-binary-streams" and "'CustomActionDll'" in n.message


def test_7z_symlinks_are_named(tmp_path: Path) -> None:
    need("7z")
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "libx.so.1").write_bytes(b"\x7fELF...")
    (src / "lib" / "libx.so").symlink_to("libx.so.1")
    arc = tmp_path / "a.7z"
    subprocess.run(
        ["7z", "a", "-bd", "-snl", str(arc), "lib"], cwd=src, check=True, capture_output=True
    )
    u = unpack(str(arc), str(tmp_path / "w"))
    assert [m.path for m in u.members] == ["lib/libx.so.1"] and u.problems == ()
    [n] = u.notes
    assert n.kind == "tool-links-dropped" and "1 symlink(s)" in n.message
    assert "'lib/libx.so'" in n.message


def test_deb_absolute_links_note_and_untrusted_names(tmp_path: Path) -> None:
    """An absolute target in a .deb is read from the package's root (a note says so); the
    link is compared like any link, and its hostile name is escaped in the text report."""
    need("dpkg-deb")
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: t\nVersion: 1.0\nArchitecture: all\nMaintainer: m <m@example.org>\n"
        "Description: t\n"
    )
    (root / "opt" / "t").mkdir(parents=True)
    (root / "opt" / "t" / "tool").write_bytes(b"#!/bin/sh\n")
    (root / "usr" / "bin").mkdir(parents=True)
    evil = "usr/bin/\u202eloot.exe"
    os.symlink("/opt/t/tool", root / evil)
    deb = tmp_path / "t.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    u = unpack(str(deb), str(tmp_path / "w"))
    assert u.problems == ()
    assert [(k.path, k.target) for k in u.links] == [(evil, "../../opt/t/tool")]
    [n] = u.notes
    assert n.kind == "deb-absolute-links" and n.location == "t.deb"
    rc, text = biv("text", str(deb), "--against", f"path:{deb}")
    assert rc == 0 and "deb-absolute-links" in text and "\u202e" not in text
    assert "\\u202eloot.exe" in text

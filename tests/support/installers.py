"""Real installers of a folder, built with real tools: wixl (MSI) and makensis (NSIS)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest

ids = itertools.count()


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (make system-deps)")


def _xml(s: str) -> str:
    return s.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _wxs_dir(root: Path, rel: Path, refs: list[str]) -> str:
    out = []
    for p in sorted((root / rel).iterdir()):
        r = rel / p.name
        if p.is_dir():
            inner = _wxs_dir(root, r, refs)
            out.append(f'<Directory Id="D{next(ids)}" Name="{_xml(p.name)}">{inner}</Directory>')
        else:
            n = next(ids)
            refs.append(f'<ComponentRef Id="C{n}"/>')
            out.append(
                f'<Component Id="C{n}" Guid="11111111-2222-3333-4444-{n:012d}">'
                f'<File Id="F{n}" Name="{_xml(p.name)}" Source="{_xml(r.as_posix())}" '
                'KeyPath="yes"/></Component>'
            )
    return "".join(out)


def build_msi(tree: Path, out: Path, product: str) -> Path:
    need("wixl")
    refs: list[str] = []
    body = _wxs_dir(tree, Path(), refs)
    wxs = out.with_suffix(".wxs")
    wxs.write_text(
        '<?xml version="1.0" encoding="utf-8"?>'
        '<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">'
        f'<Product Id="*" Name="{product}" Language="1033" Version="18.12.416" '
        'Manufacturer="Demo" UpgradeCode="12345678-1234-1234-1234-123456789012">'
        '<Package InstallerVersion="200" Compressed="yes" InstallScope="perUser"/>'
        '<Media Id="1" Cabinet="app.cab" EmbedCab="yes"/>'
        '<Directory Id="TARGETDIR" Name="SourceDir"><Directory Id="ProgramFilesFolder">'
        f'<Directory Id="INSTALLDIR" Name="{product}">{body}</Directory>'
        "</Directory></Directory>"
        f'<Feature Id="F" Level="1">{"".join(refs)}</Feature></Product></Wix>'
    )
    res = subprocess.run(
        ["wixl", "-o", str(out), str(wxs)], cwd=tree, capture_output=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-1500:]
    return out


def build_nsis(tree: Path, out: Path, product: str) -> Path:
    need("makensis")
    nsi = out.with_suffix(".nsi")
    nsi.write_text(
        f'Name "{product}"\nOutFile "{out}"\nUnicode true\n'
        f'InstallDir "$LOCALAPPDATA\\Programs\\{product}"\nRequestExecutionLevel user\n'
        f'Section\nSetOutPath "$INSTDIR"\nFile /r "{tree}/*"\nSectionEnd\n'
    )
    res = subprocess.run(
        ["makensis", "-V1", "-NOCD", str(nsi)], capture_output=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-1500:]
    return out

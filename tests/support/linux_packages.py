"""Linux packages built with real tools (rpmbuild, dpkg-deb, GNU tar and cpio), and the tree
the real extractors write (``rpm2cpio X.rpm | cpio -idm``, ``dpkg-deb -x``, ``tar -x``) next
to the tree biv compares.

``newc`` writes a cpio 'newc' archive from entries the test chooses (hostile ones included);
``with_payload`` puts it into a real .rpm in place of its payload, so the real ``rpm2cpio``
reads it (it checks the payload's size, not its digest: the archive is padded to the size
the header states).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import posixpath
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from verifier.cli import main
from verifier.unpack import unpack


def need(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed (make system-deps)")
    return exe


def biv(fmt: str, *args: str) -> tuple[int, str]:
    """``biv verify ARGS --format FMT -q`` in process: (exit code, stdout)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["verify", *args, "--format", fmt, "-q"])
    assert "internal error" not in err.getvalue(), err.getvalue()
    return rc, out.getvalue()


def biv_json(*args: str) -> tuple[int, dict[str, Any]]:
    rc, out = biv("json", *args)
    return rc, json.loads(out)


def rules(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in report["findings"]:
        out.setdefault(f["rule"], []).append(f)
    return out


# --- trees -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    files: dict[str, str]  # path -> sha256
    symlinks: dict[str, str]  # path -> target, relative to the link's directory
    groups: frozenset[frozenset[str]]  # names sharing one inode


def disk_tree(root: Path) -> Tree:
    """What an extractor wrote under ``root``. An absolute symlink target is read from
    ``root`` (the package's root, as biv compares it)."""
    files: dict[str, str] = {}
    symlinks: dict[str, str] = {}
    inodes: dict[int, set[str]] = {}
    for dirpath, dirs, names in os.walk(root):
        for n in [*names, *(d for d in dirs if (Path(dirpath) / d).is_symlink())]:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                t = os.readlink(p)
                base = posixpath.dirname(rel) or "."
                symlinks[rel] = (
                    posixpath.relpath(t.lstrip("/") or ".", base)
                    if t.startswith("/")
                    else posixpath.normpath(t)
                )
            else:
                files[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
                inodes.setdefault(p.stat().st_ino, set()).add(rel)
    groups = frozenset(frozenset(g) for g in inodes.values() if len(g) > 1)
    return Tree(files, symlinks, groups)


def biv_tree(art: Path, work: Path) -> Tree:
    """The same from biv's unpacking of ``art`` (top layer only; no problems allowed)."""
    u = unpack(str(art), str(work))
    assert not u.problems, [a.message for a in u.problems]
    files = {m.path: m.sha256 or "" for m in u.members if len(m.container) == 1}
    top = [k for k in u.links if len(k.container) == 1]
    symlinks = {k.path: k.target for k in top if k.kind == "symlink"}
    merged: dict[str, set[str]] = {}
    for k in top:
        if k.kind == "hardlink":
            first = posixpath.normpath(posixpath.join(posixpath.dirname(k.path), k.target))
            merged.setdefault(first, {first}).add(k.path)
    return Tree(files, symlinks, frozenset(frozenset(g) for g in merged.values()))


def cpio_extract(rpm: Path, dest: Path) -> Path:
    """``rpm2cpio RPM | cpio -idm`` into ``dest``."""
    need("rpm2cpio")
    need("cpio")
    dest.mkdir(parents=True)
    payload = subprocess.run(
        ["rpm2cpio", str(rpm)], capture_output=True, check=True, timeout=120
    ).stdout
    subprocess.run(
        ["cpio", "-idm", "--quiet"], input=payload, cwd=dest, check=True, capture_output=True
    )
    return dest


# --- building ----------------------------------------------------------------------------


def build_rpm(work: Path, name: str, install: str, files: list[str]) -> Path:
    """``rpmbuild -bb`` of a noarch package whose %install runs ``install`` (a shell script
    writing under $RPM_BUILD_ROOT) and whose %files lists ``files``; gzip payload."""
    need("rpmbuild")
    top = work / f"rpmbuild-{name}"
    for d in ("BUILD", "RPMS", "SOURCES", "SPECS", "SRPMS", "BUILDROOT"):
        (top / d).mkdir(parents=True)
    spec = top / "SPECS" / f"{name}.spec"
    listed = "\n".join(files)
    spec.write_text(
        f"Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: t\nLicense: MIT\nBuildArch: noarch\n"
        f"%description\nt\n%prep\n%build\n%install\n{install}\n%files\n{listed}\n"
    )
    subprocess.run(
        [
            "rpmbuild",
            "-bb",
            "--define",
            f"_topdir {top}",
            "--define",
            "__os_install_post %{nil}",
            "--define",
            "debug_package %{nil}",
            "--define",
            "_binary_payload w9.gzdio",
            str(spec),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (rpm,) = (top / "RPMS").rglob("*.rpm")
    return rpm


Entry = tuple[str, int, bytes, int, int]  # name, mode, data, inode, nlink


def newc(entries: list[Entry]) -> bytes:
    """A cpio 'newc' archive of ``entries`` (then the trailer), as the format lays it out."""
    out = bytearray()
    for name, mode, data, ino, nlink in [*entries, ("TRAILER!!!", 0, b"", 0, 1)]:
        raw = name.encode("utf-8", "surrogateescape") + b"\0"
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + raw
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _payload_offset(data: bytes) -> int:
    """Where an rpm's payload starts: after the lead, the signature header (8-aligned) and
    the main header."""
    off = 96
    for i in range(2):
        assert data[off : off + 3] == b"\x8e\xad\xe8", f"no rpm header at {off}"
        count, size = struct.unpack(">II", data[off + 8 : off + 16])
        off += 16 + 16 * count + size
        if i == 0:
            off += -off % 8
    return off


def with_payload(base: Path, out: Path, archive: bytes) -> Path:
    """``base`` (a gzip-payload rpm) with ``archive`` as its payload, padded to the size
    ``base``'s header states."""
    size = len(subprocess.run(["rpm2cpio", str(base)], capture_output=True, check=True).stdout)
    assert len(archive) <= size, f"payload of {len(archive)} bytes, room for {size}"
    data = base.read_bytes()
    off = _payload_offset(data)
    out.write_bytes(data[:off] + gzip.compress(archive + b"\0" * (size - len(archive))))
    return out

"""Tar hard links are links (docs/contract.md "Archives as real extractors see them").

Every archive here is built by GNU tar (``--transform`` writes the hostile link targets GNU
tar itself would never store), and the tree biv compares is checked against the one
``tar -x`` (or ``dpkg-deb -x``) produces: the same files with the same bytes, the same
symlinks, and the same names sharing one inode. Then the verdicts: the same hard link
upstream has is fine, a new one or one to another file is ``unexpected-link``, and a hard
link to a member that is missing, later, a directory or outside the tree, or whose name
crosses a symlink, is ``malformed-input``. Real Debian packages with hard links (bzip2,
gzip) verify against themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.fetch import fetch_pinned

from verifier._scenarios import pewriter
from verifier.cli import main
from verifier.model import Link
from verifier.unpack import unpack

DLL = pewriter.build_pe(pewriter.ffmpeg_dll())
OTHER = pewriter.build_pe(pewriter.trojaned_ffmpeg_dll())


def need(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed")
    return exe


def gnu_tar(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([need("tar"), *args], cwd=cwd, check=check, capture_output=True)


def biv(*args: str) -> tuple[int, dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["verify", *args, "--format", "json", "-q"])
    assert "internal error" not in err.getvalue(), err.getvalue()
    return rc, json.loads(out.getvalue())


def rules(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in report["findings"]:
        out.setdefault(f["rule"], []).append(f)
    return out


Tree = tuple[dict[str, str], dict[str, str], set[frozenset[str]]]


def disk_tree(root: Path) -> Tree:
    """(files {path: sha256}, symlinks {path: target}, names sharing an inode) on disk."""
    files: dict[str, str] = {}
    symlinks: dict[str, str] = {}
    inodes: dict[int, set[str]] = {}
    for dirpath, dirs, names in os.walk(root):
        for n in [*names, *(d for d in dirs if (Path(dirpath) / d).is_symlink())]:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                symlinks[rel] = os.readlink(p)
                inodes.setdefault(p.lstat().st_ino, set()).add(rel)
            else:
                files[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
                inodes.setdefault(p.stat().st_ino, set()).add(rel)
    groups = {frozenset(g) for g in inodes.values() if len(g) > 1}
    return files, symlinks, groups


def biv_tree(art: Path, work: Path) -> Tree:
    """The same three things from biv's unpacking of ``art`` (no problems allowed)."""
    u = unpack(str(art), str(work))
    assert not u.problems, [a.message for a in u.problems]
    files = {m.path: m.sha256 or "" for m in u.members}
    symlinks = {k.path: k.target for k in u.links if k.kind == "symlink"}
    merged: dict[str, set[str]] = {}
    for k in u.links:
        if k.kind == "hardlink":
            first = posixpath.normpath(posixpath.join(posixpath.dirname(k.path), k.target))
            merged.setdefault(first, {first}).add(k.path)
    # a hard link to a symlink is a second symlink of the same text (linkat does not follow)
    return files, symlinks, {frozenset(g) for g in merged.values()}


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``up/``: app/lib.dll with a hard link app/bin/lib-copy.dll; app/x.dll alone."""
    base = tmp_path_factory.mktemp("hl")
    up = base / "up" / "app"
    (up / "bin").mkdir(parents=True)
    (up / "lib.dll").write_bytes(DLL)
    os.link(up / "lib.dll", up / "bin" / "lib-copy.dll")
    (up / "x.dll").write_bytes(OTHER)
    gnu_tar("-cf", str(base / "up.tar"), "app", cwd=base / "up")
    return base


def test_gnu_tar_tree_equals_biv_tree(trees: Path, tmp_path: Path) -> None:
    art = trees / "up.tar"
    listing = gnu_tar("-tvf", str(art), cwd=tmp_path).stdout.decode()
    assert " link to app/" in listing  # GNU tar stored a hard link
    out = tmp_path / "x"
    out.mkdir()
    gnu_tar("-xf", str(art), cwd=out)
    want = disk_tree(out)
    assert want[2] == {frozenset({"app/lib.dll", "app/bin/lib-copy.dll"})}
    assert biv_tree(art, tmp_path / "w") == want
    links = unpack(str(art), str(tmp_path / "w2")).links
    # named by the first name in sorted order, relative to the link's directory
    assert [(k.path, k.target, k.kind) for k in links] == [
        ("app/lib.dll", "bin/lib-copy.dll", "hardlink")
    ]


def test_same_hard_link_upstream_passes_whatever_the_order(trees: Path, tmp_path: Path) -> None:
    """The shipped tar stores the names in the other order: the same inode, the same links."""
    shipped = tmp_path / "shipped.tar"
    gnu_tar(
        "-cf", str(shipped), "app/bin/lib-copy.dll", "app/lib.dll", "app/x.dll", cwd=trees / "up"
    )
    assert "app/lib.dll link to app/bin/lib-copy.dll" in (
        gnu_tar("-tvf", str(shipped), cwd=tmp_path).stdout.decode()
    )
    rc, report = biv(str(shipped), "--against", f"path:{trees / 'up.tar'}", "--fail-on", "low")
    assert rc == 0 and report["verdict"] == "pass", report["findings"]
    # each name is also a file, compared with upstream's
    statuses = {f["path"]: f["status"] for f in report["files"]}
    assert statuses["bin/lib-copy.dll"] == statuses["lib.dll"] == "identical"


def test_shipped_adds_a_hard_link(trees: Path, tmp_path: Path) -> None:
    src = tmp_path / "s"
    shutil.copytree(trees / "up", src, copy_function=shutil.copy2)  # copies: links gone
    app = src / "app"
    (app / "bin" / "lib-copy.dll").unlink()
    os.link(app / "lib.dll", app / "bin" / "lib-copy.dll")
    os.link(app / "x.dll", app / "y-new.dll")  # the added one
    shipped = tmp_path / "added.tar"
    gnu_tar("-cf", str(shipped), "app", cwd=src)
    rc, report = biv(str(shipped), "--against", f"path:{trees / 'up.tar'}", "--fail-on", "medium")
    assert rc == 1
    [f] = rules(report)["unexpected-link"]
    assert f["path"] == "y-new.dll" and f["severity"] == "medium"
    assert f["evidence"]["kind"] == "hardlink" and f["evidence"]["target"] == "x.dll"
    assert "hard link to 'x.dll' that upstream does not have" in f["message"]
    # without --fail-on medium the new name is still a new file, compared as one
    statuses = {r["path"]: r["status"] for r in report["files"]}
    assert statuses["y-new.dll"] != "identical" and statuses["x.dll"] == "identical"


def test_hard_link_to_another_file(trees: Path, tmp_path: Path) -> None:
    src = tmp_path / "s"
    (src / "app" / "bin").mkdir(parents=True)
    (src / "app" / "lib.dll").write_bytes(DLL)
    (src / "app" / "x.dll").write_bytes(DLL)  # same bytes: only the link tells them apart
    os.link(src / "app" / "x.dll", src / "app" / "bin" / "lib-copy.dll")
    shipped = tmp_path / "moved.tar"
    gnu_tar("-cf", str(shipped), "app", cwd=src)
    rc, report = biv(str(shipped), "--against", f"path:{trees / 'up.tar'}", "--fail-on", "medium")
    got = {f["path"]: f for f in rules(report).get("unexpected-link", [])}
    # the names of one file are reported from the first in sorted order: upstream's
    # lib.dll -> bin/lib-copy.dll is gone, x.dll -> bin/lib-copy.dll is new
    assert rc == 1 and set(got) == {"x.dll"}, report["findings"]
    ev = got["x.dll"]["evidence"]
    assert ev == {
        "location": "moved.tar!/app/x.dll",
        "path": "x.dll",
        "target": "bin/lib-copy.dll",
        "kind": "hardlink",
    }
    statuses = {r["path"]: r["status"] for r in report["files"]}
    assert {statuses[p] for p in ("lib.dll", "bin/lib-copy.dll")} == {"identical"}


def test_hard_link_to_a_symlink_is_a_symlink(tmp_path: Path) -> None:
    src = tmp_path / "s"
    (src / "d").mkdir(parents=True)
    (src / "a").write_bytes(b"a")
    (src / "sl").symlink_to("a")
    os.link(src / "sl", src / "d" / "hsl", follow_symlinks=False)
    art = tmp_path / "hsl.tar"
    gnu_tar("-cf", str(art), "a", "sl", "d", cwd=src)
    assert "d/hsl link to sl" in gnu_tar("-tvf", str(art), cwd=tmp_path).stdout.decode()
    out = tmp_path / "x"
    out.mkdir()
    gnu_tar("-xf", str(art), cwd=out)
    want = disk_tree(out)
    assert want[1] == {"sl": "a", "d/hsl": "a"}  # the same text, in another directory
    files, symlinks, _groups = biv_tree(art, tmp_path / "w")
    assert (files, symlinks) == (want[0], want[1])


def _hostile(tmp_path: Path, name: str, members: list[str], *transform: str) -> Path:
    src = tmp_path / "src"
    if not src.exists():
        (src / "dir").mkdir(parents=True)
        (src / "a").write_bytes(DLL)
        os.link(src / "a", src / "b")
        (src / "c").write_bytes(OTHER)
        (src / "sub").symlink_to(".")
    art = tmp_path / name
    gnu_tar("-P", "-cf", str(art), *(f"--transform={t}" for t in transform), *members, cwd=src)
    return art


@pytest.mark.parametrize(
    ("name", "members", "transform", "bad"),
    [
        # GNU tar -x: "Cannot hard link to 'c': No such file or directory"
        ("later.tar", ["a", "b", "c"], ["s,^a$,c,RSh"], "b"),
        ("missing.tar", ["a", "b"], ["s,^a$,nowhere,RSh"], "b"),
        ("outside.tar", ["a", "b"], ["s,^a$,../../etc/passwd,RSh"], "b"),
        ("absolute.tar", ["a", "b"], ["s,^a$,/etc/passwd,RSh"], "b"),
        ("directory.tar", ["dir", "a", "b"], ["s,^a$,dir,RSh"], "b"),
        # GNU tar writes sub/b through the link, as ./b
        ("crossing.tar", ["a", "sub", "b"], ["s,^b$,sub/b,rSH"], "sub/b"),
    ],
)
def test_hostile_hard_links_are_malformed(
    tmp_path: Path, name: str, members: list[str], transform: list[str], bad: str
) -> None:
    art = _hostile(tmp_path, name, members, *transform)
    up = tmp_path / "up"
    up.mkdir()
    (up / "a").write_bytes(DLL)
    rc, report = biv(str(art), "--against", f"path:{up}")
    assert rc == 1 and report["verdict"] == "fail"
    assert f"{name}!/{bad}" in [f["location"] for f in rules(report)["malformed-input"]]
    if name == "later.tar":
        x = tmp_path / "x"
        x.mkdir()
        failed = gnu_tar("-xf", str(art), cwd=x, check=False)
        assert failed.returncode != 0 and b"Cannot hard link" in failed.stderr


def test_target_overwritten_later_keeps_the_old_bytes(tmp_path: Path) -> None:
    """GNU tar: ``a``, ``b`` linked to it, then a new ``a``: ``b`` keeps the first bytes.
    biv keeps the first ``a`` and flags the duplicate; ``b``'s bytes are GNU tar's."""
    first, second = tmp_path / "1", tmp_path / "2"
    first.mkdir()
    second.mkdir()
    (first / "a").write_bytes(DLL)
    os.link(first / "a", first / "b")
    (second / "a").write_bytes(OTHER)
    art = tmp_path / "over.tar"
    gnu_tar("-cf", str(art), "a", "b", cwd=first)
    gnu_tar("-rf", str(art), "a", cwd=second)
    x = tmp_path / "x"
    x.mkdir()
    gnu_tar("-xf", str(art), cwd=x)
    assert (x / "b").read_bytes() == DLL and (x / "a").read_bytes() == OTHER
    u = unpack(str(art), str(tmp_path / "w"))
    assert {m.path: m.blob.read() for m in u.members}["b"] == DLL
    assert any("duplicate entry" in a.message for a in u.problems)


def test_reference_document_carries_hard_links(trees: Path, tmp_path: Path) -> None:
    """``biv.refs/v1`` ``links`` keep the kind (absent = symlink), and read back."""
    link = Link("app/lib.dll", "bin/lib-copy.dll", kind="hardlink")
    assert link.to_dict() == {
        "path": "app/lib.dll",
        "target": "bin/lib-copy.dll",
        "kind": "hardlink",
    }
    assert Link.from_dict(link.to_dict()).kind == "hardlink"
    assert Link.from_dict({"path": "p", "target": "t"}).kind == "symlink"
    from verifier.errors import MalformedInputError

    with pytest.raises(MalformedInputError):
        Link.from_dict({"path": "p", "target": "t", "kind": "junction"})


# --- real Debian packages with hard links -----------------------------------------------

DEBS = {
    # bin/bunzip2 stored; bin/bzcat and bin/bzip2 are hard links to it
    "bzip2": (
        "b/bzip2/bzip2_1.0.8-5+b1_amd64.deb",
        "438871b3f5c5c7a357a9840951dab9dab8db7eb1ff760a563226fafa111b99e5",
    ),
    # bin/uncompress is a hard link to bin/gunzip
    "gzip": (
        "g/gzip/gzip_1.12-1_amd64.deb",
        "eabec1dde2834f72540d7b93fc5df2625f52611c06d93d61f5cdb12480e0e6a3",
    ),
}


@pytest.mark.parametrize("package", sorted(DEBS))
def test_real_debs_with_hard_links(package: str, tmp_path: Path) -> None:
    pool, sha = DEBS[package]
    deb = fetch_pinned(f"https://deb.debian.org/debian/pool/main/{pool}", sha)
    x = tmp_path / "x"
    subprocess.run([need("dpkg-deb"), "-x", str(deb), str(x)], check=True, capture_output=True)
    files, symlinks, groups = disk_tree(x)
    assert groups  # the package has hard links
    got_files, got_symlinks, got_groups = biv_tree(deb, tmp_path / "w")
    assert got_files == files and got_groups == groups
    # dpkg installs absolute targets relative to the system's root: biv reads them from the
    # package's root, as links relative to their own directory
    want = {
        p: posixpath.relpath(t.lstrip("/") or ".", posixpath.dirname(p) or ".")
        if t.startswith("/")
        else posixpath.normpath(t)
        for p, t in symlinks.items()
    }
    assert got_symlinks == want
    rc, report = biv(str(deb), "--against", f"path:{deb}", "--fail-on", "info")
    assert rc == 0 and report["verdict"] == "pass", report["findings"]

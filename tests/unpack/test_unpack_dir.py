"""Directory artifacts: walked in-process, symlinks never followed, special files skipped."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

import pytest
from support import asar
from support.unpack_helpers import Box, messages, run

from verifier.unpack import Limits, tree_digest, unpack


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        p = root.joinpath(*name.split("/"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_directory_members_and_tree_digest(box: Box) -> None:
    files = {"electron.exe": b"MZ", "resources/x.pak": b"pak", "locales/en-US.pak": b"en"}
    art = tree(box.art / "app", files)
    u = run(box, art)
    assert u.problems == ()
    assert [m.path for m in u.members] == sorted(files)
    for m in u.members:
        assert m.location == m.path and m.container == ()
        assert m.sha256 == hashlib.sha256(files[m.path]).hexdigest()
    pairs = sorted([p, hashlib.sha256(d).hexdigest()] for p, d in files.items())
    want = hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()
    assert (
        u.sha256
        == want
        == tree_digest([(p, hashlib.sha256(d).hexdigest()) for p, d in files.items()])
    )
    assert u.size == sum(len(d) for d in files.values())


def test_directory_symlink_escape_to_etc(box: Box) -> None:
    art = tree(box.art / "app", {"a.dll": b"a", "sub/b.dll": b"b"})
    (art / "etc").symlink_to("/etc")
    (art / "passwd").symlink_to("/etc/passwd")
    (art / "sub" / "up").symlink_to("../../..")
    (art / "sub" / "inside").symlink_to("b.dll")  # stays inside: skipped, not followed
    u = run(box, art)
    assert [m.path for m in u.members] == ["a.dll", "sub/b.dll"]
    assert sorted(a.evidence["location"] for a in u.problems) == ["etc", "passwd", "sub/up"]
    assert all(a.rule == "malformed-input" for a in u.problems)
    assert "symlink escapes the archive: -> '/etc'" in messages(u)


def test_directory_fifo_is_a_problem_and_never_opened(box: Box) -> None:
    art = tree(box.art / "app", {"a": b"a"})
    os.mkfifo(art / "pipe")
    t = time.monotonic()
    u = run(box, art)
    assert time.monotonic() - t < 10
    assert [m.path for m in u.members] == ["a"]
    assert "special file" in messages(u)


def test_directory_with_nested_zip_and_asar(box: Box) -> None:
    art = tree(box.art / "app", {"electron.exe": b"MZ"})
    with zipfile.ZipFile(art / "bundle.zip", "w") as z:
        z.writestr("x.dll", b"x")
    asar.write(
        art / "resources" / "app.asar",
        {"main.js": b"js", "node_modules/m/native.node": b"\x7fELF"},
        unpacked=["node_modules/m/native.node"],
    )
    u = run(box, art)
    assert u.problems == ()
    by_path = {m.path: m for m in u.members}
    assert sorted(by_path) == [
        "bundle.zip",
        "bundle.zip/x.dll",
        "electron.exe",
        "resources/app.asar",
        "resources/app.asar.unpacked/node_modules/m/native.node",
        "resources/app.asar/main.js",
    ]
    assert by_path["bundle.zip/x.dll"].location == "bundle.zip!/x.dll"
    assert by_path["bundle.zip/x.dll"].container == ("bundle.zip",)
    js = by_path["resources/app.asar/main.js"]
    assert js.location == "resources/app.asar!/main.js"
    assert js.container == ("resources/app.asar",)
    assert js.blob.read() == b"js" and js.sha256 is None


def test_directory_member_cap(box: Box) -> None:
    art = tree(box.art / "app", {f"f{i}": b"x" for i in range(20)})
    u = run(box, art, Limits(max_members=5))
    assert len(u.members) == 5 and "too many members" in messages(u)


def test_directory_of_many_files_is_walked_in_process(box: Box) -> None:
    art = box.art / "big"
    for d in range(10):
        sub = art / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"f{i}.js").write_bytes(b"x" * (i % 7))
    t = time.monotonic()
    u = run(box, art)
    elapsed = time.monotonic() - t
    assert len(u.members) == 1000 and u.problems == ()
    assert not box.work.exists() or not any(box.work.iterdir())  # no sandbox run at all
    assert elapsed < 30, elapsed  # generous: shared CI machines


def test_hash_files_false_reads_heads_only(box: Box) -> None:
    art = tree(box.art / "app", {"a.dll": b"MZ" * 1000})
    with zipfile.ZipFile(art / "inner.zip", "w") as z:
        z.writestr("x.dll", b"x")
    box.freeze()
    u = unpack(str(art), str(box.work), hash_files=False)
    box.unchanged()
    assert u.sha256 == "" and u.problems == ()
    assert [(m.path, m.sha256) for m in u.members] == [
        ("a.dll", None),
        ("inner.zip", None),
        ("inner.zip/x.dll", None),
    ]
    hashed = unpack(str(art), str(box.work / "again"))
    top = [
        (m.path, hashlib.sha256(m.blob.read()).hexdigest()) for m in u.members if not m.container
    ]
    assert tree_digest(top) == hashed.sha256


def test_hash_file_small_and_large_files_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files read whole in one call (under 64 KiB) and files streamed give the sha256, size
    and head of their bytes, at every size around the cut; a file that grew after its size
    was read (fstat reporting less than is there) is streamed whole, not cut short."""
    from verifier.unpack import walk

    for n in (0, 1, walk._SMALL - 1, walk._SMALL, walk._SMALL + 1, 3 << 20):
        data = os.urandom(n)
        p = tmp_path / f"f{n}"
        p.write_bytes(data)
        got = walk.hash_file(str(p))
        assert (got.size, got.sha256) == (n, hashlib.sha256(data).hexdigest()), n
        assert got.head == data[: walk.HEAD_SIZE]
    grown = os.urandom(walk._SMALL + 5000)
    p = tmp_path / "grown"
    p.write_bytes(grown)
    real_fstat = os.fstat

    class _Stale:
        def __init__(self, st: os.stat_result) -> None:
            self.st_mode, self.st_size = st.st_mode, 100

    monkeypatch.setattr(walk.os, "fstat", lambda fd: _Stale(real_fstat(fd)))
    got = walk.hash_file(str(p))
    assert (got.size, got.sha256) == (len(grown), hashlib.sha256(grown).hexdigest())
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    monkeypatch.undo()
    with pytest.raises(OSError, match="not a regular file"):
        walk.hash_file(str(fifo))

"""Zip artifacts: positive cases and each hostile archive, named after the attack."""

from __future__ import annotations

import hashlib
import io
import random
import shutil
import stat
import struct
import subprocess
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from support.unpack_helpers import Box, messages, run

from verifier.errors import ArtifactError
from verifier.unpack import Limits, unpack


def make_zip(path: Path, entries: Sequence[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return path


def zip_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


def test_zip_members_paths_locations_digests(box: Box) -> None:
    art = make_zip(
        box.art / "app.zip",
        [("app/ffmpeg.dll", b"MZ ffmpeg"), ("app/", b""), ("README", b"hi")],
    )
    u = run(box, art)
    assert u.problems == ()
    assert [m.path for m in u.members] == ["README", "app/ffmpeg.dll"]
    m = u.members[1]
    assert m.location == "app.zip!/app/ffmpeg.dll"
    assert m.container == ("app.zip",)
    assert m.blob.read() == b"MZ ffmpeg"
    assert m.sha256 == hashlib.sha256(b"MZ ffmpeg").hexdigest()
    assert u.sha256 == hashlib.sha256(art.read_bytes()).hexdigest()
    assert u.size == art.stat().st_size


def dos_info(name: str) -> zipfile.ZipInfo:
    """A member as a zip tool on MS-DOS/Windows writes it (host system 0)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 0
    return info


@pytest.mark.parametrize(
    ("host", "want"),
    [("dos", "app/bin/x.dll"), ("unix", "app\\bin\\x.dll")],
)
def test_zip_backslashes_as_unzip_reads_them(box: Box, host: str, want: str) -> None:
    """Info-ZIP's unzip reads '\\' as a separator only in a name from an MS-DOS host (with no
    '/'); from a Unix host it is a character of the name (a file ``app\\bin\\x.dll``)."""
    name = "app\\bin\\x.dll"
    art = make_zip(box.art / f"{host}.zip", [(dos_info(name) if host == "dos" else name, b"x")])
    u = run(box, art)
    assert u.problems == ()
    assert [m.path for m in u.members] == [want]
    unzip = shutil.which("unzip")
    if unzip is not None:  # the real extractor agrees
        out = box.art / f"{host}-unzip"
        out.mkdir()
        done = subprocess.run([unzip, "-q", str(art)], cwd=out, capture_output=True)
        assert done.returncode in (0, 1), done.stderr  # 1: "appears to use backslashes"
        assert [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()] == [want]


@pytest.mark.parametrize(
    "name",
    ["../../evil", "app/../../../evil", "..\\..\\evil", "/tmp/biv-evil-abs", "C:/evil", "C:evil"],
)
def test_zip_path_traversal_and_absolute_paths(box: Box, name: str) -> None:
    art = make_zip(box.art / "t.zip", [(name, b"evil"), ("ok.txt", b"ok")])
    u = run(box, art)
    assert [m.path for m in u.members] == ["ok.txt"]
    assert len(u.problems) == 1
    a = u.problems[0]
    assert a.rule == "malformed-input"
    assert a.evidence["location"] == f"t.zip!/{name}"
    assert not Path("/tmp/biv-evil-abs").exists()


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def test_zip_symlink_escape(box: Box) -> None:
    art = make_zip(
        box.art / "s.zip",
        [
            (_symlink_info("etc"), b"/etc"),
            (_symlink_info("up"), b"../../.."),
            (_symlink_info("Versions/Current"), b"A"),  # inside: skipped quietly
            ("Versions/A/lib.dylib", b"lib"),
        ],
    )
    u = run(box, art)
    assert [m.path for m in u.members] == ["Versions/A/lib.dylib"]
    assert sorted(a.evidence["location"] for a in u.problems) == ["s.zip!/etc", "s.zip!/up"]
    assert "symlink escapes" in messages(u)
    assert not list(box.work.rglob("etc")) and not list(box.work.rglob("Current"))


def test_zip_duplicate_entries(box: Box) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        art = make_zip(box.art / "d.zip", [("a.dll", b"first"), ("a.dll", b"second")])
    u = run(box, art)
    assert [m.blob.read() for m in u.members] == [b"first"]
    assert "duplicate entry" in messages(u)


def test_zip_duplicate_after_normalisation(box: Box) -> None:
    art = make_zip(box.art / "d.zip", [("a/b.dll", b"first"), (dos_info("a\\b.dll"), b"second")])
    u = run(box, art)
    assert len(u.members) == 1 and "duplicate entry" in messages(u)


def test_zip_encrypted_entry(box: Box) -> None:
    art = make_zip(box.art / "e.zip", [("secret.dll", b"x" * 10), ("ok", b"ok")])
    data = bytearray(art.read_bytes())
    # set the "encrypted" flag bit in the local header and the central directory entry
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        i = data.find(sig)
        flag_at = i + (6 if sig == b"PK\x03\x04" else 8)
        data[flag_at] |= 1
    art.write_bytes(bytes(data))
    u = run(box, art)
    assert [m.path for m in u.members] == ["ok"]
    assert "encrypted" in messages(u)


def test_zip_bad_crc(box: Box) -> None:
    art = make_zip(box.art / "c.zip", [("a.bin", b"A" * 1000)])
    data = bytearray(art.read_bytes())
    i = data.find(b"PK\x01\x02") + 16  # central directory CRC-32
    data[i] ^= 0xFF
    j = data.find(b"PK\x03\x04") + 14  # local header CRC-32
    data[j] ^= 0xFF
    art.write_bytes(bytes(data))
    u = run(box, art)
    assert u.members == ()
    assert "CRC" in messages(u)


def test_zip_bomb_high_ratio(box: Box) -> None:
    art = make_zip(box.art / "bomb.zip", [("zeros.bin", b"\0" * (8 << 20)), ("ok", b"ok")])
    u = run(box, art, Limits(ratio_min_bytes=1 << 20, max_ratio=100))
    assert [m.path for m in u.members] == ["ok"]
    assert "compression ratio" in messages(u)
    assert not any(p.name == "zeros.bin" for p in box.work.rglob("*"))


def test_zip_member_larger_than_cap(box: Box) -> None:
    art = make_zip(box.art / "big.zip", [("big.bin", bytes(range(256)) * 4096)])
    u = run(box, art, Limits(max_member_bytes=100_000))
    assert u.members == () and "larger than" in messages(u)


def test_zip_total_size_cap(box: Box) -> None:
    entries = [(f"f{i}", bytes([i]) * 50_000) for i in range(10)]
    art = make_zip(box.art / "t.zip", entries)
    u = run(box, art, Limits(max_total_bytes=120_000, max_ratio=10_000))
    assert len(u.members) == 2
    assert "total extracted size" in messages(u)


def test_zip_too_many_members(box: Box) -> None:
    art = make_zip(box.art / "many.zip", [(f"f{i}", b"x") for i in range(50)])
    # over a cap at top level: a malformed-input problem, not an unreadable artifact
    top = run(box, art, Limits(max_members=10))
    assert top.members == () and "50 entries" in messages(top)
    assert {a.rule for a in top.problems} == {"malformed-input"}
    # nested, the same zip is a problem of the outer archive
    outer = make_zip(box.art / "outer.zip", [("many.zip", art.read_bytes())])
    box2 = Box(box.root / "second")
    u = run(box2, outer, Limits(max_members=10))
    assert [m.path for m in u.members] == ["many.zip"]
    assert "50 entries" in messages(u)


def test_zip_overlapping_entries_bomb(box: Box) -> None:
    """Two central-directory entries pointing at one local file (non-recursive bomb)."""
    art = make_zip(box.art / "o.zip", [("a", b"A" * 100)])
    data = art.read_bytes()
    cd = data.find(b"PK\x01\x02")
    eocd = data.find(b"PK\x05\x06")
    entry = data[cd:eocd]
    entry2 = entry.replace(b"a", b"b", 1) if entry.endswith(b"a") else entry[:-1] + b"b"
    cd_blob = entry + entry2
    end = bytearray(data[eocd:])
    struct.pack_into("<HHII", end, 8, 2, 2, len(cd_blob), cd)
    art.write_bytes(data[:cd] + cd_blob + bytes(end))
    u = run(box, art)
    assert u.members == ()
    assert "overlaps" in messages(u)


def test_zip_truncated_top_level_is_a_problem(box: Box) -> None:
    art = make_zip(box.art / "trunc.zip", [("a.dll", b"A" * 5000)])
    art.write_bytes(art.read_bytes()[:-40])
    u = run(box, art)
    assert u.members == ()
    (a,) = u.problems
    assert a.rule == "malformed-input" and "unreadable zip archive" in a.message
    assert a.evidence["location"] == "trunc.zip"
    # an upstream release given by path asks for the old contract: unreadable is an error
    with pytest.raises(ArtifactError, match="zip") as exc:
        unpack(str(art), str(box.work / "strict"), strict_top=True)
    assert "\n" not in exc.value.diagnostics()


def test_zip_truncated_nested_is_problem(box: Box) -> None:
    inner = zip_bytes([("x.dll", b"x" * 5000)])[:-40]
    art = make_zip(box.art / "outer.zip", [("app/inner.zip", inner), ("ok", b"ok")])
    u = run(box, art)
    assert [m.path for m in u.members] == ["app/inner.zip", "ok"]
    (a,) = u.problems
    assert a.rule == "malformed-input"
    assert a.evidence["location"] == "outer.zip!/app/inner.zip"


def test_not_an_archive_is_artifact_error(box: Box) -> None:
    f = box.art / "plain.txt"
    f.write_bytes(b"hello")
    with pytest.raises(ArtifactError, match="not a directory or a supported archive"):
        unpack(str(f), str(box.work))
    with pytest.raises(ArtifactError, match="no such file"):
        unpack(str(box.art / "missing.zip"), str(box.work))


def test_zip_large_incompressible_member(box: Box) -> None:
    payload = random.Random(1).randbytes(3 << 20)
    art = make_zip(box.art / "l.zip", [("big.bin", payload)])
    u = run(box, art)
    assert u.problems == () and u.members[0].blob.size == len(payload)


def test_zip_local_and_central_names_differ(box: Box) -> None:
    """One name for the verifier (central directory), another for a streaming extractor."""
    art = make_zip(box.art / "n.zip", [("good.dll", b"MZ")])
    data = bytearray(art.read_bytes())
    cd = data.find(b"PK\x01\x02")
    data[cd + 46 : cd + 54] = b"evil.dll"
    art.write_bytes(bytes(data))
    u = run(box, art)
    assert u.members == ()
    assert "local header names it" in messages(u)


def test_zip_problems_are_capped(box: Box) -> None:
    art = make_zip(box.art / "p.zip", [(f"../x{i}", b"x") for i in range(30)])
    u = run(box, art, Limits(max_problems=5))
    assert len(u.problems) == 6
    assert "more than 5 problems" in messages(u)


def test_zip_bomb_of_many_small_members(box: Box) -> None:
    """Each member stays under the per-member ratio floor; the archive as a whole does not."""
    entries = [(f"z{i}", b"\0" * 200_000) for i in range(40)]
    art = make_zip(box.art / "many-small.zip", entries)
    u = run(box, art, Limits(ratio_min_bytes=1 << 20, max_ratio=100))
    assert len(u.members) < 40
    assert "compression ratio" in messages(u)

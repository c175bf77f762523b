"""Tar artifacts (plain, gz, bz2, xz): positive cases and hostile entries."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from support.unpack_helpers import Box, assert_unreadable_top, messages, run

from verifier.unpack import Limits


def add_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data))


def add_special(tf: tarfile.TarFile, name: str, kind: bytes, link: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    tf.addfile(ti)


def make_tar(path: Path, mode: str, build) -> Path:  # type: ignore[no-untyped-def]
    with tarfile.open(path, mode) as tf:  # type: ignore[call-overload]
        build(tf)
    return path


@pytest.mark.parametrize(
    ("suffix", "mode"),
    [(".tar", "w"), (".tar.gz", "w:gz"), (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz")],
)
def test_tar_compressions(box: Box, suffix: str, mode: str) -> None:
    def build(tf: tarfile.TarFile) -> None:
        d = tarfile.TarInfo("app")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        add_file(tf, "app/electron", b"\x7fELF...")
        add_file(tf, "./app/resources/x.pak", b"pak")

    art = make_tar(box.art / f"app{suffix}", mode, build)
    # sniffed by content, not by name
    renamed = art.rename(box.art / "artifact.bin")
    u = run(box, renamed)
    assert u.problems == ()
    assert [m.path for m in u.members] == ["app/electron", "app/resources/x.pak"]
    assert u.members[0].location == "artifact.bin!/app/electron"
    assert u.members[0].blob.read() == b"\x7fELF..."


@pytest.mark.parametrize("name", ["../../evil", "a/../../../evil", "/tmp/biv-evil-tar-abs"])
def test_tar_path_traversal_and_absolute_paths(box: Box, name: str) -> None:
    def build(tf: tarfile.TarFile) -> None:
        add_file(tf, name, b"evil")
        add_file(tf, "ok", b"ok")

    u = run(box, make_tar(box.art / "t.tar.gz", "w:gz", build))
    assert [m.path for m in u.members] == ["ok"]
    assert [a.evidence["location"] for a in u.problems] == [f"t.tar.gz!/{name}"]
    assert not Path("/tmp/biv-evil-tar-abs").exists()


def test_tar_symlink_escape(box: Box) -> None:
    def build(tf: tarfile.TarFile) -> None:
        add_special(tf, "etc", tarfile.SYMTYPE, "/etc")
        add_special(tf, "up", tarfile.SYMTYPE, "../..")
        add_special(tf, "inside", tarfile.SYMTYPE, "ok")
        # the classic: write through the escaping link
        add_file(tf, "up/evil", b"evil")
        add_file(tf, "ok", b"ok")

    u = run(box, make_tar(box.art / "s.tar", "w", build))
    assert [m.path for m in u.members] == ["ok"]  # 'up/evil' goes through the link: dropped
    locs = sorted(a.evidence["location"] for a in u.problems)
    assert locs == ["s.tar!/etc", "s.tar!/up", "s.tar!/up/evil"]
    assert "symlink escapes" in messages(u) and "crosses the symlink 'up'" in messages(u)
    assert [k.path for k in u.links] == ["inside"]
    assert not any(p.is_symlink() for p in box.work.rglob("*"))


def test_tar_hardlink_outside_and_inside(box: Box) -> None:
    def build(tf: tarfile.TarFile) -> None:
        add_file(tf, "lib.so", b"library")
        add_special(tf, "copy.so", tarfile.LNKTYPE, "lib.so")
        add_special(tf, "passwd", tarfile.LNKTYPE, "/etc/passwd")
        add_special(tf, "up", tarfile.LNKTYPE, "../../x")
        add_special(tf, "later", tarfile.LNKTYPE, "not-yet")

    u = run(box, make_tar(box.art / "h.tar", "w", build))
    assert {m.path: m.blob.read() for m in u.members} == {
        "copy.so": b"library",
        "lib.so": b"library",
    }
    locs = sorted(a.evidence["location"] for a in u.problems)
    assert locs == ["h.tar!/later", "h.tar!/passwd", "h.tar!/up"]


def test_tar_device_and_fifo_entries(box: Box) -> None:
    def build(tf: tarfile.TarFile) -> None:
        add_special(tf, "dev/sda", tarfile.BLKTYPE)
        add_special(tf, "dev/null", tarfile.CHRTYPE)
        add_special(tf, "pipe", tarfile.FIFOTYPE)
        add_file(tf, "ok", b"ok")

    u = run(box, make_tar(box.art / "d.tar", "w", build))
    assert [m.path for m in u.members] == ["ok"]
    text = messages(u)
    assert text.count("device entry") == 2 and "FIFO" in text


def test_tar_duplicate_entries(box: Box) -> None:
    def build(tf: tarfile.TarFile) -> None:
        add_file(tf, "a.dll", b"first")
        add_file(tf, "./a.dll", b"second")

    u = run(box, make_tar(box.art / "dup.tar", "w", build))
    assert [m.blob.read() for m in u.members] == [b"first"]
    assert "duplicate entry" in messages(u)


def test_tar_bomb_ratio(box: Box) -> None:
    def build(tf: tarfile.TarFile) -> None:
        add_file(tf, "zeros", b"\0" * (6 << 20))

    u = run(box, make_tar(box.art / "b.tar.gz", "w:gz", build), Limits(max_ratio=50))
    assert u.members == () and "compression ratio" in messages(u)


def test_tar_too_many_members(box: Box) -> None:
    def build(tf: tarfile.TarFile) -> None:
        for i in range(30):
            add_file(tf, f"f{i:02}", b"x")

    u = run(box, make_tar(box.art / "m.tar", "w", build), Limits(max_members=10))
    assert len(u.members) == 10 and "more than 10 members" in messages(u)


@pytest.mark.parametrize(("suffix", "mode", "cut"), [(".tar", "w", 1200), (".tgz", "w:gz", 60)])
def test_tar_truncated_top_level_is_malformed(box: Box, suffix: str, mode: str, cut: int) -> None:
    def build(tf: tarfile.TarFile) -> None:
        add_file(tf, "a", bytes(range(256)) * 20)

    art = make_tar(box.art / f"t{suffix}", mode, build)
    art.write_bytes(art.read_bytes()[:cut])
    assert_unreadable_top(box, art, "truncated or corrupt tar")


def test_zip_nested_in_tar(box: Box) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("lib/ffmpeg.dll", b"MZ inner")

    def build(tf: tarfile.TarFile) -> None:
        add_file(tf, "pkg/bundle.nupkg", buf.getvalue())

    u = run(box, make_tar(box.art / "o.tar.xz", "w:xz", build))
    assert u.problems == ()
    inner = [m for m in u.members if m.path == "pkg/bundle.nupkg/lib/ffmpeg.dll"]
    assert len(inner) == 1
    assert inner[0].location == "o.tar.xz!/pkg/bundle.nupkg!/lib/ffmpeg.dll"
    assert inner[0].container == ("o.tar.xz", "pkg/bundle.nupkg")
    assert inner[0].blob.read() == b"MZ inner"


def test_gzip_that_is_not_a_tar_is_plain_data(box: Box) -> None:
    import gzip

    (box.art / "d").mkdir()
    (box.art / "d" / "notes.json.gz").write_bytes(gzip.compress(b'{"a": 1}' * 100))
    u = run(box, box.art / "d")
    assert u.problems == () and [m.path for m in u.members] == ["notes.json.gz"]


def _two_member_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        add_file(tf, "a", b"A" * 512)
        add_file(tf, "b", b"B" * 512)
    return buf.getvalue()


def test_tar_truncated_at_a_header_boundary_is_malformed(box: Box) -> None:
    """tarfile stops quietly at a missing header; biv wants the end-of-archive marker."""
    art = box.art / "cut.tar"
    art.write_bytes(_two_member_tar()[:1024])  # member 'a' complete, then nothing
    assert_unreadable_top(box, art, "end-of-archive marker")


def test_tar_corrupt_second_header_is_malformed(box: Box) -> None:
    data = bytearray(_two_member_tar())
    data[1024:1536] = b"\xff" * 512  # second header: garbage, checksum wrong
    art = box.art / "bad.tar"
    art.write_bytes(bytes(data))
    assert_unreadable_top(box, art, "invalid tar header")


def test_tar_hidden_data_after_end_marker(box: Box) -> None:
    """A second archive concatenated after the first (``tar -i`` would extract it)."""
    art = box.art / "cat.tar"
    art.write_bytes(_two_member_tar() + _two_member_tar())
    u = run(box, art)
    assert [m.path for m in u.members] == ["a", "b"]
    (a,) = u.problems
    assert a.evidence["location"] == "cat.tar" and "after the end-of-archive" in a.message


def test_tar_of_dot_as_made_by_tar_c_dir_dot(box: Box) -> None:
    src = box.root / "src"
    (src / "app").mkdir(parents=True)
    (src / "app" / "x.dll").write_bytes(b"MZ")
    art = box.art / "dot.tar.gz"
    with tarfile.open(art, "w:gz") as tf:
        tf.add(src, arcname=".")
    u = run(box, art)
    assert u.problems == ()
    assert [m.path for m in u.members] == ["app/x.dll"]


def _looks_like_tar_reference(block: bytes) -> bool:
    """``looks_like_tar`` as it was before its fast rejection (int() decides every field)."""
    if len(block) < 512:
        return False
    if block[257:262] == b"ustar":
        return True
    field = block[148:156].replace(b"\x00", b" ").strip()
    if not field or not block[0]:
        return False
    try:
        want = int(field, 8)
    except ValueError:
        return False
    return want == sum(block[:148]) + 8 * 32 + sum(block[156:512])


def test_tar_sniffing_rejects_fast_exactly_what_int_rejects() -> None:
    """The checksum field's fast rejection (bytes int() never takes) changes no answer:
    fields from the bytes int() treats specially, and real checksums written in every
    form int() accepts (0o prefix, sign, underscore, padding)."""
    import random

    from verifier.unpack.tarreader import looks_like_tar

    rng = random.Random(11)
    alphabet = b"012345678 9oOxX+-_\t\n\r\x0b\x0c\x00aZ\xff"
    seen = {True: 0, False: 0}
    for n in range(20_000):
        block = bytearray(rng.randbytes(512))
        block[0] = rng.choice(b"a\x00")
        if n % 2:
            field = bytes(rng.choice(alphabet) for _ in range(8))
        else:  # a true checksum, in some form int() takes
            total = sum(block[:148]) + 8 * 32 + sum(block[156:512])
            form = rng.choice(["%07o", "%o", "0o%o", "+%o", " %o ", "%o\0"])
            text = (form % total).encode()
            if rng.random() < 0.2 and len(text) > 2:
                text = text[:2] + b"_" + text[2:]
            field = text[:8].ljust(8, b"\0")
        block[148:156] = field
        want = _looks_like_tar_reference(bytes(block))
        assert looks_like_tar(bytes(block)) == want, bytes(block[148:156])
        seen[want] += 1
    assert seen[True] > 1000 and seen[False] > 1000

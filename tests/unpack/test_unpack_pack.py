"""Pack files (``verifier/unpack/pack.py``): small zip members appended to one file.

The index of a pack comes from the sandbox, so the parent treats it as hostile: each test
below hands ``pack.read`` (or the sandbox's answer parser) an index or a pack that lies.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import zipfile
from pathlib import Path

import pytest
from support.unpack_helpers import Box, messages, run

from verifier.errors import MalformedInputError
from verifier.unpack import Limits, pack, paths, sandbox
from verifier.unpack.limits import Budget
from verifier.unpack.result import Problem
from verifier.unpack.sink import Sink

Index = list[tuple[list[str], list[int]]]


def _zip(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return path


def _inner_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.dll", b"MZ inner")
    return buf.getvalue()


def test_small_members_are_packed_and_read_in_place(box: Box) -> None:
    entries = [(f"d{i % 3}/m{i}.txt", f"member {i}\n".encode() * (i % 5)) for i in range(300)]
    entries += [("big.bin", os.urandom(pack.MEMBER_MAX + 10)), ("empty", b"")]
    entries += [("nested/inner.zip", _inner_zip()), ("X.app/Contents/Info.plist", b"<plist/>")]
    u = run(box, _zip(box.art / "a.zip", entries))
    assert u.problems == ()
    got = {m.path: m for m in u.members}
    want = dict(entries) | {"nested/inner.zip/x.dll": b"MZ inner"}
    assert set(got) == set(want)
    for name, data in want.items():
        m = got[name]
        assert m.blob.read() == data and m.sha256 == hashlib.sha256(data).hexdigest(), name
        assert m.magic == data[: len(m.magic)]
    packed = {n for n, m in got.items() if ".pack" in os.path.basename(m.blob.path)}
    # text members share packs; an archive, a bundle member and a large member do not
    assert "d0/m3.txt" in packed and "empty" in packed
    assert not packed & {"big.bin", "nested/inner.zip", "X.app/Contents/Info.plist"}
    assert got["nested/inner.zip"].blob.offset == 0  # a file of its own, opened as a layer


def test_file_and_folder_of_one_name_refused_as_on_disk(box: Box) -> None:
    entries = [("a", b"file"), ("a/b", b"under a file"), ("c/d", b"x"), ("c", b"over a folder")]
    u = run(box, _zip(box.art / "c.zip", entries))
    assert [m.path for m in u.members] == ["a", "c/d"]
    text = messages(u)
    assert "c.zip!/a/b:" in text and "c.zip!/c:" in text, text


def _packed_layer(tmp: Path, members: list[tuple[str, bytes]]) -> tuple[str, list[str]]:
    dest = tmp / "zip-1"
    dest.mkdir()
    p = pack.Packer(str(dest), Limits())
    for name, data in members:
        p.add(name, data)
    p.close()
    return str(dest), [pack.pack_path(str(dest), i) for i in range(len(p.index()))]


def _read(
    dest: str, index: Index, taken: set[str] | None = None
) -> tuple[list[pack.Packed], list[Problem]]:
    limits = Limits()
    return pack.read(dest, index, limits, Budget(limits), taken or set())


def test_read_hashes_what_the_index_names(tmp_path: Path) -> None:
    dest, files = _packed_layer(tmp_path, [("a", b"AAAA"), ("b/c", b""), ("d", b"dd")])
    got, problems = _read(dest, [(["a", "b/c", "d"], [4, 0, 2])])
    assert problems == []
    assert [(p.rel, p.offset, p.size) for p in got] == [("a", 0, 4), ("b/c", 4, 0), ("d", 4, 2)]
    assert got[2].sha256 == hashlib.sha256(b"dd").hexdigest() and got[2].pack == files[0]


@pytest.mark.parametrize(
    "index",
    [
        [(["a", "d"], [4, 3])],  # sizes add up to more than the pack
        [(["a", "d"], [4, 1])],  # ...or to less (trailing bytes nobody owns)
        [(["a", "d"], [7])],  # names and sizes differ in number
        [(["a", "d"], [-1, 7])],  # a negative size
        [(["a", "d"], [pack.MEMBER_MAX + 1, -pack.MEMBER_MAX - 1 + 6])],  # over the member cap
        [(["a"], [6]), (["b"], [1])],  # a second pack that does not exist
    ],
)
def test_pack_not_matching_its_index_is_rejected_whole(tmp_path: Path, index: Index) -> None:
    dest, _ = _packed_layer(tmp_path, [("a", b"AAAA"), ("d", b"dd")])
    got, problems = _read(dest, index)
    assert problems and all(p.member == "" for p in problems)
    assert sum(p.size for p in got) <= 6  # never a byte beyond the pack
    if len(index) == 1:
        assert got == []


@pytest.mark.parametrize(
    "bad", ["../up", "/abs", "a//b", "x/./y", "c:evil", "..\\up", "\\abs", "C:\\x", "nul\0", ""]
)
def test_unclean_or_repeated_names_rejected_alone(tmp_path: Path, bad: str) -> None:
    dest, _ = _packed_layer(tmp_path, [("ok", b"1"), ("bad", b"2"), ("ok", b"3"), ("w", b"4")])
    got, problems = _read(dest, [(["ok", bad, "ok", "walked"], [1, 1, 1, 1])], {"walked"})
    assert [p.rel for p in got] == ["ok"]
    assert [p.message for p in problems] == ["entry rejected on re-validation"] * 3


def test_pack_that_is_a_symlink_or_folder_is_not_read(tmp_path: Path) -> None:
    dest, files = _packed_layer(tmp_path, [("a", b"secret?")])
    os.unlink(files[0])
    outside = tmp_path / "outside"
    outside.write_bytes(b"7 bytes")
    os.symlink(outside, files[0])
    got, problems = _read(dest, [(["a"], [7])])
    assert got == [] and "does not match its index" in problems[0].message
    os.unlink(files[0])
    os.mkdir(files[0])
    got, problems = _read(dest, [(["a"], [0])])
    assert got == [] and problems


def test_budget_charged_for_packed_members(tmp_path: Path) -> None:
    dest, _ = _packed_layer(tmp_path, [(f"m{i}", b"xy") for i in range(5)])
    limits = Limits(max_members=3)
    budget = Budget(limits)
    got, problems = pack.read(dest, [([f"m{i}" for i in range(5)], [2] * 5)], limits, budget, set())
    assert [p.rel for p in got] == ["m0", "m1", "m2"] and budget.members_left == 0
    assert [p.message for p in problems] == ["too many members; the rest skipped"]


@pytest.mark.parametrize(
    "item",
    [
        "names",
        [["a"]],
        [["a"], [1, 2]],
        [["a", 3], [1, 2]],
        [["a"], ["1"]],
        [["a"], [True]],
        {"names": ["a"], "sizes": [1]},
    ],
)
def test_malformed_pack_index_in_the_answer_is_refused(item: object) -> None:
    with pytest.raises(ValueError):
        sandbox._pack_index(item)


def test_is_clean_is_clean_name_unchanged() -> None:
    """The fast re-check of packed names agrees with ``clean_name`` on random names made of
    the characters that matter (separators both ways, dots, drive letters, control bytes)."""
    rng = random.Random(12)
    alphabet = ["a", "B", "/", "\\", ".", "..", ":", "C", "\0", "\x1f", "é", " "]
    for _ in range(20000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        try:
            want = paths.clean_name(name, 16) == name
        except MalformedInputError:
            want = False
        assert paths.is_clean(name, 16) is want, repr(name)


def test_sink_names_are_clean_name_with_or_without_the_fast_path(tmp_path: Path) -> None:
    """``Sink.name`` takes a name that is clean already as it is (one regex search) and
    cleans the others: either way what ``clean_name`` gives, or the same refusal, with a
    backslash read as a character or as a separator (a name from an MS-DOS zip)."""
    rng = random.Random(13)
    alphabet = ["a", "B", "/", "\\", ".", "..", ":", "C", "\0", "\x1f", "é", " "]
    limits = Limits(max_name_len=16)
    for backslash_sep in (False, True):
        for _ in range(5000):
            raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
            sink = Sink(str(tmp_path), limits)
            try:
                want: str | None = paths.clean_name(raw, 16, backslash_sep=backslash_sep)
            except MalformedInputError:
                want = None
            if want is not None and want.count("/") >= limits.max_dir_depth:
                want = None
            assert sink.name(raw, backslash_sep=backslash_sep) == want, (raw, backslash_sep)
            assert bool(sink.problems) is (want is None), (raw, backslash_sep)

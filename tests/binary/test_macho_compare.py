"""Per-slice comparison of a shipped Mach-O with upstream (thin or universal references)."""

from __future__ import annotations

from pathlib import Path

from verifier._scenarios import macho as w
from verifier.analysis.macho import analyze_macho
from verifier.binary.macho_compare import compare_slices
from verifier.model import Blob, FileEntry, Status

TEXT_X = bytes(range(256)) * 40
TEXT_A = bytes(reversed(range(256))) * 40


def _entry(tmp_path: Path, name: str, data: bytes) -> FileEntry:
    p = tmp_path / name
    p.write_bytes(data)
    sha, facts = analyze_macho(Blob.of_file(p), name)
    return FileEntry(name, name, (), len(data), sha, facts, Blob.of_file(p))


def _x86(text: bytes = TEXT_X, fuses: str = "1101") -> bytes:
    return w.build_thin("x86_64", text, w.fuse_wire(fuses), dylib="@rpath/libffmpeg.dylib")


def _arm(text: bytes = TEXT_A, fuses: str = "1101") -> bytes:
    return w.build_thin("arm64", text, w.fuse_wire(fuses), dylib="@rpath/libffmpeg.dylib")


def test_identical_and_resigned(tmp_path: Path) -> None:
    up = w.sign(_x86(), "ffmpeg", identity=w.TestIdentity(org="Electron"))
    ref = _entry(tmp_path, "ref", up)
    same = _entry(tmp_path, "same", up)
    res, ev = compare_slices(same, ref)
    assert [r.status for r in res] == [Status.IDENTICAL] and ev["status"] == "identical"
    resigned = _entry(tmp_path, "re", w.sign(up, "ffmpeg", identity=w.TestIdentity(org="Vendor")))
    res, ev = compare_slices(resigned, ref)
    assert [r.status for r in res] == [Status.IDENTICAL_EXCEPT_SIGNATURE]
    assert res[0].signature.signers[0].subject != ref.facts.slices[0].signature.signers[0].subject


def test_fuse_only_change_is_resources_only(tmp_path: Path) -> None:
    ref = _entry(tmp_path, "ref", w.sign(_x86(fuses="1101"), "f"))
    shipped = _entry(tmp_path, "s", w.sign(_x86(fuses="1001"), "f"))
    (r,), ev = compare_slices(shipped, ref)
    assert r.status == Status.RESOURCES_ONLY
    assert ev["slices"][0]["fuses"] == {"expected": "1101", "actual": "1001"}
    # a fuse change plus one more byte in the same section is divergent
    data = bytearray(_x86(fuses="1001"))
    i = bytes(data).find(w.fuse_wire("1001")) + len(w.fuse_wire("1001")) + 3
    data[i] = 0x41
    other = _entry(tmp_path, "o", w.sign(bytes(data), "f"))
    (r,), _ev = compare_slices(other, ref)
    assert r.status == Status.DIVERGENT


def test_universal_against_two_thin_references_3cx_pattern(tmp_path: Path) -> None:
    ref_x = _entry(tmp_path, "x64", w.sign(_x86(), "f", identity=w.TestIdentity(org="Electron")))
    ref_a = _entry(tmp_path, "arm", w.sign(_arm(), "f", identity=w.TestIdentity(org="Electron")))
    evil_text = bytearray(TEXT_X)
    evil_text[100:103] = b"\xcc\xcc\xcc"
    vendor = w.TestIdentity(org="3CX", team_id="33CX33CX33")
    fat = w.build_fat(
        [w.sign(_x86(bytes(evil_text)), "f", identity=vendor), w.sign(_arm(), "f", identity=vendor)]
    )
    shipped = _entry(tmp_path, "libffmpeg.dylib", fat)
    res, ev = compare_slices(shipped, [ref_x, ref_a])
    by = {r.arch: r for r in res}
    assert by["x86_64"].status == Status.DIVERGENT
    assert by["arm64"].status == Status.IDENTICAL_EXCEPT_SIGNATURE
    assert ev["status"] == "divergent" and ev["arch"] == "x86_64"
    secs = {s["name"]: s["differing_bytes"] for s in ev["sections"]}
    assert secs["__TEXT,__text"] == 3 and secs["__TEXT"] == 3
    assert "__DATA,__data" not in secs
    # the same verdict from reference digests alone (a biv.refs/v1 round trip, no bytes)
    light = [FileEntry.from_ref_dict(r.to_ref_dict()) for r in (ref_x, ref_a)]
    res2, ev2 = compare_slices(shipped, light)
    assert [r.status for r in res2] == [r.status for r in res]
    assert {s["name"]: s["differing_bytes"] for s in ev2["sections"]}["__TEXT,__text"] is None


def test_missing_and_unexpected_slices(tmp_path: Path) -> None:
    ref = _entry(tmp_path, "ref", w.build_fat([w.sign(_x86(), "f"), w.sign(_arm(), "f")]))
    thin = _entry(tmp_path, "thin", w.sign(_x86(), "f"))
    res, ev = compare_slices(thin, ref)
    assert {r.arch: r.status for r in res} == {"x86_64": Status.IDENTICAL, "arm64": Status.MISSING}
    assert ev["status"] == "divergent"
    res, ev = compare_slices(ref, thin)
    assert {r.arch: r.status for r in res}["arm64"] == Status.UNEXPECTED

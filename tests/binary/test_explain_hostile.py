"""Hostile and huge input for the explanation: it stays within its caps and never raises.

Overlapping and huge changed ranges, section tables with bogus RVAs, invalid instructions,
truncated files, references without bytes, lying Mach-O tables, and a 100 MB ``.text`` that
differs everywhere (the caps hold and it completes; its timing is in ``benchmarks/``).
"""

from __future__ import annotations

import io
import json
import random
import struct
from pathlib import Path

import pytest
from support.minipe import CODE, DATA, write_pe

from verifier import api
from verifier._scenarios import macho as mw
from verifier.binary import disasm, explain, macho, macho_tables
from verifier.binary.changes import RegionPair, ScanLimits, scan
from verifier.hashing import Span
from verifier.model import Blob, FileEntry, FileFormat

RNG = random.Random(15)


def _files(a: bytes, b: bytes) -> tuple[io.BytesIO, io.BytesIO]:
    return io.BytesIO(a), io.BytesIO(b)


def test_overlapping_regions_and_merging() -> None:
    a = bytearray(RNG.randbytes(4096))
    b = bytearray(a)
    for i in (100, 110, 126, 2000):  # 100..126: gaps of <= 16 equal bytes merge
        b[i] ^= 0xFF
    fa, fb = _files(bytes(a), bytes(b))
    pairs = [
        RegionPair("whole", Span(0, 4096), Span(0, 4096)),
        RegionPair("overlap", Span(64, 100), Span(64, 100)),  # covers 64..164, inside "whole"
        RegionPair("masked", Span(1990, 20), Span(1990, 20), mask=(Span(10, 1),)),
    ]
    res = scan(fa, fb, pairs)
    got = [(c.region, c.offset, c.length) for c in res.changes]
    assert got == [(0, 100, 27), (0, 2000, 1), (1, 36, 27)]
    assert res.differing == {0: 4, 1: 3, 2: 0}  # the mask hides byte 2000 in "masked"
    assert res.truncated == []


def test_range_caps_hold_on_a_sparse_pattern() -> None:
    n = 1 << 20
    a = bytes(n)
    b = bytearray(n)
    b[::40] = b"\x01" * len(b[::40])  # 26,215 separate changes
    lim = ScanLimits(max_changes=50)
    res = scan(*_files(a, bytes(b)), [RegionPair("r", Span(0, n), Span(0, n))], lim)
    assert len(res.changes) == lim.max_changes
    assert res.differing[0] == len(b[::40])  # the count stays exact
    assert any("more than 50 changed ranges" in t for t in res.truncated)
    assert res.changes[-1].exact is False or res.omitted_changes > 0


def test_locate_and_scan_caps() -> None:
    n = 1 << 20
    a, b = RNG.randbytes(n), RNG.randbytes(n)
    res = scan(
        *_files(a, b),
        [RegionPair("r", Span(0, n), Span(0, n))],
        ScanLimits(max_locate_bytes=1 << 16),
    )
    assert [(c.offset, c.exact) for c in res.changes] == [(0, False)]  # exact part merged in
    assert res.changes[0].length == n and res.located_bytes == 1 << 16
    res = scan(
        *_files(a, b), [RegionPair("r", Span(0, n), Span(0, n))], ScanLimits(max_scan_bytes=1 << 17)
    )
    assert res.differing[0] is None and res.scanned_bytes == 1 << 17
    assert any("compared at most" in t for t in res.truncated)
    # a region past the end of a (lying) file: a note, not an exception
    res = scan(*_files(a[:1000], b), [RegionPair("r", Span(0, n), Span(0, n))])
    assert any("ended early" in t for t in res.truncated)


def _pair(
    tmp: Path,
    up: list[tuple[str, int, bytes | int, int]],
    sh: list[tuple[str, int, bytes | int, int]],
) -> tuple[Blob, Blob]:
    write_pe(tmp / "up.dll", up)
    write_pe(tmp / "sh.dll", sh)
    return Blob.of_file(tmp / "sh.dll"), Blob.of_file(tmp / "up.dll")


def test_bogus_rvas_and_invalid_instructions(tmp_path: Path) -> None:
    code = bytes.fromhex("554889e5") + bytes(60) + bytes.fromhex("5dc3")
    bad = bytearray(code)
    bad[8:16] = b"\x06\x07\x27\x2f\x37\x3f\x60\x61"  # invalid in 64-bit mode
    sh, up = _pair(
        tmp_path,
        [(".text", 0xFFFFF000, code, CODE), (".data", 0xFFFFFFFF, b"x" * 64, DATA)],
        [(".text", 0xFFFFF000, bytes(bad), CODE), (".data", 0xFFFFFFFF, b"y" * 64, DATA)],
    )
    ev = explain.explain_blobs(sh, up, FileFormat.PE).evidence
    assert ev["explanation"]["status"] == "explained"
    text = next(c for c in ev["changes"] if c["region"] == ".text")
    assert text["address"] == 0xFFFFF008 and text["functions"] == []
    rows = [r for w in ev["disassembly"] for r in w["rows"] if r["kind"] == "changed"]
    assert rows and all(r["shipped"]["text"].startswith(".byte") for r in rows[:8])
    assert rows[0]["upstream"]["text"] == "add byte ptr [rax], al"


def test_truncated_and_unparsable_files_give_a_reason(tmp_path: Path) -> None:
    _sh, up = _pair(
        tmp_path,
        [(".text", 0x1000, b"\x90" * 4096, CODE)],
        [(".text", 0x1000, b"\xcc" * 4096, CODE)],
    )
    cut = tmp_path / "cut.dll"
    cut.write_bytes((tmp_path / "sh.dll").read_bytes()[:3000])
    ev = explain.explain_blobs(Blob.of_file(cut), up, FileFormat.PE).evidence
    assert ev["explanation"]["status"] == "unavailable"
    assert "cannot parse" in ev["explanation"]["reason"]
    junk = tmp_path / "junk.dll"
    junk.write_bytes(b"MZ" + bytes(100))
    ev = explain.explain_blobs(Blob.of_file(junk), up, FileFormat.ELF).evidence
    assert ev["explanation"]["status"] == "unavailable"


def test_reference_known_only_by_digests(tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    (tmp_path / "ship").mkdir()
    write_pe(tmp_path / "up" / "a.dll", [(".text", 0x1000, b"\x90" * 512, CODE)])
    write_pe(tmp_path / "ship" / "a.dll", [(".text", 0x1000, b"\xcc" * 512, CODE)])
    docs = api.build_reference_documents(f"path:{tmp_path / 'up'}")
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps(docs[0]))
    report = api.verify(
        api.VerifyRequest(
            artifact=str(tmp_path / "ship"), against=(f"path:{refs}",), workdir=str(tmp_path / "w")
        )
    )
    f = next(f for f in report.findings if f.rule == "divergent-content")
    ex = f.evidence["explanation"]
    assert ex["status"] == "unavailable" and "known only by its digests" in ex["reason"]
    assert "changes" not in f.evidence
    # the entry-level API says the same for a reference without a blob
    e = FileEntry("a.dll", "a.dll", (), 1, "0" * 64, blob=None)
    assert explain.explain_entries(e, e)["explanation"]["status"] == "unavailable"


@pytest.mark.slow
def test_100_mb_text_that_differs_everywhere(tmp_path: Path) -> None:
    n = 100 << 20
    a = RNG.randbytes(n)
    b = a.translate(bytes(i ^ 0x5A for i in range(256)))  # every byte differs
    sh, up = _pair(tmp_path, [(".text", 0x1000, a, CODE)], [(".text", 0x1000, b, CODE)])
    del a, b
    ev = explain.explain_blobs(sh, up, FileFormat.PE).evidence
    ex = ev["explanation"]
    lim = ex["limits"]
    assert ex["changed_bytes"] == n
    assert len(ev["changes"]) <= lim["max_changes_reported"]
    [ch] = [c for c in ev["changes"] if c["region"] == ".text"]
    assert ch["length"] == n and ch["exact"] is False  # one coarse range past the locate cap
    assert ch["entropy_bytes"] <= lim["max_entropy_range"]
    rows = sum(len(w["rows"]) for w in ev["disassembly"])
    assert rows <= lim["max_rows_per_file"]
    assert all(len(w["rows"]) <= lim["max_rows_per_window"] for w in ev["disassembly"])
    assert len(ev["strings_added"]) <= lim["max_strings"]
    assert any("coarse ranges" in t for t in ex["truncated"])


def _thin_with(cmds: bytes) -> bytes:
    """The demo writer's thin Mach-O with extra load commands appended."""
    data = bytearray(mw.build_thin("x86_64", b"\x90" * 64))
    ncmds, sizeofcmds = struct.unpack_from("<2I", data, 16)
    end = 32 + sizeofcmds
    data[end : end + len(cmds)] = cmds
    struct.pack_into("<2I", data, 16, ncmds + 1 + (len(cmds) > 24), sizeofcmds + len(cmds))
    return bytes(data)


def test_lying_macho_tables_give_notes(tmp_path: Path) -> None:
    huge = struct.pack("<6I", macho_tables.LC_SYMTAB, 24, 0x10, 0xFFFFFFF, 0x20, 0xFFFFFF)
    starts = struct.pack("<4I", macho_tables.LC_FUNCTION_STARTS, 16, 0x7FFFFFF0, 0x100)
    data = _thin_with(huge + starts)
    p = tmp_path / "m"
    p.write_bytes(data)
    blob = Blob.of_file(p)
    head = macho.read_header(blob, 0, blob.size)
    h = macho.parse_slice_header(head, blob.size)
    t = macho_tables.read_tables(blob, 0, blob.size, head, h)
    assert any("LC_SYMTAB points past" in n for n in t.notes)
    assert any("LC_FUNCTION_STARTS points past" in n for n in t.notes)
    assert len(t.symbols) == 0 and t.exports == frozenset()
    # a ULEB stream that never ends is cut, not looped on
    assert macho_tables._uleb_deltas(b"\xff" * 100, 10) == []


def test_side_by_side_caps() -> None:
    code_u = RNG.randbytes(4096)
    code_s = RNG.randbytes(4096)
    u = disasm.disassemble("x64", code_u, 0, 2000)
    s = disasm.disassemble("x64", code_s, 0, 2000)
    rows, cut = disasm.side_by_side(u, s, [(0, 4096)], context=4, max_rows=30)
    assert len(rows) == 30 and cut
    # arm64: a word of zeros and an undefined word are data, not an error
    rows64 = disasm.disassemble("arm64", b"\xff\xff\xff\xff\x1f\x20\x03\xd5", 0x1000, 10)
    assert [r.text for r in rows64] == [".byte 0xff, 0xff, 0xff, 0xff", "nop"]

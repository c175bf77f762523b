"""Hostile Mach-O and code-signature input: a finding or a clear error, never a crash/hang."""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path

import pytest

from verifier._scenarios import macho as w
from verifier.analysis.macho import analyze_macho
from verifier.binary import macho
from verifier.errors import MalformedInputError
from verifier.model import BinaryFacts, Blob, FileFormat
from verifier.signing import codesign, codesign_pages, codesign_verify


def _analyze(tmp_path: Path, data: bytes) -> BinaryFacts:
    p = tmp_path / "hostile"
    p.write_bytes(data)
    _sha, f = analyze_macho(Blob.of_file(p), "hostile")
    return f


def _signed() -> bytes:
    return w.sign(w.build_thin("x86_64", b"\x90" * 9000), "t")


def _sig_range(data: bytes) -> tuple[int, int, int]:
    h = macho.parse_slice_header(data[:4096], len(data))
    assert h.code_signature is not None
    return h.code_signature


def _rules(f: BinaryFacts) -> set[str]:
    return {a.rule for a in f.anomalies}


def test_fat_header_claiming_a_million_archs(tmp_path: Path) -> None:
    data = struct.pack(">2I", macho.FAT_MAGIC, 1_000_000) + b"\0" * 64
    t = time.monotonic()
    f = _analyze(tmp_path, data)
    assert time.monotonic() - t < 1
    assert _rules(f) == {"malformed-input"}
    assert "1000000 architectures" in f.anomalies[0].message
    assert f.slices == () and f.signature.valid is not True


def test_fat_slice_outside_file(tmp_path: Path) -> None:
    data = struct.pack(">2I5I", macho.FAT_MAGIC, 1, 0x01000007, 3, 0x4000, 1 << 30, 14)
    f = _analyze(tmp_path, data + b"\0" * 100)
    assert _rules(f) == {"malformed-input"}


def test_truncated_superblob(tmp_path: Path) -> None:
    data = bytearray(_signed())
    _cmd, off, size = _sig_range(bytes(data))
    # claim a SuperBlob length beyond LC_CODE_SIGNATURE's datasize
    struct.pack_into(">I", data, off + 4, size + 4096)
    f = _analyze(tmp_path, bytes(data))
    assert "invalid-signature" in _rules(f)
    assert f.signature.valid is False
    assert "truncated SuperBlob" in f.anomalies[0].message


def test_file_cut_inside_the_signature(tmp_path: Path) -> None:
    data = _signed()
    _cmd, off, _size = _sig_range(data)
    f = _analyze(tmp_path, data[: off + 20])
    assert _rules(f) == {"malformed-input"}  # LC_CODE_SIGNATURE points past EOF
    assert f.signature.valid is not True


def test_overlapping_blobs(tmp_path: Path) -> None:
    data = bytearray(_signed())
    _cmd, off, _size = _sig_range(bytes(data))
    # point the requirements entry (index 1) at the CodeDirectory's offset
    cd_off = struct.unpack_from(">I", data, off + 12 + 4)[0]
    struct.pack_into(">I", data, off + 12 + 8 + 4, cd_off)
    f = _analyze(tmp_path, bytes(data))
    assert "invalid-signature" in _rules(f)
    assert "overlap" in " ".join(a.message for a in f.anomalies)


def _cd_offset(data: bytes) -> int:
    _cmd, off, _size = _sig_range(data)
    return off + int(struct.unpack_from(">I", data, off + 12 + 4)[0])


def test_code_limit_past_eof(tmp_path: Path) -> None:
    data = bytearray(_signed())
    cd = _cd_offset(bytes(data))
    n_code = struct.unpack_from(">I", data, cd + 28)[0]
    # bump codeLimit by a page and nCodeSlots to match (still within the CD's hash array?)
    struct.pack_into(">I", data, cd + 32, len(data) + 10 * 4096)
    f = _analyze(tmp_path, bytes(data))
    assert f.signature.valid is False
    msg = " ".join(a.message for a in f.anomalies)
    assert "nCodeSlots" in msg or "codeLimit" in msg
    assert n_code > 0


def test_code_limit_past_eof_with_consistent_slots() -> None:
    # a CodeDirectory made for 5 pages, checked against a 2-page slice
    code = bytes(range(256)) * 80
    cd_raw = w._code_directory(
        code, "t", flags=2, hash_type=2, specials={}, team_id=None, exec_seg=(0, 0, 0)
    )
    cd = codesign.parse_code_directory(cd_raw, 0)
    assert cd.n_code_slots == 5
    short = code[: 2 * 4096]
    pager = codesign_pages.PageHasher(cd, 0, len(short))
    pager.feed(0, memoryview(short))
    pager.finish()
    assert pager.past_eof and pager.bad_pages == [2, 3, 4]
    sig = codesign.EmbeddedSignature(size=0, sha256="", code_directories=(cd,))
    facts, anomalies = codesign_verify.verify_slice(sig, [pager], arch="x86_64")
    assert facts.valid is False
    (a,) = anomalies
    assert "runs past the end" in a.message
    assert a.evidence["ranges"] == [{"offset": 8192, "length": 12288}]


def test_ncodeslots_overflow(tmp_path: Path) -> None:
    data = bytearray(_signed())
    cd = _cd_offset(bytes(data))
    struct.pack_into(">I", data, cd + 28, 0xFFFFFFFF)
    t = time.monotonic()
    f = _analyze(tmp_path, bytes(data))
    assert time.monotonic() - t < 1
    assert f.signature.valid is False
    assert "nCodeSlots" in " ".join(a.message for a in f.anomalies)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xfa\xde\x0c\xc0",
        struct.pack(">3I", 0xFADE0CC0, 12, 0),
        struct.pack(">3I", 0xFADE0CC0, 20, 1000),
        struct.pack(">3I2I", 0xFADE0CC0, 20, 1, 0, 0xFFFFFFF0),
        struct.pack(">3I2I2I", 0xFADE0CC0, 28, 1, 0, 20, 0xFADE0C02, 0xFFFFFFFF),
    ],
)
def test_parse_superblob_rejects(blob: bytes) -> None:
    with pytest.raises(MalformedInputError):
        codesign.parse_superblob(blob)


def test_ncmds_cap_and_bad_cmdsize(tmp_path: Path) -> None:
    data = bytearray(w.build_thin("x86_64", b"\x90"))
    struct.pack_into("<I", data, 16, 100_000)
    assert _rules(_analyze(tmp_path, bytes(data))) == {"malformed-input"}
    data = bytearray(w.build_thin("x86_64", b"\x90"))
    struct.pack_into("<I", data, 32 + 4, 0)  # first load command's cmdsize = 0
    assert _rules(_analyze(tmp_path, bytes(data))) == {"malformed-input"}


def test_data_after_signature(tmp_path: Path) -> None:
    data = _signed() + b"PAYLOAD" * 10
    f = _analyze(tmp_path, data)
    assert "data-after-signature" in _rules(f)


def test_random_corruption_never_crashes(tmp_path: Path) -> None:
    rng = random.Random(5)
    base = w.build_fat([_signed(), w.sign(w.build_thin("arm64", b"\x1f" * 5000), "t")])
    for _ in range(150):
        data = bytearray(base)
        for _k in range(rng.randint(1, 8)):
            i = (
                rng.randrange(0, min(len(data), 0x4000 + 0x200))
                if rng.random() < 0.5
                else (rng.randrange(len(data)))
            )
            data[i] = rng.randrange(256)
        if rng.random() < 0.2:
            del data[rng.randrange(len(data)) :]
        f = _analyze(tmp_path, bytes(data))  # must not raise
        assert f.format == FileFormat.MACHO
        if any(a.rule == "malformed-input" for a in f.anomalies) and not f.slices:
            assert f.signature.valid is not True


def test_fat_padding_and_trailing_data(tmp_path: Path) -> None:
    fat = bytearray(w.build_fat([_signed(), w.sign(w.build_thin("arm64", b"\x1f" * 100), "t")]))
    assert _rules(_analyze(tmp_path, bytes(fat))) == set()
    fat[0x3000:0x3004] = b"FEED"  # in the padding before the first slice
    f = _analyze(tmp_path, bytes(fat) + b"tail")
    (a,) = f.anomalies
    assert a.rule == "data-after-signature"
    assert a.evidence["ranges"][0]["offset"] == 8 + 2 * 20
    assert a.evidence["ranges"][-1]["length"] == 4

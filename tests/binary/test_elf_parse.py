"""elf.py on real system binaries and on truncated / hostile ELF headers."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from verifier.analysis import AnalysisContext, analyze
from verifier.binary import elf
from verifier.errors import LimitExceededError, MalformedInputError
from verifier.hashing import sha256_file
from verifier.model import Blob, FileFormat

REAL = Path("/bin/ls").resolve()


def test_real_elf_matches_readelf() -> None:
    info = elf.read_elf_info(Blob.of_file(REAL))
    assert info.is64 and info.little and info.arch in ("x64", "arm64")
    names = [s.name for s in info.sections if s.name]
    assert ".text" in names and ".dynsym" in names
    if shutil.which("readelf"):
        out = subprocess.run(["readelf", "-SW", str(REAL)], capture_output=True, text=True).stdout
        for n in names:
            assert f" {n} " in out
    text = next(s for s in info.sections if s.name == ".text")
    assert text.executable


def test_analyze_real_elf() -> None:
    blob = Blob.of_file(REAL)
    sha, facts = analyze(blob, "ls", AnalysisContext())
    assert sha == sha256_file(str(REAL))
    assert facts.format == FileFormat.ELF and facts.normalized_sha256 == sha
    assert facts.archs and ".text" in facts.shape.executable_sections
    assert not facts.anomalies
    assert any(s.name == ".text" and s.executable for s in facts.sections)


def _elf64(shoff: int, shnum: int, shentsize: int = 64, machine: int = 183) -> bytes:
    head = bytearray(64)
    head[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HHI", head, 16, 2, machine, 1)
    struct.pack_into("<QQQ", head, 24, 0x1000, 0, shoff)
    struct.pack_into("<HHH", head, 58, shentsize, shnum, 0)
    return bytes(head)


def test_minimal_big_endian_and_32_bit(tmp_path: Path) -> None:
    head = bytearray(52)
    head[:6] = b"\x7fELF\x01\x02"
    struct.pack_into(">HH", head, 16, 2, 40)
    p = tmp_path / "be"
    p.write_bytes(head)
    info = elf.read_elf_info(Blob.of_file(p))
    assert (info.is64, info.little, info.arch, info.sections) == (False, False, "arm", ())
    p.write_bytes(_elf64(0, 0))
    assert elf.read_elf_info(Blob.of_file(p)).arch == "arm64"


@pytest.mark.parametrize(
    ("data", "exc"),
    [
        (b"\x7fELF\x02\x01" + bytes(20), MalformedInputError),  # truncated
        (b"\x7fELF\x07\x01" + bytes(60), MalformedInputError),  # bad class
        (_elf64(0x40, 3), MalformedInputError),  # section table past EOF
        (_elf64(0x40, 60000), LimitExceededError),  # absurd section count
        (_elf64(0x40, 1, shentsize=8) + bytes(64), MalformedInputError),  # entry too small
    ],
)
def test_hostile_elf(data: bytes, exc: type[Exception], tmp_path: Path) -> None:
    p = tmp_path / "bad"
    p.write_bytes(data)
    with pytest.raises(exc):
        elf.read_elf_info(Blob.of_file(p))
    _, facts = analyze(Blob.of_file(p), "bad", AnalysisContext())
    assert facts.format == FileFormat.ELF
    assert [a.rule for a in facts.anomalies] == ["malformed-input"]


def test_section_past_eof(tmp_path: Path) -> None:
    sh = struct.pack("<IIQQQQIIQQ", 0, 1, 0, 0, 0x10, 0x7FFFFFFF, 0, 0, 1, 0)
    p = tmp_path / "bad"
    p.write_bytes(_elf64(64, 1) + sh)
    with pytest.raises(MalformedInputError, match="past end of file"):
        elf.read_elf_info(Blob.of_file(p))


def test_mutated_real_elf_headers_never_crash(tmp_path: Path) -> None:
    import random

    rng = random.Random(11)
    head = REAL.read_bytes()[:8192]
    shoff = struct.unpack_from("<Q", head, 40)[0]
    tail = REAL.read_bytes()[shoff:] if shoff else b""
    p = tmp_path / "m"
    for _ in range(100):
        data = bytearray(head)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(4, 64)] = rng.randrange(256)
        p.write_bytes(bytes(data) + tail[: rng.randrange(0, len(tail) + 1)])
        _, facts = analyze(Blob.of_file(p), "m", AnalysisContext())
        assert facts.format == FileFormat.ELF

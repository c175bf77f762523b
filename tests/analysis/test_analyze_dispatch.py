"""analyze(): format sniffing (PE, Mach-O, ELF, ASAR, Java class, data) and dispatch."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from verifier._scenarios import pewriter as w
from verifier.analysis import AnalysisContext, analyze, dispatch
from verifier.binary import sniff as an
from verifier.binary.fuses import SENTINEL
from verifier.model import Blob, FileFormat, SignatureKind

WIRE = SENTINEL + b"\x01\x03" + b"101"


def _thin(cpu: int, magic: bytes = b"\xcf\xfa\xed\xfe") -> bytes:
    endian = "<" if magic[0] in (0xCE, 0xCF) else ">"
    return magic + struct.pack(endian + "IIIIIII", cpu, 3, 2, 0, 0, 0, 0)


def _fat(cpus: list[int]) -> bytes:
    out = b"\xca\xfe\xba\xbe" + struct.pack(">I", len(cpus))
    for i, c in enumerate(cpus):
        out += struct.pack(">IIIII", c, 3, 0x1000 * (i + 1), 0x1000, 12)
    return out


def _write(tmp: Path, data: bytes, name: str = "f") -> Blob:
    p = tmp / name
    p.write_bytes(data)
    return Blob.of_file(p)


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b"", FileFormat.DATA),
        (b"hello world", FileFormat.DATA),
        (b"MZ" + bytes(100), FileFormat.DATA),  # DOS stub only: e_lfanew=0, no PE signature
        # CAFEBABE, 52 "slices" (past the cap) that do not parse, nor a Java class: data
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x48" + bytes(40), FileFormat.DATA),
        (_fat([0x01000007, 0x0100000C]), FileFormat.MACHO),
        (_thin(0x0100000C), FileFormat.MACHO),
        (_thin(7, b"\xfe\xed\xfa\xce"), FileFormat.MACHO),
        (b"\x7fELF" + bytes(60), FileFormat.ELF),
        (
            struct.pack("<IIII", 4, 100, 96, 90) + b'{"files":{}}' + bytes(10),
            FileFormat.ASAR,
        ),
    ],
)
def test_sniff(data: bytes, fmt: FileFormat) -> None:
    assert an.sniff(data, len(data)) == fmt


def test_sniff_real_java_class() -> None:
    p = Path("/usr/share/gettext/javaversion.class")
    if not p.exists():
        pytest.skip("no Java class file on this system")
    data = p.read_bytes()
    assert an.sniff(data, len(data)) == FileFormat.DATA  # the whole file: a Java class
    # from its first bytes alone it may be a universal binary: analyze reads the file
    assert an.sniff(data[:64], len(data)) == FileFormat.MACHO
    _, facts = analyze(Blob.of_file(p), p.name, AnalysisContext())
    assert facts.format == FileFormat.DATA and facts.anomalies == ()


def test_data_and_asar_get_sha256_only(tmp_path: Path) -> None:
    data = b"just some bytes " + WIRE  # scans run for binaries only
    sha, facts = analyze(_write(tmp_path, data), "x.txt", AnalysisContext())
    assert sha == hashlib.sha256(data).hexdigest()
    assert facts.format == FileFormat.DATA and facts.fuses is None and not facts.anomalies
    asar = struct.pack("<IIII", 4, 100, 96, 90) + b'{"files":{}}'
    sha, facts = analyze(_write(tmp_path, asar, "a.asar"), "a.asar", AnalysisContext())
    assert facts.format == FileFormat.ASAR and sha == hashlib.sha256(asar).hexdigest()


def test_blob_inside_a_larger_file(tmp_path: Path) -> None:
    """A member stored in place (asar): offsets are relative to the blob."""
    pe_bytes = w.build_pe(w.electron_exe())
    p = tmp_path / "outer"
    p.write_bytes(b"x" * 777 + pe_bytes + b"y" * 50)
    sha, facts = analyze(Blob(str(p), 777, len(pe_bytes)), "electron.exe", AnalysisContext())
    assert sha == hashlib.sha256(pe_bytes).hexdigest()
    assert facts.format == FileFormat.PE and facts.fuses is not None
    assert facts.fuses.offset == pe_bytes.find(SENTINEL) + 34


def test_fat_file_with_unparsable_slices_names_its_archs(tmp_path: Path) -> None:
    data = _fat([0x01000007, 0x0100000C]).ljust(0x1000, b"\0") + b"\x01" * 0x2000
    sha, facts = analyze(_write(tmp_path, data), "f", AnalysisContext())
    # the slices' headers are not Mach-O headers: malformed, never a pass; the archs are named
    assert sha == hashlib.sha256(data).hexdigest()
    assert facts.format == FileFormat.MACHO and facts.archs == ("x86_64", "arm64")
    assert {a.rule for a in facts.anomalies} == {"malformed-input"}
    assert facts.signature.kind == SignatureKind.NONE and facts.signature.valid is None
    _, facts = analyze(
        _write(tmp_path, b"\xca\xfe\xba\xbe\x00\x00\x00\x05"), "t", AnalysisContext()
    )
    assert [a.rule for a in facts.anomalies] == ["malformed-input"]


def test_truncated_macho_never_raises(tmp_path: Path) -> None:
    for data in (_thin(0x0100000C)[:20], _fat([7, 12])[:30], _thin(0x01000007)):
        _, facts = analyze(_write(tmp_path, data), "m", AnalysisContext())
        assert facts.format == FileFormat.MACHO


def test_unsigned_pe_checksum_anomaly(tmp_path: Path) -> None:
    data = bytearray(w.build_pe(w.PESpec()))
    data[0x500] ^= 1  # inside .text: the stored checksum is now wrong
    _, facts = analyze(_write(tmp_path, bytes(data), "a.exe"), "a.exe", AnalysisContext())
    assert [a.rule for a in facts.anomalies] == ["pe-checksum-mismatch"]
    struct.pack_into("<I", data, 0x80 + 24 + 64, 0)  # a zero checksum means "not set"
    _, facts = analyze(_write(tmp_path, bytes(data), "b.exe"), "b.exe", AnalysisContext())
    assert not facts.anomalies


def test_facts_round_trip_through_ref_dict(tmp_path: Path) -> None:
    from verifier.model import BinaryFacts

    _, facts = analyze(
        _write(tmp_path, w.build_pe(w.electron_exe()), "e.exe"), "e", AnalysisContext()
    )
    back = BinaryFacts.from_dict(facts.to_ref_dict())
    assert back.sections == facts.sections and back.fuses == facts.fuses
    assert back.shape == facts.shape and back.header_sha256 == facts.header_sha256


def test_low_level_error_from_another_parser_is_malformed_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault we cannot cause with real input: a delegate parser lets struct.error through."""

    def broken(*_args: object) -> object:
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setitem(dispatch._HANDLERS, FileFormat.MACHO, broken)
    _, facts = analyze(_write(tmp_path, _thin(0x0100000C)), "m", AnalysisContext())
    assert [a.rule for a in facts.anomalies] == ["malformed-input"]
    assert "struct.error" in facts.anomalies[0].message or "error" in facts.anomalies[0].message


def test_pe_with_few_data_directories(tmp_path: Path) -> None:
    """NumberOfRvaAndSizes < 5: there is no security entry to skip."""
    from verifier.binary import pe

    data = bytearray(w.build_pe(w.PESpec()))
    struct.pack_into("<I", data, 0x80 + 24 + 108, 2)
    info = pe.parse_pe(bytes(data), len(data))
    assert len(info.data_dirs) == 2
    assert info.authenticode_skip() == (pe.Span(info.checksum_offset, 4),)
    _, facts = analyze(_write(tmp_path, bytes(data), "few.exe"), "few.exe", AnalysisContext())
    assert facts.format == FileFormat.PE and facts.shape.imports_sha256 is not None

"""pe.py on real Microsoft-signed DLLs, on writer-made files, and on hostile input."""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from support.fetch import fetch_pinned

from verifier._scenarios import pewriter as w
from verifier.analysis import AnalysisContext, analyze
from verifier.binary import pe
from verifier.errors import LimitExceededError, MalformedInputError
from verifier.hashing import View, digest_views
from verifier.model import Blob, FileFormat

FILES = "https://files.pythonhosted.org/packages/"
# msvc-runtime 14.44.35112 (cp312), pinned by sha256. (Its win32 wheels hold x64 DLLs too, so
# PE32 is covered by pip's distlib launchers below.)
WHEELS = {
    "x64": (
        "21/3b/134d04268ab8e35853cd007582076429b45d60d6abb1036d159be9c50342/"
        "msvc_runtime-14.44.35112-cp312-cp312-win_amd64.whl",
        "32f9c706009e16ccc319d6947ce3bffe20e5192bee52b18cf48313f9e7bedfbe",
    ),
    "arm64": (
        "a0/38/f245d6d30a76655293575683aaa5f72a7a70fc8efa1637bf6fd9e5e7e665/"
        "msvc_runtime-14.44.35112-cp312-cp312-win_arm64.whl",
        "62f272c51f30ce0de1b7a796e50af4d3911b76cbc9bc909917435d094f68d5fe",
    ),
}
DLLS = ("vcruntime140.dll", "msvcp140_1.dll", "vcomp140.dll")


def _dlls(arch: str, dest: Path) -> list[Path]:
    path, sha = WHEELS[arch]
    wheel = fetch_pinned(FILES + path, sha)
    out = []
    with zipfile.ZipFile(wheel) as z:
        for name in DLLS:
            target = dest / f"{arch}-{name}"
            target.write_bytes(z.read(f"msvc_runtime-14.44.35112.data/data/Scripts/{name}"))
            out.append(target)
    return out


@pytest.mark.network
@pytest.mark.parametrize("arch", sorted(WHEELS))
def test_microsoft_signed_dlls(arch: str, tmp_path: Path) -> None:
    for dll in _dlls(arch, tmp_path):
        blob = Blob.of_file(dll)
        info = pe.read_pe_info(blob)
        assert info.arch == arch
        assert info.is64 == (arch != "x86")
        assert info.cert_size > 0 and info.cert_offset + info.cert_size == blob.size
        assert info.cert_offset >= info.last_section_end
        # our streaming checksum equals the one Microsoft's linker/signer stored
        cs = pe.PEChecksum(info.checksum_offset, blob.size)
        auth = View("auth", skip=info.authenticode_skip())
        digest_views(blob.path, [cs, auth])
        assert cs.value == info.checksum
        if shutil.which("osslsigncode"):
            out = subprocess.run(
                ["osslsigncode", "verify", "-in", str(dll)], capture_output=True, text=True
            ).stdout
            m = re.search(r"Calculated message digest\s*:\s*([0-9A-F]+)", out)
            assert m and m.group(1).lower() == auth.hexdigest(), out
        shape = pe.read_shape(blob, info)
        assert any(d == "kernel32.dll" or d.startswith("api-ms-win") for d, _ in shape.imports)
        assert shape.exports, dll.name
        assert info.entry_point in range(info.size_of_headers, 1 << 31)
        sha, facts = analyze(blob, dll.name, AnalysisContext())
        assert facts.format == FileFormat.PE and facts.archs == (arch,)
        assert not [a for a in facts.anomalies if a.rule == "malformed-input"]
        assert facts.signature.signed and facts.shape.exports_sha256
        assert all("Microsoft" in s.subject for s in facts.signature.signers)
        assert facts.normalized_sha256 != sha


def _distlib_launchers() -> list[Path]:
    try:
        import pip._vendor.distlib as distlib
    except ImportError:
        return []
    return sorted(Path(distlib.__file__).parent.glob("*.exe"))


def test_real_unsigned_launchers_pe32_and_pe32plus() -> None:
    """pip's vendored distlib launchers: MSVC-built PE32 (x86), PE32+ (x64, arm64), unsigned."""
    exes = _distlib_launchers()
    if not exes:
        pytest.skip("pip's distlib launchers are not installed")
    archs = set()
    for exe in exes:
        blob = Blob.of_file(exe)
        info = pe.read_pe_info(blob)
        archs.add(info.arch)
        assert info.is64 == (info.arch != "x86")
        _, facts = analyze(blob, exe.name, AnalysisContext())
        assert not facts.signature.signed and not facts.anomalies, facts.anomalies
        assert facts.shape.imports_sha256 and ".text" in facts.shape.executable_sections
        shape = pe.read_shape(blob, info)
        assert any(d == "kernel32.dll" for d, _ in shape.imports)
        assert facts.overlay_sha256 is not None
    assert {"x86", "x64"} <= archs


def test_writer_pe_fields() -> None:
    data = w.build_pe(w.electron_exe())
    info = pe.parse_pe(data, len(data))
    assert info.size_of_headers == 0x400
    assert info.image_base == 0x140000000
    assert info.checksum_offset == 0x80 + 24 + 64
    assert info.security_dir_offset == 0x80 + 24 + 112 + 32
    text = info.find_section(".text")
    assert text is not None and text.executable and text.raw_pointer == 0x400
    assert info.entry_point == text.virtual_address


def test_writer_shape(tmp_path: Path) -> None:
    path = tmp_path / "f.dll"
    path.write_bytes(w.build_pe(w.ffmpeg_dll()))
    blob = Blob.of_file(path)
    shape = pe.read_shape(blob, pe.read_pe_info(blob))
    assert ("kernel32.dll", "VirtualAlloc") in shape.imports
    assert [n for _, n, _ in shape.exports] == sorted(w.FFMPEG_EXPORTS)
    exe = tmp_path / "e.exe"
    exe.write_bytes(w.build_pe(w.electron_exe()))
    eb = Blob.of_file(exe)
    assert len(pe.read_shape(eb, pe.read_pe_info(eb)).tls_callbacks) == 1


# --- hostile input -------------------------------------------------------------------------

OPT = 0x80 + 24
SECT = OPT + 0xF0


def _u32(data: bytearray, off: int, value: int) -> bytearray:
    struct.pack_into("<I", data, off, value)
    return data


def _base() -> bytearray:
    return bytearray(w.build_pe(w.electron_exe()))


def _import_loop() -> bytearray:
    """1100 copies of a valid import descriptor: a table that never ends."""
    data = bytearray(w.build_pe(w.PESpec(rdata_extra=b"LOOP" + bytes(1100 * 20 + 32))))
    info = pe.parse_pe(bytes(data), len(data))
    rva, _ = info.data_dir(pe.DIR_IMPORT)
    first = bytes(data[info.rva_to_offset(rva, 20) :][:20])
    at = data.find(b"LOOP") + 16
    data[at : at + 1100 * 20] = first * 1100
    rdata = info.find_section(".rdata")
    assert rdata is not None
    new_rva = rdata.virtual_address + at - rdata.raw_pointer
    return _u32(data, info.data_dir_offset + 8, new_rva)


HOSTILE: dict[str, Callable[[], bytearray]] = {
    "truncated-headers": lambda: _base()[:0x50],
    "truncated-optional-header": lambda: _base()[: OPT + 40],
    "e_lfanew-past-eof": lambda: _u32(_base(), 0x3C, 0x7FFF0000),
    "section-table-past-eof": lambda: _base()[: SECT + 50],
    "65535-sections": lambda: bytearray(
        _base()[: 0x80 + 6] + struct.pack("<H", 65535) + _base()[0x80 + 8 :]
    ),
    "huge-SizeOfRawData": lambda: _u32(_base(), SECT + 16, 0x7FFFFFFF),
    "security-dir-past-eof": lambda: _u32(
        _u32(_base(), OPT + 112 + 32, 0x6000), OPT + 148, 0x100000
    ),
    "security-dir-over-headers": lambda: _u32(
        _u32(_base(), OPT + 112 + 32, 0x100), OPT + 148, 0x200
    ),
    "huge-SizeOfHeaders": lambda: _u32(_base(), OPT + 60, 0x100000),
    "bad-optional-magic": lambda: bytearray(_base()[:OPT] + b"\x07\x01" + _base()[OPT + 2 :]),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_headers_raise_malformed(case: str, tmp_path: Path) -> None:
    data = bytes(HOSTILE[case]())
    with pytest.raises(MalformedInputError):
        pe.parse_pe(data[: pe.MAX_HEADERS], len(data))
    path = tmp_path / "x.exe"
    path.write_bytes(data)
    sha, facts = analyze(Blob.of_file(path), "x.exe", AnalysisContext())
    assert [a.rule for a in facts.anomalies] == ["malformed-input"]
    assert facts.format == FileFormat.PE and len(sha) == 64


def test_section_cap_is_a_limit() -> None:
    data = HOSTILE["65535-sections"]()
    with pytest.raises(LimitExceededError, match="65535 sections"):
        pe.parse_pe(bytes(data), len(data))


def test_import_loop_is_bounded(tmp_path: Path) -> None:
    data = bytes(_import_loop())
    path = tmp_path / "loop.exe"
    path.write_bytes(data)
    blob = Blob.of_file(path)
    info = pe.read_pe_info(blob)  # headers are fine
    with pytest.raises(LimitExceededError, match="import descriptors"):
        pe.read_shape(blob, info)
    _, facts = analyze(blob, "loop.exe", AnalysisContext())
    assert "malformed-input" in [a.rule for a in facts.anomalies]
    assert facts.normalized_sha256 and facts.shape.imports_sha256 is None


def test_import_name_outside_sections(tmp_path: Path) -> None:
    data = bytearray(w.build_pe(w.PESpec()))
    info = pe.parse_pe(bytes(data), len(data))
    rva, _ = info.data_dir(pe.DIR_IMPORT)
    _u32(data, info.rva_to_offset(rva, 20) + 12, 0x7FFFFFF0)  # Name RVA
    path = tmp_path / "n.exe"
    path.write_bytes(data)
    blob = Blob.of_file(path)
    with pytest.raises(MalformedInputError, match="not inside any section"):
        pe.read_shape(blob, pe.read_pe_info(blob))


def test_random_garbage_after_mz_never_crashes(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    base = _base()
    path = tmp_path / "f.exe"
    for _ in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(0x3C, 0x400)
            data[i] = rng.randrange(256)
        path.write_bytes(data[: rng.choice([len(data), rng.randrange(0x40, len(data))])])
        _, facts = analyze(Blob.of_file(path), "f.exe", AnalysisContext(verify_signatures=False))
        assert facts.format in (FileFormat.PE, FileFormat.DATA)


@pytest.mark.parametrize("step", [1, 3, 7, 4096, 1 << 20])
def test_checksum_streams_in_any_chunking(step: int) -> None:
    data = w.build_pe(w.PESpec(overlay=b"odd-length overlay!"))
    info = pe.parse_pe(data, len(data))
    c = pe.PEChecksum(info.checksum_offset, len(data))
    for pos in range(0, len(data), step):
        c.feed(pos, memoryview(data[pos : pos + step]))
    assert c.value == info.checksum == pe.pe_checksum(data, info.checksum_offset)


def _reference_checksum(data: bytes, csum_off: int) -> int:
    """The textbook word-by-word algorithm, for comparison."""
    total = 0
    padded = data + b"\0" * (len(data) % 2)
    for i in range(0, len(padded), 2):
        if csum_off <= i < csum_off + 4:
            continue
        total += padded[i] | (padded[i + 1] << 8)
        total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFFFF) + len(data)


def test_checksum_matches_textbook_algorithm() -> None:
    for spec in (w.PESpec(), w.PESpec(is64=False, overlay=b"\xff" * 33)):
        data = w.build_pe(spec)
        assert pe.pe_checksum(data, 0xD8) == _reference_checksum(data, 0xD8)
    assert pe.pe_checksum(bytes(64), 0) == 64


def _with_delay_import(data: bytearray, rva_based: bool) -> bytearray:
    """Point the delay-import directory at a descriptor reusing the first import's tables."""
    info = pe.parse_pe(bytes(data), len(data))
    rva, _ = info.data_dir(pe.DIR_IMPORT)
    ilt, _, _, name, iat = struct.unpack_from("<IIIII", data, info.rva_to_offset(rva, 20))
    at = data.find(b"DELAY") + 8
    rdata = info.find_section(".rdata")
    assert rdata is not None and at > 8
    adj = 0 if rva_based else info.image_base
    struct.pack_into("<IIIII", data, at, int(rva_based), name + adj, 0, iat + adj, ilt + adj)
    if not rva_based:  # old-style: the thunks hold VAs too (the normal import keeps its IAT)
        off = info.rva_to_offset(ilt, 8)
        v = struct.unpack_from("<I", data, off)[0]
        struct.pack_into("<I", data, off, v + adj)
        struct.pack_into("<I", data, info.rva_to_offset(rva, 20), 0)
    d_rva = rdata.virtual_address + at - rdata.raw_pointer
    struct.pack_into("<II", data, info.data_dir_offset + 8 * pe.DIR_DELAY_IMPORT, d_rva, 64)
    return data


@pytest.mark.parametrize("rva_based", [True, False])
def test_delay_imports(rva_based: bool, tmp_path: Path) -> None:
    spec = w.PESpec(is64=False, rdata_extra=b"DELAY" + bytes(200))
    data = _with_delay_import(bytearray(w.build_pe(spec)), rva_based)
    path = tmp_path / "d.exe"
    path.write_bytes(data)
    blob = Blob.of_file(path)
    shape = pe.read_shape(blob, pe.read_pe_info(blob))
    assert ("kernel32.dll (delay-load)", "ExitProcess") in shape.imports
    assert ("kernel32.dll", "ExitProcess") in shape.imports


# --- names read in one piece (_names_at) ----------------------------------------------------

NAMES = [f"?name{i}@@QEAAXXZ" for i in range(40)]


def _names_pe(tmp_path: Path, extra: bytes) -> tuple[pe._Reader, int]:
    """A PE whose .rdata holds ``extra``; its reader and the RVA where ``extra`` starts."""
    path = tmp_path / "names.dll"
    # no NUL after the run for a name's length: the span holds the names' NULs only (dense)
    data = w.build_pe(w.PESpec(rdata_extra=b"RUN!" + extra + b"~" * (2 * pe.MAX_NAME)))
    path.write_bytes(data)
    blob = Blob.of_file(path)
    info = pe.read_pe_info(blob)
    off = data.find(b"RUN!") + 4
    home = next(s for s in info.sections if s.raw_pointer <= off < s.raw_pointer + s.raw_size)
    return pe._Reader(blob, info), home.virtual_address + off - home.raw_pointer


@pytest.mark.parametrize("in_order", [True, False], ids=["split-first", "search-each"])
@pytest.mark.parametrize("order", ["table", "shuffled", "inner", "repeated"])
def test_names_read_at_once_match_one_by_one(tmp_path: Path, order: str, in_order: bool) -> None:
    """One read of the run of names gives exactly what reading each name alone gives:
    pointers in table order (the usual case), out of order, into the middle of a string,
    the same name twice; whether the split is tried first (exports) or not (imports)."""
    run = b"".join(n.encode() + b"\0" for n in NAMES)
    r, base = _names_pe(tmp_path, run)
    starts = [base + sum(len(n) + 1 for n in NAMES[:i]) for i in range(len(NAMES))]
    rvas = {
        "table": starts,
        "shuffled": starts[::-1],
        "inner": [*starts[:5], starts[7] + 3, *starts[8:]],
        "repeated": [*starts, starts[3]],
    }[order]
    got = pe._names_at(r, rvas, in_order=in_order)
    assert got == [r.cstr(v) for v in rvas]
    if order == "table":
        assert got == NAMES
        # the split behind it: every name with its offset, the unterminated tail left out
        assert pe._names_in(run + b"tail") == ([v - base for v in starts], NAMES)
    if order == "inner":
        assert got[5] == NAMES[7][3:]


@pytest.mark.parametrize("in_order", [True, False], ids=["split-first", "search-each"])
def test_an_over_long_name_in_the_run_is_still_refused(tmp_path: Path, in_order: bool) -> None:
    run = b"".join(n.encode() + b"\0" for n in NAMES[:3]) + b"A" * pe.MAX_NAME + b"\0"
    r, base = _names_pe(tmp_path, run)
    starts = [base + sum(len(n) + 1 for n in NAMES[:i]) for i in range(4)]
    assert pe._names_at(r, starts[:3], in_order=in_order) == NAMES[:3]
    with pytest.raises(MalformedInputError, match="over-long name"):
        pe._names_at(r, starts, in_order=in_order)


@pytest.mark.parametrize("seed", range(6))
def test_hint_name_tables_of_every_shape_match_one_by_one(tmp_path: Path, seed: int) -> None:
    """A hint/name table as linkers write it and as a hostile one may: 2-byte hints that
    hold NULs or not, padding or none, names of every length up to just under and just over
    the cap, pointers to any byte of the run (a hint, a pad, a name's middle, its NUL).
    Each name read from the one read of the run equals the name read alone, or the same
    error is raised."""
    rng = random.Random(seed)
    parts: list[bytes] = []
    for _ in range(60):
        hint = rng.choice([b"\0\0", b"\x01\0", b"\0\x07", b"xy", rng.randbytes(2)])
        size = rng.choice([0, 1, 5, 31, pe.MAX_NAME - 2, pe.MAX_NAME - 1])
        name = bytes(rng.choice(b"?@_AZaz09$") for _ in range(size))
        pad = b"\0" if rng.random() < 0.5 else b""
        parts.append(hint + name + b"\0" + pad)
    run = b"".join(parts)
    r, base = _names_pe(tmp_path, run)
    rvas = [base + rng.randrange(len(run)) for _ in range(200)]
    rvas += [base + sum(map(len, parts[:i])) + 2 for i in range(len(parts))]  # the names
    rng.shuffle(rvas)

    def each(v: int) -> str | type[MalformedInputError]:
        try:
            return r.cstr(v)
        except MalformedInputError:
            return MalformedInputError

    want = [each(v) for v in rvas]
    for in_order in (True, False):
        if MalformedInputError in want:
            with pytest.raises(MalformedInputError):
                pe._names_at(r, rvas, in_order=in_order)
            ok = [v for v, w in zip(rvas, want, strict=True) if w is not MalformedInputError]
            assert pe._names_at(r, ok, in_order=in_order) == [r.cstr(v) for v in ok]
        else:
            assert pe._names_at(r, rvas, in_order=in_order) == want


def test_table_digests_keep_their_definition() -> None:
    """``imports_sha256``/``exports_sha256`` are stored in reference inventories: the digest
    is of compact JSON (ASCII, escapes as ``json.dumps`` writes them), whatever encoder
    builds it."""
    items = [(1, 'a"b\\\u00e9', 4096), (2, "", 0)]
    text = b'[[1,"a\\"b\\\\\\u00e9",4096],[2,"",0]]'
    assert pe._digest(items) == hashlib.sha256(text).hexdigest()
    assert pe._digest([]) == hashlib.sha256(b"[]").hexdigest()
    assert pe.exports_digest(items) == hashlib.sha256(text).hexdigest()
    assert pe.exports_digest([]) == pe.imports_digest([]) == hashlib.sha256(b"[]").hexdigest()
    plain = [("KERNEL32.dll", "CreateFileW"), ("Qt5Core.dll", "?x@@YAXPEBD@Z")]
    want = b'[["KERNEL32.dll","CreateFileW"],["Qt5Core.dll","?x@@YAXPEBD@Z"]]'
    assert pe.imports_digest(plain) == hashlib.sha256(want).hexdigest()


@pytest.mark.parametrize("seed", range(4))
def test_table_digests_spelled_fast_equal_the_encoders(seed: int) -> None:
    """The f-string spelling of the import and export digests gives the encoder's text for
    names of every byte a table can hold (latin-1), one needing an escape or none, and for
    characters past latin-1 (not from a table, still never a different digest)."""
    rnd = random.Random(seed)
    alphabet = [chr(c) for c in range(256)] + ["\u0100", "\u20ac", "\U0001f600"]
    plain = [chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\']
    for _ in range(300):
        n = rnd.choice([0, 1, 2, 5, 40])
        pool = plain if rnd.random() < 0.5 else alphabet
        names = ["".join(rnd.choices(pool, k=rnd.randint(0, 12))) for _ in range(n)]
        pairs = [(rnd.choice(names or ["x"]), nm) for nm in names]
        triples = [(rnd.randint(0, 1 << 32), nm, rnd.randint(0, 1 << 32)) for nm in names]
        assert pe.imports_digest(pairs) == pe._digest(pairs)
        assert pe.exports_digest(triples) == pe._digest(triples)


def test_plain_table_names_take_the_fast_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names JSON writes as they are never reach the encoder (the point of the spelling)."""
    pairs = [("KERNEL32.dll", "CreateFileW"), ("MSVCP140.dll", "??1_Lockit@std@@QEAA@XZ")]
    triples = [(1, "?qt_check@@YAXXZ", 4096), (7, "", 0)]
    want = (pe._digest(pairs), pe._digest(triples))

    def encoder(_items: object) -> str:
        raise AssertionError("the encoder was used for plain names")

    monkeypatch.setattr(pe, "_digest", encoder)
    assert (pe.imports_digest(pairs), pe.exports_digest(triples)) == want


@pytest.mark.parametrize("off", [0, 1, pe._Reader.WINDOW - 3, 5 * pe._Reader.WINDOW + 17])
def test_reader_gives_the_file_bytes_for_short_and_long_runs(tmp_path: Path, off: int) -> None:
    """A run longer than a window is one read; either way the bytes are the file's, and a
    run past the end of the file is an error, not a short answer."""
    data = random.Random(off).randbytes(8 * pe._Reader.WINDOW + 99)
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    r = pe._Reader(Blob.of_file(str(p)), None)  # type: ignore[arg-type]  # at() reads by offset
    for n in (1, 100, pe._Reader.WINDOW, pe._Reader.WINDOW + 1, 3 * pe._Reader.WINDOW + 5):
        assert r.at(off, n) == data[off : off + n]
    left = len(data) - off
    assert r.at(off, left) == data[off:]
    for n in (left + 1, left + pe._Reader.WINDOW + 1):
        with pytest.raises(MalformedInputError, match="past the end"):
            r.at(off, n)

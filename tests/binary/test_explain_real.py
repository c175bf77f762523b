"""The explanation on real, Microsoft-built DLLs (msvc-runtime wheels from PyPI, pinned).

* a ``call`` and a ``lea`` written into the middle of ``C2VectParallel`` in ``vcomp140.dll``
  (x64): the evidence names the function from ``.pdata`` and the export table, and the
  disassembly shows the two new instructions against the original ones (decoded here
  independently with capstone);
* the same on ARM64 (``bl`` and ``adrp`` in ``vcruntime140.dll`` from the win_arm64 wheel);
* a DLL added to the import table (a new section with a rebuilt import directory):
  ``imports_added`` and ``sections_added`` say so.
"""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any

import capstone
import pytest
from support.fetch import fetch_pinned, msvc_wheel

from verifier import api
from verifier.binary import explain, pe, pe_tables
from verifier.binary.macho_compare import compare_slices
from verifier.model import Blob, FileFormat

pytestmark = pytest.mark.network

FILES = "https://files.pythonhosted.org/packages/"
MEMBER = "msvc_runtime-14.51.36231.data/data/Scripts/{}"
ARM64_WHEEL = (
    "a0/38/f245d6d30a76655293575683aaa5f72a7a70fc8efa1637bf6fd9e5e7e665/"
    "msvc_runtime-14.44.35112-cp312-cp312-win_arm64.whl",
    "62f272c51f30ce0de1b7a796e50af4d3911b76cbc9bc909917435d094f68d5fe",
)


@pytest.fixture(scope="module")
def vcomp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("vcomp")
    with zipfile.ZipFile(msvc_wheel()) as z:
        (d / "vcomp140.dll").write_bytes(z.read(MEMBER.format("vcomp140.dll")))
    return d / "vcomp140.dll"


def _export(path: Path, name: str) -> tuple[pe.PEInfo, int, int]:
    """(info, rva, end rva from .pdata) of an exported function."""
    b = Blob.of_file(path)
    info = pe.read_pe_info(b)
    exports = pe.read_shape(b, info).exports
    rva = next(r for _o, n, r in exports if n == name)
    fn = pe_tables.read_tables(b, info, exports).covering(rva)
    assert fn is not None and fn.start == rva and fn.end is not None
    return info, rva, fn.end


def _boundaries(arch: int, mode: int, code: bytes, addr: int) -> list[tuple[int, int, str]]:
    md = capstone.Cs(arch, mode)
    return [(a, n, f"{m} {o}".strip()) for a, n, m, o in md.disasm_lite(code, addr)]


def _rows(ev: dict[str, Any]) -> list[dict[str, Any]]:
    [win] = ev["disassembly"]
    return [r for r in win["rows"] if r["kind"] == "changed"]


def test_call_and_lea_patched_into_a_real_x64_function(vcomp: Path, tmp_path: Path) -> None:
    info, start, end = _export(vcomp, "C2VectParallel")
    data = bytearray(vcomp.read_bytes())
    off0 = info.rva_to_offset(start)
    insns = _boundaries(
        capstone.CS_ARCH_X86, capstone.CS_MODE_64, bytes(data[off0 : off0 + end - start]), start
    )
    # the first instruction boundary past the function's first third
    at = next(a for a, _n, _t in insns if a >= start + (end - start) // 3)
    target = end + 0x100  # somewhere else in .text
    call = b"\xe8" + struct.pack("<i", target - (at + 5))
    lea = b"\x48\x8d\x0d" + struct.pack("<i", 0x1234)  # lea rcx, [rip + 0x1234]
    off = info.rva_to_offset(at)
    data[off : off + 12] = call + lea
    up_dir, ship_dir = tmp_path / "up", tmp_path / "ship"
    up_dir.mkdir()
    ship_dir.mkdir()
    shutil.copy(vcomp, up_dir / "vcomp140.dll")
    (ship_dir / "vcomp140.dll").write_bytes(bytes(data))

    report = api.verify(
        api.VerifyRequest(
            artifact=str(ship_dir / "vcomp140.dll"),
            against=(f"path:{up_dir}",),
            workdir=str(tmp_path / "work"),
        )
    )
    f = next(f for f in report.findings if f.rule == "signed-divergent-content")
    ev = dict(f.evidence)
    [ch] = ev["changes"]
    assert ch["region"] == ".text" and ch["address"] == at and ch["address_kind"] == "rva"
    assert ch["offset"] == off and 10 <= ch["length"] <= 12  # bytes equal by chance merge away
    [fn] = ch["functions"]
    assert fn == {"name": "C2VectParallel", "start": start, "end": end, "source": "pdata"}
    rows = _rows(ev)
    assert rows[0]["shipped"] == {"address": at, "size": 5, "text": f"call {target:#x}"}
    assert rows[1]["shipped"] == {"address": at + 5, "size": 7, "text": "lea rcx, [rip + 0x1234]"}
    # upstream's side: the original instructions at the same addresses, as capstone reads them
    original = [(a, n, t) for a, n, t in insns if at <= a < at + 12]
    got = [(r["upstream"]["address"], r["upstream"]["size"], r["upstream"]["text"]) for r in rows]
    assert got[: len(original)] == original
    assert not any(t.startswith("call") or t.startswith("lea rcx") for _a, _n, t in original)
    assert ev["explanation"]["truncated"] == []
    assert ev["imports_added"] == [] and ev["sections_added"] == []
    # the disassembly starts at the function's start: the instruction boundaries are real
    assert ev["disassembly"][0]["address"] == start
    assert ev["disassembly"][0]["function"]["name"] == "C2VectParallel"


def test_bl_and_adrp_patched_into_a_real_arm64_function(tmp_path: Path) -> None:
    path, sha = ARM64_WHEEL
    with zipfile.ZipFile(fetch_pinned(FILES + path, sha)) as z:
        data = bytearray(z.read("msvc_runtime-14.44.35112.data/data/Scripts/vcruntime140.dll"))
    up = tmp_path / "up.dll"
    up.write_bytes(bytes(data))
    b = Blob.of_file(up)
    info = pe.read_pe_info(b)
    assert info.arch == "arm64"
    text = info.find_section(".text")
    assert text is not None
    at = text.virtual_address + (text.virtual_size // 2 & ~3)
    off = info.rva_to_offset(at)
    before = _boundaries(
        capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM, bytes(data[off : off + 8]), at
    )
    bl = 0x94000000 | ((0x40 >> 2) & 0x3FFFFFF)  # bl #(at + 0x40)
    adrp = 0x90000000 | 1  # adrp x1, <page of at>
    data[off : off + 8] = struct.pack("<II", bl, adrp)
    shipped = tmp_path / "shipped.dll"
    shipped.write_bytes(bytes(data))
    ev = explain.explain_blobs(Blob.of_file(shipped), b, FileFormat.PE).evidence
    [ch] = ev["changes"]
    assert ch["address"] == at and ch["arch"] == "arm64"
    rows = _rows(ev)
    assert rows[0]["shipped"]["text"] == f"bl #{at + 0x40:#x}"
    assert rows[1]["shipped"]["text"] == f"adrp x1, #{at & ~0xFFF:#x}"
    got = [(r["upstream"]["address"], r["upstream"]["size"], r["upstream"]["text"]) for r in rows]
    assert got == before


def _add_import(src: bytes, dll: bytes, func: bytes) -> bytes:
    """``src`` with a new last section holding a copy of its import descriptors plus one for
    ``dll!func``; the import directory points there (the certificate table is dropped)."""
    info = pe.parse_pe(src[: pe.MAX_HEADERS], len(src))
    out = bytearray(src[: info.last_section_end])
    opt = info.checksum_offset - 64
    falign = struct.unpack_from("<I", src, opt + 36)[0]
    salign = struct.unpack_from("<I", src, opt + 32)[0]
    last = max(info.sections, key=lambda s: s.virtual_address)
    va = (
        (last.virtual_address + max(last.virtual_size, last.raw_size) + salign - 1)
        // salign
        * salign
    )
    raw = (len(out) + falign - 1) // falign * falign
    irva, isize = info.data_dir(pe.DIR_IMPORT)
    old = src[info.rva_to_offset(irva, isize) : info.rva_to_offset(irva, isize) + isize]
    descs = [old[i : i + 20] for i in range(0, len(old) - 19, 20) if any(old[i : i + 20])]
    n = len(descs) + 2
    body = bytearray(20 * n)
    name_at = len(body)
    body += dll + b"\0"
    hint_at = (len(body) + 1) & ~1
    body += bytes(hint_at - len(body)) + b"\0\0" + func + b"\0"
    thunk_at = (len(body) + 7) & ~7
    body += bytes(thunk_at - len(body)) + struct.pack("<QQ", va + hint_at, 0)
    iat_at = len(body)
    body += struct.pack("<QQ", va + hint_at, 0)
    for i, d in enumerate(descs):
        body[20 * i : 20 * i + 20] = d
    struct.pack_into(
        "<IIIII", body, 20 * len(descs), va + thunk_at, 0, 0, va + name_at, va + iat_at
    )
    size = (len(body) + falign - 1) // falign * falign
    out += bytes(raw - len(out)) + bytes(body) + bytes(size - len(body))
    hdr = last.header_offset + 40 * (len(info.sections) - last.index)
    assert hdr + 40 <= info.size_of_headers and not any(out[hdr : hdr + 40])
    out[hdr : hdr + 40] = struct.pack(
        "<8sIIIIIIHHI", b".idata2", len(body), va, size, raw, 0, 0, 0, 0, 0xC0000040
    )
    coff = opt - 20
    struct.pack_into("<H", out, coff + 2, len(info.sections) + 1)
    struct.pack_into("<I", out, opt + 56, (va + len(body) + salign - 1) // salign * salign)
    struct.pack_into("<II", out, info.data_dir_offset + 8 * pe.DIR_IMPORT, va, 20 * n)
    struct.pack_into("<II", out, info.security_dir_offset, 0, 0)
    return bytes(out)


def test_added_import_is_reported(vcomp: Path, tmp_path: Path) -> None:
    src = vcomp.read_bytes()
    shipped = tmp_path / "vcomp140.dll"
    shipped.write_bytes(_add_import(src, b"payload_loader.dll", b"RunPayload"))
    # independent check of the rebuilt table with biv's own import parser
    b = Blob.of_file(shipped)
    imports = pe.read_shape(b, pe.read_pe_info(b)).imports
    assert ("payload_loader.dll", "RunPayload") in imports
    pair = api.inspect_against(str(shipped), str(vcomp))
    ev = pair["evidence"]
    assert pair["status"] == "divergent"
    assert ev["imports_added"] == ["payload_loader.dll!RunPayload"]
    assert ev["imports_removed"] == []
    assert ev["sections_added"] == [".idata2"]
    fields = {f for c in ev["changes"] for f in c.get("fields", [])}
    assert {"NumberOfSections", "import directory entry", "section header .idata2"} <= fields
    strings = {s["value"] for s in ev["strings_added"]}
    assert "payload_loader.dll" in strings
    assert ev["disassembly"] == []  # no code changed


def test_real_universal_macho_per_slice(tmp_path: Path) -> None:
    """MarkupSafe's universal2 extension (PyPI, pinned): a patch in both slices' code is named
    after the function LC_FUNCTION_STARTS and LC_SYMTAB give, slice by slice."""
    from support.fetch import MARKUPSAFE_SHA256, MARKUPSAFE_URL

    from verifier.analysis import analyze
    from verifier.binary import macho
    from verifier.binary.diff import describe_macho_divergence
    from verifier.model import FileEntry

    with zipfile.ZipFile(fetch_pinned(MARKUPSAFE_URL, MARKUPSAFE_SHA256)) as z:
        data = bytearray(z.read("markupsafe/_speedups.cpython-312-darwin.so"))
    up = tmp_path / "up.so"
    up.write_bytes(bytes(data))
    fat = macho.parse_fat(bytes(data[:4096]), len(data))
    patched: dict[str, int] = {}
    for a in fat:
        h = macho.parse_slice_header(bytes(data[a.offset : a.offset + 65536]), a.size)
        text = next(s for s in h.sections if s.name == "__TEXT,__text")
        rel = (text.size // 2) & ~3
        if a.arch == "x86_64":  # an instruction boundary, by a linear sweep from the start
            code = bytes(data[a.offset + text.offset : a.offset + text.offset + text.size])
            sweep = _boundaries(capstone.CS_ARCH_X86, capstone.CS_MODE_64, code, 0)
            rel = next(o for o, _n, _t in sweep if o >= rel)
        at = text.addr + rel
        patch = (
            b"\xe8\x00\x01\x00\x00" if a.arch == "x86_64" else struct.pack("<I", 0x94000010)
        )  # call +0x100 / bl #+0x40
        off = a.offset + text.offset + rel
        data[off : off + len(patch)] = patch
        patched[a.arch] = at
    shipped = tmp_path / "shipped.so"
    shipped.write_bytes(bytes(data))

    def entry(p: Path) -> FileEntry:
        blob = Blob.of_file(p)
        sha, facts = analyze(blob, p.name)
        return FileEntry(p.name, str(p), (), blob.size, sha, facts, blob)

    s, u = entry(shipped), entry(up)
    _slices, ev = compare_slices(s, [u])
    ev = describe_macho_divergence(s, [u], ev)
    per = {x["arch"]: x for x in ev["slices"]}
    assert set(patched) == {"x86_64", "arm64"} <= set(per)
    for arch, at in patched.items():
        e = per[arch]
        assert e["explanation"]["status"] == "explained"
        [ch] = e["changes"]
        assert ch["address"] == at and ch["region"] == "__TEXT,__text"
        [fn] = ch["functions"]
        assert fn["name"] == "_escape_unicode" and fn["start"] <= at < fn["end"]
        assert fn["source"] in ("function-starts", "symtab")
        rows = [r for r in e["disassembly"][0]["rows"] if r["kind"] == "changed"]
        want = f"call {at + 0x105:#x}" if arch == "x86_64" else f"bl #{at + 0x40:#x}"
        row = next(r for r in rows if r["shipped"] and r["shipped"]["address"] == at)
        assert row["shipped"]["text"] == want
        assert all(r["upstream"] is None or r["upstream"]["text"] != want for r in rows)
    assert ev["explanation"]["arch"] == "x86_64"  # top level: the first divergent slice

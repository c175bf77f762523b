"""The explanation of the demo's trojanised files (docs/contract.md "Explaining a divergence").

``ffmpeg.dll`` got a loader in a new executable section, run at DLL entry, and a new import;
the x86_64 slice of ``libffmpeg.dylib`` got 8 bytes of its code replaced. The evidence must
name where (section, RVA / VM address, function) and show the injected instructions against
upstream's, through the real pipeline (``api.verify``) and ``biv inspect --against``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support.paths import REPO

from verifier import api, cli
from verifier._scenarios import macho_app
from verifier._scenarios.scenario import Scenario
from verifier.binary import macho, pe
from verifier.cli import main
from verifier.model import Blob, Report
from verifier.report import json as report_json
from verifier.report.json import render_json
from verifier.report.text import render_text

SCHEMA = json.loads((REPO / "verifier/schemas/biv.report.v1.json").read_text())

# the demo's loader (verifier._scenarios.pewriter._LOADER), decoded by hand
LOADER_START = [
    "sub rsp, 0x28",
    "lea rcx, [rip - 7]",
    "mov rdx, 0x1000",
    "lea r8, [rip - 0x10]",
    "mov r9d, 0x40",
    "call qword ptr [rip]",
]


@pytest.fixture(scope="module")
def win_report(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Report:
    return api.verify(
        api.VerifyRequest(
            artifact=scenario.compromised,
            against=(f"path:{scenario.upstream}",),
            trust_stores=(scenario.trust_store,),
            workdir=str(tmp_path_factory.mktemp("work")),
        )
    )


def _evidence(report: Report, path: str) -> dict[str, Any]:
    f = next(f for f in report.findings if f.path == path and f.rule == "signed-divergent-content")
    return dict(f.evidence)


def test_ffmpeg_dll_loader_is_named_and_disassembled(
    win_report: Report, scenario: Scenario
) -> None:
    ev = _evidence(win_report, "ffmpeg.dll")
    assert ev["explanation"]["status"] == "explained"
    assert ev["explanation"]["arch"] == "x64"
    assert ev["sections_added"] == [".text2"]
    assert ev["imports_added"] == ["kernel32.dll!VirtualProtect"]
    assert ev["imports_removed"] == [] and ev["exports_added"] == []
    info = pe.read_pe_info(Blob.of_file(Path(scenario.compromised) / "ffmpeg.dll"))
    text2 = info.find_section(".text2")
    assert text2 is not None and info.entry_point == text2.virtual_address
    added = [c for c in ev["changes"] if c["kind"] == "added"]
    assert len(added) == 1
    ch = added[0]
    assert ch["region"] == ".text2" and ch["address"] == text2.virtual_address
    assert ch["address_kind"] == "rva" and ch["offset"] == text2.raw_pointer
    assert ch["executable"] is True
    assert ch["functions"][0]["name"] == "(entry point)"
    assert 3.0 < ch["entropy"] < 6.0  # code, not an encrypted blob
    # the moved entry point shows as a changed header field
    hdr = [f for c in ev["changes"] if c["region"] == "(headers)" for f in c.get("fields", [])]
    assert "AddressOfEntryPoint" in hdr and "NumberOfSections" in hdr
    [win] = ev["disassembly"]
    assert win["region"] == ".text2" and win["upstream_present"] is False
    assert win["function"]["name"] == "(entry point)"
    rows = win["rows"]
    assert [r["shipped"]["text"] for r in rows[: len(LOADER_START)]] == LOADER_START
    assert rows[0]["shipped"]["address"] == text2.virtual_address
    assert all(r["kind"] == "changed" and r["upstream"] is None for r in rows)
    lim = ev["explanation"]["limits"]
    assert len(rows) <= lim["max_rows_per_window"] and win["truncated"] is True
    # no file bytes in the report: instructions carry text, address and size only
    assert set(rows[0]["shipped"]) == {"address", "size", "text"}
    jsonschema.validate(json.loads(render_json(win_report)), SCHEMA)


def test_json_report_written_in_pieces_is_the_same_text(
    win_report: Report, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    whole = render_json(win_report)
    monkeypatch.setattr(report_json, "_PIECE", 1)  # one line a piece
    pieces = list(report_json.iter_json(win_report))
    assert len(pieces) == whole.count("\n") and "".join(pieces) == whole
    out = tmp_path / "r.json"
    cli._emit(iter([*pieces, '"\udcff"\n']), str(out))  # a raw byte in the last piece
    assert out.read_bytes() == (whole + '"\\xff"\n').encode()


def test_ffmpeg_dll_text_summary(win_report: Report) -> None:
    text = render_text(win_report)
    block = text[text.index("signed-divergent-content") :]
    assert "imports added: kernel32.dll!VirtualProtect" in block
    assert "sections added: .text2" in block
    assert "first changed instructions (.text2 at rva 0x7000, in (entry point))" in block
    assert "0x7000  sub rsp, 0x28" in block


def test_inspect_against_ffmpeg_dll(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = str(Path(scenario.compromised) / "ffmpeg.dll")
    upstream = str(Path(scenario.upstream) / "ffmpeg.dll")
    assert main(["inspect", shipped, "--against", upstream]) == 0
    out = capsys.readouterr().out
    assert "status    divergent" in out
    assert "imports added: kernel32.dll!VirtualProtect" in out
    assert ".text2 at rva 0x7000, function (entry point) (no upstream counterpart)" in out
    for insn in LOADER_START:
        assert insn in out
    assert main(["inspect", shipped, "--against", upstream, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "divergent" and doc["against"]["path"] == upstream
    assert doc["evidence"]["sections_added"] == [".text2"]
    # inspect shows the full view: more rows than the verify report's per-window cap
    rows = doc["evidence"]["disassembly"][0]["rows"]
    assert len(rows) > 64
    # an identical pair has nothing to explain
    assert main(["inspect", upstream, "--against", upstream]) == 0
    assert "status    identical" in capsys.readouterr().out


def test_libffmpeg_dylib_x86_64_slice(mac_scenario: dict[str, Path], tmp_path: Path) -> None:
    report = api.verify(
        api.VerifyRequest(
            artifact=str(mac_scenario["vendor-3cx"]),
            against=(
                f"path:{mac_scenario['upstream-x64']}",
                f"path:{mac_scenario['upstream-arm64']}",
            ),
            trust_stores=(str(mac_scenario["roots"]),),
            workdir=str(tmp_path / "work"),
        )
    )
    path = next(f.path for f in report.findings if f.path.endswith("libffmpeg.dylib"))
    ev = _evidence(report, path)
    assert ev["explanation"]["arch"] == "x86_64"
    per = {s["arch"]: s for s in ev["slices"]}
    assert "changes" in per["x86_64"] and "changes" not in per["arm64"]  # arm64 slice is clean
    # where the demo wrote its 8 bytes: __TEXT,__text + 64
    blob = Blob.of_file(mac_scenario["vendor-3cx"] / macho_app.FFMPEG)
    fat = macho.parse_fat(blob.read(0, 4096), blob.size)
    x86 = next(a for a in fat if a.arch == "x86_64")
    h = macho.parse_slice_header(blob.read(x86.offset, 65536), x86.size)
    text = next(s for s in h.sections if s.name == "__TEXT,__text")
    [ch] = ev["changes"]
    assert ch["region"] == "__TEXT,__text" and ch["address_kind"] == "vmaddr"
    assert ch["address"] == text.addr + 64 and ch["offset"] == x86.offset + text.offset + 64
    assert ch["length"] == 8 and ch["arch"] == "x86_64"
    [win] = ev["disassembly"]
    changed = [r for r in win["rows"] if r["kind"] == "changed"]
    shipped = [r["shipped"]["text"] for r in changed if r["shipped"]]
    a = text.addr + 64
    assert shipped[:3] == [f"call {a + 5:#x}", "pop rax", "jmp rax"]
    assert changed[0]["shipped"]["address"] == a and changed[0]["upstream"]["address"] == a
    upstream = [r["upstream"]["text"] for r in changed if r["upstream"]]
    assert upstream and upstream[0] != shipped[0]
    # the same instructions, unchanged, before and after the patch
    same = [r for r in win["rows"] if r["kind"] == "same"]
    assert same and all(r["upstream"] == r["shipped"] for r in same)
    jsonschema.validate(json.loads(render_json(report)), SCHEMA)
    text_out = render_text(report)
    assert "[x86_64] first changed instructions (__TEXT,__text at vmaddr" in text_out

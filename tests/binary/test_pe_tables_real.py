"""The fast readers of import and export tables against the entry-by-entry ones, on real DLLs.

``parse_imports`` reads a thunk array in one piece (its zero entry found by a search) and the
names of one DLL's imports in one piece (names after their 2-byte hints included); the slow
path reads every entry and every name on its own. Both must give the same tables for the DLLs
of ``pyqt5-qt5==5.15.2`` (Qt's own, MSVC's and the ANGLE/D3D compiler DLLs) and of
``msvc-runtime``: tens of thousands of imports and exports, hints of every size.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from support.fetch import msvc_wheel, pypi_file

from verifier._scenarios.pewriter import PESpec, build_pe
from verifier.binary import pe
from verifier.errors import MalformedInputError
from verifier.model import Blob

PYQT = ("pyqt5-qt5", "5.15.2", "PyQt5_Qt5-5.15.2-py3-none-win_amd64.whl")
PYQT_SHA256 = "750b78e4dba6bdf1607febedc08738e318ea09e9b10aea9ff0d73073f11f6962"
PYQT_DLLS = (
    "Qt5Gui.dll",
    "Qt5Core.dll",
    "Qt5Widgets.dll",
    "d3dcompiler_47.dll",
    "libEGL.dll",
    "msvcp140.dll",
    "opengl32sw.dll",
)


def _extract(wheel: Path, names: tuple[str, ...] | None, dest: Path) -> list[Path]:
    out = []
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            leaf = info.filename.rsplit("/", 1)[-1]
            if (names is None and leaf.lower().endswith(".dll")) or (names and leaf in names):
                target = dest / leaf
                target.write_bytes(z.read(info))
                out.append(target)
    return out


@pytest.fixture(scope="module")
def dlls(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    dest = tmp_path_factory.mktemp("dlls")
    found = _extract(pypi_file(*PYQT, PYQT_SHA256), PYQT_DLLS, dest)
    assert sorted(p.name for p in found) == sorted(PYQT_DLLS)
    found += _extract(msvc_wheel(), None, dest)
    return found


def _slow_imports(r: pe._Reader) -> list[tuple[str, str]]:
    """Every thunk and every name read on its own (the path hostile tables take)."""
    saved = pe._thunk_values, pe._names_at
    try:
        pe._thunk_values = lambda *_a: None
        pe._names_at = lambda rr, rvas, **_k: [rr.cstr(v) for v in rvas]  # type: ignore[assignment]
        return pe.parse_imports(r)
    finally:
        pe._thunk_values, pe._names_at = saved


def test_fast_import_and_export_readers_match_the_slow_ones(dlls: list[Path]) -> None:
    imports = exports = 0
    for path in dlls:
        blob = Blob.of_file(str(path))
        info = pe.parse_pe(blob.read(0, 4096), blob.size)
        fast = pe.parse_imports(pe._Reader(blob, info))
        assert fast == _slow_imports(pe._Reader(blob, info)), path.name
        ex = pe.parse_exports(pe._Reader(blob, info))
        r = pe._Reader(blob, info)
        saved = pe._names_at
        try:
            pe._names_at = lambda rr, rvas, **_k: [rr.cstr(v) for v in rvas]  # type: ignore[assignment]
            assert ex == pe.parse_exports(r), path.name
        finally:
            pe._names_at = saved
        imports += len(fast)
        exports += len(ex)
    # the tables are the large real ones this test is about
    assert imports > 5_000 and exports > 20_000


def _imports_exe(tmp_path: Path, imports: tuple[tuple[str, tuple[str, ...]], ...]) -> Path:
    data = bytearray(build_pe(PESpec(imports=imports)))
    for name in (b"GetTickCount\0", b"MessageBoxW\0", b"A\0"):  # hints without a zero byte
        i = data.find(b"\0\0" + name)
        if i > 0:
            data[i : i + 2] = b"xy"
    p = tmp_path / "imports.exe"
    p.write_bytes(data)
    return p


def test_import_names_at_every_kind_of_offset_match_the_slow_reader(tmp_path: Path) -> None:
    """A generated import table with what real DLLs rarely hold: a one-letter name, a name
    just under the length cap, hints with no zero byte (the name two bytes into a string of
    the table) and hints that are zero (the name a string of its own), several DLLs: one
    read of the table gives what reading every name on its own gives; a name over the cap
    is the same error both ways."""
    long_ok, too_long = "L" * (pe.MAX_NAME - 1), "T" * (pe.MAX_NAME + 40)
    table = (
        ("KERNEL32.dll", ("ExitProcess", "A", long_ok, "GetTickCount")),
        ("USER32.dll", ("MessageBoxW", "Z")),
    )
    blob = Blob.of_file(str(_imports_exe(tmp_path, table)))
    info = pe.parse_pe(blob.read(0, 4096), blob.size)
    fast = pe.parse_imports(pe._Reader(blob, info))
    assert fast == _slow_imports(pe._Reader(blob, info))
    assert {n for _dll, n in fast} == {
        "A",
        "Z",
        long_ok,
        "ExitProcess",
        "GetTickCount",
        "MessageBoxW",
    }
    blob = Blob.of_file(str(_imports_exe(tmp_path, (*table, ("odd.dll", (too_long, "B"))))))
    info = pe.parse_pe(blob.read(0, 4096), blob.size)
    with pytest.raises(MalformedInputError) as fast_err:
        pe.parse_imports(pe._Reader(blob, info))
    with pytest.raises(MalformedInputError) as slow_err:
        _slow_imports(pe._Reader(blob, info))
    assert fast_err.value.message == slow_err.value.message
    assert "over-long name" in fast_err.value.message

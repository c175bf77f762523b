"""Pairing one to one (docs/contract.md "Pairing"), target choice, and a reference that does
not fit."""

from __future__ import annotations

from verifier.api import reference_misfit
from verifier.compare import compare, unexplained_code
from verifier.model import (
    BinaryFacts,
    Component,
    FileEntry,
    FileFormat,
    Inventory,
    Reference,
    SliceFacts,
    Status,
)
from verifier.pairing import versionless
from verifier.upstream import target


def entry(
    path: str,
    sha: str,
    fmt: FileFormat = FileFormat.DATA,
    *,
    norm: str | None = None,
    archs: tuple[str, ...] = (),
    size: int = 10,
    **facts: object,
) -> FileEntry:
    bf = BinaryFacts(format=fmt, normalized_sha256=norm, archs=archs, **facts)  # type: ignore[arg-type]
    return FileEntry(path, path, (), size, sha, bf)


def inv(*entries: FileEntry) -> Inventory:
    return Inventory("art", "0" * 64, 0, tuple(entries))


def ref(*entries: FileEntry, name: str = "up") -> Reference:
    return Reference(Component(name, "1.0", f"path:{name}"), tuple(entries))


def never_own(path: str, e: FileEntry) -> bool:
    return path.startswith("own/")


def by_path(results: tuple) -> dict:  # type: ignore[type-arg]
    return {r.path: r for r in results}


def test_versionless_normalises_wheel_folders_only() -> None:
    assert versionless("msvc_runtime-14.44.35112.data/data/x.dll") == (
        "msvc-runtime-*.data/data/x.dll"
    )
    assert versionless("MarkupSafe-2.1.5.dist-info/RECORD") == "markupsafe-*.dist-info/RECORD"
    assert versionless("pkg-1.0.egg-info/PKG-INFO") == "pkg-*.egg-info/PKG-INFO"
    assert versionless("lib/x-1.0/y.dll") is None
    assert versionless("plain/path.dll") is None


def test_each_kind_of_pairing_is_recorded_and_one_to_one() -> None:
    upstream = ref(
        entry("same.dll", "S", FileFormat.PE, archs=("x64",)),
        entry("pkg-1.0.data/data/v.dll", "V1", FileFormat.PE, archs=("x64",)),
        entry("old/place/moved.dll", "M", FileFormat.PE, archs=("x64",)),
        entry("old/resigned.dll", "R1", FileFormat.PE, norm="RN", archs=("x64",)),
        entry("lib/unique.dll", "U1", FileFormat.PE, archs=("x64",)),
        entry("a/dup.dll", "D1", FileFormat.PE, archs=("x64",)),
        entry("b/dup.dll", "D2", FileFormat.PE, archs=("x64",)),
        entry("lib/arm.dll", "A1", FileFormat.PE, archs=("arm64",)),
        entry("docs/readme.txt", "T1"),
    )
    shipped = inv(
        entry("same.dll", "S", FileFormat.PE, archs=("x64",)),
        entry("pkg-2.0.data/data/v.dll", "V2", FileFormat.PE, archs=("x64",)),
        entry("new/moved-renamed.dll", "M", FileFormat.PE, archs=("x64",)),
        entry("new/resigned.dll", "R2", FileFormat.PE, norm="RN", archs=("x64",)),
        entry("bin/unique.dll", "U2", FileFormat.PE, archs=("x64",)),
        entry("c/dup.dll", "D3", FileFormat.PE, archs=("x64",)),
        entry("bin/arm.dll", "A2", FileFormat.PE, archs=("x64",)),  # other arch: no pair
        entry("other/readme.txt", "T2"),  # data files pair by path, version or content only
        entry("own/same.dll", "S", FileFormat.PE, archs=("x64",)),  # the app's own: by path only
    )
    got = by_path(compare(shipped, [upstream], never_own).results)
    paired = {p: (r.paired_by, r.reference.path if r.reference else None) for p, r in got.items()}
    assert paired["same.dll"] == ("path", "same.dll")
    assert paired["pkg-2.0.data/data/v.dll"] == ("versioned-path", "pkg-1.0.data/data/v.dll")
    assert paired["new/moved-renamed.dll"] == ("content", "old/place/moved.dll")
    assert paired["new/resigned.dll"] == ("content", "old/resigned.dll")
    assert paired["bin/unique.dll"] == ("name", "lib/unique.dll")
    assert got["new/moved-renamed.dll"].status == Status.IDENTICAL
    assert got["new/resigned.dll"].status == Status.IDENTICAL_EXCEPT_SIGNATURE
    assert got["pkg-2.0.data/data/v.dll"].status == Status.DIVERGENT
    assert got["c/dup.dll"].status == Status.UNEXPECTED  # dup.dll is not unique upstream
    assert got["bin/arm.dll"].status == Status.UNEXPECTED
    assert got["other/readme.txt"].status == Status.UNEXPECTED
    assert got["own/same.dll"].status == Status.OWN and got["own/same.dll"].paired_by is None
    assert {p for p, r in got.items() if r.status == Status.MISSING} == {
        "a/dup.dll",
        "b/dup.dll",
        "lib/arm.dll",
        "docs/readme.txt",
    }
    # one to one: no reference file is used twice
    used = [r.reference.path for r in got.values() if r.shipped and r.reference]
    assert len(used) == len(set(used))
    d = got["bin/unique.dll"].to_dict()
    assert d["paired_by"] == "name" and d["upstream_path"] == "lib/unique.dll"


def test_content_pairing_prefers_the_same_name_and_skips_empty_files() -> None:
    upstream = ref(
        entry("x/a.dll", "SAME", FileFormat.PE),
        entry("y/b.dll", "SAME", FileFormat.PE),
        entry("x/__init__.py", "EMPTY", size=0),
    )
    shipped = inv(entry("z/b.dll", "SAME", FileFormat.PE), entry("z/__init__.py", "EMPTY", size=0))
    got = by_path(compare(shipped, [upstream], never_own).results)
    assert got["z/b.dll"].reference is not None and got["z/b.dll"].reference.path == "y/b.dll"
    assert got["z/__init__.py"].status == Status.UNEXPECTED


def test_a_single_file_pairs_by_content_with_a_renamed_reference() -> None:
    upstream = ref(entry("node.exe", "N", FileFormat.PE, norm="NN", archs=("x64",)))
    shipped = inv(entry("renamed.exe", "N2", FileFormat.PE, norm="NN", archs=("x64",)))
    (r,) = compare(shipped, [upstream], never_own).results
    assert (r.status, r.paired_by) == (Status.IDENTICAL_EXCEPT_SIGNATURE, "content")


def test_wrong_reference_is_inconclusive_with_counts() -> None:
    upstream = ref(*(entry(f"r{i}.dll", f"R{i}", FileFormat.PE) for i in range(3)))
    shipped = inv(
        *(entry(f"s{i}.dll", f"S{i}", FileFormat.PE) for i in range(3)),
        entry("r0.dll", "R0", FileFormat.PE),
        entry("own/app.dll", "O", FileFormat.PE),
        entry("data.bin", "D"),
    )
    cmp = compare(shipped, [upstream], never_own)
    assert unexplained_code(cmp.results) == (3, 4)
    why = reference_misfit(cmp.results, [upstream])
    assert why is not None
    assert "3 of 4 shipped code files" in why and "own:" in why and "path:up" in why
    # half is not more than half
    shipped2 = inv(entry("s0.dll", "S0", FileFormat.PE), entry("r0.dll", "R0", FileFormat.PE))
    cmp2 = compare(shipped2, [upstream], never_own)
    assert reference_misfit(cmp2.results, [upstream]) is None
    # no reference files at all (a failed proof): another rule speaks
    assert reference_misfit(cmp.results, [ref()]) is None


# --- target choice --------------------------------------------------------------------------


def _pe(path: str, arch: str, size: int, **kw: object) -> FileEntry:
    return entry(path, path, FileFormat.PE, archs=(arch,), size=size, **kw)


def test_majority_of_code_bytes_beats_sorted_order() -> None:
    # 19 x64 PEs and one legacy 32-bit DLL: win32-ia32 sorts first but is not the build
    entries = [_pe(f"x{i}.dll", "x64", 200_000) for i in range(19)]
    entries.append(_pe("d3dcompiler_43.dll", "x86", 2_000_000))
    choice = target.choose(inv(*entries))
    assert choice.decided and choice.chosen() == (("win32", "x64"),)
    assert "majority of code bytes" in choice.reason
    d = choice.to_dict()
    assert d["chosen"] == ["win32-x64"]
    assert {c["target"] for c in d["candidates"]} == {"win32-x64", "win32-ia32"}
    # one big 32-bit DLL with more bytes than the small native ones does not outvote them:
    # both candidates remain, to be compared
    entries[-1] = _pe("d3dcompiler_43.dll", "x86", 9_000_000)
    assert not target.choose(inv(*entries)).decided


def test_main_executable_decides_before_bytes() -> None:
    main = _pe("MyApp.exe", "x86", 1000, markers={"electron_version": "Electron/28.1.0"})
    big = _pe("huge-x64.dll", "x64", 10_000_000)
    choice = target.choose(inv(main, big))
    assert choice.chosen() == (("win32", "ia32"),)
    assert "main executable" in choice.reason


def test_universal_main_names_both_macos_targets() -> None:
    slices = tuple(SliceFacts(a, 0, 5, "0" * 64, "0" * 64) for a in ("x86_64", "arm64"))
    fw = entry(
        "Electron Framework",
        "F",
        FileFormat.MACHO,
        archs=("x86_64", "arm64"),
        slices=slices,
    )
    choice = target.choose(inv(fw))
    assert choice.chosen() == (("darwin", "arm64"), ("darwin", "x64"))


def test_without_majority_candidates_remain_and_the_best_explanation_wins() -> None:
    a = _pe("a.dll", "x64", 100)
    b = _pe("b.dll", "x86", 100)
    shipped = inv(a, b)
    choice = target.choose(shipped)
    assert not choice.decided and len(choice.options) == 2
    good = ref(entry("a.dll", "a.dll", FileFormat.PE))
    worse = ref()
    scored = [
        (o, target.score(shipped, [r])) for o, r in zip(choice.options, [worse, good], strict=True)
    ]
    final = target.decide(choice, scored)
    assert final.chosen() == choice.options[1]
    assert "explains the most files (1)" in final.reason
    assert final.to_dict()["scores"] == {"win32-ia32": 0, "win32-x64": 1}

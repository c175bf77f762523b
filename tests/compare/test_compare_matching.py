"""Matching shipped files to references: app root, renamed main executable, statuses."""

from __future__ import annotations

import posixpath
import random

from verifier.compare import (
    CompareOptions,
    bundle_renames,
    compare,
    find_app_root,
    with_app_root,
)
from verifier.model import (
    BinaryFacts,
    Component,
    FileEntry,
    FileFormat,
    FuseWire,
    Inventory,
    Reference,
    SectionDigest,
    SignatureFacts,
    SignatureKind,
    Signer,
    Status,
)


def entry(path: str, sha: str, fmt: FileFormat = FileFormat.DATA, **facts: object) -> FileEntry:
    return FileEntry(path, path, (), 10, sha, BinaryFacts(format=fmt, **facts))  # type: ignore[arg-type]


def inv(*entries: FileEntry) -> Inventory:
    return Inventory("art", "0" * 64, 0, tuple(entries))


def ref(*entries: FileEntry, name: str = "electron") -> Reference:
    return Reference(Component(name, "1.0.0", f"path:{name}"), tuple(entries))


def never_own(path: str, e: FileEntry) -> bool:
    return path.startswith("resources/app.asar")


def by_path(results: tuple) -> dict:  # type: ignore[type-arg]
    return {r.path: r for r in results}


def test_app_root_is_the_folder_holding_most_reference_paths() -> None:
    shipped = inv(
        entry("setup/app/ffmpeg.dll", "a"),
        entry("setup/app/locales/en-US.pak", "b"),
        entry("setup/ffmpeg.dll", "zz"),  # a decoy one level up
    )
    assert find_app_root(["ffmpeg.dll", "locales/en-US.pak"], shipped) == "setup/app"


def _root_by_name(ref_paths: list[str], shipped: Inventory) -> str:
    """find_app_root as first written: every reference file of the shipped file's name."""
    by_name: dict[str, list[str]] = {}
    for p in ref_paths:
        by_name.setdefault(p.rpartition("/")[2], []).append(p)
    votes: dict[str, set[str]] = {}
    for e in shipped.entries:
        for r in by_name.get(e.path.rpartition("/")[2], ()):
            if e.path == r:
                votes.setdefault("", set()).add(r)
            elif e.path.endswith("/" + r):
                votes.setdefault(e.path[: -len(r) - 1], set()).add(r)
    return min(votes, key=lambda k: (-len(votes[k]), len(k), k)) if votes else ""


def test_app_root_is_found_by_folder_level_as_by_name() -> None:
    """Names repeated in many folders (``__init__.py``), roots at several depths, a tie, a
    reference path that is also a shipped folder's tail: the same root as comparing names."""
    refs = ["__init__.py", "a/__init__.py", "a/b/__init__.py", "a/b/c.py", "x/y/z.dat", "c.py"]
    trees = [
        ["pkg/__init__.py", "pkg/a/__init__.py", "pkg/a/b/__init__.py", "pkg/a/b/c.py"],
        ["__init__.py", "a/__init__.py", "deep/x/y/z.dat", "other/x/y/z.dat", "c.py"],
        ["p/q/__init__.py", "p/q/a/b/c.py", "p/__init__.py", "p/a/b/c.py", "p/c.py"],
        ["only/data.bin"],
        ["x/y/z.dat", "1/x/y/z.dat"],
    ]
    roots = []
    for paths in trees:
        shipped = inv(*(entry(p, "1") for p in paths))
        roots.append(find_app_root(refs, shipped))
        assert roots[-1] == _root_by_name(refs, shipped), paths
    assert roots == ["pkg", "", "p", "", ""]


def test_app_root_shortcuts_agree_with_comparing_names() -> None:
    """Every reference path at the root (with deeper copies that tie or fall short), and
    shipped files no reference file shares a name with: the same root as comparing names,
    over random trees."""
    rng = random.Random(11)
    folders = ["", "a", "a/b", "app", "app/a", "x/app", "Contents/Frameworks"]
    names = ["f.dll", "g.pak", "h.bin", "__init__.py", "own.exe", "data.json"]
    for _ in range(400):
        refs = sorted(
            {posixpath.join(rng.choice(folders[:4]), rng.choice(names[:4])) for _ in range(5)}
        )
        paths = {posixpath.join(rng.choice(folders), rng.choice(names)) for _ in range(12)}
        if rng.random() < 0.4:  # the whole reference at the root, and maybe under a folder
            paths |= set(refs)
            if rng.random() < 0.5:
                paths |= {f"{rng.choice(folders[1:])}/{r}" for r in refs}
        shipped = inv(*(entry(p, "1") for p in sorted(paths)))
        assert find_app_root(refs, shipped) == _root_by_name(refs, shipped), (refs, paths)
    assert find_app_root([], inv(entry("a/b.dll", "1"))) == ""
    assert find_app_root(["b.dll"], inv(entry("b.dll", "1"), entry("x/b.dll", "2"))) == ""


def test_statuses_identical_divergent_missing_unexpected_own() -> None:
    upstream = ref(entry("a.dat", "1"), entry("b.dat", "2"), entry("gone.dat", "3"))
    shipped = inv(
        entry("a.dat", "1"),
        entry("b.dat", "X"),
        entry("extra.dll", "4", FileFormat.PE),
        entry("resources/app.asar", "5", FileFormat.ASAR),
    )
    got = by_path(compare(shipped, [upstream], never_own).results)
    assert got["a.dat"].status == Status.IDENTICAL
    assert got["b.dat"].status == Status.DIVERGENT
    assert got["b.dat"].evidence["expected_sha256"] == "2"
    assert got["b.dat"].evidence["actual_sha256"] == "X"
    assert got["gone.dat"].status == Status.MISSING
    assert got["extra.dll"].status == Status.UNEXPECTED
    assert got["resources/app.asar"].status == Status.OWN


def test_paths_are_relative_to_the_detected_root() -> None:
    upstream = ref(entry("x.dat", "1"), entry("y.dat", "2"))
    shipped = inv(entry("pkg/x.dat", "1"), entry("pkg/y.dat", "2"), entry("README", "9"))
    cmp = compare(shipped, [upstream], never_own)
    assert cmp.app_root == "pkg"
    got = by_path(cmp.results)
    assert got["x.dat"].status == Status.IDENTICAL
    assert got["../README"].status == Status.UNEXPECTED


def test_the_root_found_once_is_the_root_compare_finds() -> None:
    """``with_app_root`` (the root found once for both path mappings) gives what ``compare``
    finds itself, the same comparison, and keeps a root the user named (even '')."""
    upstream = ref(entry("x.dat", "1"), entry("sub/y.dat", "2"))
    shipped = inv(entry("a/pkg/x.dat", "1"), entry("a/pkg/sub/y.dat", "3"), entry("a/x.dat", "1"))
    opts = with_app_root(shipped, [upstream])
    assert opts.app_root == "a/pkg"
    assert compare(shipped, [upstream], never_own, opts) == compare(shipped, [upstream], never_own)
    assert with_app_root(shipped, [upstream], CompareOptions(app_root="")).app_root == ""
    named = CompareOptions(main_exe="m.exe", app_root="a")
    assert with_app_root(shipped, [upstream], named) is named


def test_renamed_main_executable_found_by_its_electron_markers() -> None:
    fuses = FuseWire(100, 1, "1101")
    sec = (SectionDigest(".text", 10, "t", True),)
    upstream = ref(
        entry("electron.exe", "E", FileFormat.PE, fuses=fuses, sections=sec),
        entry("ffmpeg.dll", "F", FileFormat.PE),
    )
    shipped = inv(
        entry("Other.exe", "O", FileFormat.PE),  # no markers, no shared code
        entry("3CXDesktopApp.exe", "V", FileFormat.PE, fuses=fuses, sections=sec),
        entry("ffmpeg.dll", "F", FileFormat.PE),
    )
    cmp = compare(shipped, [upstream], never_own)
    got = by_path(cmp.results)
    assert "electron.exe" not in got
    assert got["3CXDesktopApp.exe"].reference is not None
    assert got["3CXDesktopApp.exe"].evidence["renamed_from"] == "electron.exe"
    assert got["Other.exe"].status == Status.UNEXPECTED
    assert cmp.renames == {"electron.exe": "3CXDesktopApp.exe"}


def test_main_executable_override_flag() -> None:
    upstream = ref(entry("electron.exe", "E", FileFormat.PE))
    shipped = inv(entry("A.exe", "1", FileFormat.PE), entry("B.exe", "2", FileFormat.PE))
    got = by_path(compare(shipped, [upstream], never_own, CompareOptions(main_exe="B.exe")).results)
    assert got["B.exe"].evidence["renamed_from"] == "electron.exe"
    assert got["A.exe"].status == Status.UNEXPECTED


def test_unrelated_executable_is_not_taken_for_the_main_one() -> None:
    upstream = ref(entry("electron.exe", "E", FileFormat.PE))
    shipped = inv(entry("Setup.exe", "1", FileFormat.PE))
    got = by_path(compare(shipped, [upstream], never_own).results)
    assert got["electron.exe"].status == Status.MISSING
    assert got["Setup.exe"].status == Status.UNEXPECTED


def test_macos_bundle_rename_maps_framework_helpers_and_main_binary() -> None:
    shipped = inv(
        entry("Acme.app/Contents/Frameworks/Electron Framework.framework/Versions/A/x", "1"),
    )
    ren = bundle_renames(
        [
            "Electron.app/Contents/MacOS/Electron",
            "Electron.app/Contents/Frameworks/Electron Helper.app/Contents/MacOS/Electron Helper",
            "Electron.app/Contents/Frameworks/Electron Framework.framework/Versions/A/x",
        ],
        shipped,
    )
    assert ren["Electron.app/Contents/MacOS/Electron"] == "Acme.app/Contents/MacOS/Acme"
    assert (
        ren["Electron.app/Contents/Frameworks/Electron Helper.app/Contents/MacOS/Electron Helper"]
        == "Acme.app/Contents/Frameworks/Acme Helper.app/Contents/MacOS/Acme Helper"
    )


def test_best_of_two_references_wins_and_is_named() -> None:
    main = ref(entry("ffmpeg.dll", "PROPRIETARY"), name="electron")
    alt = ref(entry("ffmpeg.dll", "FREE"), name="electron-ffmpeg")
    shipped = inv(entry("ffmpeg.dll", "FREE"))
    r = by_path(compare(shipped, [main, alt], never_own).results)["ffmpeg.dll"]
    assert r.status == Status.IDENTICAL
    assert r.component == "electron-ffmpeg"
    assert r.evidence["matched_reference"] == "electron-ffmpeg"


def test_pe_resigned_with_same_code_is_identical_except_signature() -> None:
    signer = Signer("CN=Vendor", "CN=Vendor CA", "01", "ab" * 32)
    sig = SignatureFacts(SignatureKind.AUTHENTICODE, True, None, (signer,))
    upstream = ref(entry("libEGL.dll", "U", FileFormat.PE, normalized_sha256="N"))
    shipped = inv(entry("libEGL.dll", "S", FileFormat.PE, normalized_sha256="N", signature=sig))
    r = by_path(compare(shipped, [upstream], never_own).results)["libEGL.dll"]
    assert r.status == Status.IDENTICAL_EXCEPT_SIGNATURE
    assert r.evidence["signer_actual"] == "CN=Vendor"
    assert r.evidence["signer_expected"] is None


def test_shipped_artifact_is_the_bundle_and_reference_is_the_folder_holding_it() -> None:
    shipped = Inventory(
        "/dist/Acme.app",
        "0" * 64,
        0,
        (entry("Contents/Frameworks/Electron Framework.framework/Versions/A/x", "1"),),
    )
    ren = bundle_renames(
        [
            "Electron.app/Contents/MacOS/Electron",
            "Electron.app/Contents/Frameworks/Electron Framework.framework/Versions/A/x",
        ],
        shipped,
    )
    assert ren == {
        "Electron.app/Contents/MacOS/Electron": "Contents/MacOS/Acme",
        "Electron.app/Contents/Frameworks/Electron Framework.framework/Versions/A/x": (
            "Contents/Frameworks/Electron Framework.framework/Versions/A/x"
        ),
    }


def test_reference_is_the_bundle_itself_main_binary_found_in_its_folder() -> None:
    sec = (SectionDigest("__TEXT,__text", 10, "t", True),)
    upstream = ref(
        entry("Contents/MacOS/Electron", "E", FileFormat.MACHO, sections=sec),
        entry("Contents/Frameworks/Electron Framework.framework/Versions/A/x", "1"),
    )
    shipped = Inventory(
        "/dist/Whatever",  # no product name to go by: the binary is found by its code
        "0" * 64,
        0,
        (
            entry("Contents/MacOS/Acme", "A", FileFormat.MACHO, sections=sec),
            entry("Contents/Frameworks/Electron Framework.framework/Versions/A/x", "1"),
        ),
    )
    cmp = compare(shipped, [upstream], never_own)
    got = by_path(cmp.results)
    assert cmp.app_root == ""
    assert "Contents/MacOS/Electron" not in got
    assert got["Contents/MacOS/Acme"].evidence["renamed_from"] == "Contents/MacOS/Electron"

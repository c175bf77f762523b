"""``biv.refs/v1`` read back strictly (``Reference.from_dict``, ``verifier.jsonread``).

What ``to_dict`` writes reads back to the same document; anything else (a wrong type, a
missing key, an unknown key or enum value) is one ``SchemaError`` naming the key path, never
a default or a coercion (``"false"`` is not false, ``"12"`` is not 12). A ``path:`` source
that is such a document exits 2 with that message.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.cli import biv

from verifier._scenarios.scenario import Scenario
from verifier.analysis import AnalysisContext
from verifier.errors import ArtifactError, SchemaError, UsageError
from verifier.inventory import build as build_inventory
from verifier.inventory import build_reference, unpack_reference
from verifier.model import (
    Anomaly,
    BinaryFacts,
    Component,
    FileEntry,
    FileFormat,
    Inventory,
    Reference,
    SigstoreIdentity,
)
from verifier.npmdeps.tarball import Published, TarDigests
from verifier.unpack import unpack
from verifier.upstream.ahead import UnpackAhead
from verifier.upstream.path import resolve_path
from verifier.upstream.refs_document import load_refs_document
from verifier.upstream.resolve import unpack_ahead
from verifier.upstream.tuf_publish import load_reference_file

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def win_doc(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Doc:
    comp = Component("electron", "30.0.0", f"path:{scenario.upstream}", "win32", "x64")
    work = tmp_path_factory.mktemp("refs-win")
    ref = build_reference(comp, scenario.upstream, str(work), AnalysisContext())
    return ref.to_dict()


@pytest.fixture(scope="module")
def mac_doc(mac_scenario: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Doc:
    comp = Component("electron", "30.0.0", "path:upstream-x64", "darwin", "x64")
    work = tmp_path_factory.mktemp("refs-mac")
    ref = build_reference(comp, str(mac_scenario["upstream-x64"]), str(work), AnalysisContext())
    return ref.to_dict()


def _index(doc: Doc, pred: Callable[[Doc], bool]) -> int:
    return next(i for i, f in enumerate(doc["files"]) if pred(f))


def _signed_pe(doc: Doc) -> int:
    return _index(doc, lambda f: f["format"] == "pe" and f["signature"]["signed"])


def _macho(doc: Doc) -> int:
    return _index(doc, lambda f: f["format"] == "macho" and f["slices"])


def test_what_biv_writes_reads_back_unchanged(win_doc: Doc, mac_doc: Doc) -> None:
    for doc in (win_doc, mac_doc):
        assert doc["files"]
        back = Reference.from_dict(json.loads(json.dumps(doc)))
        assert back.to_dict() == doc
    # the documents exercise what the checks below break: signatures, sections, slices
    assert win_doc["files"][_signed_pe(win_doc)]["sections"]
    assert mac_doc["files"][_macho(mac_doc)]["slices"][0]["signature"]["signed"]


def _set(path: tuple[str | int, ...], value: object) -> Callable[[Doc], str]:
    def change(doc: Doc) -> str:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return ""

    return change


def _drop(path: tuple[str | int, ...]) -> Callable[[Doc], str]:
    def change(doc: Doc) -> str:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return ""

    return change


# case -> (which document, change, where the error points, what it says)
CASES: dict[str, tuple[str, Callable[[Doc], str], str, str]] = {
    "size as a string": ("win", _set(("files", 0, "size"), "12"), "files[0].size", "integer"),
    "size as a boolean": ("win", _set(("files", 0, "size"), True), "files[0].size", "integer"),
    "size as a float": ("win", _set(("files", 0, "size"), 12.0), "files[0].size", "integer"),
    "negative size": ("win", _set(("files", 0, "size"), -1), "files[0].size", "non-negative"),
    "digest not hex": ("win", _set(("files", 0, "sha256"), "abc"), "files[0].sha256", "sha256"),
    "unknown format": ("win", _set(("files", 0, "format"), "exe"), "files[0].format", "one of"),
    "missing path": ("win", _drop(("files", 0, "path")), "files[0]", "missing required key"),
    "missing format": ("win", _drop(("files", 0, "format")), "files[0]", "'format'"),
    "misspelt key": (
        "win",
        _set(("files", 0, "normalised_sha256"), "0" * 64),
        "files[0].normalised_sha256",
        "unknown key",
    ),
    "files not a list": ("win", _set(("files",), {}), "files", "expected a list"),
    "missing files": ("win", _drop(("files",)), "", "missing required key 'files'"),
    "missing component": ("win", _drop(("component",)), "", "missing required key 'component'"),
    "component name a number": (
        "win",
        _set(("component", "name"), 7),
        "component.name",
        "expected a string",
    ),
    "component digests a list": (
        "win",
        _set(("component", "digests"), ["x"]),
        "component.digests",
        "expected an object",
    ),
    "other schema": ("win", _set(("schema",), "biv.refs/v2"), "schema", "not a biv.refs/v1"),
    "unknown link kind": (
        "win",
        _set(("links",), [{"path": "a", "target": "b", "kind": "junction"}]),
        "links[0].kind",
        "symlink, hardlink",
    ),
    "link without target": ("win", _set(("links",), [{"path": "a"}]), "links[0]", "'target'"),
}


def _signed_as_text(doc: Doc) -> str:
    i = _signed_pe(doc)
    doc["files"][i]["signature"]["signed"] = "false"
    return f"files[{i}].signature.signed"


def _unknown_signature_kind(doc: Doc) -> str:
    i = _signed_pe(doc)
    doc["files"][i]["signature"]["kind"] = "pgp"
    return f"files[{i}].signature.kind"


def _section_size_text(doc: Doc) -> str:
    i = _signed_pe(doc)
    doc["files"][i]["sections"][0]["size"] = "4096"
    return f"files[{i}].sections[0].size"


def _slice_arch_number(doc: Doc) -> str:
    i = _macho(doc)
    doc["files"][i]["slices"][0]["arch"] = 64
    return f"files[{i}].slices[0].arch"


def _slice_signer_thumbprint(doc: Doc) -> str:
    i = _macho(doc)
    doc["files"][i]["slices"][0]["signature"]["signers"][0]["sha256"] = None
    return f"files[{i}].slices[0].signature.signers[0].sha256"


def _anomaly_without_rule(doc: Doc) -> str:
    doc["anomalies"] = [{"message": "m", "arch": None, "region_sha256": None}]
    return "anomalies[0]"


# the same, where the path depends on the document
LOCATED: dict[str, tuple[str, Callable[[Doc], str], str]] = {
    "signed as a string": ("win", _signed_as_text, "expected true or false"),
    "unknown signature kind": ("win", _unknown_signature_kind, "authenticode"),
    "section size as a string": ("win", _section_size_text, "integer"),
    "slice arch a number": ("mac", _slice_arch_number, "expected a string"),
    "signer thumbprint null": ("mac", _slice_signer_thumbprint, "expected a string"),
    "anomaly without rule": ("win", _anomaly_without_rule, "missing required key 'rule'"),
}


def _broken(base: Doc, change: Callable[[Doc], str]) -> tuple[Doc, str]:
    doc = copy.deepcopy(base)
    where = change(doc)
    return doc, where


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_document_is_one_clear_error(win_doc: Doc, mac_doc: Doc, case: str) -> None:
    which, change, where, words = CASES[case]
    doc, _ = _broken(win_doc if which == "win" else mac_doc, change)
    with pytest.raises(SchemaError) as err:
        Reference.from_dict(doc)
    assert (err.value.where or "") == where
    assert words in err.value.message


@pytest.mark.parametrize("case", sorted(LOCATED))
def test_a_malformed_nested_value_is_named_by_its_path(
    win_doc: Doc, mac_doc: Doc, case: str
) -> None:
    which, change, words = LOCATED[case]
    doc, where = _broken(win_doc if which == "win" else mac_doc, change)
    with pytest.raises(SchemaError) as err:
        Reference.from_dict(doc)
    assert err.value.where == where
    assert words in err.value.message


@pytest.mark.parametrize("value", [None, [], "biv.refs/v1", 3])
def test_a_document_that_is_no_object_is_refused(value: object) -> None:
    with pytest.raises(SchemaError, match="expected an object"):
        Reference.from_dict(value)


def test_a_path_source_that_is_a_malformed_document_exits_2(
    scenario: Scenario, win_doc: Doc, tmp_path: Path
) -> None:
    cases = {
        "text-size.json": json.dumps(_broken(win_doc, CASES["size as a string"][1])[0]),
        "signed-text.json": json.dumps(_broken(win_doc, _signed_as_text)[0]),
        "truncated.json": json.dumps(win_doc)[:200],
        "deep.json": '{"files": ' + "[" * 100_000,
    }
    expected = {
        "text-size.json": "files[0].size: expected a non-negative integer, got the string '12'",
        "signed-text.json": ".signature.signed: expected true or false, got the string 'false'",
        "truncated.json": "not a valid biv.refs/v1 document",
        "deep.json": "not a valid biv.refs/v1 document",
    }
    for name, text in cases.items():
        doc = tmp_path / name
        doc.write_text(text)
        r = biv("verify", scenario.clean, "--against", f"path:{doc}", "--format", "json")
        assert r.returncode == 2, (name, r.stdout[-500:], r.stderr)
        assert r.stdout == ""
        line = r.stderr.strip()
        assert line.startswith(f"biv: error: path:{doc}: not a valid biv.refs/v1 document")
        assert expected[name] in line and "Traceback" not in r.stderr, line


def test_a_path_source_reads_the_document_as_from_dict_does(mac_doc: Doc, tmp_path: Path) -> None:
    """``path:REFS.json`` turns files into entries while it parses (memory): the same
    Reference as ``from_dict``, the release's anomalies included."""
    doc = copy.deepcopy(mac_doc)
    doc["anomalies"] = [
        {
            "rule": "bundle-seal-broken",
            "arch": None,
            "region_sha256": None,
            "message": "m",
            "path": "Electron.app/Contents/MacOS/Electron",
            "bundle": "Electron.app",
        }
    ]
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(doc))
    got = load_refs_document(f"path:{path}", str(path))
    want = Reference.from_dict(doc)
    assert got.files == want.files and got.anomalies == want.anomalies
    assert len(got.anomalies) == 1 and got.anomalies[0].evidence["bundle"] == "Electron.app"


def test_refs_publish_input_names_the_key(win_doc: Doc, tmp_path: Path) -> None:
    doc, where = _broken(win_doc, _section_size_text)
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UsageError) as err:
        load_reference_file(path)
    assert err.value.where == str(path)
    assert f"{where}: expected a non-negative integer" in err.value.message


# --- the npm stage's cached documents -------------------------------------------------------


def _published() -> Published:
    facts = BinaryFacts(format=FileFormat.DATA, normalized_sha256="a" * 64)
    data = FileEntry("index.js", "x!/index.js", (), 10, "a" * 64, facts)
    return Published({"index.js": data}, {"name": "x", "version": "1.0.0"}, notes=("n",))


def test_cached_npm_documents_read_back_and_refuse_the_rest() -> None:
    doc = json.loads(json.dumps(_published().to_doc()))
    assert Published.from_doc(doc, "x").to_doc() == doc
    doc["data"][0][1] = "10"
    with pytest.raises(SchemaError) as err:
        Published.from_doc(doc, "x")
    assert err.value.where == "data[0][1]"
    digests = {"sha1": "b" * 40, "sha256": "c" * 64, "sha384": "d" * 96, "sha512": "e" * 128}
    assert TarDigests.from_dict({**digests, "size": 3}) == TarDigests(**digests, size=3)
    for bad in ({**digests, "size": "3"}, {**digests}, {**digests, "size": 3, "md5": "f"}):
        with pytest.raises(SchemaError):
            TarDigests.from_dict(bad)


def _data_file(doc: Doc) -> Doc:
    d = copy.deepcopy(doc["files"][_index(doc, lambda f: f["format"] == "data")])
    d["normalized_sha256"] = d["sha256"]  # one string, as the path source's reader makes it
    return d


def test_a_plain_data_file_is_read_as_the_strict_reader_reads_it(win_doc: Doc) -> None:
    d = _data_file(win_doc)
    got = FileEntry.read_plain(d)
    assert got is not None and got == FileEntry.from_ref_dict(d)
    assert got.facts == BinaryFacts(format=FileFormat.DATA, normalized_sha256=d["sha256"])


PLAIN_CHANGES: dict[str, tuple[str, object, str | None]] = {
    # key, value, what the strict reader then says (None: it reads the value)
    "signed as 0": ("signature.signed", 0, "expected true or false"),
    "size true": ("size", True, "expected a non-negative integer"),
    "size negative": ("size", -1, "expected a non-negative integer"),
    "sha256 not hex": ("sha256", "z" * 64, "expected a sha256"),
    "sha256 in capitals": ("sha256", "AB" * 32, None),
    "a marker": ("markers", {"electron": "Electron/30.0.0"}, None),
    "entry point 0": ("shape.entry_point", 0, None),
}


@pytest.mark.parametrize("case", sorted(PLAIN_CHANGES))
def test_anything_but_a_plain_data_file_is_read_strictly(win_doc: Doc, case: str) -> None:
    """The short cut takes nothing it does not fully check: every other value goes to the
    strict reader, which reads it or names what is wrong, exactly as before."""
    key, value, words = PLAIN_CHANGES[case]
    d = _data_file(win_doc)
    *outer, last = key.split(".")
    target = d
    for k in outer:
        target = target[k]
    target[last] = value
    if key == "sha256":
        d["normalized_sha256"] = value
    assert FileEntry.read_plain(d) is None
    if words is None:
        assert FileEntry.from_ref_dict(d).to_ref_dict()[outer[0] if outer else last] is not None
        return
    with pytest.raises(SchemaError) as err:
        FileEntry.from_ref_dict(d)
    assert words in err.value.message and err.value.where == key


def test_a_reference_unpacked_ahead_is_the_reference_unpacked_then(
    scenario: Scenario, tmp_path: Path, mac_doc: Doc
) -> None:
    """``verify`` unpacks ``path:`` references while worker processes analyse the artifact:
    the same members; a reference that cannot be read fails as it did; inventories,
    missing paths and sources with options are left to be resolved as before."""
    refs_doc = tmp_path / "refs.json"
    refs_doc.write_text(json.dumps(mac_doc))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not a zip at all" * 10)
    work = tmp_path / "refs"
    sources = [
        f"path:{scenario.upstream}",
        f"path:{bad}",
        f"path:{refs_doc}",
        f"path:{tmp_path / 'missing'}",
        f"path:{scenario.upstream},sigstore-identity=x@example.com",
    ]
    declared = f"path:{scenario.upstream}/"  # the same folder, named another way
    sources.append(declared)  # a policy declares a Sigstore identity for it
    ident = SigstoreIdentity(identity="x@example.com", issuer="https://issuer.example")
    ahead = unpack_ahead(sources, str(work), lambda s: ident if s == declared else None)
    ahead.run()
    got = ahead.take(sources[0], str(scenario.upstream))
    want = unpack_reference(str(scenario.upstream), str(tmp_path / "direct"))
    assert got is not None
    assert [(m.path, m.sha256) for m in got.members] == [(m.path, m.sha256) for m in want.members]
    with pytest.raises(ArtifactError):
        ahead.take(sources[1], str(bad))
    for s, loc in ((sources[2], refs_doc), (sources[3], tmp_path / "missing")):
        assert ahead.take(s, str(loc)) is None
    assert ahead.take(sources[4], str(scenario.upstream)) is None  # not taken twice either
    # its bundle is checked before anything of it is read
    assert ahead.take(declared, f"{scenario.upstream}/") is None
    assert len(list(work.iterdir())) == 2  # the folder and the bad zip only
    r = biv("verify", scenario.clean, "--against", f"path:{bad}", "--format", "json")
    assert r.returncode == 2 and "upstream reference cannot be read" in r.stderr, r.stderr


def test_files_identical_to_the_shipped_ones_share_their_objects(
    scenario: Scenario, tmp_path: Path, win_doc: Doc
) -> None:
    """A reference inventory read with the artifact's inventory: the same Reference, but a
    file equal to the shipped file at its path (a data file read fast, or a signed PE read
    strictly) holds the shipped entry's path, digest and facts; a changed file does not;
    a hostile ``path`` is still the schema error it was."""
    shipped_dir = tmp_path / "shipped"
    shutil.copytree(scenario.upstream, shipped_dir)
    doc_path = tmp_path / "refs.json"
    doc_path.write_text(json.dumps(win_doc))
    data = next(f["path"] for f in win_doc["files"] if f["format"] == "data")
    (shipped_dir / data).write_bytes((shipped_dir / data).read_bytes() + b"\n")
    ctx = AnalysisContext()  # full facts, as the document has them
    inv = build_inventory(unpack(str(shipped_dir), str(tmp_path / "work")), ctx)
    alone = load_refs_document("path:refs.json", str(doc_path))
    shared = load_refs_document("path:refs.json", str(doc_path), inv)
    assert shared == alone
    by_path = {e.path: e for e in inv.entries}
    kinds: dict[str, int] = {}
    for f in shared.files:
        s = by_path[f.path]
        same = (s.sha256, s.size, s.facts) == (f.sha256, f.size, f.facts)
        assert (f.facts is s.facts and f.path is s.path and f.sha256 is s.sha256) == same
        assert f.location == f.path and f.blob is None
        if same:
            kinds[f.format.value] = kinds.get(f.format.value, 0) + 1
    assert kinds.get("data", 0) >= 1 and kinds.get("pe", 0) >= 1, kinds
    assert next(f for f in shared.files if f.path == data).facts is not by_path[data].facts
    hostile = json.loads(json.dumps(win_doc))
    hostile["files"][0]["path"] = ["not", "a", "string"]
    doc_path.write_text(json.dumps(hostile))
    with pytest.raises(UsageError) as err:
        load_refs_document("path:refs.json", str(doc_path), inv)
    assert "files[0].path" in err.value.message


@pytest.mark.parametrize(
    "change",
    [
        {"anomalies": (Anomaly("name-collision", "x", {}),)},
        {"markers": {"electron": "Electron/28.1.0"}},
        {"archs": ("x86_64",)},
        {"normalized_sha256": "0" * 64},
        {"format": FileFormat.ASAR},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_shipped_data_file_with_more_facts_is_not_shared(change: dict[str, Any]) -> None:
    """Only a shipped file whose facts are exactly a plain data file's lends them to the
    reference entry: any other fact (of any field, compared generically) keeps them apart."""
    sha = "ab" * 32
    d = {
        **FileEntry(
            "a/b.txt", "a/b.txt", (), 3, sha, BinaryFacts(normalized_sha256=sha)
        ).to_ref_dict()
    }
    d["normalized_sha256"] = d["sha256"]
    plain = BinaryFacts(FileFormat.DATA, normalized_sha256=sha)
    like = FileEntry("a/b.txt", "a/b.txt", (), 3, sha, plain)
    assert FileEntry.read_plain(dict(d), like=like).facts is plain  # type: ignore[union-attr]
    other = FileEntry("a/b.txt", "a/b.txt", (), 3, sha, dataclasses.replace(plain, **change))
    got = FileEntry.read_plain(dict(d), like=other)
    assert got is not None and got.facts is not other.facts and got.facts == plain


@pytest.fixture()
def shipped_and_doc(
    scenario: Scenario, tmp_path: Path, win_doc: Doc
) -> tuple[Inventory, Path, str]:
    shipped_dir = tmp_path / "shipped"
    shutil.copytree(scenario.upstream, shipped_dir)
    doc_path = tmp_path / "refs.json"
    doc_path.write_text(json.dumps(win_doc))
    inv = build_inventory(unpack(str(shipped_dir), str(tmp_path / "work")), AnalysisContext())
    return inv, doc_path, f"path:{doc_path}"


def test_a_reference_inventory_parsed_ahead_is_the_one_read_then(
    shipped_and_doc: tuple[Inventory, Path, str], tmp_path: Path
) -> None:
    """``verify`` parses a ``path:REFS.json`` in a forked child while it unpacks the
    artifact: the same Reference as reading it then, sharing the shipped entries' objects."""
    inv, doc_path, source = shipped_and_doc
    ahead = UnpackAhead([(source, str(doc_path))], str(tmp_path / "refs"))
    ahead.start()
    got = ahead.take_document(source, str(doc_path), inv)
    want = load_refs_document(source, str(doc_path), inv)
    assert got is not None  # a child parsed it
    assert got == want
    by_path = {e.path: e for e in inv.entries}
    for f, w in zip(got.files, want.files, strict=True):  # shared exactly where biv shares
        assert (f.facts is by_path[f.path].facts) == (w.facts is by_path[w.path].facts)
    assert any(f.facts is by_path[f.path].facts for f in got.files)
    assert ahead.take_document(source, str(doc_path), inv) is None  # taken once


def test_a_child_killed_or_failing_leaves_the_document_to_biv(
    shipped_and_doc: tuple[Inventory, Path, str],
    tmp_path: Path,
    win_doc: Doc,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The child is killed (as the OOM killer would) or finds the document malformed: biv
    reads it itself, with the same result or the same error naming the key."""
    inv, doc_path, source = shipped_and_doc

    def stalls(*_args: object) -> None:  # the child stalls, so the kill lands before its end
        time.sleep(120)

    # (a child that ended before the kill gives its result, which is right but not tested here)
    monkeypatch.setattr("verifier.upstream.ahead.load_refs_document", stalls)
    ahead = UnpackAhead([(source, str(doc_path))], str(tmp_path / "refs"))
    ahead.start()
    monkeypatch.undo()  # biv itself reads the document for real
    [(pid, _fd)] = ahead._children.values()
    os.kill(pid, signal.SIGKILL)
    assert ahead.take_document(source, str(doc_path), inv) is None
    ref = resolve_path(source, str(doc_path), str(tmp_path), AnalysisContext(), ahead, inv)
    assert ref == load_refs_document(source, str(doc_path), inv)

    bad = copy.deepcopy(win_doc)
    bad["files"][0]["size"] = "12"
    doc_path.write_text(json.dumps(bad))
    ahead = UnpackAhead([(source, str(doc_path))], str(tmp_path / "refs"))
    ahead.start()
    assert ahead._children  # forked
    with pytest.raises(UsageError) as err:
        resolve_path(source, str(doc_path), str(tmp_path), AnalysisContext(), ahead, inv)
    assert "files[0].size" in err.value.message
    assert not ahead._children


def test_a_child_nobody_waits_for_is_stopped_and_reaped(
    shipped_and_doc: tuple[Inventory, Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``verify`` failing before the references (a bad artifact) closes the read-ahead: the
    child is killed and reaped, no zombie left; with ``BIV_ANALYSIS_PROCESSES=0`` nothing is
    forked."""
    _inv, doc_path, source = shipped_and_doc
    ahead = UnpackAhead([(source, str(doc_path))], str(tmp_path / "refs"))
    ahead.start()
    [(pid, _fd)] = ahead._children.values()
    ahead.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped already
    monkeypatch.setenv("BIV_ANALYSIS_PROCESSES", "0")
    ahead = UnpackAhead([(source, str(doc_path))], str(tmp_path / "refs"))
    ahead.start()
    assert not ahead._children

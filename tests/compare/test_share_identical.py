"""Memory at scale (README "Scale"): a reference file equal to the shipped file at its path
holds the shipped entry's objects instead of copies (``inventory.share_identical``); the
comparison it gives is the same, and a file that differs in anything keeps its own."""

from __future__ import annotations

from verifier.compare import compare
from verifier.inventory import share_identical
from verifier.model import (
    BinaryFacts,
    Component,
    FileEntry,
    FileFormat,
    Inventory,
    Reference,
    Status,
)


def _entry(path: str, sha: str, size: int = 1000, fmt: FileFormat = FileFormat.DATA) -> FileEntry:
    # new string objects each time, as two parsers would make them
    p, s = "".join(list(path)), "".join(list(sha))
    return FileEntry(p, p, (), size, s, BinaryFacts(format=fmt, normalized_sha256=s))


def _never_own(path: str, e: FileEntry) -> bool:
    return False


def test_an_identical_reference_file_shares_the_shipped_objects() -> None:
    a, b, c, d = "a" * 64, "b" * 64, "c" * 64, "d" * 64
    shipped = Inventory(
        "art", "0" * 64, 0, (_entry("x/same", a), _entry("x/changed", b), _entry("x/bigger", c))
    )
    up = Reference(
        Component("up", "1", "path:up"),
        (
            _entry("x/same", a),
            _entry("x/changed", d),  # another digest
            _entry("x/bigger", c, size=1001),  # same digest, another size: not shared
            _entry("x/missing", a),  # no shipped file at its path
            _entry("x/pe", a, fmt=FileFormat.PE),
        ),
    )
    (shared,) = share_identical(shipped, [up])
    got = {f.path: f for f in shared.files}
    mine = {e.path: e for e in shipped.entries}
    same = got["x/same"]
    assert same == up.files[0]
    assert same.path is mine["x/same"].path and same.location is mine["x/same"].path
    assert same.sha256 is mine["x/same"].sha256 and same.facts is mine["x/same"].facts
    for f, g in zip(up.files[1:], shared.files[1:], strict=True):
        assert g is f  # anything different: its own entry, untouched
    before = compare(shipped, [up], _never_own)
    after = compare(shipped, [shared], _never_own)
    assert after == before
    status = {r.path: r.status for r in after.results}
    assert status["x/same"] == Status.IDENTICAL and status["x/changed"] == Status.DIVERGENT
    assert status["x/missing"] == Status.MISSING


def test_defaulted_mappings_stay_empty() -> None:
    """``markers`` and ``evidence`` default to one shared empty mapping: a verification leaves
    it empty (nothing writes to a defaulted field)."""
    e = _entry("y", "e" * 64)
    up = Reference(Component("up", "1", "path:up"), (_entry("z", "f" * 64),))
    results = compare(Inventory("art", "0" * 64, 0, (e,)), [up], _never_own).results
    assert e.facts.markers == {} and all(r.evidence == {} for r in results)
    assert BinaryFacts().markers is BinaryFacts().markers

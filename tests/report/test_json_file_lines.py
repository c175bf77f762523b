"""The JSON report's file lines written directly (``report/json.py`` ``_file_json``, README
"Scale"): the same text as the dict encoded with sorted keys, for every shape it takes, and
no direct line for the shapes it leaves to the encoder."""

from __future__ import annotations

import json
import random

from verifier.model import (
    UNSIGNED,
    BinaryFacts,
    FileEntry,
    FileFormat,
    FileResult,
    SignatureFacts,
    SignatureKind,
    Status,
)
from verifier.pairing import PairedBy
from verifier.report import json as report_json


def _encoded(r: FileResult) -> str:
    return json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False)


_CHARS = ["a", "é", '"', "\\", "/", "\n", "\x01", "\u2028", "😀", " ", "!/", "\udcff"]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(1, 6)))


def _entry(rng: random.Random, fmt: FileFormat = FileFormat.DATA) -> FileEntry:
    path = _name(rng)
    container = tuple(_name(rng) for _ in range(rng.randint(0, 2)))
    sha = f"{rng.getrandbits(256):064x}"
    facts = BinaryFacts(format=fmt, normalized_sha256=sha)
    return FileEntry(
        path, "!/".join((*container, path)), container, rng.randint(0, 1 << 40), sha, facts
    )


def test_direct_lines_are_the_encoded_dicts() -> None:
    rng = random.Random(5)
    direct = 0
    for _ in range(3000):
        shipped = _entry(rng, rng.choice([FileFormat.DATA, FileFormat.PE, FileFormat.ASAR]))
        reference = _entry(rng) if rng.random() < 0.5 else None
        if reference is not None and rng.random() < 0.5:
            reference = FileEntry(
                shipped.path,
                *[
                    getattr(reference, k)
                    for k in ("location", "container", "size", "sha256", "facts")
                ],
            )
        kept = shipped if reference is None or rng.random() < 0.8 else None
        r = FileResult(
            shipped.path if kept else reference.path,  # type: ignore[union-attr]
            rng.choice(list(Status)),
            kept,
            reference,
            rng.choice([None, "electron", _name(rng)]),
            paired_by=rng.choice([None, *PairedBy]),
        )
        line = report_json._file_json(r)
        if line is not None:
            direct += 1
            assert line == _encoded(r)
        assert report_json._item(report_json._file_item(r)) == report_json._item(r.to_dict())
    assert direct > 1000  # most shapes are written directly (names with raw bytes are not)


def test_signed_and_anomalous_files_go_to_the_encoder() -> None:
    rng = random.Random(6)
    e = _entry(rng)
    signed = SignatureFacts(kind=SignatureKind.AUTHENTICODE, signed=True)
    for facts in (
        BinaryFacts(format=FileFormat.PE, signature=signed),
        BinaryFacts(format=FileFormat.MACHO),
    ):
        r = FileResult(
            e.path,
            Status.UNEXPECTED,
            FileEntry(e.path, e.location, e.container, e.size, e.sha256, facts),
            None,
        )
        assert report_json._file_json(r) is None
    plain = FileResult(e.path, Status.UNEXPECTED, e, None)
    assert e.facts.signature is UNSIGNED and report_json._file_json(plain) == _encoded(plain)

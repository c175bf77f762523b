"""Electron asar archives read in place, and hostile asar headers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from support import asar
from support.unpack_helpers import Box, assert_unreadable_top, messages, run

from verifier.unpack import Limits


def app_with(box: Box, blob: bytes) -> Path:
    app = box.art / "app"
    (app / "resources").mkdir(parents=True)
    (app / "resources" / "app.asar").write_bytes(blob)
    (app / "electron.exe").write_bytes(b"MZ")
    return app


def test_asar_in_place_with_unpacked_files(box: Box) -> None:
    files = {
        "package.json": b'{"name":"app"}',
        "dist/main.js": b"console.log(1)",
        "node_modules/n/build/n.node": b"\x7fELF native",
    }
    art = asar.write(
        box.art / "app" / "resources" / "app.asar", files, unpacked=["node_modules/n/build/n.node"]
    )
    u = run(box, box.art / "app")
    assert u.problems == ()
    by_path = {m.path: m for m in u.members}
    assert sorted(by_path) == [
        "resources/app.asar",
        "resources/app.asar.unpacked/node_modules/n/build/n.node",
        "resources/app.asar/dist/main.js",
        "resources/app.asar/package.json",
    ]
    m = by_path["resources/app.asar/dist/main.js"]
    assert m.blob.path == str(art) and m.blob.read() == b"console.log(1)"
    assert m.location == "resources/app.asar!/dist/main.js"
    assert by_path["resources/app.asar.unpacked/node_modules/n/build/n.node"].container == ()
    assert not any(box.work.iterdir())  # nothing extracted


def test_asar_as_top_level_artifact(box: Box) -> None:
    art = asar.write(box.art / "app.asar", {"a.js": b"a", "b/c.js": b"c"})
    u = run(box, art)
    assert [(m.path, m.location) for m in u.members] == [
        ("a.js", "app.asar!/a.js"),
        ("b/c.js", "app.asar!/b/c.js"),
    ]


def test_asar_header_bad_json(box: Box) -> None:
    u = run(box, app_with(box, asar.pickle_header(b'{"files": {"a": ') + b"data"))
    assert [m.path for m in u.members] == ["electron.exe", "resources/app.asar"]
    (a,) = u.problems
    assert a.evidence["location"] == "resources/app.asar"
    assert "not valid JSON" in a.message


def test_asar_header_bad_json_top_level_is_malformed(box: Box) -> None:
    art = box.art / "x.asar"
    art.write_bytes(asar.pickle_header(b'{"files": nope}'))
    assert_unreadable_top(box, art, "not valid JSON")


def test_asar_offset_past_eof(box: Box) -> None:
    header = {
        "files": {"big.js": {"size": 100, "offset": "0"}, "ok.js": {"size": 2, "offset": "0"}}
    }
    blob = asar.pickle_header(json.dumps(header).encode()) + b"ok"
    u = run(box, app_with(box, blob))
    assert "resources/app.asar/ok.js" in [m.path for m in u.members]
    (a,) = u.problems
    assert a.evidence["location"] == "resources/app.asar!/big.js"
    assert "past end of file" in a.message


@pytest.mark.parametrize("offset", ["-1", "1e3", "0x10", "9" * 40, None, True])
def test_asar_bad_offset_values(box: Box, offset: object) -> None:
    header = {"files": {"a.js": {"size": 1, "offset": offset}}}
    u = run(box, app_with(box, asar.pickle_header(json.dumps(header).encode()) + b"a"))
    assert "valid size/offset" in messages(u)


def test_asar_huge_header_size(box: Box) -> None:
    blob = struct.pack("<IIIi", 4, 0x7FFFFFF0, 0x7FFFFFEC, 0x7FFFFFE8) + b'{"files":{}}'
    u = run(box, app_with(box, blob))
    assert "asar header size" in messages(u)
    box2 = Box(box.root / "2")
    u2 = run(box2, app_with(box2, blob), Limits(max_asar_header=1 << 40))
    assert "past end of file" in messages(u2)


def test_asar_deep_nesting(box: Box) -> None:
    deep = b'{"files":' + b'{"a":{"files":' * 5000 + b"{}" + b"}}" * 5000 + b"}"
    u = run(box, app_with(box, asar.pickle_header(deep)))
    assert "nested too deeply" in messages(u)
    shallow = b'{"files":' + b'{"a":{"files":' * 40 + b"{}" + b"}}" * 40 + b"}"
    box2 = Box(box.root / "2")
    u2 = run(box2, app_with(box2, asar.pickle_header(shallow)), Limits(max_asar_depth=10))
    assert "nested too deeply" in messages(u2)


def test_asar_hostile_names_and_links(box: Box) -> None:
    header = {
        "files": {
            "..": {"files": {"evil.js": {"size": 1, "offset": "0"}}},
            "a/b": {"size": 1, "offset": "0"},
            "link": {"link": "../../etc/passwd"},
            "good": {"link": "ok.js"},
            "ok.js": {"size": 1, "offset": "0"},
        }
    }
    u = run(box, app_with(box, asar.pickle_header(json.dumps(header).encode()) + b"x"))
    assert [m.path for m in u.members if "app.asar/" in m.path] == ["resources/app.asar/ok.js"]
    assert len(u.problems) == 3


def test_asar_duplicate_json_keys(box: Box) -> None:
    text = b'{"files":{"a.js":{"size":1,"offset":"0"},"a.js":{"size":1,"offset":"1"}}}'
    u = run(box, app_with(box, asar.pickle_header(text) + b"xy"))
    assert "duplicate key" in messages(u)


def test_asar_truncated_header(box: Box) -> None:
    full = asar.build({"a.js": b"a"})[0]
    u = run(box, app_with(box, full[:20]))
    assert [a.evidence["location"] for a in u.problems] == ["resources/app.asar"]

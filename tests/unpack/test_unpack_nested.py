"""Archives inside archives: naming through layers, depth cap (42.zip), shared budget."""

from __future__ import annotations

import io
import tarfile
import zipfile

from support.unpack_helpers import Box, messages, run

from verifier.unpack import Limits


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_nested_names_through_three_layers(box: Box) -> None:
    inner = zip_of({"x.dll": b"x"})
    middle = zip_of({"lib/inner.zip": inner})
    art = box.art / "outer.zip"
    art.write_bytes(zip_of({"app/middle.nupkg": middle}))
    u = run(box, art)
    assert u.problems == ()
    deep = {m.path: m for m in u.members}["app/middle.nupkg/lib/inner.zip/x.dll"]
    assert deep.location == "outer.zip!/app/middle.nupkg!/lib/inner.zip!/x.dll"
    assert deep.container == ("outer.zip", "app/middle.nupkg", "lib/inner.zip")
    assert deep.location == "!/".join((*deep.container, "x.dll"))


def test_42zip_style_nested_bomb_hits_depth(box: Box) -> None:
    """Each layer holds several copies of the layer below; only max_depth layers open."""
    data = zip_of({"0.dll": b"\0" * 10_000})
    for level in range(6):
        data = zip_of({f"l{level}-{i}.zip": data for i in range(3)})
    art = box.art / "42.zip"
    art.write_bytes(data)
    u = run(box, art, Limits(max_depth=3))
    depths = {len(m.container) for m in u.members}
    assert max(depths) == 3
    assert "nested deeper than 3 layers" in messages(u)
    assert len(u.members) == 3 + 9 + 27  # three layers of three archives each


def test_nested_archives_share_one_budget(box: Box) -> None:
    inner = zip_of({f"f{i}": b"x" for i in range(8)})
    art = box.art / "o.zip"
    art.write_bytes(zip_of({"a.zip": inner, "b.zip": inner}))
    u = run(box, art, Limits(max_members=12))
    assert len(u.members) <= 12
    assert "entries" in messages(u)


def test_tar_truncated_nested_is_problem(box: Box) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("a.bin")
        payload = bytes(range(256)) * 20
        ti.size = len(payload)
        tf.addfile(ti, io.BytesIO(payload))
    art = box.art / "o.zip"
    art.write_bytes(zip_of({"x.tar": buf.getvalue()[:1500], "ok": b"ok"}))
    u = run(box, art)
    assert "x.tar" in [m.path for m in u.members]
    assert [a.evidence["location"] for a in u.problems] == ["o.zip!/x.tar"]
    assert "truncated" in messages(u)


def test_many_nested_archives_are_capped(box: Box) -> None:
    """Thousands of tiny nested zips would cost a sandbox run each: only a few are opened."""
    tiny = zip_of({"x": b"x"})
    art = box.art / "o.zip"
    art.write_bytes(zip_of({f"t{i}.zip": tiny for i in range(5)}))
    u = run(box, art, Limits(max_archives=3))  # the outer zip counts as one
    opened = [m for m in u.members if len(m.container) == 2]
    assert len(opened) == 2
    assert messages(u).count("beyond the first 3 archives") == 3


def test_one_layer_mixes_good_and_truncated_archives(box: Box) -> None:
    """Archives of one layer share a sandbox run; each gets its own outcome."""
    good = zip_of({"g.dll": b"g"})
    bad = zip_of({"b.dll": b"b" * 4000})[:-30]
    art = box.art / "o.zip"
    art.write_bytes(zip_of({"a-good.zip": good, "b-bad.zip": bad, "c-good.zip": good}))
    u = run(box, art)
    paths = [m.path for m in u.members]
    assert "a-good.zip/g.dll" in paths and "c-good.zip/g.dll" in paths
    assert not any(p.startswith("b-bad.zip/") for p in paths)
    assert [a.evidence["location"] for a in u.problems] == ["o.zip!/b-bad.zip"]

"""Mutated archives never crash unpack: every outcome is a member or a malformed-input problem."""

from __future__ import annotations

import io
import random
import tarfile
import zipfile
from pathlib import Path

from support import asar
from support.unpack_helpers import Box, blobs_inside

from verifier.errors import ArtifactError
from verifier.unpack import unpack


def _seeds() -> dict[str, bytes]:
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("app/a.dll", b"MZ" + bytes(range(256)) * 8)
        zf.writestr("app/b.txt", b"hello " * 100)
    t = io.BytesIO()
    with tarfile.open(fileobj=t, mode="w:gz") as tf:
        for name, data in (("a/x.so", b"\x7fELF" * 300), ("a/y", b"y" * 700)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    a, _ = asar.build({"main.js": b"js" * 50, "lib/x.node": b"\x7fELF" * 20})
    return {"zip": z.getvalue(), "tgz": t.getvalue(), "asar": a}


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    how = rng.randrange(3)
    if how == 0:  # flip bytes, mostly in headers (the start and the end)
        for _ in range(rng.randint(1, 8)):
            i = rng.choice([rng.randrange(min(64, len(buf))), rng.randrange(len(buf))])
            buf[i] = rng.randrange(256)
        if rng.random() < 0.5:
            i = len(buf) - 1 - rng.randrange(min(60, len(buf)))
            buf[i] = rng.randrange(256)
    elif how == 1:  # truncate
        del buf[rng.randrange(1, len(buf)) :]
    else:  # splice a run of random bytes
        i = rng.randrange(len(buf))
        buf[i : i + rng.randint(1, 32)] = rng.randbytes(rng.randint(1, 32))
    return bytes(buf)


def test_mutated_archives_in_a_directory(tmp_path: Path) -> None:
    box = Box(tmp_path)
    rng = random.Random(20230329)
    app = box.art / "app"
    app.mkdir()
    for kind, data in _seeds().items():
        for i in range(25):
            (app / f"{kind}-{i:02}.{kind}").write_bytes(_mutate(data, rng))
    box.freeze()
    u = unpack(str(app), str(box.work))
    box.unchanged()
    blobs_inside(u, box.work, box.art)
    assert all(a.rule == "malformed-input" for a in u.problems)
    assert len(u.problems) > 10  # the mutations do hit


def test_mutated_top_level_archives(tmp_path: Path) -> None:
    box = Box(tmp_path)
    rng = random.Random(3)
    outcomes = {"members": 0, "error": 0}
    for kind, data in _seeds().items():
        for i in range(4):
            art = box.art / f"{kind}-{i}.bin"
            art.write_bytes(_mutate(data, rng))
            try:
                u = unpack(str(art), str(box.work / f"{kind}{i}"))
            except ArtifactError as e:
                assert "\n" not in e.diagnostics()
                outcomes["error"] += 1
            else:
                assert all(a.rule == "malformed-input" for a in u.problems)
                outcomes["members"] += 1
    assert sum(outcomes.values()) == 12

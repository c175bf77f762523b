"""Whatever the bytes, biv answers with a finding or a one-line error: never an internal error.

Real inputs of every format biv reads (PE, Mach-O, zip, tar, asar, MSI-like compound files)
are cut short and have bytes overwritten at random (seeded), then go through `biv inspect`
and `biv verify` in-process. A BivError is fine (exit 2 with one line); any other exception
is a bug.
"""

from __future__ import annotations

import io
import random
import tarfile
import zipfile
from pathlib import Path

import pytest

from verifier import cli
from verifier._scenarios import macho as mw
from verifier._scenarios.pewriter import build_pe, electron_exe, ffmpeg_dll
from verifier._scenarios.scenario import write_asar


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("app/ffmpeg.dll", build_pe(ffmpeg_dll()))
        z.writestr("app/LICENSE", b"MIT\n" * 50)
    return buf.getvalue()


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = build_pe(electron_exe("30.0.0"))
        info = tarfile.TarInfo("app/electron.exe")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _asar(tmp: Path) -> bytes:
    p = tmp / "seed.asar"
    write_asar(p, {"main.js": b"console.log(1)\n", "lib/x.node": b"\x7fELF" + bytes(60)})
    return p.read_bytes()


def _mutants(seed: bytes, rnd: random.Random, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        data = bytearray(seed)
        if i % 2 == 0:
            del data[rnd.randrange(1, len(data)) :]
        for _ in range(rnd.randint(1, 8)):
            pos = rnd.randrange(len(data)) if data else 0
            if data:
                data[pos] = rnd.randrange(256)
        out.append(bytes(data))
    return out


@pytest.mark.parametrize("kind", ["pe", "macho", "zip", "tar", "asar"])
def test_mutated_inputs_never_crash_inspect_or_verify(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeds = {
        "pe": lambda: build_pe(electron_exe("30.0.0")),
        "macho": lambda: mw.build_fat(
            [mw.sign(mw.build_thin(a, b"\xc3" * 64), "t") for a in ("x86_64", "arm64")]
        ),
        "zip": _zip,
        "tar": _tar,
        "asar": lambda: _asar(tmp_path),
    }
    rnd = random.Random(f"biv-{kind}")
    upstream = tmp_path / "up"
    upstream.mkdir()
    (upstream / "LICENSE").write_bytes(b"MIT\n")
    for i, data in enumerate(_mutants(seeds[kind](), rnd, 12)):
        f = tmp_path / f"m{i}.{kind}"
        f.write_bytes(data)
        for argv in (
            ["inspect", str(f), "--format", "json"],
            ["verify", str(f), "--against", f"path:{upstream}", "--format", "json", "-q"],
        ):
            rc = cli.main(argv)
            err = capsys.readouterr().err
            assert "internal error" not in err, (argv, err)
            assert rc in (0, 1, 2, 3), (argv, rc, err)
            if rc == 2:
                assert err.startswith("biv: error: "), err

"""Issue 12, rows 1-6: archives as real extractors see them.

Each test builds the hostile artifact (GNU tar and Info-ZIP where they exist, Python's
zipfile plus byte surgery otherwise), shows where it matters that a real extractor is
fooled, and checks biv's verdict through the CLI: rule, and exit code. The genuine
counterparts (links upstream has too, data descriptors, ZIP64, a self-extractor stub,
real wheels) must stay clean.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import struct
import subprocess
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import pytest

from verifier._scenarios import pewriter
from verifier.cli import main
from verifier.unpack import unpack, zipcheck

DLL = pewriter.build_pe(pewriter.ffmpeg_dll())
TAMPERED = pewriter.build_pe(pewriter.trojaned_ffmpeg_dll())


def biv(*args: str) -> tuple[int, dict[str, Any]]:
    """``biv verify ARGS --format json`` through the CLI's ``main`` (in process: no
    interpreter start-up per row): (exit code, report)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["verify", *args, "--format", "json", "-q"])
    assert "internal error" not in err.getvalue(), err.getvalue()
    text = out.getvalue()
    return rc, json.loads(text) if text.strip() else {}


def rules(report: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in report["findings"]:
        out.setdefault(f["rule"], []).append(f["location"])
    return out


def need(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed")
    return exe


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("up") / "release"
    d.mkdir()
    (d / "msvcp140.dll").write_bytes(DLL)
    return d


def _gnu_tar(*args: str, cwd: Path) -> None:
    subprocess.run([need("tar"), *args], cwd=cwd, check=True, capture_output=True)


# --- row 1: a member whose path crosses a link ------------------------------------------


def test_row1_tar_member_through_a_link(tmp_path: Path, upstream: Path) -> None:
    art = tmp_path / "app.tar"
    genuine, link, evil = (tmp_path / n for n in ("s1", "s2", "s3"))
    genuine.mkdir()
    (genuine / "msvcp140.dll").write_bytes(DLL)
    link.mkdir()
    (link / "sub").symlink_to(".")
    (evil / "sub").mkdir(parents=True)
    (evil / "sub" / "msvcp140.dll").write_bytes(TAMPERED)
    _gnu_tar("-cf", str(art), "msvcp140.dll", cwd=genuine)
    _gnu_tar("-rf", str(art), "sub", cwd=link)
    _gnu_tar("-rf", str(art), "sub/msvcp140.dll", cwd=evil)
    # GNU tar writes the third member through the link, over the genuine DLL
    out = tmp_path / "x"
    out.mkdir()
    _gnu_tar("-xf", str(art), cwd=out)
    assert (out / "msvcp140.dll").read_bytes() == TAMPERED
    rc, report = biv(str(art), "--against", f"path:{upstream}")
    assert rc == 1 and report["verdict"] == "fail"
    assert "app.tar!/sub/msvcp140.dll" in rules(report)["malformed-input"]


# --- row 2: a link loop ------------------------------------------------------------------


def test_row2_tar_link_loop(tmp_path: Path, upstream: Path) -> None:
    art = tmp_path / "loop.tar"
    links, more = tmp_path / "l", tmp_path / "m"
    links.mkdir()
    (links / "la").symlink_to("lb")
    (links / "lb").symlink_to("la")
    (links / "msvcp140.dll").write_bytes(DLL)
    (more / "la").mkdir(parents=True)
    (more / "la" / "x").write_bytes(b"x")
    _gnu_tar("-cf", str(art), "msvcp140.dll", "la", "lb", cwd=links)
    _gnu_tar("-rf", str(art), "la/x", cwd=more)
    rc, report = biv(str(art), "--against", f"path:{upstream}")
    assert rc == 1
    bad = rules(report)["malformed-input"]
    assert "loop.tar!/la" in bad and "loop.tar!/lb" in bad and "loop.tar!/la/x" in bad


def test_links_compared_like_files(tmp_path: Path) -> None:
    """``Versions/Current -> A`` that upstream has too is fine; a new link, or one with
    another target, is ``unexpected-link``; one leaving the tree is malformed."""

    def tree(root: Path, links: dict[str, str]) -> Path:
        (root / "F.framework" / "Versions" / "A").mkdir(parents=True)
        (root / "F.framework" / "Versions" / "B").mkdir(parents=True)
        (root / "F.framework" / "Versions" / "A" / "lib.dll").write_bytes(DLL)
        for name, target in links.items():
            (root / name).symlink_to(target)
        return root

    up = tree(tmp_path / "up", {"F.framework/Versions/Current": "A"})
    same = tree(tmp_path / "same", {"F.framework/Versions/Current": "A"})
    rc, report = biv(str(same), "--against", f"path:{up}")
    assert rc == 0 and "unexpected-link" not in rules(report), report["findings"]
    other = tree(tmp_path / "other", {"F.framework/Versions/Current": "B", "extra": "F.framework"})
    rc, report = biv(str(other), "--against", f"path:{up}", "--fail-on", "medium")
    got = {f["path"]: f for f in report["findings"] if f["rule"] == "unexpected-link"}
    assert set(got) == {"Versions/Current", "extra"} and rc == 1  # paths from the app root
    assert got["Versions/Current"]["evidence"]["expected_target"] == "A"
    assert got["Versions/Current"]["severity"] == "medium"
    out = tree(tmp_path / "out", {"F.framework/Versions/Current": "A", "up": "../../etc"})
    rc, report = biv(str(out), "--against", f"path:{up}")
    assert rc == 1 and "up" in rules(report)["malformed-input"]


def test_zip_symlinks_match_unzip(tmp_path: Path) -> None:
    """Info-ZIP stores links (``zip -y``); biv lists exactly what ``unzip`` creates."""
    need("zip")
    need("unzip")
    src = tmp_path / "src"
    (src / "Versions" / "A").mkdir(parents=True)
    (src / "Versions" / "A" / "lib").write_bytes(b"lib")
    (src / "Versions" / "Current").symlink_to("A")
    (src / "lib").symlink_to("Versions/Current/lib")
    art = tmp_path / "f.zip"
    subprocess.run(["zip", "-qry", str(art), "."], cwd=src, check=True)
    u = unpack(str(art), str(tmp_path / "w"))
    assert u.problems == ()
    assert {(k.path, k.target) for k in u.links} == {
        ("Versions/Current", "A"),
        ("lib", "Versions/Current/lib"),
    }
    assert [m.path for m in u.members] == ["Versions/A/lib"]
    out = tmp_path / "unz"
    subprocess.run(["unzip", "-qq", str(art), "-d", str(out)], check=True)
    assert (out / "Versions" / "Current").readlink() == Path("A")


def test_asar_links_are_relative_to_the_archive_root(tmp_path: Path) -> None:
    from support import asar

    data, _ = asar.build(
        {"lib/a.js": b"a", "main.js": b"m"}, links={"lib/l": "main.js", "x/loop": "x/loop"}
    )
    art = tmp_path / "app.asar"
    art.write_bytes(data)
    u = unpack(str(art), str(tmp_path / "w"))
    assert [(k.path, k.target) for k in u.links] == [("lib/l", "../main.js")]
    assert [a.evidence["location"] for a in u.problems] == ["app.asar!/x/loop"]
    assert "symlink loop" in u.problems[0].message


# --- rows 3-5: the central directory and the local headers must agree ---------------------


def _zip(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


def _drop_last_central_entry(data: bytes) -> bytes:
    """Rebuild the central directory without its last entry (byte surgery)."""
    eocd = data.rindex(b"PK\x05\x06")
    n, cd_size, cd_off = struct.unpack_from("<HII", data, eocd + 10)
    cd = data[cd_off : cd_off + cd_size]
    last = cd.rindex(b"PK\x01\x02")
    end = bytearray(data[eocd:])
    struct.pack_into("<HHII", end, 8, n - 1, n - 1, last, cd_off)
    return data[:cd_off] + cd[:last] + bytes(end)


def test_row3_member_only_in_local_headers(tmp_path: Path, upstream: Path) -> None:
    art = tmp_path / "app.zip"
    art.write_bytes(_drop_last_central_entry(_zip([("msvcp140.dll", DLL), ("evil.js", b"x")])))
    assert zipfile.ZipFile(art).namelist() == ["msvcp140.dll"]  # unzip/zipfile miss it
    rc, report = biv(str(art), "--against", f"path:{upstream}")
    assert rc == 1
    (f,) = [f for f in report["findings"] if f["rule"] == "malformed-input"]
    assert "only in the local headers" in f["message"]


def test_row4_local_header_disagrees(tmp_path: Path, upstream: Path) -> None:
    data = bytearray(_zip([("msvcp140.dll", DLL)]))
    struct.pack_into("<I", data, 14, struct.unpack_from("<I", data, 14)[0] ^ 1)  # local CRC
    art = tmp_path / "app.zip"
    art.write_bytes(bytes(data))
    if shutil.which("unzip"):
        t = subprocess.run(["unzip", "-t", str(art)], capture_output=True, text=True)
        assert "bad CRC" in t.stdout + t.stderr
    rc, report = biv(str(art), "--against", f"path:{upstream}")
    assert rc == 1
    (f,) = [f for f in report["findings"] if f["rule"] == "malformed-input"]
    assert "local header says crc" in f["message"]


def test_row5_prepended_zip(tmp_path: Path, upstream: Path) -> None:
    art = tmp_path / "app.zip"
    art.write_bytes(_zip([("other.js", b"o")]) + _zip([("msvcp140.dll", DLL)]))
    rc, report = biv(str(art), "--against", f"path:{upstream}")
    assert rc == 1
    (f,) = [f for f in report["findings"] if f["rule"] == "malformed-input"]
    assert "before the first local header" in f["message"]


def test_row5_nul_in_member_name(tmp_path: Path, upstream: Path) -> None:
    data = _zip([("msvcp140.dll", DLL), ("payload.jsX.txt", b"alert(1)")])
    art = tmp_path / "app.zip"
    art.write_bytes(data.replace(b"payload.jsX.txt", b"payload.js\x00.txt"))
    assert "payload.js" in zipfile.ZipFile(art).namelist()  # Python cuts the name at NUL
    rc, report = biv(str(art), "--against", f"path:{upstream}")
    assert rc == 1
    (f,) = [f for f in report["findings"] if f["rule"] == "malformed-input"]
    assert "NUL" in f["message"]


def test_self_extractor_stub_is_fine(tmp_path: Path) -> None:
    """A PE stub before the zip (Info-ZIP ``zip -A`` adjusts the offsets) is recognised."""
    need("zip")
    plain = tmp_path / "p.zip"
    plain.write_bytes(_zip([("a.txt", b"a" * 100), ("b.dll", DLL)]))
    sfx = tmp_path / "setup.exe"
    sfx.write_bytes(DLL + plain.read_bytes())
    subprocess.run(["zip", "-qA", str(sfx)], check=True)
    for path in (sfx, tmp_path / "unadjusted.exe"):
        if path.name == "unadjusted.exe":
            path.write_bytes(DLL + plain.read_bytes())
        layout = zipcheck.scan(str(path))
        assert layout.problems == [] and [e.name for e in layout.entries] == ["a.txt", "b.dll"]


def test_genuine_zip_writers_pass(tmp_path: Path) -> None:
    """Data descriptors (``jar``, Info-ZIP from a pipe), ZIP64 (``zip -fz``, Python's
    ``force_zip64``), 7-Zip: every tree equals what ``unzip`` extracts, no problem."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello\n")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 400)
    made: list[Path] = []

    def tool(name: str, *cmd: str, stdout: Path | None = None) -> None:
        if shutil.which(cmd[0]) is None:
            return
        out = tmp_path / name
        with open(stdout or "/dev/null", "wb") as fh:
            subprocess.run(list(cmd), cwd=src, check=True, stdout=fh, stderr=subprocess.DEVNULL)
        made.append(out)

    tool("z64.zip", "zip", "-qr", "-fz", str(tmp_path / "z64.zip"), ".")
    tool(
        "stream.zip", "zip", "-q", "-fd", "-", "a.txt", "sub/b.bin", stdout=tmp_path / "stream.zip"
    )
    tool("j.jar", "jar", "cf", str(tmp_path / "j.jar"), ".")
    tool("s.zip", "7z", "a", "-tzip", "-bd", str(tmp_path / "s.zip"), ".")
    py64 = tmp_path / "py64.zip"
    with (
        zipfile.ZipFile(py64, "w", zipfile.ZIP_DEFLATED) as z,
        z.open("big", "w", force_zip64=True) as f,
    ):
        f.write(b"x" * 5000)
    made.append(py64)
    descriptors = 0
    for art in made:
        layout = zipcheck.scan(str(art))
        assert layout.problems == [], (art.name, layout.problems)
        descriptors += sum(1 for e in layout.entries if e.flags & 0x8)
        u = unpack(str(art), str(tmp_path / f"w-{art.name}"))
        assert u.problems == (), (art.name, u.problems)
        if shutil.which("unzip"):
            out = tmp_path / f"u-{art.name}"
            subprocess.run(["unzip", "-qq", str(art), "-d", str(out)], check=True)
            theirs = {
                str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()
            }
            assert {m.path: m.blob.read() for m in u.members} == theirs, art.name
    if shutil.which("jar") or shutil.which("zip"):
        assert descriptors > 0  # the data-descriptor path really ran


@pytest.mark.network
def test_real_wheels_have_no_false_alarm(tmp_path: Path) -> None:
    from support.fetch import msvc_wheel, pypi_file

    wheels = [
        msvc_wheel(),
        pypi_file(
            "py4j",
            "0.10.9.7",
            "py4j-0.10.9.7-py2.py3-none-any.whl",
            "85defdfd2b2376eb3abf5ca6474b51ab7e0de341c75a02f46dc9b5976f5a5c1b",
        ),
    ]
    for w in wheels:
        u = unpack(str(w), str(tmp_path / w.name))
        assert u.problems == (), u.problems
        with zipfile.ZipFile(w) as z:
            names = {i.filename for i in z.infolist() if not i.is_dir()}
        inner = {
            m.path.split(".jar/", 1)[0] + ".jar" if ".jar/" in m.path else m.path for m in u.members
        }
        assert names <= inner


# --- row 6: names that collide on Windows and macOS ---------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ("vcruntime140.dll", "VCRUNTIME140.DLL"),
        (unicodedata.normalize("NFC", "café.txt"), unicodedata.normalize("NFD", "café.txt")),
    ],
)
def test_row6_name_collision(tmp_path: Path, upstream: Path, names: tuple[str, str]) -> None:
    art = tmp_path / "app.zip"
    art.write_bytes(_zip([("msvcp140.dll", DLL), (names[0], b"one"), (names[1], b"two")]))
    rc, report = biv(str(art), "--against", f"path:{upstream}")
    assert rc == 1
    (f,) = [f for f in report["findings"] if f["rule"] == "name-collision"]
    assert f["severity"] == "high"


def test_linux_package_may_hold_case_pairs(tmp_path: Path) -> None:
    up = tmp_path / "up"
    up.mkdir()
    for n in ("README", "readme", "lib.so"):
        (up / n).write_bytes(b"\x7fELF" + n.encode() * 20 if n == "lib.so" else n.encode())
    art = tmp_path / "pkg.tar"
    _gnu_tar("-cf", str(art), "README", "readme", "lib.so", cwd=up)
    _rc, report = biv(str(art), "--against", f"path:{up}")
    assert "name-collision" not in rules(report)


def test_central_directory_larger_than_one_read(tmp_path: Path) -> None:
    """The central directory is streamed in 1 MiB reads while local headers are read between
    entries: a directory of several MiB must come out whole and in order."""
    art = tmp_path / "big-cd.zip"
    names = [f"{'d' * 90}/{i:06d}.txt" for i in range(12_000)]
    with zipfile.ZipFile(art, "w", zipfile.ZIP_STORED) as z:
        for n in names:
            z.writestr(n, b"")
    layout = zipcheck.scan(str(art))
    assert layout.problems == []
    assert [e.name for e in layout.entries] == names

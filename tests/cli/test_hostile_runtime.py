"""Issue 12, rows 7-13: fat Mach-O vs Java class, untrusted strings in output, cancellation
and deadlines, caps at top level, non-regular inputs.

Each test builds the artifact for real (the demo's Mach-O writer, javac, wixl + msibuild, a
127.0.0.1 server, sparse files, FIFOs), runs biv as a separate process where signals or exit
codes matter, and checks the verdict, rule and exit code the issue asks for.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from verifier._scenarios import macho as mw
from verifier._scenarios import pewriter
from verifier.cli import main

DLL = pewriter.build_pe(pewriter.ffmpeg_dll())


def biv_proc(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "verifier", *args],
        capture_output=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def biv_main(*args: str) -> tuple[int, str, str]:
    """The CLI's ``main`` in this process (no interpreter start-up): rc, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    assert "internal error" not in err.getvalue(), err.getvalue()
    return rc, out.getvalue(), err.getvalue()


def verify_json(*args: str) -> tuple[int, dict[str, Any]]:
    rc, out, _ = biv_main("verify", *args, "--format", "json", "-q")
    return rc, json.loads(out) if out.strip() else {}


def by_rule(report: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [f for f in report.get("findings", []) if f["rule"] == rule]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("up") / "release"
    d.mkdir()
    (d / "ffmpeg.dll").write_bytes(DLL)
    return d


# --- row 7: CAFEBABE ------------------------------------------------------------------------


CODE = b"\x1f\x20\x03\xd5" * 64


def _slice(arch: str, broken: bool = False) -> bytes:
    thin = mw.sign(mw.build_thin(arch, CODE), "com.example.lib")
    if broken:  # one byte of code changed after signing: the page hash no longer matches
        b = bytearray(thin)
        b[thin.index(CODE) + 8] ^= 0xFF
        thin = bytes(b)
    return thin


def test_row7_fat_macho_with_41_slices_is_macho(tmp_path: Path) -> None:
    """41 slices (the old sniffer said data): Mach-O, and its broken slice is found; past the
    one cap (``cafebabe.MAX_FAT_ARCHS``) the same file is malformed-input."""
    from verifier.binary.cafebabe import MAX_FAT_ARCHS

    ok = _slice("arm64")
    up = tmp_path / "up"
    up.mkdir()
    (up / "libx.dylib").write_bytes(mw.build_fat([ok, _slice("x86_64")]))
    for count, rule in ((41, "invalid-signature"), (MAX_FAT_ARCHS + 1, "malformed-input")):
        art = tmp_path / f"art{count}"
        art.mkdir()
        fat = mw.build_fat([ok] * (count - 1) + [_slice("x86_64", broken=True)])
        assert int.from_bytes(fat[4:8], "big") == count
        (art / "libx.dylib").write_bytes(fat)
        rc, report = verify_json(str(art), "--against", f"path:{up}")
        assert rc == 1, report["findings"]
        (f,) = by_rule(report, rule)
        assert f["path"] == "libx.dylib"
        if rule == "malformed-input":
            assert f"{count} architectures" in f["message"]
        (entry,) = report["files"]
        assert entry["format"] == "macho"


def test_row7_one_rule_for_cafebabe(tmp_path: Path) -> None:
    from verifier.analysis import analyze
    from verifier.binary import cafebabe
    from verifier.model import Blob, FileFormat

    fat2 = tmp_path / "fat2"
    fat2.write_bytes(mw.build_fat([_slice("arm64"), _slice("x86_64")]))
    fat41 = tmp_path / "fat65"
    fat41.write_bytes(mw.build_fat([_slice("arm64")] * (cafebabe.MAX_FAT_ARCHS + 1)))
    damaged = tmp_path / "damaged"  # 2 slices announced, none inside the file
    damaged.write_bytes(b"\xca\xfe\xba\xbe\x00\x00\x00\x02" + b"\xff" * 200)
    not_code = tmp_path / "cafe.bin"  # 4660 "slices": neither loader would take it
    not_code.write_bytes(b"\xca\xfe\xba\xbe\x00\x00\x12\x34" + b"\xff" * 200)
    cases = {fat2: "macho", fat41: "macho", damaged: "macho", not_code: "data"}
    javac = subprocess.run(["which", "javac"], capture_output=True).returncode == 0
    if javac:
        src = tmp_path / "Hello.java"
        src.write_text("public class Hello { int x; void f() { x++; } }\n")
        subprocess.run(["javac", str(src)], check=True, cwd=tmp_path)
        cases[tmp_path / "Hello.class"] = "java"
    for path, want in cases.items():
        b = Blob.of_file(path)
        assert cafebabe.classify(b.read, b.size) == want, path.name
    assert analyze(Blob.of_file(fat2), "fat2")[1].anomalies == ()
    assert [a.rule for a in analyze(Blob.of_file(damaged), "d")[1].anomalies] == ["malformed-input"]
    assert analyze(Blob.of_file(not_code), "c")[1].format == FileFormat.DATA
    facts = analyze(Blob.of_file(fat41), "fat65")[1]
    assert facts.format == FileFormat.MACHO
    assert [a.rule for a in facts.anomalies] == ["malformed-input"]
    if javac:
        facts = analyze(Blob.of_file(tmp_path / "Hello.class"), "Hello.class")[1]
        assert facts.format == FileFormat.DATA and facts.anomalies == ()


# --- row 8: names and subjects that drive the terminal ---------------------------------------

HOSTILE_NAMES = [
    "esc\x1b[2J\x1b[31mred.dll",
    "bell\x07.txt",
    "cr\roverwrite.txt",
    "rtl\u202eexe.txt",
    "\nVERDICT: PASS  (no findings)\n",
]


def test_row8_text_output_escapes_names(tmp_path: Path, up: Path) -> None:
    art = tmp_path / "art"
    art.mkdir()
    (art / "ffmpeg.dll").write_bytes(DLL)
    for i, name in enumerate(HOSTILE_NAMES):
        (art / name).write_bytes(b"MZ" + bytes([i]) * 300)  # unexpected code: findings
    rc, out, _ = biv_main(
        "verify", str(art), "--against", f"path:{up}", "-v", "--fail-on", "medium"
    )
    assert rc == 1
    for bad in ("\x1b", "\x07", "\r", "\u202e"):
        assert bad not in out, repr(bad)
    lines = out.splitlines()
    assert [ln for ln in lines if ln.startswith("VERDICT")] == [
        next(ln for ln in lines if ln.startswith("VERDICT: FAIL"))
    ]
    assert "\\x1b[2J" in out and "\\u202e" in out and "\\x0aVERDICT: PASS" in out


def test_row8_certificate_subject_escaped(tmp_path: Path) -> None:
    from verifier._scenarios import osslsign, pki

    if not osslsign.available():
        pytest.skip("osslsigncode is not installed")
    evil = pki.build_pki("evil", signer_cn="Evil\x1b]0;pwned\x07\u202eCorp")
    paths = evil.write(tmp_path / "pki")
    src, signed = tmp_path / "in.dll", tmp_path / "signed.dll"
    src.write_bytes(DLL)
    osslsign.sign(src, signed, paths.signer_chain, paths.signer_key)
    rc, out, err = biv_main("inspect", str(signed))
    assert rc == 0, err
    assert "Evil\\x1b]0" in out and "pwned\\x07\\u202eCorp" in out  # RFC 4514 also escapes ;
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    rc, out, _ = biv_main("inspect", str(signed), "--format", "json")
    assert "\x1b" in json.loads(out)["signature"]["signers"][0]["subject"]


# --- row 9: bytes that are not UTF-8 ---------------------------------------------------------


def test_row9_non_utf8_names_in_every_format(tmp_path: Path) -> None:
    import jsonschema

    from verifier.report.escape import raw_bytes

    raw = b"bad\xff.txt"
    trees = []
    for name in ("up", "art"):
        d = tmp_path / name
        d.mkdir()
        (d / "ffmpeg.dll").write_bytes(DLL)
        (d / os.fsdecode(raw)).write_bytes(b"data")
        trees.append(d)
    up_dir, art = trees
    (art / os.fsdecode(b"new\xfe.dll")).write_bytes(pewriter.build_pe(pewriter.libegl_dll()))
    schema = json.loads(Path("verifier/schemas/biv.report.v1.json").read_text())
    for fmt in ("json", "sarif", "html", "text"):
        out = tmp_path / f"report.{fmt}"
        rc, _, err = biv_main(
            "verify", str(art), "--against", f"path:{up_dir}", "--format", fmt, "-o", str(out)
        )
        assert rc == 0, err  # unexpected-binary is medium: a pass
        text = out.read_bytes().decode("utf-8")  # strict: valid UTF-8
        shown = json.dumps("new\\xfe.dll")[1:-1] if fmt in ("json", "sarif") else "new\\xfe.dll"
        assert shown in text, fmt
        if fmt == "json":
            doc = json.loads(text)
            jsonschema.validate(doc, schema)
            (f,) = [f for f in doc["files"] if f["path"] == "bad\\xff.txt"]
            assert base64.b64decode(f["path_bytes_b64"]) == raw
            (g,) = [g for g in doc["findings"] if g["rule"] == "unexpected-binary"]
            assert base64.b64decode(g["path_bytes_b64"]) == raw_bytes(os.fsdecode(b"new\xfe.dll"))
        if fmt == "sarif":
            json.loads(text)
    assert not list(tmp_path.glob("report.*.tmp-*"))


def test_row9_no_temp_file_left_on_a_write_error(tmp_path: Path, up: Path) -> None:
    target = tmp_path / "out-is-a-dir"
    target.mkdir()
    rc, _, err = biv_main("verify", str(up), "--against", f"path:{up}", "-o", str(target))
    assert rc == 2 and "cannot write report" in err
    assert list(tmp_path.iterdir()) == [target]


# --- row 10: deadlines, signals, and what a killed biv leaves ---------------------------------


@pytest.fixture(scope="module")
def spinning_msi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MSI whose Directory table has a parent cycle: ``msiextract`` never ends."""
    from support.installers import build_msi, need

    need("wixl", "msidump", "msibuild", "msiextract")
    root = tmp_path_factory.mktemp("msi")
    app = root / "app"
    (app / "sub").mkdir(parents=True)
    (app / "a.txt").write_text("a")
    (app / "sub" / "b.txt").write_text("b")
    msi = build_msi(app, root / "spin.msi", "Spin")
    dump = root / "dump"
    dump.mkdir()
    subprocess.run(["msidump", "-t", str(msi)], cwd=dump, check=True, capture_output=True)
    idt = (dump / "Directory.idt").read_text()
    sub_id = next(ln.split("\t")[0] for ln in idt.splitlines() if ln.endswith("\tsub"))
    idt = "\n".join(
        f"INSTALLDIR\t{sub_id}\t" + ln.split("\t", 2)[2] if ln.startswith("INSTALLDIR\t") else ln
        for ln in idt.splitlines()
    )
    (dump / "Directory.idt").write_text(idt + "\n")
    subprocess.run(["msibuild", str(msi), "-i", "Directory.idt"], cwd=dump, check=True)
    with pytest.raises(subprocess.TimeoutExpired):  # the real tool spins on it
        subprocess.run(["msiextract", "-C", str(root / "probe"), str(msi)], timeout=3, check=False)
    return msi


def _procs_with(text: str) -> list[int]:
    """pids whose command line mentions ``text`` (Linux /proc)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and int(p.name) != os.getpid():
            out.append(int(p.name))
    return out


def _extracting(msi: Path) -> list[int]:
    return [p for p in _procs_with(str(msi)) if b"msiextract" in _cmd(p)]


def _cmd(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _wait(cond: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def test_row10_external_tool_under_a_deadline(spinning_msi: Path, tmp_path: Path) -> None:
    from verifier.unpack import Limits, unpack

    start = time.monotonic()
    u = unpack(str(spinning_msi), str(tmp_path / "w"), Limits(worker_timeout_s=3))
    assert time.monotonic() - start < 30
    assert any("timed out" in a.message or "did not finish" in a.message for a in u.problems)
    assert _wait(lambda: not _procs_with(str(spinning_msi)), 5)


@pytest.fixture
def private_tmp(tmp_path: Path) -> Iterator[dict[str, str]]:
    t = tmp_path / "tmp"
    t.mkdir()
    yield {"TMPDIR": str(t)}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_row10_signal_stops_workers_and_cleans_up(
    spinning_msi: Path, up: Path, private_tmp: dict[str, str], sig: signal.Signals
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "verifier", "verify", str(spinning_msi), "--against", f"path:{up}"],
        env={**os.environ, **private_tmp},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert _wait(lambda: any(_extracting(spinning_msi)), 60), "msiextract never started"
        tools = _procs_with(str(spinning_msi))
        proc.send_signal(sig)
        rc = proc.wait(timeout=15)
    finally:
        proc.kill()
    assert rc == 128 + sig  # and this test process, biv's caller, is still alive
    assert _wait(lambda: not any(Path(f"/proc/{p}").exists() for p in tools), 5)
    assert list(Path(private_tmp["TMPDIR"]).iterdir()) == []
    assert b"interrupted" in proc.stderr.read()  # type: ignore[union-attr]


def test_row10_sigkill_then_sweep(
    spinning_msi: Path, up: Path, private_tmp: dict[str, str], tmp_path: Path
) -> None:
    tmp = Path(private_tmp["TMPDIR"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "verifier", "verify", str(spinning_msi), "--against", f"path:{up}"],
        env={**os.environ, **private_tmp},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait(lambda: any(_extracting(spinning_msi)), 60)
        tools = _procs_with(str(spinning_msi))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=15)
    finally:
        proc.kill()
    # the worker notices its parent is gone and takes its tools down with it
    assert _wait(lambda: not any(Path(f"/proc/{p}").exists() for p in tools), 10)
    left = list(tmp.iterdir())
    assert left and all(p.name.startswith(f"biv-{proc.pid}-") for p in left)
    alive = tmp / "biv-live"  # a live owner's directory must survive the sweep
    alive.mkdir()
    (alive / ".biv-owner").write_text(json.dumps({"pid": os.getpid(), "start": None}))
    foreign = tmp / "biv-not-ours"  # no owner file: never touched
    foreign.mkdir()
    proc2 = biv_proc("verify", str(up), "--against", f"path:{up}", env=private_tmp)
    assert proc2.returncode == 0, proc2.stderr
    assert sorted(p.name for p in tmp.iterdir()) == ["biv-live", "biv-not-ours"]


# --- row 11: a server that trickles -----------------------------------------------------------


def test_row11_download_deadline(tmp_path: Path, up: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from support.httpserver import LocalServer

    data = DLL
    with LocalServer() as srv:
        url = srv.put("dl/release.bin", data)
        srv.fault("dl/release.bin", "trickle")
        monkeypatch.setenv("BIV_DOWNLOAD_DEADLINE", "3")
        start = time.monotonic()
        rc, report = verify_json(
            str(up),
            "--against",
            f"url:{url}#sha256={hashlib.sha256(data).hexdigest()}",
            "--cache-dir",
            str(tmp_path / "cache"),
        )
        took = time.monotonic() - start
    assert rc == 3 and report["verdict"] == "inconclusive"
    assert any("deadline" in r for r in report["inconclusive"])
    assert took < 30
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".download-")]


def test_row11_minimum_rate(tmp_path: Path) -> None:
    from support.httpserver import LocalServer

    from verifier.errors import ReferenceUnavailableError
    from verifier.upstream.http import HttpClient
    from verifier.upstream.options import FetchOptions

    with LocalServer() as srv:
        url = srv.put("slow.bin", b"x" * 100)
        srv.fault("slow.bin", "trickle")
        opts = FetchOptions(min_rate=100, rate_window=2.0, retries=0)
        with HttpClient(opts) as c, pytest.raises(ReferenceUnavailableError, match="slower than"):
            c.download(url, str(tmp_path / "d"))
    assert list((tmp_path / "d").iterdir()) == []


# --- row 12: a top-level archive over a cap ---------------------------------------------------


def test_row12_top_level_over_a_cap_is_a_finding(tmp_path: Path, up: Path) -> None:
    import struct

    from support import asar

    huge = tmp_path / "huge.asar"
    huge.write_bytes(struct.pack("<IIIi", 4, 0xFFFFFFF0, 0xFFFFFFEC, 0x7FFFFFF0) + b"{}")
    deep = tmp_path / "deep.asar"
    deep.write_bytes(asar.pickle_header(b'{"files":' + b'{"a":' * 10_000 + b"{}" + b"}" * 10_001))
    for art, why in ((huge, "above the cap"), (deep, "nested too deeply")):
        rc, report = verify_json(str(art), "--against", f"path:{up}")
        assert rc == 1, (art.name, report)
        (f,) = by_rule(report, "malformed-input")
        assert why in f["message"] and f["location"] == art.name


def test_many_members_writer_is_a_real_zip(tmp_path: Path) -> None:
    import zipfile

    art = many_empty_members(tmp_path / "m.zip", 70_000)  # past 65,535: ZIP64 end records
    with zipfile.ZipFile(art) as z:
        assert len(z.infolist()) == 70_000


def many_empty_members(path: Path, count: int) -> Path:
    """A zip of ``count`` empty stored members, written record by record (what zipfile
    writes, minus its per-member cost)."""
    import struct
    import zlib

    local, central = bytearray(), bytearray()
    for i in range(count):
        name = f"f{i}".encode()
        off = len(local)
        local += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 33, 0, 0, 0, len(name), 0)
        local += name
        central += struct.pack(
            "<4s6H3I5H2I",
            b"PK\x01\x02",
            20,
            20,
            0,
            0,
            0,
            33,
            0,
            0,
            0,
            len(name),
            0,
            0,
            0,
            0,
            0,
            off,
        )
        central += name
    cd_at = len(local)
    rec64 = struct.pack(
        "<4sQ2H2I4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(central), cd_at
    )
    loc = struct.pack("<4sIQI", b"PK\x06\x07", 0, cd_at + len(central), 1)
    n = min(count, 0xFFFF)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, n, n, len(central), cd_at, 0)
    assert zlib.crc32(b"") == 0
    path.write_bytes(bytes(local + central + rec64 + loc + end))
    return path


def test_row12_zip_with_200002_members(tmp_path: Path, up: Path) -> None:
    art = many_empty_members(tmp_path / "many.zip", 200_002)
    rc, report = verify_json(str(art), "--against", f"path:{up}")
    assert rc == 1
    (f,) = by_rule(report, "malformed-input")
    assert "200002 entries" in f["message"]


# --- row 13: read nothing before knowing what it is -------------------------------------------


def test_row13_sparse_20gb_artifact(tmp_path: Path, up: Path) -> None:
    zeros = tmp_path / "zeros.bin"
    with open(zeros, "wb") as fh:
        fh.truncate(20 << 30)
    start = time.monotonic()
    proc = biv_proc("verify", str(zeros), "--against", f"path:{up}", timeout=60)
    assert proc.returncode == 2 and b"not a directory or a supported archive" in proc.stderr
    zipish = tmp_path / "big.zip"
    with open(zipish, "wb") as fh:
        fh.write(b"PK\x03\x04")
        fh.truncate(20 << 30)
    pe_head = tmp_path / "huge.dll"
    with open(pe_head, "wb") as fh:
        fh.write(DLL[:4096])
        fh.truncate(20 << 30)
    for art in (zipish, pe_head):
        rc, report = verify_json(str(art), "--against", f"path:{up}")
        assert rc == 1, art.name
        (f,) = by_rule(report, "malformed-input")
        assert "larger than the" in f["message"]
        assert report["artifact"]["sha256"] == ""
    assert time.monotonic() - start < 40  # none of the 20 GB files was hashed


@pytest.mark.parametrize("where", ["--policy", "--trust-store", "artifact"])
def test_row13_fifo_refused_at_once(tmp_path: Path, up: Path, where: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    args = [str(fifo)] if where == "artifact" else [str(up), where, str(fifo)]
    proc = biv_proc("verify", *args, "--against", f"path:{up}", timeout=20)
    assert proc.returncode == 2
    assert b"not a regular file" in proc.stderr

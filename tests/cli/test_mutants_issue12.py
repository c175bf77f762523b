"""Tests that kill the mutants that survived the whole suite (issue 12).

Each test names the mutant it kills; each was checked by applying the mutant by hand and
seeing the test fail.
"""

from __future__ import annotations

import contextlib
import io
import struct
from pathlib import Path

import pytest
from support.policy_kit import VENDOR, entry, result, rules, run, sig

from verifier._scenarios import pewriter
from verifier.binary import pe
from verifier.model import Severity, Status
from verifier.signing import authenticode
from verifier.unpack import paths


def _table(slack: bytes) -> bytes:
    """One WIN_CERTIFICATE: a 6-byte DER SEQUENCE, then ``slack`` up to the 8-byte boundary."""
    der = b"\x30\x04\x00\x00\x00\x00"
    length = 8 + len(der) + len(slack)
    return struct.pack("<IHH", length, 0x0200, 2) + der + slack


@pytest.mark.parametrize(("slack", "flagged"), [(b"\x00\x00", False), (b"\xcc\xcc", True)])
def test_nonzero_alignment_slack_is_signature_padding(slack: bytes, flagged: bool) -> None:
    """Mutant: the padding check without ``or any(slack)``: two 0xCC bytes inside the 0-7
    bytes that alignment allows must still be ``signature-padding``."""
    data = _table(slack)
    assert len(data) % 8 == 0
    t = authenticode.parse_table(
        data, table_offset=4096, dir_size=len(data), file_size=4096 + len(data),
        last_section_end=4096,
    )  # fmt: skip
    got = [a for a in t.problems if a.rule == "signature-padding"]
    assert bool(got) is flagged


def test_alignment_pad_keeps_nonzero_bytes(tmp_path: Path) -> None:
    """Mutant: ``alignment_pad`` stripping trailing bytes even when they are not zero."""
    dll = pewriter.build_pe(pewriter.ffmpeg_dll())
    for tail, want in ((b"\x00\x00\x00", 2), (b"\xcc\xcc\xcc", 0), (b"\xcc\x00\x00", 2)):
        data = dll + tail
        info = pe.parse_pe(data[: pe.MAX_HEADERS], len(data))
        pad = pe.alignment_pad(info, data[-7:])
        assert pad.length == want, tail


def test_allow_changed_never_waives_signed_divergent_content(tmp_path: Path) -> None:
    """Mutant: a custom policy's ``allow.changed`` glob waiving ``signed-divergent-content``:
    a signed file with foreign code is the case biv exists for."""
    from verifier.policy.load import load_policy

    p = tmp_path / "p.yaml"
    p.write_text("allow:\n  changed: ['*.dll', '**/*.dll']\n")
    policy = load_policy(str(p))
    up = entry("ffmpeg.dll", sha="01" * 32)
    signed = entry("ffmpeg.dll", sha="02" * 32, signature=sig(VENDOR))
    got = rules(run(result(Status.DIVERGENT, signed, up), policy=policy))
    assert ("signed-divergent-content", Severity.CRITICAL.value) in got
    unsigned = entry("ffmpeg.dll", sha="03" * 32)
    assert rules(run(result(Status.DIVERGENT, unsigned, up), policy=policy)) == []


def test_internal_error_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Mutant: the CLI's internal-error exit code changed from 2 to 0. A bug cannot be caused
    by input (that is what makes it a bug), so this one fault is injected."""
    from verifier import api
    from verifier.cli import main

    def broken(_req: object) -> object:
        raise RuntimeError("injected \x1b[31mbug")

    monkeypatch.setattr(api, "verify", broken)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["verify", str(tmp_path), "--against", f"path:{tmp_path}", "-q"])
    assert rc == 2
    line = err.getvalue()
    assert line.startswith("biv: internal error: RuntimeError: injected") and "\x1b" not in line
    assert "Traceback" not in line


def test_inside_needs_a_separator_boundary(tmp_path: Path) -> None:
    """Mutant: ``inside()`` without the ``os.sep`` boundary (``out/a`` vs ``out/ab``)."""
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    assert paths.inside(str(out), str(out / "a"))
    assert paths.inside(str(out), str(out))
    assert not paths.inside(str(out), str(tmp_path / "outside"))
    assert not paths.inside(str(out / "a"), str(out / "ab"))

"""HTML report: self-contained, escaped, readable; rendered in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import struct
from pathlib import Path

import pytest
from support.chromium import CHROMIUM, chromium
from support.demo_report import HOSTILE_NAME, demo_report
from support.png import pixel as png_pixel

from verifier.baseline import apply_baseline
from verifier.model import Finding, Report, Severity, Verdict
from verifier.report.html import render_html


def test_self_contained_and_escaped() -> None:
    page = render_html(demo_report())
    assert page.startswith("<!DOCTYPE html>")
    # no script elements, no external resources of any kind
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page, re.I)
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page
    # the hostile file name is shown, escaped
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;.node" in page
    assert HOSTILE_NAME not in page


def test_order_verdict_components_files_findings() -> None:
    page = render_html(demo_report())
    idx = [page.index(s) for s in ('id="verdict"', "<h2>Components", 'id="files"', "<h2>Findings")]
    assert idx == sorted(idx)
    assert ">FAIL<" in page
    assert "2 critical" in page and "1 suppressed" in page


def test_evidence_is_readable() -> None:
    page = render_html(demo_report())
    assert "Differing sections" in page
    assert "<code>.text</code></td><td>4,096 bytes" in page
    assert "0x443800" in page and "2,160 bytes" in page
    assert "fe ed fa ce" in page  # hex preview of the padding
    assert "7.91 bits/byte" in page
    assert "CN=3CX Ltd, O=3CX Ltd, C=GB" in page  # actual signer
    assert "Waived: vendor signs the main executable" in page


def test_invisible_characters_are_made_visible() -> None:
    report = demo_report()
    f = Finding("unexpected-binary", Severity.MEDIUM, "evil\u202egpj.exe", "x", "m\x1b[31m")
    page = render_html(Report(**{**report.__dict__, "findings": (f,)}))
    assert "\u202e" not in page and "\x1b" not in page
    assert "evil\\u202egpj.exe" in page


def test_pass_and_baseline_markers() -> None:
    report = demo_report()
    clean = Report(**{**report.__dict__, "findings": (), "verdict": Verdict.PASS})
    page = render_html(clean)
    assert ">PASS<" in page and "No findings." in page
    previous = demo_report(ffmpeg="ffmpeg-tampered-old", extra_unexpected=False).to_dict()
    ann = apply_baseline(report, previous)
    page = render_html(report, baseline=ann)
    assert page.count("NEW SINCE BASELINE") == 2  # new ffmpeg tamper + new unexpected binary


# --- headless Chromium ----------------------------------------------------------------------


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (Debian package 'chromium'; make system-deps)"
)
def test_chromium_renders_report_and_screenshot(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(demo_report()), encoding="utf-8")
    url = page.as_uri()

    dom = chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    text = dom.stdout.decode()
    assert 'class="verdict fail"' in text and ">FAIL<" in text
    assert "signature-padding" in text and "signed-divergent-content" in text
    assert "fe ed fa ce" in text
    # the hostile name stayed text: the parsed DOM has no script element
    assert "<script" not in text.replace("&lt;script", "")
    assert "&lt;script&gt;alert" in text

    shot = tmp_path / "biv-report.png"
    res = chromium(tmp_path, f"--screenshot={shot}", url)
    assert res.returncode == 0 and shot.is_file(), res.stderr.decode(errors="replace")[-2000:]
    png = shot.read_bytes()
    w, h = struct.unpack(">II", png[16:24])
    assert (w, h) == (1280, 2000)
    r, g, b = png_pixel(png, 200, 100)  # inside the verdict banner
    assert r > 120 and g < 60 and b < 60, f"verdict banner is not red: {(r, g, b)}"
    artifacts = os.environ.get("BIV_ARTIFACTS_DIR")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "biv-report-3cx-demo.png")
        shutil.copy(page, Path(artifacts) / "biv-report-3cx-demo.html")


def test_macho_slices_shown() -> None:
    from verifier.model import FileResult, SliceResult, Status

    report = demo_report()
    r = report.files[0]
    sliced = FileResult(
        "Electron Framework.framework/Libraries/libffmpeg.dylib",
        Status.DIVERGENT,
        r.shipped,
        r.reference,
        "electron",
        slices=(
            SliceResult("x86_64", Status.DIVERGENT, "a" * 64, "b" * 64),
            SliceResult("arm64", Status.IDENTICAL, "c" * 64, "d" * 64),
        ),
    )
    page = render_html(Report(**{**report.__dict__, "files": (sliced,)}))
    assert '<code>x86_64</code> <span class="badge st-divergent">divergent</span>' in page
    assert '<code>arm64</code> <span class="badge st-identical">identical</span>' in page

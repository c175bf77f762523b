"""The HTML report of the compromised 3CX demo build (the real pipeline), rendered in headless
Chromium, with a screenshot kept in $BIV_ARTIFACTS_DIR (or the test's tmp dir)."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from support.chromium import CHROMIUM, chromium
from support.png import find_row
from support.png import pixel as png_pixel

from verifier._scenarios.scenario import Scenario
from verifier.report.html import render_html


def _demo_report(sc: Scenario, tmp: Path) -> Any:
    from verifier import api

    return api.verify(
        api.VerifyRequest(
            artifact=sc.compromised,
            against=(f"path:{sc.upstream}",),
            trust_stores=(sc.trust_store,),
            workdir=str(tmp / "work"),
        )
    )


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (Debian package 'chromium'; make system-deps)"
)
def test_demo_compromised_report_inchromium(scenario: Scenario, tmp_path: Path) -> None:
    report = _demo_report(scenario, tmp_path)
    page = tmp_path / "biv-report-demo-compromised.html"
    page.write_text(render_html(report), encoding="utf-8")
    rules = {f.rule for f in report.findings}
    assert {"signed-divergent-content", "signature-padding"} <= rules

    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    text = dom.stdout.decode()
    assert 'class="verdict fail"' in text
    assert "signed-divergent-content" in text and "signature-padding" in text
    assert "Differing sections" in text
    assert "fe ed fa ce" in text  # the payload marker, in the hex preview
    assert "bits/byte" in text
    # what changed in ffmpeg.dll: divergent files first, a picture of the file, the loader
    assert "Divergent files (1)" in text and 'class="fileviz"' in text
    assert text.index('id="changed"') < text.index('id="files"')
    assert "sub rsp, 0x28" in text and "kernel32.dll!VirtualProtect" in text
    identical = sum(1 for f in report.files if f.status.value == "identical")
    assert f"{identical} identical file" in text  # folded away behind a count

    shot = tmp_path / "biv-report-demo-compromised.png"
    # tall enough for the file table and every finding's evidence
    res = chromium(tmp_path, f"--screenshot={shot}", page.as_uri(), size="1280,4000")
    assert res.returncode == 0 and shot.is_file(), res.stderr.decode(errors="replace")[-2000:]
    png = shot.read_bytes()
    assert struct.unpack(">II", png[16:24]) == (1280, 4000)
    r, g, b = png_pixel(png, 200, 100)
    assert r > 120 and g < 60 and b < 60, f"verdict banner is not red: {(r, g, b)}"
    # the changed-bytes band of ffmpeg.dll's picture (#b91c1c), below the verdict
    band = find_row(png, bytes((0xB9, 0x1C, 0x1C)) * 40, 1200)
    assert band is not None and band > 300, "the picture of the divergent file did not render"
    artifacts = os.environ.get("BIV_ARTIFACTS_DIR")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / shot.name)
        shutil.copy(page, Path(artifacts) / page.name)

"""``biv demo`` (verifier.demo.run): the verdict logic, and the whole demo end to end."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest

from verifier.demo.run import EXPECTED_FAILURES, judge, run_demo
from verifier.errors import UsageError
from verifier.model import Finding, Report, Severity, Verdict


def _report(verdict: Verdict, *findings: tuple[str, str, bool]) -> Report:
    return Report(
        tool_version="0",
        generated_at="2026-01-01T00:00:00Z",
        artifact={"path": "x", "sha256": "0" * 64, "size": 0},
        verdict=verdict,
        components=(),
        files=(),
        findings=tuple(
            Finding(rule, Severity.CRITICAL, path, path, "m", suppressed=sup)
            for rule, path, sup in findings
        ),
    )


GOOD_BAD = _report(
    Verdict.FAIL,
    ("signed-divergent-content", "ffmpeg.dll", False),
    ("signature-padding", "d3dcompiler_47.dll", False),
    ("signature-modified", "d3dcompiler_47.dll", False),
)


def test_judge_accepts_the_expected_outcome() -> None:
    assert judge(_report(Verdict.PASS), GOOD_BAD) == []


def test_judge_rejects_a_failing_clean_build() -> None:
    clean = _report(Verdict.FAIL, ("divergent-content", "LICENSE", False))
    problems = judge(clean, GOOD_BAD)
    assert len(problems) == 1 and "clean build did not pass" in problems[0]
    assert "divergent-content on LICENSE" in problems[0]
    assert judge(_report(Verdict.INCONCLUSIVE), GOOD_BAD)


def test_judge_rejects_wrong_reasons() -> None:
    only_ffmpeg = _report(Verdict.FAIL, ("signed-divergent-content", "ffmpeg.dll", False))
    assert judge(_report(Verdict.PASS), only_ffmpeg) == [
        "the compromised build has no signature-padding finding on d3dcompiler_47.dll"
    ]
    suppressed = _report(
        Verdict.FAIL,
        ("signed-divergent-content", "ffmpeg.dll", True),
        ("signature-padding", "d3dcompiler_47.dll", False),
    )
    assert len(judge(_report(Verdict.PASS), suppressed)) == 1
    wrong_file = _report(
        Verdict.FAIL,
        ("signed-divergent-content", "libEGL.dll", False),
        ("signature-padding", "d3dcompiler_47.dll", False),
    )
    assert len(judge(_report(Verdict.PASS), wrong_file)) == 1
    passed = _report(Verdict.PASS, *((r, n, False) for r, n in EXPECTED_FAILURES))
    assert judge(_report(Verdict.PASS), passed) == [
        "the compromised build did not fail (verdict pass)"
    ]


def test_findings_under_an_app_root_prefix_count() -> None:
    nested = _report(
        Verdict.FAIL,
        ("signed-divergent-content", "app/ffmpeg.dll", False),
        ("signature-padding", "app/d3dcompiler_47.dll", False),
    )
    assert judge(_report(Verdict.PASS), nested) == []


def test_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        run_demo(str(tmp_path), io.StringIO())
    assert (tmp_path / "keep").read_text() == "mine"


@pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="needs osslsigncode")
def test_demo_end_to_end(tmp_path: Path) -> None:
    out = io.StringIO()
    t = time.monotonic()
    rc = run_demo(str(tmp_path / "demo"), out)
    elapsed = time.monotonic() - t
    text = out.getvalue()
    assert rc == 0, text
    assert "DEMO OK" in text
    assert "ffmpeg.dll" in text and "d3dcompiler_47.dll" in text
    assert "4 dependencies verified, 0 unverifiable, 0 with findings" in text  # clean build
    assert "FAIL  @demo/sip-client@2.4.1" in text and "files: lib/transport.js" in text
    assert elapsed < 30
    assert (tmp_path / "demo" / "compromised" / "ffmpeg.dll").is_file()  # --keep keeps it


def test_judge_npm_wants_every_dependency_verified_and_the_patch_caught() -> None:
    from dataclasses import replace

    from verifier._scenarios.npm_deps import PACKAGES, PATCHED
    from verifier.demo.run import judge_npm
    from verifier.model import Component

    deps = tuple(
        Component(f"npm:{n}@{v}", v, "deps:npm", npm={"status": "verified", "paths": []})
        for n, v in PACKAGES
    )
    clean = replace(_report(Verdict.PASS), components=deps)
    name, version, rel, _ = PATCHED
    hit = Finding(
        "divergent-content",
        Severity.HIGH,
        "p",
        "p",
        "m",
        evidence={"package": name, "version": version, "file": rel},
    )
    bad = replace(GOOD_BAD, findings=(*GOOD_BAD.findings, hit))
    assert judge_npm(clean, bad) == []
    assert judge_npm(clean, GOOD_BAD) == [
        f"the compromised build has no divergent-content on {name}'s {rel}"
    ]
    one_missing = replace(clean, components=deps[1:])
    assert judge_npm(one_missing, bad) == [
        f"the clean build's npm dependencies: {len(PACKAGES) - 1} of {len(PACKAGES)} verified"
    ]

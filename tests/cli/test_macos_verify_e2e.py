"""The macOS counterpart of the demo, end to end through `verify`.

Upstream: Electron.app for darwin-x64 and darwin-arm64 (thin). Shipped: a universal
vendor app. The clean one passes; the 3CX-style one (x86_64 slice of libffmpeg.dylib changed,
re-signed by the vendor) fails naming that slice; a file changed after sealing makes the
bundle's seal invalid.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from verifier import api
from verifier.model import Report, Status

LIBFFMPEG = "Contents/Frameworks/Electron Framework.framework/Versions/A/Libraries/libffmpeg.dylib"


def run(mac_scenario: dict[str, Path], art: Path) -> Report:
    return api.verify(
        api.VerifyRequest(
            str(art),
            (f"path:{mac_scenario['upstream-x64']}", f"path:{mac_scenario['upstream-arm64']}"),
            trust_stores=(str(mac_scenario["roots"]),),
        )
    )


def _find(report: Report, suffix: str) -> object:
    (r,) = [r for r in report.files if r.path.endswith(suffix)]
    return r


def test_clean_universal_vendor_app_passes(mac_scenario: dict[str, Path]) -> None:
    report = run(mac_scenario, mac_scenario["vendor-clean"])
    failing = [f for f in report.findings if f.severity.value in ("critical", "high")]
    assert failing == [], [(f.rule, f.path, f.message) for f in failing]
    assert report.verdict.value == "pass"
    ff = _find(report, "libffmpeg.dylib")
    assert ff.status in (Status.IDENTICAL_EXCEPT_SIGNATURE, Status.IDENTICAL)  # type: ignore[attr-defined]
    assert {s.arch for s in ff.slices} == {"x86_64", "arm64"}  # type: ignore[attr-defined]


def test_3cx_style_app_fails_naming_the_x86_64_slice(mac_scenario: dict[str, Path]) -> None:
    report = run(mac_scenario, mac_scenario["vendor-3cx"])
    assert report.verdict.value == "fail"
    hits = [f for f in report.findings if f.rule == "signed-divergent-content"]
    assert hits, [(f.rule, f.path) for f in report.findings]
    f = hits[0]
    assert f.path.endswith("libffmpeg.dylib")
    assert f.evidence.get("arch") == "x86_64" or "x86_64" in f.message
    ff = _find(report, "libffmpeg.dylib")
    slices = {s.arch: s.status for s in ff.slices}  # type: ignore[attr-defined]
    assert slices["x86_64"] == Status.DIVERGENT
    assert slices["arm64"] in (Status.IDENTICAL, Status.IDENTICAL_EXCEPT_SIGNATURE)
    doc = json.loads(json.dumps(report.to_dict()))
    (entry,) = [x for x in doc["files"] if x["path"].endswith("libffmpeg.dylib")]
    assert {s["arch"]: s["status"] for s in entry["slices"]}["x86_64"] == "divergent"


def test_file_changed_inside_a_sealed_bundle_invalidates_it(
    mac_scenario: dict[str, Path], tmp_path: Path
) -> None:
    app = tmp_path / mac_scenario["vendor-clean"].name
    shutil.copytree(mac_scenario["vendor-clean"], app, symlinks=True)
    art = app
    plist = app / "Contents" / "Resources"
    victims = [p for p in plist.rglob("*") if p.is_file()] if plist.exists() else []
    if not victims:
        victims = [p for p in (app / "Contents").rglob("*.pak") if p.is_file()]
    assert victims, "fixture has no sealed resource to change"
    victims[0].write_bytes(victims[0].read_bytes() + b"tampered")
    report = run(mac_scenario, art)
    assert any(f.rule == "invalid-signature" for f in report.findings), [
        (f.rule, f.path) for f in report.findings
    ]
    assert report.verdict.value == "fail"

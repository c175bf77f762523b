"""Release-to-release baselines and the installer's own signature, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import biv
from support.installers import build_nsis

from verifier._scenarios import osslsign
from verifier._scenarios.scenario import Scenario


def test_baseline_marks_only_what_changed_since_the_previous_release(
    scenario: Scenario, tmp_path: Path
) -> None:
    common = ["--against", f"path:{scenario.upstream}", "--trust-store", scenario.trust_store]
    prev = tmp_path / "release-n.json"
    r = biv("verify", scenario.clean, *common, "--format", "json", "-o", str(prev))
    assert r.returncode == 0, r.stderr
    r = biv("verify", scenario.compromised, *common, "--format", "json", "--baseline", str(prev))
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert "ffmpeg.dll" in d["baseline"]["newly_divergent"]
    new = {(f["rule"], f["path"]) for f in d["findings"] if f.get("new_since_baseline")}
    assert ("signed-divergent-content", "ffmpeg.dll") in new
    r = biv("verify", scenario.compromised, *common, "--baseline", str(prev))
    assert "[new]" in r.stdout and "newly divergent" in r.stdout
    # the same release against itself: nothing new
    r = biv("verify", scenario.clean, *common, "--format", "json", "--baseline", str(prev))
    d = json.loads(r.stdout)
    assert d["baseline"]["new_findings"] == 0
    assert not any(f.get("new_since_baseline") for f in d["findings"])


def test_bad_baseline_is_usage_error(scenario: Scenario, tmp_path: Path) -> None:
    bad = tmp_path / "prev.json"
    bad.write_text("{not json")
    r = biv(
        "verify", scenario.clean, "--against", f"path:{scenario.upstream}", "--baseline", str(bad)
    )
    assert r.returncode == 2
    assert r.stderr.startswith("biv: error: ") and "Traceback" not in r.stderr


def test_signed_setup_exe_reports_its_own_signature(scenario: Scenario, tmp_path: Path) -> None:
    setup = build_nsis(Path(scenario.clean), tmp_path / "setup-unsigned.exe", "3CXDesktopApp")
    pki = scenario.vendor_pki
    signed = tmp_path / "setup.exe"
    osslsign.sign(setup, signed, pki.signer_cert, pki.signer_key, pki.intermediate_cert)
    common = [
        "--against",
        f"path:{scenario.upstream}",
        "--trust-store",
        scenario.trust_store,
        "--format",
        "json",
    ]
    r = biv("verify", str(signed), *common)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    d = json.loads(r.stdout)
    (me,) = [f for f in d["files"] if f["path"] == "setup.exe"]
    assert me["status"] == "own"
    assert me["signature"]["signed"] is True and me["signature"]["valid"] is True
    assert "ACME Desktop" in me["signature"]["signers"][0]["subject"]

    # one byte changed inside the signed range of the installer
    data = bytearray(signed.read_bytes())
    data[0x200] ^= 0xFF
    tampered = tmp_path / "setup-tampered.exe"
    tampered.write_bytes(bytes(data))
    r = biv("verify", str(tampered), *common)
    d = json.loads(r.stdout)
    assert r.returncode == 1
    assert ("invalid-signature", "setup-tampered.exe") in {
        (f["rule"], f["path"]) for f in d["findings"]
    }

"""The composite GitHub Action (action.yml) and the workflows: structure, pinning, and the
steps' shell commands run locally with bash (inputs substituted, GITHUB_OUTPUT a temp file)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.paths import REPO

ROOT = REPO
ACTION = ROOT / "action.yml"
WORKFLOWS = ROOT / ".github" / "workflows"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
EXPR = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def action() -> dict[str, Any]:
    return load(ACTION)


def step(doc: dict[str, Any], step_id: str) -> dict[str, Any]:
    for s in doc["runs"]["steps"]:
        if s.get("id") == step_id:
            return dict(s)
    raise AssertionError(f"no step {step_id}")


def test_action_inputs_outputs() -> None:
    doc = action()
    assert doc["runs"]["using"] == "composite"
    for name in ("artifact", "against", "policy", "fail-on", "sarif", "attest"):
        assert name in doc["inputs"], name
        assert doc["inputs"][name]["description"]
    assert doc["inputs"]["artifact"]["required"] is True
    assert doc["inputs"]["fail-on"]["default"] == "high"
    for name in ("verdict", "report", "sarif-file", "attestation"):
        out = doc["outputs"][name]
        assert out["value"] == f"${{{{ steps.verify.outputs.{name} }}}}"


def _uses(doc: Any) -> list[str]:
    found: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "uses" and isinstance(v, str):
                found.append(v)
            else:
                found += _uses(v)
    elif isinstance(doc, list):
        for v in doc:
            found += _uses(v)
    return found


def test_every_external_action_is_pinned_by_commit_sha() -> None:
    files = [ACTION, *sorted(WORKFLOWS.glob("*.yml"))]
    assert {p.name for p in files} >= {"action.yml", "ci.yml", "release-gate.yml"}
    for path in files:
        uses = _uses(load(path))
        assert uses, path
        for u in uses:
            if u.startswith("./"):
                continue
            assert SHA_PIN.match(u), f"{path.name}: {u} is not pinned by a 40-hex commit"
        # a version comment next to every pin, for humans and Dependabot
        for line in path.read_text().splitlines():
            if re.search(r"uses:\s*[^.\s][^@\s]*@[0-9a-f]{40}", line):
                assert re.search(r"#\s*v\d", line), f"{path.name}: no version comment: {line}"


def test_inputs_never_interpolated_into_scripts() -> None:
    """Script injection: ${{ inputs.* }} only in env/with, never inside run:."""
    for s in action()["runs"]["steps"]:
        if "run" in s:
            assert "${{" not in s["run"], s.get("name")
    assert (
        'pip install --quiet --disable-pip-version-check "$GITHUB_ACTION_PATH"'
        in step(action(), "install")["run"]
    )


def test_workflows() -> None:
    ci = load(WORKFLOWS / "ci.yml")
    runs = [s.get("run", "") for s in ci["jobs"]["test"]["steps"]]
    assert any("bash .ci/run" in r for r in runs)
    gate = load(WORKFLOWS / "release-gate.yml")
    verify = gate["jobs"]["verify"]
    assert verify["permissions"]["security-events"] == "write"
    uses = [s.get("uses", "") for s in verify["steps"]]
    assert "./" in uses
    assert any(u.startswith("github/codeql-action/upload-sarif@") for u in uses)
    assert gate["jobs"]["publish"]["needs"] == "verify"


# --- running the Verify step locally -------------------------------------------------------------


def run_step(
    tmp: Path, inputs: dict[str, str], bindir: Path, step_id: str = "verify"
) -> tuple[int, dict[str, str], str]:
    """Run one step's ``run:`` with bash as the runner would; (exit code, outputs, stderr)."""
    doc = action()
    s = step(doc, step_id)
    defaults = {k: str(v.get("default", "")) for k, v in doc["inputs"].items()}
    values = {**defaults, **inputs}

    def subst(text: str) -> str:
        def one(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr.startswith("inputs."):
                return values[expr[len("inputs.") :]]
            if expr == "github.action_path":
                return str(ROOT)
            raise AssertionError(f"unexpected expression {expr}")

        return EXPR.sub(one, text)

    out_file = tmp / "github_output"
    out_file.write_text("")
    env = {
        "PATH": f"{bindir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp),
        "RUNNER_TEMP": str(tmp / "runner"),
        "GITHUB_OUTPUT": str(out_file),
        "GITHUB_ACTION_PATH": str(ROOT),
        "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"),
    }
    (tmp / "runner").mkdir(exist_ok=True)
    for k, v in (s.get("env") or {}).items():
        env[k] = subst(str(v))
    assert s["shell"] == "bash"
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", s["run"]],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    outputs = {}
    for line in out_file.read_text().splitlines():
        k, _, v = line.partition("=")
        outputs[k] = v
    return proc.returncode, outputs, proc.stdout + proc.stderr


FAKE_BIV = r"""#!/usr/bin/env bash
# Test double for the action's plumbing: records argv, writes the requested format.
printf '%s\0' "$@" >> "$FAKE_LOG"
printf '\n' >> "$FAKE_LOG"
fmt=text; out=""; prev=""
for a in "$@"; do
  case "$prev" in
    --format) fmt="$a";; -o) out="$a";; --attest) echo '{"payloadType":"x"}' > "$a";;
  esac
  prev="$a"
done
if [ "$FAKE_RC" = 2 ]; then echo "biv: error: usage" >&2; exit 2; fi
case "$fmt" in
  json) echo "{\"schema\":\"biv.report/v1\",\"verdict\":\"$FAKE_VERDICT\"}" > "$out";;
  sarif) echo '{"version":"2.1.0","runs":[]}' > "$out";;
  html) echo '<!DOCTYPE html>' > "$out";;
esac
exit "$FAKE_RC"
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    d = tmp_path / "fakebin"
    d.mkdir()
    (d / "biv").write_text(FAKE_BIV)
    (d / "biv").chmod(0o755)
    return d


def fake_calls(log: Path) -> list[list[str]]:
    calls = []
    for rec in log.read_bytes().split(b"\n"):
        if rec:
            calls.append([a.decode() for a in rec.split(b"\0") if a])
    return calls


@pytest.mark.parametrize(("verdict", "rc"), [("pass", 0), ("fail", 1), ("inconclusive", 3)])
def test_verify_step_plumbing(tmp_path: Path, fake_bin: Path, verdict: str, rc: int) -> None:
    log = tmp_path / "calls"
    inputs = {
        "artifact": "dist/My App Setup.exe",
        "against": "electron:28.1.0\n  path:upstream dir  \n\n",
        "policy": "policies/electron-app.yaml",
        "fail-on": "critical",
        "attest": "true",
        "html": "report.html",
    }
    step_env = {"FAKE_LOG": str(log), "FAKE_VERDICT": verdict, "FAKE_RC": str(rc)}
    code, outputs, log_text = _run_with_env(tmp_path, inputs, fake_bin, step_env)
    assert code == rc, log_text
    assert outputs["verdict"] == verdict
    assert outputs["report"].endswith("biv-report.json") and Path(outputs["report"]).is_file()
    assert outputs["sarif-file"] == "biv.sarif" and (tmp_path / "biv.sarif").is_file()
    assert outputs["attestation"].endswith(".sigstore.json")
    assert (tmp_path / "report.html").is_file()
    calls = fake_calls(log)
    assert len(calls) == 3  # json (+ attestation), sarif, html
    first = calls[0]
    assert first[:2] == ["verify", "dist/My App Setup.exe"]
    assert first[first.index("--fail-on") + 1] == "critical"
    assert [first[i + 1] for i, a in enumerate(first) if a == "--against"] == [
        "electron:28.1.0",
        "path:upstream dir",
    ]
    assert first[first.index("--policy") + 1] == "policies/electron-app.yaml"
    assert "--attest" in first and "--sigstore" in first
    assert "--attest" not in calls[1] and "--sigstore" not in calls[1]
    assert calls[1][calls[1].index("--format") + 1] == "sarif"
    if rc:
        assert "::error title=biv::" in log_text


def _run_with_env(
    tmp: Path, inputs: dict[str, str], bindir: Path, extra: dict[str, str]
) -> tuple[int, dict[str, str], str]:
    # the fake needs its own variables in the step's environment
    wrapper = tmp / "wrapbin"
    wrapper.mkdir(exist_ok=True)
    exports = "".join(f"export {k}={json.dumps(v)}\n" for k, v in extra.items())
    (wrapper / "biv").write_text(f'#!/usr/bin/env bash\n{exports}exec {bindir}/biv "$@"\n')
    (wrapper / "biv").chmod(0o755)
    return run_step(tmp, inputs, wrapper)


def test_verify_step_usage_error(tmp_path: Path, fake_bin: Path) -> None:
    """biv exits 2 without a report: verdict 'error', the step fails, no outputs invented."""
    code, outputs, _ = _run_with_env(
        tmp_path,
        {"artifact": "missing", "sarif": ""},
        fake_bin,
        {"FAKE_LOG": str(tmp_path / "c"), "FAKE_VERDICT": "x", "FAKE_RC": "2"},
    )
    assert code == 2
    assert outputs["verdict"] == "error"
    assert outputs["report"] == ""
    assert outputs["sarif-file"] == ""
    assert outputs["attestation"] == ""


# --- against the real CLI ---------------------------------------------------------------------


@pytest.fixture
def real_bin(tmp_path: Path) -> Path:
    d = tmp_path / "realbin"
    d.mkdir()
    venv_biv = Path(sys.executable).parent / "biv"
    target = (
        f'exec "{venv_biv}" "$@"'
        if venv_biv.exists()
        else (
            f'PYTHONPATH="{ROOT}${{PYTHONPATH:+:$PYTHONPATH}}" '
            f'exec "{sys.executable}" -m verifier "$@"'
        )
    )
    (d / "biv").write_text(f"#!/usr/bin/env bash\n{target}\n")
    (d / "biv").chmod(0o755)
    return d


_PROBE: dict[str, str | None] = {}


def _biv_verify_works(bindir: Path, tmp: Path) -> str | None:
    """None when ``biv verify`` works on a trivial directory, else why not (probed once)."""
    if "result" not in _PROBE:
        _PROBE["result"] = _probe(bindir, tmp)
    return _PROBE["result"]


def _probe(bindir: Path, tmp: Path) -> str | None:
    up, ship = tmp / "probe-up", tmp / "probe-ship"
    for d in (up, ship):
        d.mkdir()
        (d / "a.txt").write_text("same\n")
    proc = subprocess.run(
        [str(bindir / "biv"), "verify", str(ship), "--against", f"path:{up}", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return None


def test_verify_step_with_real_cli(tmp_path: Path, real_bin: Path) -> None:
    why = _biv_verify_works(real_bin, tmp_path)
    assert why is None, f"biv verify is broken (a product bug, not a skip): {why}"
    up, ship = tmp_path / "upstream", tmp_path / "shipped"
    for d in (up, ship):
        (d / "resources").mkdir(parents=True)
        (d / "LICENSE").write_text("MIT\n")
        (d / "resources" / "data.bin").write_bytes(b"\x00\x01payload")
    code, outputs, text = run_step(
        tmp_path, {"artifact": str(ship), "against": f"path:{up}", "sarif": "out.sarif"}, real_bin
    )
    assert code == 0, text
    assert outputs["verdict"] == "pass"
    report = json.loads(Path(outputs["report"]).read_text())
    assert report["schema"] == "biv.report/v1" and report["verdict"] == "pass"
    sarif = json.loads((tmp_path / "out.sarif").read_text())
    assert sarif["version"] == "2.1.0"


def test_verify_step_with_real_cli_fails_on_tampering(tmp_path: Path, real_bin: Path) -> None:
    why = _biv_verify_works(real_bin, tmp_path)
    assert why is None, f"biv verify is broken (a product bug, not a skip): {why}"
    up, ship = tmp_path / "upstream", tmp_path / "shipped"
    for d in (up, ship):
        (d / "resources").mkdir(parents=True)
        (d / "resources" / "data.bin").write_bytes(b"\x00\x01payload")
    (ship / "resources" / "data.bin").write_bytes(b"\x00\x01payload+implant")
    code, outputs, text = run_step(
        tmp_path,
        {"artifact": str(ship), "against": f"path:{up}", "sarif": "out.sarif", "html": "r.html"},
        real_bin,
    )
    assert code == 1, text
    assert outputs["verdict"] == "fail"
    sarif = json.loads((tmp_path / "out.sarif").read_text())
    rules = {r["ruleId"] for r in sarif["runs"][0]["results"]}
    assert "divergent-content" in rules
    assert "FAIL" in (tmp_path / "r.html").read_text()


def test_verify_step_attest_with_key(tmp_path: Path, fake_bin: Path) -> None:
    code, outputs, text = _run_with_env(
        tmp_path,
        {"artifact": "app", "attest": "true", "signing-key": "keys/vsa.pem", "sarif": ""},
        fake_bin,
        {"FAKE_LOG": str(tmp_path / "c"), "FAKE_VERDICT": "pass", "FAKE_RC": "0"},
    )
    assert code == 0, text
    assert outputs["attestation"].endswith(".dsse.json")
    (call,) = fake_calls(tmp_path / "c")
    assert call[call.index("--signing-key") + 1] == "keys/vsa.pem" and "--sigstore" not in call

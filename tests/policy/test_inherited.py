"""Inherited anomalies (docs/contract.md "Judge the change, not the upstream")."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from verifier.model import (
    Anomaly,
    BinaryFacts,
    Component,
    FileEntry,
    FileFormat,
    FileResult,
    Inventory,
    Reference,
    Severity,
    SignatureFacts,
    SignatureKind,
    SliceFacts,
    Status,
)
from verifier.policy.evaluate import evaluate
from verifier.policy.load import load_policy
from verifier.policy.model import Policy

TODAY = date(2026, 1, 1)
REFS = (Reference(Component("up", "1.0", "path:up"), ()),)


def pe(path: str, sha: str, *anomalies: Anomaly, container: str = "c1") -> FileEntry:
    sig = SignatureFacts(SignatureKind.AUTHENTICODE, True, True, container_sha256=container)
    facts = BinaryFacts(format=FileFormat.PE, signature=sig, anomalies=anomalies)
    return FileEntry(path, path, (), 100, sha, facts)


def run(r: FileResult, policy: Policy | None = None) -> dict[str, tuple[str, dict]]:  # type: ignore[type-arg]
    assert r.shipped is not None
    inv = Inventory("art", "ff" * 32, 1, (r.shipped,))
    found = evaluate((r,), inv, REFS, policy or Policy.default(), TODAY)
    return {f.rule: (f.severity.value, dict(f.evidence), f.message) for f in found}  # type: ignore[misc]


def pad(region: str) -> Anomaly:
    return Anomaly("signature-padding", "non-zero padding", {}, None, region)


def test_same_region_content_is_inherited_even_when_offsets_move() -> None:
    up = pe("up/d3d.dll", "01" * 32, pad("aa" * 32))
    shipped = pe("d3d.dll", "02" * 32, pad("aa" * 32), container="c2")
    r = FileResult("d3d.dll", Status.IDENTICAL_EXCEPT_SIGNATURE, shipped, up, "up")
    got = run(r)
    sev, ev, msg = got["signature-padding"]
    assert sev == "info" and ev["inherited"] is True and ev["inherited_from"] == "up/d3d.dll"
    assert "present in upstream too" in msg


def test_other_content_or_other_slice_is_the_vendors() -> None:
    up = pe("d3d.dll", "01" * 32, pad("aa" * 32))
    shipped = pe("d3d.dll", "02" * 32, pad("bb" * 32))
    r = FileResult("d3d.dll", Status.IDENTICAL_EXCEPT_SIGNATURE, shipped, up, "up")
    sev, ev, _ = run(r)["signature-padding"]
    assert sev == "critical" and "inherited" not in ev

    slack = "cc" * 32
    a_arm = Anomaly("signature-slack", "slack", {}, "arm64", slack)
    a_x64 = Anomaly("signature-slack", "slack", {}, "x86_64", slack)
    sl = (SliceFacts("arm64", 0, 1, "0" * 64, "0" * 64), SliceFacts("x86_64", 0, 1, "1" * 64, "1"))
    up_m = FileEntry(
        "cmake",
        "cmake",
        (),
        9,
        "03" * 32,
        BinaryFacts(FileFormat.MACHO, slices=sl, anomalies=(a_x64,)),
    )
    sh_m = FileEntry(
        "cmake",
        "cmake",
        (),
        9,
        "04" * 32,
        BinaryFacts(FileFormat.MACHO, slices=sl, anomalies=(a_arm,)),
    )
    r = FileResult("cmake", Status.IDENTICAL_EXCEPT_SIGNATURE, sh_m, up_m, "up")
    sev, ev, _ = run(r)["signature-slack"]
    assert sev == "medium" and "inherited" not in ev


def test_identical_file_inherits_everything_but_malformed_input() -> None:
    untrusted = Anomaly("untrusted-signer", "chain does not reach a trusted root")
    bad = Anomaly("malformed-input", "truncated")
    e = pe("x.dll", "01" * 32, untrusted, bad)
    r = FileResult("x.dll", Status.IDENTICAL, e, e, "up")
    got = run(r)
    assert got["untrusted-signer"][0] == "info" and got["untrusted-signer"][1]["inherited"]
    assert got["malformed-input"][0] == "high" and "inherited" not in got["malformed-input"][1]


def test_region_less_anomaly_needs_the_same_signature_and_words() -> None:
    up = pe("a/node.exe", "01" * 32, Anomaly("untrusted-signer", "node.exe: root X unknown"))
    same = pe("node.exe", "02" * 32, Anomaly("untrusted-signer", "node.exe: root X unknown"))
    r = FileResult("node.exe", Status.DIVERGENT, same, up, "up")
    assert run(r)["untrusted-signer"][0] == "info"
    resigned = pe(
        "node.exe",
        "02" * 32,
        Anomaly("untrusted-signer", "node.exe: root X unknown"),
        container="c9",
    )
    r = FileResult("node.exe", Status.DIVERGENT, resigned, up, "up")
    assert run(r)["untrusted-signer"][0] == "high"


def test_policy_can_keep_inherited_findings(tmp_path: Path) -> None:
    p = tmp_path / "keep.yaml"
    p.write_text("extends: electron-app\ninherited: keep\n")
    policy = load_policy(str(p))
    assert policy.keep_inherited and policy.to_dict()["inherited"] == "keep"
    e = pe("x.dll", "01" * 32, pad("aa" * 32))
    r = FileResult("x.dll", Status.IDENTICAL, e, e, "up")
    sev, ev, _ = run(r, policy)["signature-padding"]
    assert sev == Severity.CRITICAL.value and ev["inherited"] is True


def test_bundle_seal_anomaly_upstream_has_too_is_inherited_through_refs_json() -> None:
    msg = "CMake.app: sealed symlink bin/cmake-gui missing or not a link"
    ev = {"path": "CMake.app/Contents/bin/cmake-gui", "bundle": "CMake.app"}
    up = Reference(
        Component("up", "1.0", "path:up"), (), (), (Anomaly("invalid-signature", msg, ev),)
    )
    # reference inventories carry them (biv.refs/v1 round trip)
    up = Reference.from_dict(up.to_dict())
    shipped_ev = {**ev, "path": "cmake-3.14.4.data/data/CMake.app/Contents/bin/cmake-gui"}
    e = pe("x.dll", "01" * 32)
    inv = Inventory("art", "ff" * 32, 1, (e,))
    same = Anomaly("invalid-signature", msg, shipped_ev)
    other = Anomaly("invalid-signature", "CMake.app: sealed file bin/cmake changed", shipped_ev)
    found = evaluate((), inv, (up,), Policy.default(), TODAY, extra=(same, other))
    got = {f.message: (f.severity.value, f.evidence.get("inherited")) for f in found}
    assert got[f"{shipped_ev['path']}: {msg} (present in upstream too: {ev['path']})"] == (
        "info",
        True,
    )
    assert (Severity.HIGH.value, None) in got.values()

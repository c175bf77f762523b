"""`biv inspect` on Mach-O files: slices, identity, Team ID, CodeDirectory facts."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import biv

from verifier._scenarios import macho as w
from verifier._scenarios.macho_app import vendor_identity


def test_inspect_universal_developer_id_signed_binary(tmp_path: Path) -> None:
    ident = vendor_identity()
    slices = [
        w.sign(
            w.build_thin(arch, b"\xc3" * 64),
            "com.acme.tool",
            identity=ident,
            entitlements=b"<plist><dict/></plist>",
        )
        for arch in ("x86_64", "arm64")
    ]
    f = tmp_path / "tool"
    f.write_bytes(w.build_fat(slices))
    roots = tmp_path / "roots.pem"
    roots.write_bytes(ident.root_pem())

    r = biv("inspect", str(f), "--format", "json", "--trust-store", str(roots))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["format"] == "macho"
    assert sorted(d["archs"]) == ["arm64", "x86_64"]
    assert d["signature"]["signed"] is True and d["signature"]["valid"] is True
    for sl in d["slices"]:
        det = sl["signature"]["details"]
        assert det["identifier"] == "com.acme.tool"
        assert det["team_id"] == "ACME000001"
        assert det["pages_checked"] >= 1
        assert sl["signature"]["signers"][0]["team_id"] == "ACME000001"

    r = biv("inspect", str(f), "--trust-store", str(roots))
    assert r.returncode == 0, r.stderr
    assert "slice x86_64" in r.stdout and "slice arm64" in r.stdout
    assert "team id: ACME000001" in r.stdout
    assert "identifier: com.acme.tool" in r.stdout

    # without the vendor's root, the chain does not reach a trusted root
    r = biv("inspect", str(f), "--format", "json")
    d = json.loads(r.stdout)
    assert d["signature"]["valid"] is False
    assert any(a["rule"] == "untrusted-signer" for a in d["anomalies"])


def test_inspect_truncated_macho_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    f = tmp_path / "cut"
    f.write_bytes(w.build_thin("arm64", b"\xc3" * 64)[:40])
    r = biv("inspect", str(f), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    d = json.loads(r.stdout)
    assert any(a["rule"] == "malformed-input" for a in d["anomalies"])

"""A Sigstore bundle on an upstream source, verified through `biv verify` before it is used.

The upstream is the real rfc8785 wheel from PyPI (fetched at test time, pinned by sha256) with
its real production Sigstore bundle (tests/fixtures/sigstore); the shipped artifact is that
wheel's unpacked content.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from support.cli import biv
from support.fixtures import SigstoreFiles

PROD_ID = "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
PROD_ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture
def shipped(sig: SigstoreFiles, tmp_path: Path) -> Path:
    out = tmp_path / "shipped"
    with zipfile.ZipFile(sig.wheel) as z:
        z.extractall(out)
    return out


def test_source_with_valid_bundle_is_used_and_proven(
    sig: SigstoreFiles, shipped: Path, tmp_path: Path
) -> None:
    src = f"path:{sig.wheel},bundle={sig.wheel}.sigstore,identity={PROD_ID},issuer={PROD_ISSUER}"
    r = biv("verify", str(shipped), "--against", src, "--format", "json")
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr
    d = json.loads(r.stdout)
    assert d["verdict"] == "pass"
    proof = " ".join(d["components"][0]["proof"])
    assert "sigstore" in proof.lower()
    assert all(f["status"] == "identical" for f in d["files"])


@pytest.mark.parametrize("attack", ["wrong-identity", "changed-byte"])
def test_source_whose_bundle_fails_is_a_reference_mismatch(
    sig: SigstoreFiles, shipped: Path, tmp_path: Path, attack: str
) -> None:
    wheel, identity = sig.wheel, PROD_ID
    if attack == "wrong-identity":
        identity = "https://github.com/evil/repo/.github/workflows/release.yml@refs/tags/v0.1.2"
    else:
        wheel = tmp_path / sig.wheel.name
        shutil.copy(sig.wheel, wheel)
        data = bytearray(wheel.read_bytes())
        data[-30] ^= 1  # inside the zip's end record: still a file, no longer the signed one
        wheel.write_bytes(bytes(data))
    src = f"path:{wheel},bundle={sig.wheel}.sigstore,identity={identity},issuer={PROD_ISSUER}"
    r = biv("verify", str(shipped), "--against", src, "--format", "json")
    assert r.returncode == 1, r.stdout[-1500:] + r.stderr
    d = json.loads(r.stdout)
    assert any(f["rule"] == "reference-mismatch" for f in d["findings"])
    # the reference that failed its proof is not used: nothing is compared against it
    assert not any(f["status"] == "identical" for f in d["files"])

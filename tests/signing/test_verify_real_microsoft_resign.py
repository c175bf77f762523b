"""signature-modified vs resigned-upstream-file on real Microsoft DLLs, through `verify`.

Microsoft's DLLs already carry a nested signature upstream. A vendor that appends its own
(`osslsigncode -nest`, like `signtool /as`) leaves upstream's signature intact: info. Bytes
added to the unauthenticated attributes under the same signer: critical.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from support.fetch import msvc_wheel

from verifier import api
from verifier._scenarios import osslsign
from verifier._scenarios import pki as P

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("osslsigncode") is None, reason="osslsigncode not installed"),
]


def test_vendor_nest_is_info_but_unauthenticated_blob_is_signature_modified(
    tmp_path: Path,
) -> None:
    wheel = msvc_wheel()
    up, shipped = tmp_path / "up", tmp_path / "shipped"
    up.mkdir()
    shipped.mkdir()
    with zipfile.ZipFile(wheel) as z:
        for n in z.namelist():
            base = n.rsplit("/", 1)[-1]
            if base in ("msvcp140.dll", "vcruntime140_1.dll") and not (up / base).exists():
                (up / base).write_bytes(z.read(n))
    paths = P.vendor_pki().write(tmp_path / "pki")
    osslsign.sign(
        up / "msvcp140.dll",
        shipped / "msvcp140.dll",
        paths.signer_cert,
        paths.signer_key,
        paths.intermediate_cert,
        nest=True,
    )
    subprocess.run(
        [
            "osslsigncode",
            "add",
            "-addUnauthenticatedBlob",
            "-in",
            str(up / "vcruntime140_1.dll"),
            "-out",
            str(shipped / "vcruntime140_1.dll"),
        ],
        capture_output=True,
        check=False,
    )
    if not (shipped / "vcruntime140_1.dll").exists():
        pytest.skip("this osslsigncode cannot add an unauthenticated blob")

    report = api.verify(
        api.VerifyRequest(str(shipped), (f"path:{up}",), trust_stores=(str(paths.root_cert),))
    )
    found = {(f.rule, f.path) for f in report.findings}
    assert ("resigned-upstream-file", "msvcp140.dll") in found
    assert ("signature-modified", "msvcp140.dll") not in found
    assert ("signature-modified", "vcruntime140_1.dll") in found
    statuses = {r.path: r.status.value for r in report.files}
    assert statuses == {
        "msvcp140.dll": "identical-except-signature",
        "vcruntime140_1.dll": "identical-except-signature",
    }
    assert api.exit_code(report) == 1

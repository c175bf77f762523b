"""A realistic ``Report`` of the compromised 3CX-style demo build, built from model dataclasses.

Used by the SARIF, HTML and baseline tests (CI helper). File names include hostile characters
on purpose: they are attacker-controlled.
"""

from __future__ import annotations

import hashlib

from verifier.model import (
    BinaryFacts,
    Component,
    FileEntry,
    FileFormat,
    FileResult,
    Finding,
    Report,
    Severity,
    SignatureFacts,
    SignatureKind,
    Signer,
    Status,
    Verdict,
    Waiver,
)


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


MS = Signer(
    subject="CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US",
    issuer="CN=Microsoft Code Signing PCA 2011, O=Microsoft Corporation, C=US",
    serial="33000001c422b2f79b793dacb20000000001c4",
    sha256=sha("ms-cert"),
)
VENDOR = Signer(
    subject="CN=3CX Ltd, O=3CX Ltd, C=GB",
    issuer="CN=DigiCert Trusted G4 Code Signing RSA4096 SHA384 2021 CA1, O=DigiCert, Inc., C=US",
    serial="0b6e2ac56a1ed0bc6b0c4b4da3f5e2a1",
    sha256=sha("vendor-cert"),
)
HOSTILE_NAME = 'resources/<script>alert("x")</script>&.node'
APP = "3CXDesktopApp-18.12.416"


def _entry(
    path: str,
    content: str,
    fmt: FileFormat = FileFormat.PE,
    signers: tuple[Signer, ...] = (),
    anomalies: tuple[str, ...] = (),
    container: tuple[str, ...] = (),
) -> FileEntry:
    sig = (
        SignatureFacts(SignatureKind.AUTHENTICODE, True, True, signers, anomalies)
        if signers
        else SignatureFacts()
    )
    loc = "!/".join([*container, path]) if container else path
    return FileEntry(
        path, loc, container, 1000 + len(content), sha(content), BinaryFacts(fmt, signature=sig)
    )


def demo_report(
    *,
    ffmpeg: str = "ffmpeg-tampered",
    d3d: str = "d3d-padded",
    extra_unexpected: bool = True,
    container: tuple[str, ...] = (),
) -> Report:
    up_ffmpeg = _entry("ffmpeg.dll", "ffmpeg-upstream")
    up_d3d = _entry("d3dcompiler_47.dll", "d3d-upstream", signers=(MS,))
    up_exe = _entry("electron.exe", "electron-upstream")
    sh_ffmpeg = _entry("ffmpeg.dll", ffmpeg, signers=(VENDOR,), container=container)
    sh_d3d = _entry(
        "d3dcompiler_47.dll",
        d3d,
        signers=(MS,),
        anomalies=("signature-padding",),
        container=container,
    )
    sh_exe = _entry("3CXDesktopApp.exe", "app-exe", signers=(VENDOR,), container=container)
    sh_asar = _entry("resources/app.asar", "asar", FileFormat.ASAR, container=container)
    files = [
        FileResult("ffmpeg.dll", Status.DIVERGENT, sh_ffmpeg, up_ffmpeg, "electron-ffmpeg"),
        FileResult(
            "d3dcompiler_47.dll", Status.IDENTICAL_EXCEPT_SIGNATURE, sh_d3d, up_d3d, "electron"
        ),
        FileResult("3CXDesktopApp.exe", Status.RESOURCES_ONLY, sh_exe, up_exe, "electron"),
        FileResult("resources/app.asar", Status.OWN, sh_asar, None, None),
        FileResult(
            "resources/default_app.asar",
            Status.MISSING,
            None,
            _entry("resources/default_app.asar", "default", FileFormat.ASAR),
            "electron",
        ),
    ]
    findings = [
        Finding(
            "signed-divergent-content",
            Severity.CRITICAL,
            "ffmpeg.dll",
            sh_ffmpeg.location,
            "ffmpeg.dll differs from Electron's ffmpeg.dll in .text and carries a signature "
            "by CN=3CX Ltd",
            {
                "expected_sha256": up_ffmpeg.sha256,
                "actual_sha256": sh_ffmpeg.sha256,
                "sections": [
                    {"name": ".text", "differing_bytes": 4096},
                    {"name": ".rdata", "differing_bytes": 312},
                ],
                "signer_expected": None,
                "signer_actual": VENDOR.subject,
                "component": "electron-ffmpeg 28.1.0 win32-x64",
            },
        ),
        Finding(
            "signature-padding",
            Severity.CRITICAL,
            "d3dcompiler_47.dll",
            sh_d3d.location,
            "2,160 bytes inside WIN_CERTIFICATE after the PKCS#7 signature (CVE-2013-3900)",
            {
                "expected_sha256": up_d3d.sha256,
                "actual_sha256": sh_d3d.sha256,
                "ranges": [{"offset": 4_470_784, "length": 2160}],
                "entropy": 7.91,
                "first_bytes": "feedface8a1f03c94b5ee61d0c7f2a9b",
                "signer_expected": MS.subject,
                "signer_actual": MS.subject,
            },
        ),
        Finding(
            "resigned-upstream-file",
            Severity.INFO,
            "3CXDesktopApp.exe",
            sh_exe.location,
            "3CXDesktopApp.exe re-signed by CN=3CX Ltd",
            {"signer_expected": None, "signer_actual": VENDOR.subject},
            suppressed=True,
            waiver=Waiver("vendor signs the main executable", "2027-01-01", sh_exe.sha256),
        ),
        Finding(
            "missing-file",
            Severity.LOW,
            "resources/default_app.asar",
            "resources/default_app.asar",
            "resources/default_app.asar from electron is absent",
            {"expected_sha256": sha("default")},
        ),
    ]
    if extra_unexpected:
        sh_evil = _entry(HOSTILE_NAME, "evil", FileFormat.PE, container=container)
        files.append(FileResult(HOSTILE_NAME, Status.UNEXPECTED, sh_evil, None, None))
        findings.append(
            Finding(
                "unexpected-binary",
                Severity.MEDIUM,
                HOSTILE_NAME,
                sh_evil.location,
                f"unexpected executable code: {HOSTILE_NAME}",
                {"actual_sha256": sh_evil.sha256},
            )
        )
    comps = (
        Component(
            "electron",
            "28.1.0",
            "electron:28.1.0",
            "win32",
            "x64",
            {"electron-v28.1.0-win32-x64.zip": sha("electron-zip")},
            ("SHASUMS256.txt signed by Electron's release key", "zip sha256 matched"),
        ),
        Component(
            "electron-ffmpeg",
            "28.1.0",
            "electron:28.1.0",
            "win32",
            "x64",
            {"ffmpeg-v28.1.0-win32-x64.zip": sha("ffmpeg-zip")},
            ("SHASUMS256.txt", "zip sha256 matched"),
        ),
    )
    return Report(
        tool_version="0.1.0",
        generated_at="2026-11-27T14:00:00Z",
        artifact={"path": f"/builds/{APP}", "sha256": sha("tree"), "size": 123456789},
        verdict=Verdict.FAIL,
        components=comps,
        files=tuple(files),
        findings=tuple(findings),
        app_root="",
        policy={"name": "electron-app", "path": "policies/electron-app.yaml", "sha256": sha("p")},
    )

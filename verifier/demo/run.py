"""``biv demo``: build the 3CX scenario locally and verify both vendor builds against upstream.

Exit 0 only when the clean build passes and the compromised build fails for the right
reasons: ``signed-divergent-content`` on ffmpeg.dll, ``signature-padding`` on
d3dcompiler_47.dll and ``divergent-content`` on the patched npm dependency in app.asar
(``deps:npm``, against a registry the demo serves on 127.0.0.1). Anything else (including a
crash in a stage) is exit 1 with the reason.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from verifier._scenarios.macho_app import build_scenario as build_mac
from verifier._scenarios.npm_deps import PACKAGES, PATCHED, DemoRegistry
from verifier._scenarios.scenario import PRODUCT, Scenario, build_scenario
from verifier.api import VerifyRequest, verify
from verifier.errors import UsageError
from verifier.model import Finding, Report, Verdict
from verifier.report.text import color_wanted, render_text

# (rule, file name) pairs the compromised build must be failed for
EXPECTED_FAILURES = (
    ("signed-divergent-content", "ffmpeg.dll"),
    ("signature-padding", "d3dcompiler_47.dll"),
)


def _has(findings: Iterable[Finding], rule: str, name: str) -> bool:
    return any(
        f.rule == rule and not f.suppressed and f.path.rsplit("/", 1)[-1] == name for f in findings
    )


def judge(clean: Report, compromised: Report) -> list[str]:
    """What is wrong with the two verdicts (empty list: the demo succeeded)."""
    problems: list[str] = []
    if clean.verdict != Verdict.PASS:
        blocking = [
            f"{f.rule} on {f.path}"
            for f in clean.findings
            if not f.suppressed and f.severity.at_least(clean.fail_on)
        ]
        problems.append(
            f"the clean build did not pass (verdict {clean.verdict.value}"
            + (f": {', '.join(blocking)}" if blocking else "")
            + (f"; {'; '.join(clean.inconclusive_reasons)}" if clean.inconclusive_reasons else "")
            + ")"
        )
    if compromised.verdict != Verdict.FAIL:
        problems.append(f"the compromised build did not fail (verdict {compromised.verdict.value})")
    for rule, name in EXPECTED_FAILURES:
        if not _has(compromised.findings, rule, name):
            problems.append(f"the compromised build has no {rule} finding on {name}")
    return problems


def judge_npm(clean: Report, compromised: Report) -> list[str]:
    """The npm half: every dependency of the clean build verified, the patched one caught."""
    problems: list[str] = []
    deps = [c for c in clean.components if c.npm is not None]
    verified = [c for c in deps if c.npm and c.npm.get("status") == "verified"]
    if len(verified) != len(PACKAGES):
        problems.append(
            f"the clean build's npm dependencies: {len(verified)} of {len(PACKAGES)} verified"
        )
    name, version, rel, _ = PATCHED
    if not any(
        f.rule == "divergent-content"
        and not f.suppressed
        and f.evidence.get("package") == name
        and f.evidence.get("version") == version
        and f.evidence.get("file") == rel
        for f in compromised.findings
    ):
        problems.append(f"the compromised build has no divergent-content on {name}'s {rel}")
    return problems


def run_demo(out_dir: str | None = None, stream: TextIO = sys.stdout) -> int:
    """Build the scenario (in ``out_dir``, kept, or a temporary directory) and verify it."""
    started = time.monotonic()
    tmp: str | None = None
    if out_dir is None:
        tmp = tempfile.mkdtemp(prefix="biv-demo-")
        root = tmp
    else:
        p = Path(out_dir)
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise UsageError("directory exists and is not empty", where=out_dir)
        root = out_dir
    w = stream.write
    try:
        w("biv demo: the 3CX supply-chain attack (March 2023), rebuilt locally with test keys\n\n")
        sc = build_scenario(root)
        _describe(sc, w)
        where = sc.root if tmp is None else f"{sc.root} (removed afterwards; keep it: --keep DIR)"
        w(f"  built in {time.monotonic() - started:.1f}s under {where}\n\n")
        color = color_wanted(stream)
        reports = _windows(sc, root, w, color)
        problems = judge(reports["clean"], reports["compromised"])
        problems += judge_npm(reports["clean"], reports["compromised"])
        problems += _macos(Path(root) / "macos", w, color)
        if problems:
            w("DEMO FAILED:\n")
            for p_ in problems:
                w(f"  - {p_}\n")
            return 1
        w(
            "DEMO OK: the clean build passed; the compromised build failed with "
            + ", ".join(f"{r} on {n}" for r, n in EXPECTED_FAILURES)
            + " and divergent-content on the patched npm dependency in app.asar"
            + "; on macOS the clean universal app passed and the 3CX-style one failed with "
            "signed-divergent-content on libffmpeg.dylib, x86_64 slice"
            + f" ({time.monotonic() - started:.1f}s).\n"
            "Both tampered files still carry valid signatures: a signature check alone "
            "would have shipped them.\n"
        )
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _describe(sc: Scenario, w: Callable[[str], object]) -> None:
    """What was built: the upstream release and the two vendor builds."""
    w(
        f"  upstream/     an Electron {sc.electron_version}-like release (real PE files; "
        "d3dcompiler_47.dll signed by 'Electron Upstream Test CA')\n"
    )
    w(
        f"  clean/        the vendor build: electron.exe -> {sc.product_exe} (resources "
        "changed), signed by 'Vendor Test CA' (ACME Desktop Ltd)\n"
    )
    w(
        "  compromised/  the same build, except: ffmpeg.dll has a loader added and is "
        "vendor-signed;\n"
        "                d3dcompiler_47.dll carries an RC4 payload (FE ED FA CE) at offset "
        f"{sc.padding.payload_offset} inside its still-valid signature;\n"
        f"                {PATCHED[0]}@{PATCHED[1]} in app.asar has a line added to "
        f"{PATCHED[2]}\n"
    )


def _windows(sc: Scenario, root: str, w: Callable[[str], object], color: bool) -> dict[str, Report]:
    """Verify both Windows builds against upstream and the npm registry the demo serves."""
    reports: dict[str, Report] = {}
    with DemoRegistry() as registry:
        w(
            f"  npm registry  {registry.url} serves app.asar's dependencies "
            "(written by the demo)\n\n"
        )
        for build, path in (("clean", sc.clean), ("compromised", sc.compromised)):
            cmd = (
                f"npm_config_registry={registry.url} biv verify {build}/ --against "
                "path:upstream/ --against deps:npm --trust-store trust.pem"
            )
            w(f"=== {build} build ({PRODUCT})   $ {cmd}\n")
            req = VerifyRequest(
                artifact=path,
                against=(f"path:{sc.upstream}", "deps:npm"),
                trust_stores=(sc.trust_store,),
                cache_dir=str(Path(root) / ".biv-cache"),
                env=registry.env(),
            )
            reports[build] = verify(req)
            text = render_text(reports[build], color=color)
            w(text if text.endswith("\n") else text + "\n")
            w("\n")
    return reports


def _macos(root: Path, w: Callable[[str], object], color: bool) -> list[str]:
    """The macOS half: a universal app vs Electron's darwin-x64 and darwin-arm64 releases."""
    sc = build_mac(root)
    w(
        "macOS: upstream-x64/ and upstream-arm64/ are Electron.app for each architecture; the\n"
        "vendor ships a universal Acme.app. In the 3CX-style build only the x86_64 slice of\n"
        "libffmpeg.dylib is changed; it is re-signed with the vendor's Developer ID.\n\n"
    )
    refs = (f"path:{sc['upstream-x64']}", f"path:{sc['upstream-arm64']}")
    got: dict[str, Report] = {}
    for name in ("vendor-clean", "vendor-3cx"):
        cmd = "biv verify Acme.app --against path:upstream-x64/ --against path:upstream-arm64/"
        w(f"=== macOS {name}   $ {cmd} --trust-store test-roots.pem\n")
        got[name] = verify(VerifyRequest(str(sc[name]), refs, trust_stores=(str(sc["roots"]),)))
        w(render_text(got[name], color=color) + "\n")
    problems = []
    if got["vendor-clean"].verdict != Verdict.PASS:
        problems.append("the clean macOS app did not pass")
    hits = [
        f
        for f in got["vendor-3cx"].findings
        if f.rule == "signed-divergent-content" and f.path.endswith("libffmpeg.dylib")
    ]
    if not hits or not any(f.evidence.get("arch") == "x86_64" for f in hits):
        problems.append("the 3CX-style macOS app did not fail on libffmpeg.dylib (x86_64)")
    return problems

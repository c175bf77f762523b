"""evaluate(): docs/contract.md "From status to findings", anomalies, signer rules, waivers,
verdict."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from support.policy_kit import EVIL, GITHUB, MS, REFS, TODAY, VENDOR, entry, result, rules, run, sig

from verifier.model import (
    Anomaly,
    BinaryFacts,
    Component,
    FileEntry,
    FileFormat,
    FileResult,
    Finding,
    Inventory,
    Reference,
    Severity,
    Signer,
    SliceFacts,
    SliceResult,
    Status,
    Verdict,
)
from verifier.policy import Policy
from verifier.policy.evaluate import (
    classify_own,
    effective_fail_on,
    evaluate,
    exit_code,
    finding_fails,
    verdict,
)
from verifier.policy.model import SignerMatcher, SignerRequirement, SignerRule, WaiverRule


def test_identical_gives_nothing() -> None:
    e = entry("d3dcompiler_47.dll", signature=sig(MS))
    assert run(result(Status.IDENTICAL, e, e)) == ()


def test_3cx_d3dcompiler_payload_in_signature_is_signature_modified() -> None:
    up = entry("d3dcompiler_47.dll", sha="01" * 32, signature=sig(MS, container="up"))
    sh = entry("d3dcompiler_47.dll", sha="02" * 32, signature=sig(MS, container="padded"))
    (f,) = run(result(Status.IDENTICAL_EXCEPT_SIGNATURE, sh, up))
    assert (f.rule, f.severity) == ("signature-modified", Severity.CRITICAL)
    assert "signature container differs" in f.message and "Microsoft" in f.message
    assert f.evidence["expected_sha256"] == "01" * 32
    assert f.evidence["actual_sha256"] == "02" * 32
    assert f.evidence["signer_expected"] == f.evidence["signer_actual"] == MS.subject
    assert f.location == "setup.exe!/d3dcompiler_47.dll"
    assert verdict((f,), Severity.HIGH, False) == Verdict.FAIL


def test_vendor_nested_signature_on_intact_upstream_is_resigned_info() -> None:
    up = entry("d3dcompiler_47.dll", signature=sig(MS, container="up"))
    sh = entry(
        "d3dcompiler_47.dll",
        sha="02" * 32,
        signature=sig(MS, container="whole", primary="up", nested=(VENDOR,)),
    )
    (f,) = run(result(Status.IDENTICAL_EXCEPT_SIGNATURE, sh, up))
    assert (f.rule, f.severity) == ("resigned-upstream-file", Severity.INFO)
    assert "nested signature by CN=3CX Ltd" in f.message


def test_resigned_by_vendor() -> None:
    up = entry("ffmpeg.dll")
    sh = entry("ffmpeg.dll", sha="02" * 32, signature=sig(VENDOR))
    (f,) = run(result(Status.IDENTICAL_EXCEPT_SIGNATURE, sh, up))
    assert rules((f,)) == [("resigned-upstream-file", "info")]
    assert "upstream ships it unsigned" in f.message
    assert verdict((f,), Severity.HIGH, False) == Verdict.PASS


def test_resources_only_renamed_main_and_framework_allowed_others_not() -> None:
    main = entry("3CXDesktopApp.exe")
    up = entry("electron.exe")
    fw = entry(
        "3CX.app/Contents/Frameworks/Electron Framework.framework/Versions/A/Electron Framework",
        fmt=FileFormat.MACHO,
    )
    other = entry("libEGL.dll")
    found = run(
        result(Status.RESOURCES_ONLY, main, up, {"renamed_from": "electron.exe"}),
        result(Status.RESOURCES_ONLY, fw, fw),
        result(Status.RESOURCES_ONLY, other, other),
    )
    assert rules(found) == [("resources-modified", "medium")]
    assert found[0].path == "libEGL.dll"
    # a renamed file that is not the main executable (macOS bundle renames) is not allowed
    helper = entry(
        "3CX.app/Contents/Frameworks/3CX Helper.app/Contents/MacOS/3CX Helper", fmt=FileFormat.MACHO
    )
    up_helper = entry(
        "Electron.app/Contents/Frameworks/Electron Helper.app/Contents/MacOS/Electron Helper",
        fmt=FileFormat.MACHO,
    )
    mac_main = entry("3CX.app/Contents/MacOS/3CX", fmt=FileFormat.MACHO)
    found = run(
        result(Status.RESOURCES_ONLY, helper, up_helper, {"renamed_from": up_helper.path}),
        result(
            Status.RESOURCES_ONLY,
            mac_main,
            entry("Electron.app/Contents/MacOS/Electron"),
            {"renamed_from": "Electron.app/Contents/MacOS/Electron"},
        ),
    )
    assert [(f.rule, f.path) for f in found] == [("resources-modified", helper.path)]


def test_signed_divergent_is_critical_with_evidence() -> None:
    up = entry("ffmpeg.dll", sha="01" * 32)
    sh = entry("ffmpeg.dll", sha="02" * 32, signature=sig(VENDOR))
    ev = {
        "sections": [{"name": ".text", "differing_bytes": 4096}],
        "ranges": [{"offset": 0x1000, "length": 4096}],
    }
    (f,) = run(result(Status.DIVERGENT, sh, up, ev))
    assert (f.rule, f.severity) == ("signed-divergent-content", Severity.CRITICAL)
    assert "ffmpeg.dll is not electron 28.1.0's ffmpeg.dll" in f.message
    assert "sections .text" in f.message and "signed by CN=3CX Ltd" in f.message
    assert f.evidence["sections"] == [{"name": ".text", "differing_bytes": 4096}]
    assert f.evidence["ranges"] == [{"offset": 4096, "length": 4096}]
    assert f.evidence["signer_actual"] == VENDOR.subject
    assert f.evidence["signer_expected"] == "nobody (unsigned)"


def test_divergent_unsigned_and_allowed_changes() -> None:
    found = run(
        result(
            Status.DIVERGENT,
            entry("resources.pak", sha="02" * 32, fmt=FileFormat.DATA),
            entry("resources.pak", fmt=FileFormat.DATA),
        ),
        result(
            Status.DIVERGENT,
            entry("LICENSE", sha="02" * 32, fmt=FileFormat.DATA),
            entry("LICENSE", fmt=FileFormat.DATA),
        ),
        result(
            Status.DIVERGENT,
            entry("x.app/Contents/Info.plist", sha="02" * 32, fmt=FileFormat.DATA),
            entry("x.app/Contents/Info.plist", fmt=FileFormat.DATA),
        ),
        result(
            Status.DIVERGENT,
            entry("version", sha="02" * 32, fmt=FileFormat.DATA),
            entry("version", fmt=FileFormat.DATA),
        ),
    )
    assert rules(found) == [("divergent-content", "high")]
    assert found[0].path == "resources.pak"


def test_macho_x86_64_slice_only_divergent() -> None:
    path = "3CX.app/Contents/Frameworks/Electron Framework.framework/Libraries/libffmpeg.dylib"
    x86 = SliceFacts("x86_64", 0, 50, "aa" * 32, "ab" * 32, signature=sig(VENDOR))
    arm = SliceFacts("arm64", 64, 50, "ac" * 32, "ad" * 32, signature=sig(VENDOR))
    sh = entry(path, sha="02" * 32, fmt=FileFormat.MACHO, slices=(x86, arm))
    up = entry(path, fmt=FileFormat.MACHO)
    slices = (
        SliceResult("x86_64", Status.DIVERGENT, "aa" * 32, "ab" * 32),
        SliceResult("arm64", Status.IDENTICAL_EXCEPT_SIGNATURE, "ac" * 32, "ad" * 32),
    )
    (f,) = run(result(Status.DIVERGENT, sh, up, slices=slices))
    assert f.rule == "signed-divergent-content"
    assert f.evidence["arch"] == "x86_64"
    assert "x86_64 slice" in f.message


def test_missing_files() -> None:
    found = run(
        result(Status.MISSING, None, entry("resources/default_app.asar", fmt=FileFormat.ASAR)),
        result(Status.MISSING, None, entry("vk_swiftshader.dll")),
    )
    assert rules(found) == [("missing-file", "low")]
    assert (
        found[0].message == "vk_swiftshader.dll from electron 28.1.0 is missing from the "
        "shipped artifact"
    )


def test_unexpected_code_data_and_own() -> None:
    found = run(
        result(Status.UNEXPECTED, entry("helper.exe"), None),
        result(Status.UNEXPECTED, entry("resources/addon.node", fmt=FileFormat.DATA), None),
        result(Status.UNEXPECTED, entry("resources/app-update.yml", fmt=FileFormat.DATA), None),
        result(Status.UNEXPECTED, entry("Update.exe"), None),
        result(Status.UNEXPECTED, entry("Uninstall 3CX Desktop App.exe"), None),
        result(Status.UNEXPECTED, entry("resources/app.asar.unpacked/node_modules/a/b.node"), None),
        result(Status.OWN, entry("resources/app.asar", fmt=FileFormat.ASAR), None),
    )
    assert sorted(f.path for f in found) == ["helper.exe", "resources/addon.node"]
    assert {f.rule for f in found} == {"unexpected-binary"}
    assert classify_own("resources/app.asar", Policy.default())
    assert classify_own("elevate.exe", Policy.default())
    assert not classify_own("resources/evil.dll", Policy.default())


def test_anomalies_become_findings_whatever_the_status() -> None:
    pad = Anomaly(
        "signature-padding",
        "non-zero bytes after the PKCS#7 signature",
        {"ranges": [{"offset": 5000, "length": 16}]},
    )
    weak = Anomaly("weak-digest", "signature uses SHA-1 only")
    e1 = entry("a.dll", signature=sig(MS), anomalies=(pad, weak))
    e2 = entry("b.dll", sha="02" * 32, signature=sig(MS), anomalies=(weak,))
    e3 = entry("Update.exe", sha="03" * 32, signature=sig(VENDOR), anomalies=(weak,))
    found = run(
        result(Status.IDENTICAL, e1, e1),
        result(Status.DIVERGENT, e2, entry("b.dll", signature=sig(MS))),
        result(Status.OWN, e3, None),
    )
    got = {(f.path, f.rule): f.severity.value for f in found}
    # a.dll is byte for byte upstream's: its anomalies are upstream's (inherited, info)
    assert got[("a.dll", "signature-padding")] == "info"
    assert got[("a.dll", "weak-digest")] == "info"
    assert got[("b.dll", "weak-digest")] == "medium"
    assert got[("Update.exe", "weak-digest")] == "medium"
    pf = next(f for f in found if f.rule == "signature-padding")
    assert pf.message == (
        "a.dll: non-zero bytes after the PKCS#7 signature (present in upstream too: a.dll)"
    )
    assert pf.evidence["ranges"] == [{"offset": 5000, "length": 16}]
    assert pf.evidence["inherited"] is True and pf.evidence["inherited_from"] == "a.dll"
    # the same padding on a file the vendor changed is judged in full
    e4 = entry("c.dll", sha="04" * 32, signature=sig(MS), anomalies=(pad,))
    found = run(result(Status.IDENTICAL_EXCEPT_SIGNATURE, e4, entry("c.dll", signature=sig(MS))))
    assert {(f.rule, f.severity.value) for f in found if f.rule == "signature-padding"} == {
        ("signature-padding", "critical")
    }


def test_malformed_input_always_fails() -> None:
    bad = Anomaly(
        "malformed-input",
        "zip member name escapes the archive",
        {"location": "setup.exe!/../../evil"},
    )
    pol = dataclasses.replace(
        Policy.default(),
        severity={"malformed-input": Severity.INFO},
        waivers=(WaiverRule("11" * 32, "x", date(2030, 1, 1)),),
    )
    (f,) = run(problems=(bad,), policy=pol)
    assert f.rule == "malformed-input" and f.severity == Severity.HIGH and not f.suppressed
    assert f.location == "setup.exe!/../../evil"
    assert "zip member name escapes" in f.message
    assert finding_fails(f, Severity.CRITICAL)
    assert verdict((f,), Severity.CRITICAL, True) == Verdict.FAIL


def test_reference_problems_are_reference_mismatch() -> None:
    ref = Reference(
        Component("electron", "28.1.0", "electron:28.1.0"),
        (),
        (Anomaly("reference-mismatch", "SHASUMS256.txt disagrees with the zip"),),
    )
    (f,) = run(refs=(ref,))
    assert (f.rule, f.severity) == ("reference-mismatch", Severity.CRITICAL)
    assert f.evidence["component"] == "electron"


def test_severity_override_and_fail_on() -> None:
    pol = dataclasses.replace(
        Policy.default(), severity={"missing-file": Severity.HIGH}, fail_on=Severity.CRITICAL
    )
    (f,) = run(result(Status.MISSING, None, entry("x.dll")), policy=pol)
    assert f.severity == Severity.HIGH
    fo = effective_fail_on(None, pol)
    assert fo == Severity.CRITICAL and verdict((f,), fo, False) == Verdict.PASS
    assert effective_fail_on(Severity.LOW, pol) == Severity.LOW
    assert effective_fail_on(None, Policy.default()) == Severity.HIGH


def _divergent(sha: str) -> FileResult:
    return result(
        Status.DIVERGENT,
        entry("resources.pak", sha=sha, fmt=FileFormat.DATA),
        entry("resources.pak", fmt=FileFormat.DATA),
    )


def test_waiver_covers_exact_bytes_only() -> None:
    w = WaiverRule(
        "02" * 32,
        "patched locale, see JIRA-1",
        date(2027, 1, 31),
        rule="divergent-content",
        path="resources.pak",
    )
    pol = dataclasses.replace(Policy.default(), waivers=(w,))
    (f,) = run(_divergent("02" * 32), policy=pol)
    assert f.suppressed and f.waiver is not None and f.waiver.reason.startswith("patched")
    assert f.waiver.to_dict() == {
        "reason": "patched locale, see JIRA-1",
        "expires": "2027-01-31",
        "sha256": "02" * 32,
    }
    assert verdict((f,), Severity.HIGH, False) == Verdict.PASS
    (g,) = run(_divergent("03" * 32), policy=pol)  # other bytes: not covered
    assert not g.suppressed and verdict((g,), Severity.HIGH, False) == Verdict.FAIL


def test_expired_waiver_stops_applying_and_says_so() -> None:
    w = WaiverRule("02" * 32, "patched locale", date(2026, 11, 26), rule="divergent-content")
    pol = dataclasses.replace(Policy.default(), waivers=(w,))
    found = run(_divergent("02" * 32), policy=pol)
    assert rules(found) == [("divergent-content", "high"), ("waiver-expired", "info")]
    assert not found[0].suppressed
    assert found[1].message == (
        "waiver #1 ('patched locale') for divergent-content on any path "
        "expired on 2026-11-26; divergent-content on this file applies "
        "again"
    )
    # the last day still applies
    (f,) = run(_divergent("02" * 32), policy=pol, today=date(2026, 11, 26))
    assert f.suppressed


def _signer_policy(*rules_: SignerRule, vendor: SignerMatcher | None = None) -> Policy:
    return dataclasses.replace(Policy.default(), signer_rules=rules_, vendor=vendor)


def test_upstream_signer_only() -> None:
    pol = _signer_policy(SignerRule("d3dcompiler_47.dll", SignerRequirement.UPSTREAM_SIGNER_ONLY))
    up = entry("d3dcompiler_47.dll", signature=sig(MS, container="up"))
    ok = run(result(Status.IDENTICAL, up, up), policy=pol)
    assert ok == ()
    nested = entry(
        "d3dcompiler_47.dll",
        sha="02" * 32,
        signature=sig(MS, container="w", primary="up", nested=(VENDOR,)),
    )
    found = run(result(Status.IDENTICAL_EXCEPT_SIGNATURE, nested, up), policy=pol)
    assert rules(found) == [("untrusted-signer", "high"), ("resigned-upstream-file", "info")]
    assert "added signature by CN=3CX Ltd" in found[0].message
    assert found[0].message == (
        "d3dcompiler_47.dll: carries an added signature by CN=3CX Ltd, O=3CX Ltd; only "
        "upstream's is allowed (policy signer rule for 'd3dcompiler_47.dll': "
        "upstream-signer-only)"
    )
    resigned = entry("d3dcompiler_47.dll", sha="03" * 32, signature=sig(EVIL))
    found = run(result(Status.IDENTICAL_EXCEPT_SIGNATURE, resigned, up), policy=pol)
    assert ("untrusted-signer", "high") in rules(found)


def test_unsigned_or_vendor_signed() -> None:
    vendor = SignerMatcher(subject=r"^CN=3CX Ltd\b")
    pol = _signer_policy(
        SignerRule("ffmpeg.dll", SignerRequirement.UNSIGNED_OR_VENDOR_SIGNED),
        SignerRule("libEGL.dll", SignerRequirement.UNSIGNED_OR_VENDOR_SIGNED),
        vendor=vendor,
    )
    up = entry("ffmpeg.dll")
    assert run(result(Status.IDENTICAL, up, up), policy=pol) == ()
    by_vendor = entry("ffmpeg.dll", sha="02" * 32, signature=sig(VENDOR))
    assert rules(run(result(Status.IDENTICAL_EXCEPT_SIGNATURE, by_vendor, up), policy=pol)) == [
        ("resigned-upstream-file", "info")
    ]
    by_evil = entry("ffmpeg.dll", sha="03" * 32, signature=sig(EVIL))
    found = run(result(Status.IDENTICAL_EXCEPT_SIGNATURE, by_evil, up), policy=pol)
    assert ("untrusted-signer", "high") in rules(found)
    assert "neither the vendor (subject ~ /^CN=3CX Ltd\\b/)" in found[0].message
    # a vendor signature nested in an intact upstream one is accepted
    egl_up = entry("libEGL.dll", signature=sig(GITHUB, container="up"))
    egl = entry(
        "libEGL.dll",
        sha="04" * 32,
        signature=sig(GITHUB, container="w", primary="up", nested=(VENDOR,)),
    )
    found = run(result(Status.IDENTICAL_EXCEPT_SIGNATURE, egl, egl_up), policy=pol)
    assert rules(found) == [("resigned-upstream-file", "info")]
    egl_bad = entry(
        "libEGL.dll",
        sha="05" * 32,
        signature=sig(GITHUB, container="w", primary="up", nested=(EVIL,)),
    )
    found = run(result(Status.IDENTICAL_EXCEPT_SIGNATURE, egl_bad, egl_up), policy=pol)
    assert ("untrusted-signer", "high") in rules(found)


def test_signed_rule_with_thumbprint_and_team_id() -> None:
    pol = _signer_policy(
        SignerRule("*.exe", SignerRequirement.SIGNED, SignerMatcher(thumbprints=("bb" * 32,)))
    )
    good = entry("3CXDesktopApp.exe", signature=sig(VENDOR))
    bad = entry("other.exe", signature=sig(EVIL))
    unsigned = entry("plain.exe")
    found = run(*(result(Status.OWN, e, None) for e in (good, bad, unsigned)), policy=pol)
    assert sorted((f.path, f.rule) for f in found) == [
        ("other.exe", "untrusted-signer"),
        ("plain.exe", "untrusted-signer"),
    ]
    mac = Signer(
        "Developer ID Application: 3CX (33CF4654HL)",
        "CN=Developer ID CA",
        "5",
        "ee" * 32,
        team_id="33CF4654HL",
    )
    assert SignerMatcher(team_ids=("33CF4654HL",)).matches(mac)
    assert not SignerMatcher(team_ids=("33CF4654HL",)).matches(VENDOR)


def test_findings_sorted_and_deterministic() -> None:
    found = run(
        result(Status.MISSING, None, entry("z.dll")),
        result(
            Status.DIVERGENT,
            entry("a.pak", sha="02" * 32, fmt=FileFormat.DATA),
            entry("a.pak", fmt=FileFormat.DATA),
        ),
    )
    assert [f.severity for f in found] == [Severity.HIGH, Severity.LOW]
    again = run(
        result(
            Status.DIVERGENT,
            entry("a.pak", sha="02" * 32, fmt=FileFormat.DATA),
            entry("a.pak", fmt=FileFormat.DATA),
        ),
        result(Status.MISSING, None, entry("z.dll")),
    )
    assert found == again


@pytest.mark.parametrize(
    ("fail", "inconclusive", "v", "code"),
    [
        (True, True, Verdict.FAIL, 1),
        (False, True, Verdict.INCONCLUSIVE, 3),
        (False, False, Verdict.PASS, 0),
    ],
)
def test_verdict_and_exit_code(fail: bool, inconclusive: bool, v: Verdict, code: int) -> None:
    f = Finding("divergent-content", Severity.HIGH if fail else Severity.LOW, "a", "a", "m")
    assert verdict((f,), Severity.HIGH, inconclusive) == v
    assert exit_code(v) == code
    assert exit_code(v, usage_error=True) == 2


def test_extra_in_toto_anomalies_become_findings() -> None:
    a = Anomaly(
        "in-toto-failure",
        "in-toto artifact rule violated: dist/ffmpeg.dll",
        {"layout": "vendor/root.layout", "error": "artifact-rule"},
    )
    inv = Inventory("setup.exe", "ff" * 32, 1000, ())
    (f,) = evaluate((), inv, REFS, Policy.default(), TODAY, extra=(a,))
    assert (f.rule, f.severity) == ("in-toto-failure", Severity.HIGH)
    assert f.location == "vendor/root.layout"
    assert f.message == "vendor/root.layout: in-toto artifact rule violated: dist/ffmpeg.dll"
    assert verdict((f,), Severity.HIGH, False) == Verdict.FAIL


def test_archive_patterns_cover_their_members() -> None:
    asar = FileFormat.ASAR
    found = run(
        result(Status.MISSING, None, entry("resources/default_app.asar", fmt=asar)),
        result(
            Status.MISSING, None, entry("resources/default_app.asar/main.js", fmt=FileFormat.DATA)
        ),
        result(Status.UNEXPECTED, entry("resources/app.asar/native/addon.node"), None),
        result(Status.UNEXPECTED, entry("resources/other.asar/native/addon.node"), None),
    )
    assert [(f.rule, f.path) for f in found] == [
        ("unexpected-binary", "resources/other.asar/native/addon.node")
    ]
    assert classify_own("resources/app.asar/dist/main.js", Policy.default())


def test_anomaly_paths_are_relative_to_the_app_root() -> None:
    pad = Anomaly("signature-padding", "non-zero bytes after the PKCS#7 signature")
    inner = "Program Files/3CXDesktopApp/d3dcompiler_47.dll"
    e = FileEntry(
        inner,
        f"setup.msi!/{inner}",
        ("setup.msi",),
        100,
        "11" * 32,
        BinaryFacts(format=FileFormat.PE, anomalies=(pad,)),
    )
    r = FileResult("d3dcompiler_47.dll", Status.OWN, e, None, None)
    inv = Inventory("setup.msi", "ff" * 32, 1000, (e,))
    (f,) = evaluate((r,), inv, REFS, Policy.default(), TODAY)
    assert f.path == "d3dcompiler_47.dll"
    assert f.location == f"setup.msi!/{inner}"
    assert f.message == "d3dcompiler_47.dll: non-zero bytes after the PKCS#7 signature"

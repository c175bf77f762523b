"""Policy files: schema validation, the messages a user sees, shipped policies, globs."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest
from support.paths import REPO

from verifier.errors import PolicyError
from verifier.model import Severity
from verifier.policy import Policy
from verifier.policy.glob import GlobError, compile_glob, covers, glob_match, match_any
from verifier.policy.load import check_policy, load_policy, load_policy_or_default
from verifier.policy.model import SignerRequirement

ROOT = REPO
POLICIES = ROOT / "policies"
ZERO = "0" * 64


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def error_of(path: str) -> str:
    with pytest.raises(PolicyError) as ei:
        load_policy(path)
    assert ei.value.exit_code == 2
    return ei.value.diagnostics()


def test_default_policy_equals_shipped_electron_app_yaml() -> None:
    loaded = load_policy(str(POLICIES / "electron-app.yaml"))
    assert loaded == Policy.default()
    assert loaded.sha256 is not None and len(loaded.sha256) == 64
    assert loaded.describe()["path"] == str(POLICIES / "electron-app.yaml")
    assert load_policy_or_default(None) is Policy.default()


def test_default_sources_are_electron_auto_and_npm_dependencies() -> None:
    assert Policy.default().effective_sources() == ("electron:auto", "deps:npm")
    cx = load_policy(str(POLICIES / "3cx.yaml"))  # names electron:auto itself
    assert cx.effective_sources() == ("deps:npm", "electron:auto")


def test_shipped_policies_are_valid() -> None:
    for name in ("electron-app", "3cx", "strict"):
        out = check_policy(str(POLICIES / f"{name}.yaml"), today=date(2026, 11, 27))
        assert out.startswith(str(POLICIES / f"{name}.yaml") + ": OK")
    strict = load_policy(str(POLICIES / "strict.yaml"))
    assert strict.severity["insecure-fuse"] == Severity.HIGH
    assert strict.fail_on == Severity.MEDIUM
    assert strict.own == Policy.default().own  # extends electron-app
    cx = load_policy(str(POLICIES / "3cx.yaml"))
    reqs = {r.path: r.require for r in cx.signer_rules}
    assert reqs["d3dcompiler_47.dll"] == SignerRequirement.UPSTREAM_SIGNER_ONLY
    assert reqs["ffmpeg.dll"] == SignerRequirement.UNSIGNED_OR_VENDOR_SIGNED
    assert cx.vendor is not None and cx.vendor.subject


def test_unknown_key(tmp_path: Path) -> None:
    p = write(tmp_path, "name: mine\nextends: electron-app\nalow:\n  missing: [a.dll]\n")
    assert error_of(p) == (
        f"{p}:3: alow: unknown key 'alow' (did you mean 'allow'?); allowed keys: allow, "
        "components, description, extends, fail_on, inherited, name, npm_dependencies, own, "
        "schema, severity, signers, vendor, waivers"
    )


def test_unknown_nested_key(tmp_path: Path) -> None:
    p = write(
        tmp_path, "name: mine\nsigners:\n  - path: a.dll\n    require: signed\n    subjct: Foo\n"
    )
    assert error_of(p).startswith(
        f"{p}:5: signers[0].subjct: unknown key 'subjct' (did you mean 'subject'?)"
    )


def test_wrong_type(tmp_path: Path) -> None:
    p = write(tmp_path, "name: mine\nown: app.asar\n")
    assert error_of(p) == f"{p}:2: own: expected a list, got the string 'app.asar'"
    p = write(tmp_path, "name: mine\nallow:\n  renamed_main_executable: maybe\n")
    assert error_of(p) == (
        f"{p}:3: allow.renamed_main_executable: expected true or false, got the string 'maybe'"
    )


def test_bad_glob(tmp_path: Path) -> None:
    p = write(tmp_path, "name: mine\nown:\n  - app.asar\n  - 'resources/**x/a'\n")
    assert error_of(p) == (
        f"{p}:4: own[1]: bad glob: '**' must be a whole path segment "
        "(like 'dir/**/name') in 'resources/**x/a'"
    )
    p = write(tmp_path, "name: mine\nallow:\n  missing: ['/abs/path']\n")
    assert "allow.missing[0]: bad glob: pattern must be relative" in error_of(p)
    p = write(tmp_path, "name: mine\nsigners:\n  - path: 'a[.dll'\n    require: signed\n")
    assert error_of(p) == f"{p}:3: signers[0].path: bad glob: unterminated '[' in 'a[.dll'"


def test_expired_waiver_is_a_warning_not_an_error(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        f"name: mine\nextends: electron-app\nwaivers:\n  - sha256: {ZERO}\n"
        "    reason: vendor patch\n    expires: 2024-01-31\n",
    )
    pol = load_policy(p)  # still valid
    assert pol.waivers[0].expires == date(2024, 1, 31)
    assert pol.waivers[0].sha256 == ZERO  # all-digit digest stays a string
    out = check_policy(p, today=date(2026, 11, 27))
    assert out.splitlines()[1] == (
        f"{p}:4: waivers[0]: warning: waiver expired on 2024-01-31 ('vendor patch'); it no "
        "longer applies and reports will show waiver-expired"
    )


def test_bad_waivers(tmp_path: Path) -> None:
    p = write(
        tmp_path, "name: mine\nwaivers:\n  - sha256: abc\n    reason: r\n    expires: 2027-01-01\n"
    )
    assert error_of(p) == (
        f"{p}:3: waivers[0].sha256: must be a sha256 digest: 64 hexadecimal "
        "digits, got the string 'abc'"
    )
    p = write(
        tmp_path,
        f"name: mine\nwaivers:\n  - sha256: {ZERO}\n    reason: r\n    expires: 2027-02-30\n",
    )
    assert (
        error_of(p) == f"{p}:5: waivers[0].expires: not a calendar date: '2027-02-30' (YYYY-MM-DD)"
    )
    p = write(tmp_path, f"name: mine\nwaivers:\n  - sha256: {ZERO}\n    expires: 2027-01-01\n")
    assert error_of(p) == f"{p}:3: waivers[0]: missing required key 'reason'"
    p = write(
        tmp_path,
        f"name: mine\nwaivers:\n  - sha256: {ZERO}\n    reason: r\n"
        "    expires: 2027-01-01\n    rule: malformed-input\n",
    )
    assert error_of(p) == (
        f"{p}:6: waivers[0].rule: malformed-input cannot be waived: it always fails the verdict"
    )


def test_severity_overrides(tmp_path: Path) -> None:
    p = write(tmp_path, "name: mine\nseverity:\n  signature-modifed: low\n")
    assert error_of(p) == (
        f"{p}:3: severity.signature-modifed: unknown rule id "
        "'signature-modifed' (did you mean 'signature-modified'?)"
    )
    p = write(tmp_path, "name: mine\nseverity:\n  malformed-input: info\n")
    assert error_of(p) == (
        f"{p}:3: severity.malformed-input: malformed-input cannot be "
        "re-rated or waived: it always fails the verdict"
    )
    p = write(tmp_path, "name: mine\nfail_on: hihg\n")
    assert error_of(p) == (
        f"{p}:2: fail_on: must be one of: critical, high, medium, low, info; got the string 'hihg'"
    )


def test_yaml_level_errors(tmp_path: Path) -> None:
    assert error_of(write(tmp_path, "name: [\n")).endswith(
        ": not valid YAML: expected the node content, but found '<stream end>'"
    )
    assert "anchors and aliases are not allowed" in error_of(
        write(tmp_path, "own: &x [a]\nsigners: *x\n")
    )
    assert "duplicate key 'own'" in error_of(write(tmp_path, "own: [a]\nown: [b]\n"))
    assert "is not allowed in policies" in error_of(
        write(tmp_path, "own: !!python/object:os.system [a]\n")
    )
    assert error_of(write(tmp_path, "")).endswith("the policy file is empty")
    assert error_of(write(tmp_path, "- a\n")).endswith(
        "a policy must be a mapping of keys, got a list"
    )
    assert error_of(write(tmp_path, "own: " + "[" * 100000)).endswith(
        ":1: nested deeper than 32 levels"
    )
    assert error_of(write(tmp_path, "a: &a [x, x]\nb: [*a, *a]\n")).endswith(
        ":2: b[0]: YAML anchors and aliases are not allowed in policies"
    )
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe")
    assert error_of(str(tmp_path / "bin.yaml")).endswith(
        "not UTF-8 text (invalid start byte at byte 0)"
    )
    missing = str(tmp_path / "nope.yaml")
    assert error_of(missing).startswith(f"{missing}: cannot read policy file")


def test_regex_and_vendor_rules(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "name: mine\nsigners:\n  - path: a.dll\n    require: signed\n    subject: '(unclosed'\n",
    )
    assert error_of(p).startswith(f"{p}:5: signers[0].subject: invalid regular expression")
    p = write(
        tmp_path, "name: mine\nsigners:\n  - path: a.dll\n    require: unsigned-or-vendor-signed\n"
    )
    assert error_of(p).startswith(
        f"{p}:4: signers[0].require: unsigned-or-vendor-signed needs the vendor's identity"
    )
    p = write(
        tmp_path,
        "name: mine\nsigners:\n  - path: a.dll\n    require: signed\n    thumbprint: abcd\n",
    )
    assert "signers[0].thumbprint: must be a certificate thumbprint" in error_of(p)


def test_replace_vs_extends(tmp_path: Path) -> None:
    alone = load_policy(write(tmp_path, "name: alone\nown: [my.exe]\n"))
    assert alone.own == ("my.exe",) and not alone.allow_renamed_main
    assert alone.allow_missing == ()
    ext = load_policy(
        write(
            tmp_path,
            "name: ext\nextends: electron-app\nown: [my.exe]\n"
            "allow:\n  renamed_main_executable: false\n",
            "p2.yaml",
        )
    )
    assert ext.own == (*Policy.default().own, "my.exe")
    assert not ext.allow_renamed_main
    assert ext.allow_missing == Policy.default().allow_missing
    chained = load_policy(write(tmp_path, "name: c\nextends: p2.yaml\nfail_on: low\n", "p3.yaml"))
    assert chained.fail_on == Severity.LOW and chained.own[-1] == "my.exe"
    p = write(tmp_path, "name: x\nextends: electron\n")
    assert error_of(p) == (
        f"{p}:2: extends: cannot extend 'electron': use 'electron-app' or a path to a .yaml file"
    )


@pytest.mark.parametrize(
    ("pattern", "path", "ok"),
    [
        ("Update.exe", "Update.exe", True),
        ("Update.exe", "sub/dir/update.EXE", True),
        ("Uninstall *.exe", "Uninstall 3CX Desktop App.exe", True),
        ("Uninstall *.exe", "x/Uninstall.exe", False),
        ("**/app.asar.unpacked/**", "resources/app.asar.unpacked/node_modules/a.node", True),
        ("**/app.asar.unpacked/**", "resources/app.asar.unpacked", False),
        ("resources/*.pak", "resources/en.pak", True),
        ("resources/*.pak", "x/resources/en.pak", False),
        ("resources/*.pak", "resources/sub/en.pak", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("lib?.so", "libA.so", True),
        ("[!x]*.dll", "ffmpeg.dll", True),
        ("[!x]*.dll", "xffmpeg.dll", False),
        (
            "Electron Framework",
            "A.app/Contents/Frameworks/Electron Framework.framework/Versions/A/Electron Framework",
            True,
        ),
    ],
)
def test_globs(pattern: str, path: str, ok: bool) -> None:
    assert glob_match(path, pattern) is ok


@pytest.mark.parametrize(
    "bad", ["", "/abs", "a\\b", "../x", "a/./b", "a**", "[", "a[]b", "x]", "[z-a]"]
)
def test_bad_globs(bad: str) -> None:
    with pytest.raises(GlobError):
        compile_glob(bad)


def test_components_sigstore_and_policy_digest(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "name: mine\nextends: electron-app\ncomponents:\n  - name: rfc8785\n"
        "    source: pypi:rfc8785==0.1.2\n    sigstore:\n      bundle: b.sigstore\n"
        "      identity_regex: 'https://github\\.com/trailofbits/.*'\n"
        "      issuer: https://token.actions.githubusercontent.com\n",
    )
    pol = load_policy(p)
    # the default's deps:npm, then the policy's own source (which replaces electron:auto)
    assert pol.sources() == ("deps:npm", "pypi:rfc8785==0.1.2")
    assert pol.effective_sources() == ("deps:npm", "pypi:rfc8785==0.1.2")
    ident = pol.sigstore_for("pypi:rfc8785==0.1.2")
    assert ident is not None and ident.bundle == str(tmp_path / "b.sigstore")
    assert ident.identity is None and ident.identity_regex == "https://github\\.com/trailofbits/.*"
    assert pol.describe()["sha256"] == pol.sha256
    d = Policy.default().describe()
    assert d["name"] == "electron-app" and d["path"] is None
    assert d["sha256"] == Policy.default().canonical_sha256() and len(d["sha256"]) == 64
    p2 = write(
        tmp_path,
        "name: mine\ncomponents:\n  - name: x\n    source: path:x\n    sigstore:\n"
        "      identity: a\n      identity_regex: b\n      issuer: c\n",
    )
    assert error_of(p2) == (
        f"{p2}:5: components[0].sigstore: give exactly one of 'identity' or 'identity_regex'"
    )


def test_shipped_json_schema_file_matches_code() -> None:
    import json

    from verifier.policy.schema import POLICY_SCHEMA

    shipped = json.loads((POLICIES / "policy.schema.json").read_text())
    assert shipped == json.loads(json.dumps(POLICY_SCHEMA))


def _covers_one_by_one(path: str, patterns: tuple[str, ...]) -> str | None:
    """``covers`` spelled out: each pattern on the path, then on each parent folder."""
    parts = path.split("/")
    for n in range(len(parts), 0, -1):
        for p in patterns:
            if glob_match("/".join(parts[:n]), p):
                return p
    return None


def test_covers_and_match_any_agree_with_trying_each_pattern() -> None:
    """The combined pre-filter never changes the answer (random paths against globs of
    every kind: anchored, unanchored, '**' in the middle and at the end, classes)."""

    pats = (
        "Update.exe",
        "Uninstall *.exe",
        "**/app.asar.unpacked/**",
        "resources/*.pak",
        "locales/[a-c]?.pak",
        "x/**",
        "[!z]*.DLL",
        "a/**/b",
    )
    segs = ["a", "b", "x", "resources", "locales", "app.asar.unpacked", "Update.exe", "ab.pak"]
    segs += ["Uninstall me.exe", "q.dll", "z.dll", "en.pak", "c1.pak", "UPDATE.EXE"]
    rng = random.Random(11)
    for _ in range(3000):
        path = "/".join(rng.choice(segs) for _ in range(rng.randint(1, 5)))
        sub = tuple(rng.sample(pats, rng.randint(0, len(pats))))
        assert covers(path, sub) == _covers_one_by_one(path, sub), (path, sub)
        want = next((p for p in sub if glob_match(path, p)), None)
        assert match_any(path, sub) == want, (path, sub)
    with pytest.raises(GlobError):
        covers("a/b", ("ok", "a**"))

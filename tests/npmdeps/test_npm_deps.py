"""deps:npm end to end: real registry packages (pinned, cached), packed into app.asar by the
real @electron/asar tool, verified against a registry served on 127.0.0.1.

The clean app has thirteen real dependencies: scoped (@types/ms, whose tarball folder is
``ms/``; @tootallnate/once), nested (debug's own ms@2.1.2), a native module with prebuilds
(bufferutil, its ``.node`` files in app.asar.unpacked; the Windows one re-signed by the
vendor, as signtool does), package.json files stripped the way electron-builder strips them,
and a private package the registry does not have.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.asar_tool import asar_list, asar_pack
from support.httpserver import LocalServer
from support.npm_registry import (
    PACKAGES,
    Registry,
    electron_builder_strip,
    install,
    sri512,
    tarball,
)
from support.paths import REPO

from verifier.api import VerifyRequest, verify
from verifier.model import Finding, Report, Severity, Status, Verdict

pytestmark = pytest.mark.network

ROOT = REPO
# where each pinned package is installed (the rest at node_modules/NAME)
LAYOUT = {("ms", "2.1.2"): "node_modules/debug/node_modules/ms"}
PRIVATE = "node_modules/@acme/private-utils"
WIN_NODE = "prebuilds/win32-x64/node.napi.node"
WIN32_NODE = "prebuilds/win32-ia32/node.napi.node"


@dataclass(frozen=True)
class World:
    registry: Registry
    tarballs: dict[tuple[str, str], bytes]
    src: Path  # the clean app's source folder (before packing)
    clean: Path  # artifact folder with resources/app.asar(+.unpacked)
    tampered: Path
    work: Path
    pki: object


def _env(reg: Registry, public: str = "") -> dict[str, str]:
    return {"npm_config_registry": reg.url, "BIV_NPM_PUBLIC_REGISTRY": public}


def _path(name: str, version: str) -> str:
    return LAYOUT.get((name, version), f"node_modules/{name}")


def _sign(pki: object, src: Path, dst: Path) -> None:
    from verifier._scenarios import osslsign

    osslsign.sign(src, dst, pki.signer_chain, pki.signer_key)  # type: ignore[attr-defined]


def _patch_code(data: bytes) -> bytes:
    """One byte changed in the first executable section of a PE file."""
    lfanew = struct.unpack_from("<I", data, 0x3C)[0]
    nsec = struct.unpack_from("<H", data, lfanew + 6)[0]
    opt = struct.unpack_from("<H", data, lfanew + 20)[0]
    table = lfanew + 24 + opt
    for i in range(nsec):
        off = table + 40 * i
        raw_size, raw_ptr = struct.unpack_from("<II", data, off + 16)
        chars = struct.unpack_from("<I", data, off + 36)[0]
        if chars & 0x20000000 and raw_size > 64:
            at = raw_ptr + 32
            return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    raise AssertionError("no executable section")


def _write_app(src: Path, tarballs: dict[tuple[str, str], bytes], pki: object) -> None:
    (src / "package.json").write_text(
        json.dumps({"name": "acme-desktop", "version": "1.0.0", "main": "main.js"}, indent=2)
    )
    (src / "main.js").write_text("require('debug')('acme')('started');\n")
    for (name, version), data in tarballs.items():
        folder = src / _path(name, version)
        install(data, folder)
        man = folder / "package.json"
        man.write_bytes(electron_builder_strip(man.read_bytes()))
    private = src / PRIVATE
    private.mkdir(parents=True)
    (private / "package.json").write_text('{"name": "@acme/private-utils", "version": "1.0.0"}')
    (private / "index.js").write_text("module.exports = () => 'acme';\n")
    # the vendor signs every PE it ships, the win32-ia32 prebuild included
    node = src / "node_modules/bufferutil" / WIN32_NODE
    _sign(pki, node, node)


def _pack(src: Path, out: Path) -> Path:
    res = out / "resources"
    res.mkdir(parents=True)
    asar_pack(src, res / "app.asar", unpack="*.node")
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from verifier._scenarios.pki import vendor_pki

    tarballs = {k: tarball(*k) for k in PACKAGES}
    work = tmp_path_factory.mktemp("npmdeps")
    pki = vendor_pki().write(work / "pki")
    src = work / "src"
    src.mkdir()
    _write_app(src, tarballs, pki)
    clean = _pack(src, work / "clean")

    bad = work / "tampered-src"
    shutil.copytree(src, bad)
    ms = bad / "node_modules/ms/index.js"
    ms.write_text(ms.read_text().replace("var d = h * 24;", "var d = h * 25;", 1))
    (bad / "node_modules/semver/functions/evil.js").write_text("module.exports = 1;\n")
    dbg = bad / "node_modules/debug/package.json"
    man = json.loads(dbg.read_text())
    man["main"] = "./src/evil.js"
    dbg.write_text(json.dumps(man, indent=2))
    fake = bad / "node_modules/@tootallnate/once/node_modules/ms"
    shutil.copytree(bad / "node_modules/debug/node_modules/ms", fake)
    fm = json.loads((fake / "package.json").read_text())
    fm["version"] = "2.1.99"
    (fake / "package.json").write_text(json.dumps(fm, indent=2))
    # a patched dependency renamed to a name no registry has, to pass as a private package
    isa = bad / "node_modules/isarray"
    im = json.loads((isa / "package.json").read_text())
    im["name"] = "acme-isarray-fork"
    (isa / "package.json").write_text(json.dumps(im, indent=2))
    (isa / "index.js").write_text("module.exports = Array.isArray; // patched\n")
    native = bad / "node_modules/bufferutil"
    (native / "build/Release").mkdir(parents=True)
    linux = (native / "prebuilds/linux-x64/node.napi.node").read_bytes()
    (native / "build/Release/bufferutil.node").write_bytes(linux)  # built at install time
    (native / "build/Release/helper.node").write_bytes(linux)  # not a target of binding.gyp
    win = native / WIN_NODE
    win.write_bytes(_patch_code(win.read_bytes()))
    _sign(pki, win, win)
    tampered = _pack(bad, work / "tampered")

    with LocalServer() as srv:
        reg = Registry(srv)
        for (name, version), data in tarballs.items():
            reg.publish(name, version, data)
        yield World(reg, tarballs, src, clean, tampered, work, pki)


def _verify(w: World, artifact: Path, cache: str, **kw: object) -> Report:
    env = kw.pop("env", None) or _env(w.registry)
    req = VerifyRequest(
        str(artifact),
        against=("deps:npm",),
        cache_dir=str(w.work / cache),
        env=env,  # type: ignore[arg-type]
        trust_stores=(w.pki.root_cert,),  # type: ignore[attr-defined]
        **kw,  # type: ignore[arg-type]
    )
    return verify(req)


def _failing(rep: Report) -> set[tuple[str, str]]:
    return {
        (f.rule, f.path)
        for f in rep.findings
        if not f.suppressed and f.severity.at_least(Severity.LOW)
    }


def _one(rep: Report, rule: str, suffix: str) -> Finding:
    hits = [f for f in rep.findings if f.rule == rule and f.path.endswith(suffix)]
    assert len(hits) == 1, (rule, suffix, [(f.rule, f.path) for f in rep.findings])
    return hits[0]


def test_the_real_asar_tool_packed_what_biv_reads(world: World) -> None:
    listed = set(asar_list(world.clean / "resources/app.asar"))
    assert "node_modules/@types/ms/package.json" in {p.replace("\\", "/") for p in listed}
    unpacked = world.clean / "resources/app.asar.unpacked/node_modules/bufferutil/prebuilds"
    assert (unpacked / "linux-x64/node.napi.node").is_file()


@pytest.fixture(scope="module")
def clean_report(world: World) -> Report:
    return _verify(world, world.clean, "cache-clean")


def test_clean_app_passes(world: World, clean_report: Report) -> None:
    rep = clean_report
    assert rep.verdict == Verdict.PASS, [(f.rule, f.path, f.message) for f in rep.findings]
    deps = {c.name: c for c in rep.components if c.npm is not None}
    assert len([c for c in deps.values() if c.npm and c.npm["status"] == "verified"]) == 14
    assert deps["npm:@types/ms@0.7.34"].npm["paths"] == [
        "resources/app.asar/node_modules/@types/ms"
    ]  # type: ignore[index]
    assert deps["npm:ms@2.1.2"].npm["paths"] == [  # type: ignore[index]
        "resources/app.asar/node_modules/debug/node_modules/ms"
    ]
    ms = deps["npm:ms@2.1.3"]
    assert ms.npm is not None and ms.npm["integrity"] == sri512(world.tarballs[("ms", "2.1.3")])
    assert ms.source == "deps:npm" and ms.version == "2.1.3"
    assert any("proven by one source only" in p for p in ms.proof)
    # every installed file was compared with its tarball; the prebuilds from app.asar.unpacked
    by_path = {r.path: r for r in rep.files}
    linux = by_path[
        "resources/app.asar.unpacked/node_modules/bufferutil/prebuilds/linux-x64/node.napi.node"
    ]
    assert linux.status == Status.IDENTICAL and linux.component == "npm:bufferutil@4.0.8"
    win32 = by_path[f"resources/app.asar.unpacked/node_modules/bufferutil/{WIN32_NODE}"]
    assert win32.status == Status.IDENTICAL_EXCEPT_SIGNATURE
    assert _one(rep, "resigned-upstream-file", WIN32_NODE).severity == Severity.INFO
    stripped = by_path["resources/app.asar/node_modules/semver/package.json"]
    assert stripped.status == Status.IDENTICAL
    assert "scripts" in stripped.evidence["keys_allowed_to_differ"]
    # the private package is listed, at info
    f = _one(rep, "unverifiable-dependency", "@acme/private-utils/package.json")
    assert f.severity == Severity.INFO and f.evidence["package"] == "@acme/private-utils"
    assert deps["npm:@acme/private-utils@1.0.0"].npm["status"] == "unverifiable"  # type: ignore[index]
    assert not any(r.status == Status.UNEXPECTED for r in rep.files)


def test_tampered_app_fails_with_each_change_named(world: World) -> None:
    rep = _verify(world, world.tampered, "cache-tampered")
    assert rep.verdict == Verdict.FAIL
    a = "resources/app.asar/node_modules"
    u = "resources/app.asar.unpacked/node_modules"
    assert _failing(rep) == {
        ("divergent-content", f"{a}/ms/index.js"),
        ("unexpected-file", f"{a}/semver/functions/evil.js"),
        ("divergent-content", f"{a}/debug/package.json"),
        ("unknown-dependency-version", f"{a}/@tootallnate/once/node_modules/ms/package.json"),
        ("unexpected-file", f"{u}/bufferutil/build/Release/helper.node"),
        ("signed-divergent-content", f"{u}/bufferutil/{WIN_NODE}"),
        ("divergent-content", f"{a}/isarray/package.json"),
        ("divergent-content", f"{a}/isarray/index.js"),
    }
    renamed = _one(rep, "divergent-content", "isarray/package.json")
    assert renamed.evidence["keys_changed"] == ["name"]
    isarray = {c.name: c for c in rep.components}["npm:isarray@1.0.0"]
    assert any("'acme-isarray-fork', a name no registry has" in p for p in isarray.proof)
    assert "npm:acme-isarray-fork@1.0.0" not in {c.name for c in rep.components}
    d = _one(rep, "divergent-content", "/ms/index.js")
    assert d.severity == Severity.HIGH
    assert (d.evidence["package"], d.evidence["version"], d.evidence["file"]) == (
        "ms",
        "2.1.3",
        "index.js",
    )
    assert "ms@2.1.3" in d.message and "index.js" in d.message
    e = _one(rep, "unexpected-file", "evil.js")
    assert e.severity == Severity.HIGH and e.evidence["file"] == "functions/evil.js"
    m = _one(rep, "divergent-content", "debug/package.json")
    assert m.evidence["keys_changed"] == ["main"] and "main" in m.message
    v = _one(rep, "unknown-dependency-version", "ms/package.json")
    assert v.severity == Severity.HIGH and v.evidence["version"] == "2.1.99"
    s = _one(rep, "signed-divergent-content", WIN_NODE)
    assert s.severity == Severity.CRITICAL and s.evidence["package"] == "bufferutil"
    h = _one(rep, "unexpected-file", "helper.node")
    assert h.severity == Severity.HIGH
    built = {r.path: r for r in rep.files}[f"{u}/bufferutil/build/Release/bufferutil.node"]
    assert built.status == Status.OWN and "binding.gyp" in built.evidence["built_at_install"]
    text = _text(rep)
    assert "9 dependencies verified, 1 unverifiable, 6 with findings" in text
    failing = text.index("FAIL  ")
    assert failing < text.index("????  @acme/private-utils@1.0.0")


def _text(rep: Report) -> str:
    from verifier.report.text import render_text

    return render_text(rep)


def test_warm_and_offline_runs_use_the_cache(world: World, clean_report: Report) -> None:
    world.registry.server.reset_count()
    again = _verify(world, world.clean, "cache-clean", offline=True)
    assert again.verdict == Verdict.PASS and world.registry.server.count == 0
    cold = _verify(world, world.clean, "cache-empty", offline=True)
    assert cold.verdict == Verdict.INCONCLUSIVE
    assert any("offline mode and not in the cache" in r for r in cold.inconclusive_reasons)
    # a corrupted cached inventory is dropped and rebuilt from the cached tarball, re-hashed
    refs = sorted((world.work / "cache-clean" / "refs").glob("*.json"))
    for p in refs:
        p.write_bytes(p.read_bytes().replace(b'"sha256":"', b'"sha256":"0', 1))
    rebuilt = _verify(world, world.clean, "cache-clean", offline=True)
    assert rebuilt.verdict == Verdict.PASS and world.registry.server.count == 0
    assert any("sha256 re-verified" in p for c in rebuilt.components for p in c.proof if c.npm)


def test_lockfile_integrity_that_disagrees_is_a_reference_mismatch(
    world: World, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    shutil.copytree(world.src, app / "resources" / "app")
    packages: dict[str, object] = {"": {"name": "acme-desktop", "version": "1.0.0"}}
    for (name, version), data in world.tarballs.items():
        packages[_path(name, version)] = {"version": version, "integrity": sri512(data)}
    wrong = sri512(world.tarballs[("ms", "2.1.2")])
    packages["node_modules/ms"] = {"version": "2.1.3", "integrity": wrong}
    lock = {"name": "acme-desktop", "lockfileVersion": 3, "packages": packages}
    (app / "resources/app/package-lock.json").write_text(json.dumps(lock))
    rep = _verify(world, app, "cache-lock")
    assert rep.verdict == Verdict.FAIL
    f = _one(rep, "reference-mismatch", "node_modules/ms/package.json")
    assert f.severity == Severity.CRITICAL and "package-lock.json" in f.message
    assert f.evidence["expected_digest"] != f.evidence["actual_digest"]
    assert {x.rule for x in rep.findings if x.severity.at_least(Severity.HIGH)} == {
        "reference-mismatch"
    }
    deps = {c.name: c for c in rep.components if c.npm}
    semver = deps["npm:semver@7.6.0"]
    assert any("sha512 matches resources/app/package-lock.json" in p for p in semver.proof)
    assert semver.npm is not None and len(semver.npm["proven_by"]) == 2
    assert deps["npm:ms@2.1.3"].npm["status"] == "mismatch"  # type: ignore[index]


def test_registry_serving_a_tarball_that_fails_its_own_integrity(world: World) -> None:
    with LocalServer() as srv:
        bad = Registry(srv)
        for (name, version), data in world.tarballs.items():
            swapped = (
                world.tarballs[("ms", "2.1.2")] if (name, version) == ("ms", "2.1.3") else None
            )
            bad.publish(name, version, data, serve=swapped)
        rep = _verify(world, world.clean, "cache-badreg", env=_env(bad))
    assert rep.verdict == Verdict.FAIL
    f = _one(rep, "reference-mismatch", "node_modules/ms/package.json")
    assert "does not match dist.integrity" in f.message and f.severity == Severity.CRITICAL
    # nothing was cached for it: the next run asks again
    ms = {c.name: c for c in rep.components}["npm:ms@2.1.3"]
    assert ms.npm is not None and ms.npm["status"] == "mismatch"


def test_public_registry_is_asked_too_when_another_is_configured(world: World) -> None:
    with LocalServer() as srv:
        public = Registry(srv)
        for (name, version), data in world.tarballs.items():
            if name == "semver":
                continue  # not on the "public" registry
            other = world.tarballs[("ms", "2.1.2")] if name == "inherits" else data
            public.publish(name, version, other)
        rep = _verify(world, world.clean, "cache-public", env=_env(world.registry, public.url))
    deps = {c.name: c for c in rep.components if c.npm}
    assert any("lists the same sha512" in p for p in deps["npm:ms@2.1.3"].proof)
    assert len(deps["npm:ms@2.1.3"].npm["proven_by"]) == 2  # type: ignore[index]
    assert any("not on the public registry" in p for p in deps["npm:semver@7.6.0"].proof)
    assert any("proven by one source only" in p for p in deps["npm:semver@7.6.0"].proof)
    f = _one(rep, "reference-mismatch", "node_modules/inherits/package.json")
    assert "publish different dist.integrity" in f.message
    # an unreachable public registry: proven by one source, said so, not inconclusive
    dead = "http://127.0.0.1:9/"
    rep2 = _verify(world, world.clean, "cache-public-dead", env=_env(world.registry, dead))
    assert rep2.verdict == Verdict.PASS
    ms = {c.name: c for c in rep2.components}["npm:ms@2.1.3"]
    assert any("proven by" in p and "only" in p for p in ms.proof)


def test_policy_skips_and_pins(world: World, tmp_path: Path) -> None:
    wrong = sri512(b"not the tarball")
    pol = tmp_path / "p.yaml"
    pol.write_text(
        "name: acme\nextends: electron-app\nnpm_dependencies:\n  skip: ['@acme/*']\n"
        f"  pin:\n    - name: escape-html\n      version: 1.0.3\n      integrity: {wrong}\n"
    )
    rep = _verify(world, world.clean, "cache-clean", policy=str(pol))
    deps = {c.name: c for c in rep.components if c.npm}
    assert deps["npm:@acme/private-utils@1.0.0"].npm["status"] == "skipped"  # type: ignore[index]
    assert not [f for f in rep.findings if f.rule == "unverifiable-dependency"]
    f = _one(rep, "reference-mismatch", "escape-html/package.json")
    assert "policy pin" in f.message


def test_cli_json_and_exit_codes(world: World) -> None:
    import os

    import jsonschema

    env = {**os.environ, **_env(world.registry)}
    cache = str(world.work / "cache-tampered")
    trust = world.pki.root_cert  # type: ignore[attr-defined]
    base = [sys.executable, "-m", "verifier", "verify", str(world.tampered)]
    base += ["--trust-store", trust, "--against", "deps:npm"]
    r = subprocess.run(
        [*base, "--cache-dir", cache, "--format", "json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    schema = json.loads((ROOT / "verifier/schemas/biv.report.v1.json").read_text())
    jsonschema.validate(doc, schema)
    npm = [c for c in doc["components"] if "npm" in c]
    assert {c["npm"]["status"] for c in npm} == {"verified", "unverifiable", "unknown-version"}
    files = {f["path"]: f for f in doc["files"]}
    assert files["resources/app.asar/node_modules/ms/index.js"]["component"] == "npm:ms@2.1.3"
    r = subprocess.run(
        [*base, "--cache-dir", str(world.work / "nothing"), "--offline"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 3, r.stdout + r.stderr
    assert "could not be obtained (offline mode and not in the cache" in r.stdout


def test_sarif_and_html_carry_the_dependencies(world: World) -> None:
    from verifier.report.html import render_html
    from verifier.report.sarif import render_sarif

    rep = _verify(world, world.tampered, "cache-tampered")
    sarif = json.loads(render_sarif(rep, None))
    run = sarif["runs"][0]
    rules = {res["ruleId"] for res in run["results"]}
    assert {"unexpected-file", "unknown-dependency-version", "divergent-content"} <= rules
    comps = {c["name"]: c for c in run["properties"]["components"]}
    assert comps["npm:ms@2.1.3"]["npm"]["integrity"].startswith("sha512-")
    page = render_html(rep)
    assert "npm dependencies: 9 dependencies verified, 1 unverifiable, 6 with findings" in page
    assert page.index("ms@2.1.99") < page.index("yallist@4.0.0")  # failing ones first

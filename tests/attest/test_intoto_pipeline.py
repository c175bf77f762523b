"""in-toto: the example Electron release layout, a real pipeline run under in-toto-run,
verified with in_toto_verify; tampering with one step's products fails verification."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from support.paths import REPO

from verifier.attest.intoto import (
    electron_release_layout,
    input_attestations,
    sign_layout,
    verify_layout,
)
from verifier.errors import UsageError

ROOT = REPO
ATT = ROOT / "attestations"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ATT / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


pipeline = _load("example_pipeline")


def keypair(d: Path, name: str) -> tuple[str, str]:
    k = ed25519.Ed25519PrivateKey.generate()
    priv, pub = d / f"{name}.pem", d / f"{name}.pub"
    priv.write_bytes(
        k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(priv), str(pub)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("keys")
    owner, owner_pub = keypair(d, "owner")
    func, func_pub = keypair(d, "functionary")
    layout = str(d / "root.layout")
    # the shipped generator script, as a user would run it
    subprocess.run(
        [
            sys.executable,
            str(ATT / "make_layout.py"),
            "--owner-key",
            owner,
            "--functionary-key",
            func_pub,
            "-o",
            layout,
        ],
        check=True,
        capture_output=True,
    )
    return {
        "owner": owner,
        "owner_pub": owner_pub,
        "func": func,
        "func_pub": func_pub,
        "layout": layout,
        "dir": str(d),
    }


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, str]) -> Path:
    work = tmp_path_factory.mktemp("good")
    return Path(pipeline.run_pipeline(work, keys["func"]))


def test_layout_rules_say_match_except_sign_modifies(keys: dict[str, str]) -> None:
    doc = json.loads(Path(keys["layout"]).read_text())
    steps = {s["name"]: s for s in doc["signed"]["steps"]}
    assert list(steps) == ["fetch-electron", "build", "sign", "package"]
    assert ["MODIFY", "dist/*.dll"] in steps["sign"]["expected_products"]
    assert [
        "MATCH",
        "*",
        "IN",
        "package",
        "WITH",
        "PRODUCTS",
        "IN",
        "electron",
        "FROM",
        "fetch-electron",
    ] in steps["package"]["expected_products"]
    assert steps["package"]["expected_products"][-1] == ["DISALLOW", "*"]
    assert len(doc["signatures"]) == 1


def test_pipeline_verifies(good_run: Path, keys: dict[str, str]) -> None:
    assert sorted(p.name.split(".")[0] for p in good_run.glob("*.link")) == [
        "build",
        "fetch-electron",
        "package",
        "sign",
    ]
    assert verify_layout(keys["layout"], [keys["owner_pub"]], str(good_run)) == ()
    ins = input_attestations(keys["layout"], str(good_run))
    assert len(ins) == 5 and all(len(sha) == 64 for _, sha in ins)


def test_tampering_build_step_products_fails(
    tmp_path: Path, good_run: Path, keys: dict[str, str]
) -> None:
    import shutil

    work = tmp_path / "w"  # fetch-electron as before; build (tampering), sign, package again
    shutil.copytree(good_run.parent, work)
    for step in ("build", "sign", "package"):
        next((work / "links").glob(f"{step}.*.link")).unlink()
    shutil.rmtree(work / "dist")
    shutil.rmtree(work / "package")
    for step in ("build", "sign", "package"):
        pipeline.run_step(work, keys["func"], step, tamper="build")
    (a,) = verify_layout(keys["layout"], [keys["owner_pub"]], str(work / "links"))
    assert a.rule == "in-toto-failure"
    assert a.evidence["error"] == "artifact-rule"
    assert "in-toto artifact rule violated" in a.message and "dist/ffmpeg.dll" in a.message


def test_product_changed_between_steps_fails(
    tmp_path: Path, good_run: Path, keys: dict[str, str]
) -> None:
    import shutil

    work = tmp_path / "w"
    shutil.copytree(good_run.parent, work)
    shutil.rmtree(work / "package")
    next((work / "links").glob("package.*.link")).unlink()
    with (work / "dist" / "ffmpeg.dll").open("ab") as fh:  # after sign recorded its products
        fh.write(b"\xfe\xed\xfa\xce")
    pipeline.run_step(work, keys["func"], "package")
    (a,) = verify_layout(keys["layout"], [keys["owner_pub"]], str(work / "links"))
    assert a.evidence["error"] == "artifact-rule"
    assert "ffmpeg.dll" in a.message


def test_changed_link_wrong_key_and_expiry(
    tmp_path: Path, good_run: Path, keys: dict[str, str]
) -> None:
    import shutil

    links = tmp_path / "links"
    shutil.copytree(good_run, links)
    link = next(links.glob("build.*.link"))
    doc = json.loads(link.read_text())
    doc["signed"]["products"]["dist/ffmpeg.dll"]["sha256"] = "00" * 32
    link.write_text(json.dumps(doc))
    (a,) = verify_layout(keys["layout"], [keys["owner_pub"]], str(links))
    assert a.rule == "in-toto-failure"  # the edited link no longer verifies: threshold unmet

    # a layout verified with a key that did not sign it
    (b,) = verify_layout(keys["layout"], [keys["func_pub"]], str(good_run))
    assert b.evidence["error"] == "signature"

    # an expired layout
    expired = str(tmp_path / "expired.layout")
    sign_layout(
        electron_release_layout(keys["func_pub"], expires=datetime.now(UTC) - timedelta(days=1)),
        keys["owner"],
        expired,
    )
    (c,) = verify_layout(expired, [keys["owner_pub"]], str(good_run))
    assert c.evidence["error"] == "expired" and "expired" in c.message

    with pytest.raises(UsageError, match="links directory not found"):
        verify_layout(keys["layout"], [keys["owner_pub"]], str(tmp_path / "nope"))
    garbage = tmp_path / "garbage.layout"
    garbage.write_text("{}")
    (d,) = verify_layout(str(garbage), [keys["owner_pub"]], str(good_run))
    assert "cannot be read" in d.message


def test_shipped_example_layout_is_signed_by_shipped_owner_key() -> None:
    from in_toto.models.metadata import Metablock

    from verifier.attest.intoto import load_key_dict

    meta = Metablock.load(str(ATT / "electron-release.layout"))
    meta.verify_signature(load_key_dict(str(ATT / "keys" / "owner.pub")))
    steps = [s.name for s in meta.signed.steps]
    assert steps == ["fetch-electron", "build", "sign", "package"]
    func = load_key_dict(str(ATT / "keys" / "functionary.pub"))
    assert all(s.pubkeys == [func["keyid"]] for s in meta.signed.steps)

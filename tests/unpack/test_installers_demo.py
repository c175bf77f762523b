"""The 3CX demo app packed into real installers (wixl MSI, makensis NSIS): verifying the
installer gives the same findings as verifying the unpacked folder; the clean build passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.installers import build_msi, build_nsis, need


def _verify(artifact: str, sc: Any, work: Path) -> Any:
    from verifier import api

    req = api.VerifyRequest(
        artifact=artifact,
        against=(f"path:{sc.upstream}",),
        trust_stores=(sc.trust_store,),
        workdir=str(work),
    )
    return api.verify(req)


def _key(report: Any) -> list[tuple[str, str, str]]:
    return sorted((f.rule, f.severity.value, f.path) for f in report.findings)


@pytest.fixture(scope="module")
def folder_reports(scenario: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("work")
    comp = _verify(scenario.compromised, scenario, work / "c")
    clean = _verify(scenario.clean, scenario, work / "k")
    return clean, comp


@pytest.mark.parametrize("kind", ["msi", "nsis"])
def test_installer_same_findings_as_folder(
    kind: str, scenario: Any, folder_reports: Any, tmp_path: Path
) -> None:
    need("msiextract" if kind == "msi" else "7z")
    from verifier.model import Verdict

    clean_dir, comp_dir = folder_reports
    assert comp_dir.verdict == Verdict.FAIL and clean_dir.verdict == Verdict.PASS
    build = build_msi if kind == "msi" else build_nsis
    suffix = "msi" if kind == "msi" else "exe"
    comp_inst = build(Path(scenario.compromised), tmp_path / f"setup-bad.{suffix}", "3CXDesktopApp")
    clean_inst = build(Path(scenario.clean), tmp_path / f"setup-ok.{suffix}", "3CXDesktopApp")

    comp = _verify(str(comp_inst), scenario, tmp_path / "wc")
    assert comp.verdict == Verdict.FAIL
    # the installer's own file (unsigned here) may add findings about itself only
    own = {comp_inst.name, ""}
    assert [k for k in _key(comp) if k[2] not in own] == _key(comp_dir)
    for f in comp.findings:
        if f.rule in ("signed-divergent-content", "signature-padding"):
            assert f.location.startswith(f"{comp_inst.name}!/"), f.location

    clean = _verify(str(clean_inst), scenario, tmp_path / "wk")
    assert clean.verdict == Verdict.PASS, _key(clean)


@pytest.mark.parametrize("kind", ["msi", "nsis"])
def test_installer_members_match_folder(kind: str, scenario: Any, tmp_path: Path) -> None:
    """Independent of the rest of the pipeline: the same bytes come out of the installer."""
    need("msiextract" if kind == "msi" else "7z")
    from verifier.unpack import unpack

    tree = Path(scenario.compromised)
    build = build_msi if kind == "msi" else build_nsis
    inst = build(tree, tmp_path / ("setup.msi" if kind == "msi" else "setup.exe"), "3CXDesktopApp")
    folder = {m.path: m.blob for m in unpack(str(tree), str(tmp_path / "f")).members}
    u = unpack(str(inst), str(tmp_path / "i"))
    assert not u.problems
    prefix = "Program Files/3CXDesktopApp/" if kind == "msi" else ""
    got = {m.path.removeprefix(prefix): m for m in u.members if m.path.startswith(prefix)}
    # nested archives (app.asar) are opened in both: compare the top-level files
    assert set(folder) <= set(got), sorted(set(folder) - set(got))
    for path, blob in folder.items():
        m = got[path]
        assert m.blob.read() == blob.read(), path
        assert m.location.startswith(f"{inst.name}!/{prefix}")
        assert m.container[0] == inst.name

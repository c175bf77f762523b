"""The import contract (pyproject.toml ``[tool.importlinter]``, docs/INTERNALS.md "Layers"):
layers that only point down and no cycles, checked by import-linter on the real package, and
shown to fail on a copy of the package with one bad import injected."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest
from support.paths import REPO

ROOT = REPO


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the ``verifier`` package found in ``root``, with its pyproject."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_package_keeps_its_import_contract() -> None:
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 3 kept, 0 broken." in r.stdout


@pytest.fixture(scope="module")
def copy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("contract")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(
        ROOT / "verifier", root / "verifier", ignore=shutil.ignore_patterns("__pycache__")
    )
    clean = lint_imports(root)  # the copy, untouched, keeps the contract: failures are ours
    assert clean.returncode == 0, clean.stdout + clean.stderr
    return root


# (module file, line to add, what import-linter must say)
VIOLATIONS = {
    "back-edge": (
        "verifier/model.py",
        "from verifier import api",
        ["verifier.model is not allowed to import verifier.api", "No cycles are allowed in"],
    ),
    "policy-reads-report": (
        "verifier/policy/evaluate.py",
        "from verifier.report import text",
        ["verifier.policy is not allowed to import verifier.report"],
    ),
    "parsing-calls-verification": (
        "verifier/binary/macho.py",
        "from verifier.signing import codesign",
        ["verifier.binary is not allowed to import verifier.signing"],
    ),
    "cycle-inside-a-package": (
        "verifier/upstream/sources.py",
        "from verifier.upstream import resolve",
        ["No cycles are allowed in verifier.upstream"],
    ),
    "product-imports-the-test-kit": (
        "verifier/api.py",
        "from verifier._scenarios import pki",
        ["verifier.api is not allowed to import verifier._scenarios"],
    ),
    "module-outside-the-layers": (
        "verifier/newstage.py",
        "from verifier import model",
        ["verifier.newstage"],
    ),
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_an_injected_violation_breaks_the_contract(copy_root: Path, case: str) -> None:
    rel, line, expected = VIOLATIONS[case]
    target = copy_root / rel
    original = target.read_text() if target.exists() else None
    target.write_text((original or "") + f"\n{line}  # injected by the test\n")
    try:
        r = lint_imports(copy_root)
    finally:
        if original is None:
            target.unlink()
        else:
            target.write_text(original)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "broken" in r.stdout
    for text in expected:
        assert text in r.stdout, r.stdout


def _hidden_imports() -> list[tuple[str, str]]:
    """(importer, imported) for every ``importlib.import_module("verifier.…")`` literal."""
    found = []
    for path in sorted((ROOT / "verifier").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value.startswith("verifier.")
            ):
                found.append((module, node.args[0].value))
    return found


def test_imports_made_with_importlib_are_declared_for_the_contract() -> None:
    """import-linter reads import statements only: a module loaded with importlib must also be
    named in an import the graph sees (``if TYPE_CHECKING:``), so the contract judges it. None
    is today (the one that was hid a back-edge from parsing to verification)."""
    hidden = _hidden_imports()
    graph = grimp.build_graph("verifier")
    undeclared = [(a, b) for a, b in hidden if b not in graph.find_modules_directly_imported_by(a)]
    assert undeclared == []
    assert hidden == []


def test_every_product_module_is_forbidden_the_test_kit() -> None:
    """The ``scenarios-private`` contract names its sources one by one: every module directly
    under ``verifier/`` except the demo runner and the test kit itself must be among them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["id"] == "scenarios-private"]
    assert contract["forbidden_modules"] == ["verifier._scenarios"]
    top = {
        p.stem if p.is_file() else p.name
        for p in (ROOT / "verifier").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert {"demo", "_scenarios", "api", "cli"} <= top
    expected = {f"verifier.{m}" for m in top - {"demo", "_scenarios"}}
    assert set(contract["source_modules"]) == expected

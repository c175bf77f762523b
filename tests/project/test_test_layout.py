"""The tests' own layout (docs/INTERNALS.md "Tests"): every test module sits in a folder that
mirrors a part of the package and has a ``conftest.py``, and no test module imports another
(shared helpers live in ``tests/support/``)."""

from __future__ import annotations

import ast
from pathlib import Path

from support.paths import TESTS


def _test_modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("test_*.py") if "support" not in p.parts)


def _imports_of_tests(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names if n.split(".")[-1].startswith("test_")]
    return found


def layout_problems(root: Path) -> list[str]:
    problems: list[str] = []
    for p in _test_modules(root):
        rel = p.relative_to(root)
        if len(rel.parts) != 2:
            problems.append(f"{rel}: not in a folder of its own part of the package")
        elif not (p.parent / "conftest.py").is_file():
            problems.append(f"{rel}: its folder has no conftest.py")
        problems += [f"{rel}: imports the test module {m}" for m in _imports_of_tests(p)]
    return problems


def test_the_tests_mirror_the_package() -> None:
    assert layout_problems(TESTS) == []


def test_the_layout_check_catches_a_stray_module_and_a_cross_import(tmp_path: Path) -> None:
    (tmp_path / "unpack").mkdir()
    (tmp_path / "unpack" / "conftest.py").write_text("")
    (tmp_path / "unpack" / "test_a.py").write_text("from test_b import helper\n")
    (tmp_path / "test_flat.py").write_text("")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "test_c.py").write_text("import os\n")
    assert layout_problems(tmp_path) == [
        "report/test_c.py: its folder has no conftest.py",
        "test_flat.py: not in a folder of its own part of the package",
        "unpack/test_a.py: imports the test module test_b",
    ]

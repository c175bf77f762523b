"""The shape of the code (docs/INTERNALS.md "Rules of the code"): no function in ``verifier/``
longer than 80 lines, except the ones listed here. The list can only shrink: an entry whose
function is gone or now fits fails the test too, so it is taken off when the function is split.
"""

from __future__ import annotations

import ast
from pathlib import Path

from support.paths import REPO

ROOT = REPO
MAX_LINES = 80

ALLOWED = {
    # argument parsers: one add_argument after another, nothing to split
    "verifier/cli.py::build_parser",
}


def _functions(path: Path) -> list[tuple[str, int]]:
    """(qualified name, length in lines) of every function and method in one module."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                assert child.end_lineno is not None
                found.append((name, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return found


def _lengths() -> dict[str, int]:
    return {
        f"{path.relative_to(ROOT).as_posix()}::{name}": n
        for path in sorted((ROOT / "verifier").rglob("*.py"))
        for name, n in _functions(path)
    }


def test_no_function_is_longer_than_80_lines() -> None:
    too_long = {k: n for k, n in _lengths().items() if n > MAX_LINES and k not in ALLOWED}
    assert too_long == {}, "split these along their seams (named helpers, small dataclasses)"


def test_the_allow_list_only_shrinks() -> None:
    lengths = _lengths()
    stale = sorted(k for k in ALLOWED if lengths.get(k, 0) <= MAX_LINES)
    assert stale == [], "take these off ALLOWED: they are gone or fit now"


def test_the_measure_counts_what_it_should(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    (tmp_path / "m.py").write_text(
        f"def fits():\n{body[: body.rfind(chr(10))]}\n\n"
        f"class C:\n    def method(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n"
    )
    assert dict(_functions(tmp_path / "m.py")) == {"fits": 80, "C.method": 81}

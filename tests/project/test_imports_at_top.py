"""Imports at the top of a module (docs/INTERNALS.md "Rules of the code"): an import of biv's
own modules inside a function must say why, with a ``# lazy: <reason>`` comment on its line or
in the comment just above it (one comment covers the imports that follow it without a blank
line). The reasons are the CLI seam (``biv --version`` stays fast) and the start-up of
``import verifier.api``; anything else belongs at the top, or the function belongs in another
layer.

``ALLOWED`` names unmarked ones waiting for their module's owner (none now); it can only shrink:
an entry that is gone or now marked fails the test too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from support.paths import REPO

MARK = "# lazy:"

ALLOWED: set[str] = set()


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules one import statement names (a relative import counts as biv's own)."""
    if isinstance(node, ast.ImportFrom):
        return ["." * node.level + (node.module or "")]
    return [alias.name for alias in node.names]


def _own(module: str) -> bool:
    return module == "verifier" or module.startswith(("verifier.", "."))


def unmarked(path: Path) -> list[tuple[str, str, int]]:
    """(function, module, line) of every import of ``verifier`` inside a function of one file
    that carries no ``# lazy:`` comment."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    found: list[tuple[str, str, int]] = []
    import_lines: set[int] = set()
    in_functions: list[tuple[str, ast.Import | ast.ImportFrom]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                end = child.end_lineno or child.lineno
                import_lines.update(range(child.lineno, end + 1))
                if function is not None:
                    in_functions.append((function, child))
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name)
            else:
                visit(child, function)

    visit(tree, None)

    def marked(node: ast.Import | ast.ImportFrom) -> bool:
        own = lines[node.lineno - 1 : node.end_lineno or node.lineno]
        if any(MARK in line for line in own):
            return True
        i = node.lineno - 1  # 1-based number of the line above
        while i >= 1:
            above = lines[i - 1].strip()
            if above.startswith("#"):
                if MARK in above:
                    return True
            elif i not in import_lines:
                return False
            i -= 1
        return False

    for function, node in in_functions:
        for module in _imported(node):
            if _own(module) and not marked(node):
                found.append((function, module, node.lineno))
    return found


def _violations() -> dict[str, int]:
    out: dict[str, int] = {}
    for path in sorted((REPO / "verifier").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for function, module, line in unmarked(path):
            out.setdefault(f"{rel}::{function}::{module}", line)
    return out


def test_imports_of_biv_inside_functions_say_why() -> None:
    bad = {k: line for k, line in _violations().items() if k not in ALLOWED}
    assert bad == {}, (
        "move these imports to the top of the module (or the function to the layer it "
        "belongs in); a deliberate lazy import says why: '# lazy: <reason>'"
    )


def test_the_allow_list_only_shrinks() -> None:
    stale = sorted(ALLOWED - set(_violations()))
    assert stale == [], "take these off ALLOWED: they are gone or marked now"


def test_the_check_finds_what_it_should(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from __future__ import annotations\n"
        "\n"
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "\n"
        "from verifier import errors\n"
        "\n"
        "if TYPE_CHECKING:\n"
        "    from verifier.model import Report\n"
        "\n"
        "\n"
        "def top_level_is_fine() -> None:\n"
        "    import json\n"
        "\n"
        "\n"
        "def hidden() -> None:\n"
        "    from verifier import api\n"
        "\n"
        "\n"
        "class C:\n"
        "    def method(self) -> None:\n"
        "        import verifier.compare\n"
        "\n"
        "        def inner() -> None:\n"
        "            from . import sibling\n"
        "\n"
        "\n"
        "def said_inline() -> None:\n"
        "    from verifier import api  # lazy: start-up\n"
        "\n"
        "\n"
        "def said_above() -> None:\n"
        "    # lazy: start-up, requests\n"
        "    from verifier.upstream import sources\n"
        "    from verifier.upstream import (\n"
        "        electron,\n"
        "    )\n"
        "\n"
        "    from verifier import cli\n"
        "\n"
        "\n"
        "def one_mark_each() -> None:\n"
        "    from verifier import a  # lazy: seam\n"
        "    from verifier import b\n"
    )
    assert unmarked(module) == [
        ("hidden", "verifier", 17),
        ("method", "verifier.compare", 22),
        ("inner", ".", 25),
        ("said_above", "verifier", 39),
        ("one_mark_each", "verifier", 44),
    ]

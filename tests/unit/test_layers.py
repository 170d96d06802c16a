"""The house rules that keep the package readable (README, "Layout"): imports go only downward
through the layers (the import-linter contract in pyproject.toml), no import circle, no module
over 300 lines, and no class assembled from several bases (mixins)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "controller"
MAX_LINES = 300


def _circles(graph) -> list[tuple[str, str]]:
    """Each import A -> B where B also reaches A, directly or through other modules."""
    found = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if graph.chain_exists(importer=imported, imported=module):
                found.append((module, imported))
    return found


def test_imports_go_only_downward_through_the_layers():
    lint_imports = Path(sys.executable).parent / "lint-imports"  # import-linter's command, as `make lint` runs it
    done = subprocess.run([str(lint_imports), "--config", str(REPO / "pyproject.toml")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_no_import_circle():
    assert _circles(grimp.build_graph("controller")) == []


def test_the_circle_check_finds_a_circle(tmp_path, monkeypatch):
    package = tmp_path / "circled"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from circled import b\n")
    (package / "b.py").write_text("from circled import c\n")
    (package / "c.py").write_text("def late():\n    from circled import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ("circled.a", "circled.b") in _circles(grimp.build_graph("circled", cache_dir=None))


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_over_300_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines: split it by job"


def _classes_with_several_bases(source: str) -> list[str]:
    return [node.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef) and len(node.bases) > 1]


def test_no_class_is_assembled_from_mixins():
    found = {str(p.relative_to(REPO)): _classes_with_several_bases(p.read_text()) for p in _modules()}
    assert {path: names for path, names in found.items() if names} == {}
    assert _classes_with_several_bases("class Stack(SwitchCommands, BenchCommands):\n    pass\n") == ["Stack"]

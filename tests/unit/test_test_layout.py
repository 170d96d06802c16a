"""The layout of the test suite: no module under tests/ imports a test module (test_*.py) or a conftest.py.

Shared fixtures live in conftest.py, where pytest finds them without an import; shared helpers live
in support modules with public names (tests/unit/_support.py, cli_support.py, fake_stack.py,
bad_input_harness.py, fakes.py; tests/integration/harness.py, webui_api.py, ...). Importing a test
module instead couples two test files, drags fixtures in behind an unused-import suppression, and can make pytest
collect the same test twice.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent


def _is_test_module(name: str) -> bool:
    """`name` is the last part of a dotted module name, or a name imported from a package."""
    return name.startswith("test_") or name == "conftest"


def forbidden_imports(source: str, filename: str) -> list[str]:
    """Every import in `source` of a test module or a conftest, as "FILENAME:LINE: IMPORT", by line.

    Caught: `import pkg.test_x`, `from pkg.test_x import y`, `from pkg import test_x`, the relative
    forms (`from .test_x import y`, `from . import test_x`), also inside functions; importing a name
    that starts with test_ is caught too (pytest would collect that test a second time).
    """
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            bad = any(_is_test_module(alias.name.rsplit(".", 1)[-1]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").rsplit(".", 1)[-1]
            bad = _is_test_module(module) or any(_is_test_module(alias.name) for alias in node.names)
        else:
            continue
        if bad:
            statement = " ".join((ast.get_source_segment(source, node) or ast.unparse(node)).split())
            found.append((node.lineno, f"{filename}:{node.lineno}: {statement}"))
    return [line for _, line in sorted(found)]


def _python_files() -> list[Path]:
    return sorted(path for path in TESTS.rglob("*.py") if "__pycache__" not in path.parts)


def test_no_module_under_tests_imports_a_test_module_or_a_conftest():
    found = [
        line
        for path in _python_files()
        for line in forbidden_imports(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    ]
    assert not found, (
        "test modules must not be imported; move shared fixtures to conftest.py and shared helpers "
        "to a support module (not test_*.py):\n" + "\n".join(found)
    )


def test_the_scan_sees_the_test_modules_of_both_suites():
    names = {path.relative_to(TESTS).as_posix() for path in _python_files()}
    assert {"unit/test_test_layout.py", "unit/test_cli.py", "integration/test_lifecycle.py"} <= names
    assert len([name for name in names if Path(name).name.startswith("test_")]) > 40


@pytest.mark.parametrize(
    "source",
    [
        "from suite.unit.test_sequencing import journal, make_stack, site\n",
        "from suite.integration.test_lifecycle import (\n    _admin_session,\n    _create_chat,\n)\n",
        "import suite.integration.test_switch\n",
        "import suite.unit.test_cli as cli_tests\n",
        "from suite.unit import test_cli\n",
        "from suite.integration import conftest, harness\n",
        "from .test_bad_input_harness import Project\n",
        "from . import test_cli\n",
        "from suite.unit.fakes import test_helper\n",
        "def test_x(tmp_path):\n    from suite.unit.test_cli import run as run_cli\n\n    run_cli(tmp_path)\n",
        "if True:\n    import pytest\n    from suite.unit.test_doctor import recorded\n",
    ],
    ids=[
        "from-test-module",
        "from-test-module-multiline",
        "import-test-module",
        "import-test-module-as",
        "from-package-import-test-module",
        "from-package-import-conftest",
        "relative-from-test-module",
        "relative-import-test-module",
        "import-a-test-function",
        "inside-a-function",
        "inside-a-block",
    ],
)
def test_an_import_of_a_test_module_is_found(source):
    found = forbidden_imports(source, "tests/unit/test_synthetic.py")
    assert len(found) == 1, found
    assert found[0].startswith("tests/unit/test_synthetic.py:")
    assert "import" in found[0] and ("test_" in found[0].split(": ", 1)[1] or "conftest" in found[0])


@pytest.mark.parametrize(
    "source",
    [
        "import pytest\nfrom controller.cli.main import app\n",
        "from tests.unit._support import TINY_ARCH, write_catalog\n",
        "from tests.unit.cli_support import collapse_whitespace, run_cli\n",
        "from tests.integration import harness\nfrom tests.integration.webui_api import admin_session\n",
        "from .fake_stack import make_stack\n",
        "import tests.unit.testing_tools\n",
        "def test_a():\n    assert 'from suite.unit.test_cli import run'\n",
    ],
    ids=[
        "third-party-and-controller",
        "support-module",
        "cli-support",
        "integration-support",
        "relative-support-module",
        "name-starting-with-test-not-test_",
        "text-in-a-string",
    ],
)
def test_an_import_of_a_support_module_is_allowed(source):
    assert forbidden_imports(source, "tests/unit/test_synthetic.py") == []


def test_the_failure_names_the_file_the_line_and_the_import():
    source = (
        '"""A test module."""\n\n'
        "from __future__ import annotations\n\n"
        "from tests.unit._support import CPU_PROFILE\n"
        "from suite.unit.test_sequencing import make_stack, site\n"
    )
    assert forbidden_imports(source, "suite/unit/test_blue_green.py") == [
        "suite/unit/test_blue_green.py:6: from suite.unit.test_sequencing import make_stack, site"
    ]

"""The quick commands stay quick: importing the command line, `--help`, `models` and `plan` do not
load the Docker SDK, HTTP clients, retry/lock libraries, NVML or the template engine.

Each check runs a fresh interpreter, because this test process has long since imported everything.
The figures themselves: `.venv/bin/python benchmarks/bench_startup.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Top-level packages that only `up`, `switch`, `down`, `status`, `logs` and `render` need (and PyYAML,
# which a user catalog needs: the built-in one is read from its JSON snapshot). pydantic (about
# 0.1 s) checks settings and catalogs the user wrote; the built-in profiles are taken as they are.
HEAVY = {"docker", "httpx", "requests", "tenacity", "filelock", "pynvml", "jinja2", "yaml", "pydantic", "pydantic_core"}
# The controller's own modules that pull them in.
HEAVY_CONTROLLER = {
    "controller.lifecycle.stack",
    "controller.runtime.vllm_probe",
    "controller.runtime.webui_client",
    "controller.runtime.docker",
    "controller.runtime.gpu",
}

# Runs the command line in-process, reports sys.modules on stderr's last line after the command, and
# exits as the command did.
_RUN_COMMAND = """
import json, sys
from controller.cli.main import main
sys.argv = ["controller", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
sys.exit(code)
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}


def _loaded(code: str, *args: str, cwd: Path) -> tuple[set[str], int]:
    """The modules the interpreter loaded, and its exit status."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    marker = [line for line in done.stderr.splitlines() if line.startswith("MODULES ")]
    assert marker, f"the interpreter did not report its modules (exit {done.returncode}):\n{done.stderr}"
    return set(json.loads(marker[-1].removeprefix("MODULES "))), done.returncode


def _heavy(modules: set[str]) -> list[str]:
    """The heavy packages (top-level names) and controller modules among the loaded ones."""
    return sorted({m.split(".")[0] for m in modules} & HEAVY | modules & HEAVY_CONTROLLER)


def test_importing_the_command_line_loads_no_heavy_library(tmp_path):
    modules, status = _loaded(
        "import json, sys, controller.cli.main; sys.stderr.write('MODULES ' + json.dumps(sorted(sys.modules)))",
        cwd=tmp_path,
    )
    assert "controller.cli.main" in modules and status == 0
    assert not _heavy(modules), (
        f"`import controller.cli.main` loads {_heavy(modules)}; import them inside the commands that use them "
        "(measure with: python -X importtime -c 'import controller.cli.main')"
    )


def _run_command(tmp_path: Path, args: list[str], expected_exit: int = 0) -> set[str]:
    """The modules `controller ARGS` loaded, once it exited as expected (a command that failed early
    would load little and prove nothing)."""
    modules, status = _loaded(_RUN_COMMAND, "--project-dir", str(tmp_path), *args, cwd=tmp_path)
    assert "controller.cli.main" in modules
    assert status == expected_exit, f"`controller {' '.join(args)}` exited {status}, not {expected_exit}"
    return modules


@pytest.mark.parametrize(
    ("args", "expected_exit"),
    [
        (["--help"], 0),
        (["models"], 0),
        (["models", "--json"], 0),
        (["plan", "llama3-8b", "--gpu-memory", "12GiB"], 1),  # "does not fit" is exit 1 by design
        (["plan", "llama3-8b-gptq", "--gpu-memory", "12GiB", "--json"], 0),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else str(value),
)
def test_quick_commands_load_no_heavy_library(tmp_path, args, expected_exit):
    modules = _run_command(tmp_path, args, expected_exit)
    assert not _heavy(modules), f"`controller {' '.join(args)}` loads {_heavy(modules)}"


@pytest.mark.parametrize(
    "args", [["models", "--json"], ["plan", "llama3-8b-gptq", "--gpu-memory", "12GiB", "--json"]], ids=" ".join
)
def test_json_output_loads_no_rich(tmp_path, args):
    modules = _run_command(tmp_path, args)
    assert "rich" not in modules, f"`controller {' '.join(args)}` imports rich, which only printed output needs"

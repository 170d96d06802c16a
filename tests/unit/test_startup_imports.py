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

# Runs the command line in-process and reports sys.modules on stderr's last line, after the command.
_RUN_COMMAND = """
import json, sys
from controller.cli.main import main
sys.argv = ["controller", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}


def _loaded(code: str, *args: str, cwd: Path) -> set[str]:
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
    return set(json.loads(marker[-1].removeprefix("MODULES ")))


def _heavy(modules: set[str]) -> list[str]:
    """The heavy packages (top-level names) and controller modules among the loaded ones."""
    return sorted({m.split(".")[0] for m in modules} & HEAVY | modules & HEAVY_CONTROLLER)


def test_importing_the_command_line_loads_no_heavy_library(tmp_path):
    modules = _loaded(
        "import json, sys, controller.cli.main; sys.stderr.write('MODULES ' + json.dumps(sorted(sys.modules)))",
        cwd=tmp_path,
    )
    assert "controller.cli.main" in modules
    assert not _heavy(modules), (
        f"`import controller.cli.main` loads {_heavy(modules)}; import them inside the commands that use them "
        "(measure with: python -X importtime -c 'import controller.cli.main')"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["models"],
        ["models", "--json"],
        ["plan", "llama3-8b", "--gpu-memory", "12GiB"],
        ["plan", "llama3-8b-gptq", "--gpu-memory", "12GiB", "--json"],
    ],
    ids=lambda args: " ".join(args),
)
def test_quick_commands_load_no_heavy_library(tmp_path, args):
    modules = _loaded(_RUN_COMMAND, "--project-dir", str(tmp_path), *args, cwd=tmp_path)
    assert "controller.cli.main" in modules
    assert not _heavy(modules), f"`controller {' '.join(args)}` loads {_heavy(modules)}"


@pytest.mark.parametrize(
    "args", [["models", "--json"], ["plan", "llama3-8b-gptq", "--gpu-memory", "12GiB", "--json"]], ids=" ".join
)
def test_json_output_loads_no_rich(tmp_path, args):
    modules = _loaded(_RUN_COMMAND, "--project-dir", str(tmp_path), *args, cwd=tmp_path)
    assert "controller.cli.main" in modules
    assert "rich" not in modules, f"`controller {' '.join(args)}` imports rich, which only printed output needs"

"""The command line as an operator runs it: `python -m controller` in a subprocess, in a project
directory, with no setting inherited from the environment of the test run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from controller.config.settings import Settings

SETTING_KEYS = {field.alias for field in Settings.model_fields.values()}


def clean_env() -> dict[str, str]:
    """The environment of the test run without any setting or CONTROLLER_* variable."""
    return {k: v for k, v in os.environ.items() if k not in SETTING_KEYS and not k.startswith("CONTROLLER_")}


def run_cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m controller --project-dir PROJECT ARGS...`, stdin closed, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "controller", "--project-dir", str(project), *args],
        cwd=project,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def collapse_whitespace(text: str) -> str:
    """Rich wraps long lines; compare with whitespace collapsed."""
    return " ".join(text.split())


def nothing_written(project: Path) -> bool:
    """Neither .env nor compose/ exists in `project`."""
    return not (project / ".env").exists() and not (project / "compose").exists()

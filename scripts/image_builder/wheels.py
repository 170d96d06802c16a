"""Wheel-file sets and the pip download command (pure, apart from finding a pip)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .common import BuildError
from .docker import succeeds


def normalize_name(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_set(directory: Path) -> dict[str, str]:
    """{normalised name: version} of the *.whl files in a directory (one per project)."""
    out: dict[str, str] = {}
    for whl in sorted(directory.glob("*.whl")):
        # {distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl; the
        # distribution part has "-" escaped as "_", so splitting on "-" is safe.
        parts = whl.name[: -len(".whl")].split("-")
        if len(parts) not in (5, 6):
            raise BuildError(f"not a wheel file name: {whl}")
        name, version = normalize_name(parts[0]), parts[1]
        if name in out and out[name] != version:
            raise BuildError(f"{directory} holds two versions of {name}: {out[name]} and {version}")
        out[name] = version
    return out


def set_diff(got: dict[str, str], want: dict[str, str]) -> str:
    """One line naming what a downloaded set has too many of and too few of."""
    extra = sorted(f"{n}=={v}" for n, v in got.items() if want.get(n) != v)
    missing = sorted(f"{n}=={v}" for n, v in want.items() if got.get(n) != v)
    return f"unexpected: {', '.join(extra) or '-'}; missing: {', '.join(missing) or '-'}"


def pip_command() -> list[str]:
    """pip for the host download: this interpreter's, else python3's (a test venv
    may have no pip). The host's pip config (find-links /opt/wheels) applies."""
    for cand in ([sys.executable, "-m", "pip"], ["python3", "-m", "pip"]):
        if succeeds([*cand, "--version"]):
            return cand
    raise BuildError("pip is not available to download wheels (python3 -m pip failed)")


def pip_download_cmd(dest: Path, python: str | None = None) -> list[str]:
    """`pip download` of binary wheels into dest; with python, for that Python version rather than the host's."""
    cmd = [*pip_command(), "download", "--quiet", "--progress-bar", "off"]
    if python is not None:
        cmd += ["--python-version", python]
    return cmd + ["--only-binary=:all:", "--dest", str(dest)]

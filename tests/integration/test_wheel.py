"""The package as an ops team installs it: a wheel built from this tree, installed into a fresh venv
outside the checkout, run from a directory that is not the checkout.

No Docker: `render` only writes files. The module builds the wheel and the venv once (pip installs
the dependencies from the index, about 20-40 s). Nothing here skips: a failure says what to run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# What the installed package must carry: the built-in catalog and every template, under controller/.
PACKAGE_DATA = ["controller/builtin_models.yaml", "controller/builtin_models.json"] + [
    f"controller/templates/{path.name}" for path in sorted((REPO / "templates").glob("*.j2"))
]
# Working-tree leftovers that a fresh clone does not have (and the copy below leaves out without git).
NOT_IN_A_CLONE = (".git", ".venv", ".cache", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                  ".ruff_cache", ".hypothesis", ".artifacts", ".controller", ".env", "compose")  # fmt: skip


@dataclass(frozen=True)
class Installed:
    source: Path  # the copy the wheel was built from
    wheel: Path
    venv: Path
    home: Path  # a directory outside the checkout to run from

    @property
    def controller(self) -> Path:
        return self.venv / "bin" / "controller"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _env(venv: Path | None = None) -> dict[str, str]:
    """The caller's environment without controller settings or anything that points back at the checkout."""
    from controller.config.settings import Settings

    settings = {field.alias for field in Settings.model_fields.values()}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in settings
        and not key.startswith("CONTROLLER_")
        and key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSAFEPATH")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(argv: list[str | Path], *, cwd: Path, timeout: float, venv: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=_env(venv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _copy_source(dest: Path) -> None:
    """The working tree as a clone would have it (tracked and new files, nothing ignored), so a stale
    build/ or egg-info in the checkout cannot leak into the wheel, and the build writes nothing here."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(*NOT_IN_A_CLONE))
        return
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file():  # listed but deleted in the working tree: not part of it
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


# Session scope: the tests that need no image run while the images build, the last one (the CPU demo)
# after them, and the wheel and venv are built once for both.
@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    assert REPO not in work.parents, f"the venv must live outside the checkout, got {work}"
    source, wheels, venv, home = work / "src", work / "dist", work / "venv", work / "home"
    home.mkdir()
    _copy_source(source)

    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir"]
    built = _run([*build, wheels, source], cwd=work, timeout=600)
    found = sorted(wheels.glob("llm_stack_controller-*.whl"))
    assert built.returncode == 0 and len(found) == 1, (
        f"building the wheel failed (exit {built.returncode}); to see why, run in the checkout: "
        f"{' '.join(build)} /tmp/dist .\n{built.stdout[-2000:]}{built.stderr[-3000:]}"
    )

    made = _run([sys.executable, "-m", "venv", venv], cwd=work, timeout=300)
    assert made.returncode == 0, f"`{sys.executable} -m venv {venv}` failed:\n{made.stderr[-2000:]}"
    pip = _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", found[0]], cwd=home, timeout=900)
    assert pip.returncode == 0, (
        "installing the wheel into a fresh venv failed; pip needs the package index (or PIP_INDEX_URL / "
        f"PIP_FIND_LINKS) for the dependencies. Run: {venv}/bin/python -m pip install {found[0]}\n"
        f"{pip.stdout[-2000:]}{pip.stderr[-3000:]}"
    )
    return Installed(source, found[0], venv, home)


def test_wheel_ships_every_module_of_the_package(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    modules = sorted(p.relative_to(installed.source).as_posix() for p in installed.source.glob("controller/**/*.py"))
    missing = [name for name in modules if name not in names]
    assert not missing, (
        f"{installed.wheel.name} lacks {missing}: list every package under controller/ in [tool.setuptools] "
        "packages in pyproject.toml (or have setuptools find them)"
    )


def test_wheel_ships_the_templates_and_the_builtin_catalog(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    missing = [name for name in PACKAGE_DATA if name not in names]
    assert not missing, (
        f"{installed.wheel.name} lacks {missing}; see [tool.setuptools] package-dir and package-data in pyproject.toml"
    )
    assert "controller/templates/docker-compose.yml.j2" in names
    assert not [name for name in names if name.startswith(("templates/", "tests/"))], (
        f"{installed.wheel.name} installs top-level templates/ or tests/ into site-packages"
    )


def test_installed_controller_imports_from_the_venv_not_the_checkout(installed):
    done = _run(
        [installed.python, "-c", "import controller, sys; print(controller.__file__)"],
        cwd=installed.home,
        timeout=60,
        venv=installed.venv,
    )
    assert done.returncode == 0, done.stderr
    where = Path(done.stdout.strip()).resolve()
    assert installed.venv.resolve() in where.parents, f"the venv's python imported controller from {where}"
    assert REPO not in where.parents


def test_help_runs_outside_the_checkout(installed):
    for argv in ([installed.controller, "--help"], [installed.python, "-m", "controller", "--help"]):
        done = _run(argv, cwd=installed.home, timeout=60, venv=installed.venv)
        assert done.returncode == 0, f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stderr}"
        assert "render" in done.stdout and "plan" in done.stdout, done.stdout


def test_every_builtin_profile_renders_from_the_installed_package(installed):
    listed = _run([installed.controller, "models", "--json"], cwd=installed.home, timeout=60, venv=installed.venv)
    assert listed.returncode == 0, f"controller models --json exited {listed.returncode}:\n{listed.stderr}"
    names = [row["name"] for row in json.loads(listed.stdout)]
    expected = sorted(yaml.safe_load((REPO / "controller" / "builtin_models.yaml").read_text())["profiles"])
    assert sorted(names) == expected, "the installed package lists other profiles than controller/builtin_models.yaml"

    for name in names:
        project = installed.home / f"project-{name}"
        project.mkdir()
        done = _run(
            [installed.controller, "--project-dir", project, "render", name],
            cwd=installed.home,
            timeout=120,
            venv=installed.venv,
        )
        assert done.returncode == 0, (
            f"`controller --project-dir {project} render {name}` from the installed wheel exited "
            f"{done.returncode}:\n{done.stdout}{done.stderr}"
        )
        compose = yaml.safe_load((project / "compose" / "docker-compose.yml").read_text())
        assert {"vllm", "webui"} <= set(compose.get("services", {})), f"{name}: services {list(compose['services'])}"
        assert (project / ".env").stat().st_mode & 0o077 == 0, f"{name}: .env is readable by others"


@pytest.mark.stack
def test_the_installed_wheel_brings_up_the_cpu_demo_and_a_browser_shaped_chat_answers(installed, test_site):
    """The same real CPU stack the demo runs, started by the wheel's `controller`, from outside the checkout."""
    from controller.runtime.webui_client import WebUI

    done = _run(
        [installed.controller, "--project-dir", test_site.root, "up", "tiny-a", "--json"],
        cwd=installed.home,
        timeout=900,
        venv=installed.venv,
    )
    assert done.returncode == 0, (
        f"`controller up tiny-a` from the installed wheel exited {done.returncode}:\n{done.stderr}"
    )
    summary = json.loads(done.stdout)
    assert summary["model"] == "tiny-a" and "chat path" in summary["phases"]
    settings = test_site.settings()
    with WebUI(test_site.url) as webui:
        session = webui.signin(settings.webui_admin_email, settings.webui_admin_password.get_secret_value())
        assert session is not None
        assert webui.chat(session.token, "tiny-a", "hello", max_tokens=3, as_ui=True)["choices"]

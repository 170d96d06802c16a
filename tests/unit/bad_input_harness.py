"""The harness of the bad-input suite (test_bad_input_*.py): a project directory after a good first
run, the command line run in-process, and the contract a refused command must keep.

Each bad-input case runs the real command line in-process through `controller.cli.main.main` (the
function behind the `controller` script, which turns errors into messages and exit codes) in a
project directory that already holds a `.env` and a rendered `compose/`. A case passes when:
exit code 2, the message names the field or file, no traceback or "internal error", and `.env`
and `compose/` are byte-identical afterwards (modes included). The `project` fixture is in conftest.py.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from controller.cli import main as cli
from controller.config.env_keys import DIRECTORY_KEYS, MONITORING_KEYS, TLS_KEYS
from controller.config.settings import Settings
from tests.unit._support import TINY_ARCH

SETTING_KEYS = {field.alias for field in Settings.model_fields.values()}
STRONG_SECRETS = {
    "WEBUI_ADMIN_PASSWORD": "quiet-otter-lantern-4817",
    "WEBUI_SECRET_KEY": "webui-secret-key-for-tests-000000000001",
    "VLLM_API_KEY": "vllm-api-key-for-tests-00000000000000002",
}
GOOD_ENV = "# site notes\n" + "".join(f"{k}='{v}'\n" for k, v in STRONG_SECRETS.items())
COMPOSE_BEFORE = "# a compose file rendered earlier; a refused command must leave it alone\nname: before\n"
GOOD_PROFILE = {"model": "org/model", "served_model_name": "mine", "max_model_len": 1024, "architecture": TINY_ARCH}


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def flat(self) -> str:
        """Rich wraps long lines; compare with whitespace collapsed."""
        return " ".join((self.stderr + self.stdout).split())


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every file and directory under .env and compose/, with mode and content."""
    found: dict[str, tuple[int, bytes | None]] = {}
    for base in (root / ".env", root / "compose"):
        paths = [base, *sorted(base.rglob("*"))] if base.is_dir() else [base]
        for path in paths:
            if path.is_symlink() or path.exists():
                info = path.lstat()
                content = path.read_bytes() if stat.S_ISREG(info.st_mode) and os.access(path, os.R_OK) else None
                found[str(path.relative_to(root))] = (stat.S_IMODE(info.st_mode), content)
    return found


class Project:
    """A project directory after a good first run: .env with secrets (mode 0644) and compose/."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
        self.root = root
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self.env_file = root / ".env"
        self.env_file.write_text(GOOD_ENV, encoding="utf-8")
        self.env_file.chmod(0o644)
        (root / "compose").mkdir()
        (root / "compose" / "docker-compose.yml").write_text(COMPOSE_BEFORE, encoding="utf-8")

    def add_env(self, text: str | bytes) -> None:
        data = text.encode("utf-8") if isinstance(text, str) else text
        with open(self.env_file, "ab") as handle:
            handle.write(data)

    def catalog(self, profiles: dict | None = None, *, text: str | bytes | None = None, name: str = "cat.yaml") -> Path:
        path = self.root / name
        if text is None:
            text = yaml.safe_dump({"profiles": profiles})
        path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
        return path

    def profile(self, **fields) -> Path:
        """A user catalog with one profile 'mine': GOOD_PROFILE with `fields` changed (None deletes)."""
        merged = {**GOOD_PROFILE, **fields}
        return self.catalog({"mine": {k: v for k, v in merged.items() if v is not None}})

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        for key in (
            SETTING_KEYS
            | set(MONITORING_KEYS)
            | set(TLS_KEYS)
            | set(DIRECTORY_KEYS)
            | {"CONTROLLER_HOME", "CONTROLLER_CATALOG", "CONTROLLER_DEBUG"}
        ):
            self.monkeypatch.delenv(key, raising=False)
        for key, value in (env or {}).items():
            self.monkeypatch.setenv(key, value)
        self.monkeypatch.setattr(sys, "argv", ["controller", "--project-dir", str(self.root), *args])
        self.monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 - closed by the OS
        self.capsys.readouterr()
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            cli._debug = False
        out, err = self.capsys.readouterr()
        return Result(code, out, err)

    def refused(self, *args: str, names: list[str], env: dict[str, str] | None = None) -> Result:
        """Run a command that must be refused; check the whole contract of the bad-input suite."""
        before = snapshot(self.root)
        result = self.run(*args, env=env)
        assert result.code == 2, f"exit code {result.code}, expected 2\n{result.stderr}{result.stdout}"
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
        for name in names:
            assert name in result.flat, f"{name!r} not named in the message:\n{result.stderr}"
        assert snapshot(self.root) == before, "a refused command changed .env or compose/"
        for secret in STRONG_SECRETS.values():
            assert secret not in result.stderr + result.stdout
        return result

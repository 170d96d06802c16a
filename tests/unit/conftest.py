"""Fixtures shared by several unit-test modules; pytest finds them without an import.

A module that needs a different one defines its own of the same name, which wins there
(test_offline.py has its own `site`; test_kv_check.py and
test_bench_sequence.py their own `target`). Plain helpers live in the support modules
(_support.py, cli_support.py, fake_stack.py, bad_input_harness.py, fakes.py).
"""

from __future__ import annotations

import pytest

from controller.config.site import SiteConfig
from tests.unit.bad_input_harness import Project
from tests.unit.fakes import FakeTarget


@pytest.fixture
def site(tmp_path, monkeypatch) -> SiteConfig:
    """A site in tmp_path with ./models/tiny and a .env naming only the project and the HF cache;
    no setting leaks in from the environment of the test run."""
    for key in ("CONTROLLER_CATALOG", "VLLM_API_KEY", "WEBUI_ADMIN_PASSWORD", "WEBUI_SECRET_KEY", "HF_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    env = tmp_path / ".env"
    env.write_text(f"COMPOSE_PROJECT_NAME=seqtest\nHF_CACHE_DIR={tmp_path / 'hf'}\n", encoding="utf-8")
    return SiteConfig(root=tmp_path, env_file=env)


@pytest.fixture
def bundle_site(tmp_path, monkeypatch) -> SiteConfig:
    """A site in tmp_path/site whose .env names only the HF cache (tmp_path/site/hf, absent): where
    `bundle load` puts what it loads; nothing leaks in from the environment of the test run."""
    for key in ("OFFLINE", "HF_CACHE_DIR", "CONTROLLER_CATALOG"):
        monkeypatch.delenv(key, raising=False)
    project = tmp_path / "site"
    project.mkdir()
    (project / ".env").write_text(f"HF_CACHE_DIR={project / 'hf'}\n")
    return SiteConfig(root=project, env_file=project / ".env")


@pytest.fixture
def target() -> FakeTarget:
    """The in-memory target, on which the profile `tiny-broken` never starts."""
    return FakeTarget(broken={"tiny-broken"})


@pytest.fixture
def project(tmp_path, monkeypatch, capsys) -> Project:
    """The bad-input harness: a project directory after a good first run (see bad_input_harness.py)."""
    return Project(tmp_path, monkeypatch, capsys)

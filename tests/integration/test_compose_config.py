"""Every built-in profile renders a file that real Compose v2 accepts."""

from __future__ import annotations

import pytest

from controller.config.catalog import load_catalog
from controller.config.settings import load_settings
from controller.config.site import SiteConfig
from controller.deploy.compose_file import render_compose
from controller.runtime.docker import ComposeProject

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("model", load_catalog().names())
def test_builtin_profile_passes_docker_compose_config(model, tmp_path, docker_client):
    site = SiteConfig(root=tmp_path, env_file=tmp_path / ".env")
    settings = load_settings(site)
    site.compose_dir.mkdir()
    site.compose_file.write_text(render_compose(load_catalog().get(model), settings))
    project = ComposeProject("ctest-config", site.compose_file, site.env_file)
    project.config()
    normalized = project.run("config", "--format", "json", timeout=60).stdout
    assert settings.vllm_api_key.get_secret_value() not in site.compose_file.read_text()
    assert '"driver": "nvidia"' in normalized

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


def test_monitoring_configs_read_back_literally_in_compose(tmp_path, docker_client):
    """Compose reads each inline config (PromQL with `$labels`, Grafana's `$__rate_interval`) as
    the controller wrote it, and fills GRAFANA_ADMIN_PASSWORD from .env."""
    import json

    from controller.config.settings import read_settings
    from controller.deploy.compose_file import render_spec
    from controller.deploy.spec import build_spec

    site = SiteConfig(root=tmp_path, env_file=tmp_path / ".env")
    site.env_file.write_text("MONITORING=grafana\n")
    settings = load_settings(site)
    monitoring = read_settings(site).monitoring
    spec = build_spec(load_catalog().get("deepseek-1.5b"), settings, monitoring=monitoring)
    site.compose_dir.mkdir()
    site.compose_file.write_text(render_spec(spec))
    project = ComposeProject("ctest-config", site.compose_file, site.env_file)
    normalized = json.loads(project.run("config", "--format", "json", timeout=60).stdout)
    # `config` prints a `$` of a value as `$$`, so that its output reads back as the same file.
    configs = {name: config["content"].replace("$$", "$") for name, config in normalized["configs"].items()}
    assert configs["grafana-dashboard"] == spec.monitoring.grafana.dashboard
    assert "$__rate_interval" in configs["grafana-dashboard"]
    assert configs["alert-rules"] == spec.monitoring.rules and "$labels" in configs["alert-rules"]
    password = monitoring.grafana_admin_password.get_secret_value()
    assert normalized["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == password
    assert password not in site.compose_file.read_text()

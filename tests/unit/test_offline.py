"""OFFLINE=true: what is rendered, and the preflight that refuses a missing image or an uncached model
before anything is written or started (against the in-memory target of tests/unit/fakes.py)."""

from __future__ import annotations

import pytest
import yaml

from controller.config.catalog import load_catalog
from controller.config.site import SiteConfig
from controller.deploy.compose_file import render_compose
from controller.errors import PreflightError
from controller.journal import JournalStore
from controller.lifecycle.prepare import Options
from controller.lifecycle.stack import Stack
from controller.lifecycle.status import stack_status
from tests.unit._support import CPU_PROFILE, fixed_settings, make_hub_cache, write_catalog
from tests.unit.fakes import FakeTarget

MODEL = "fake-org/tiny-llama"
HF_PROFILE = {**CPU_PROFILE, "model": MODEL, "served_model_name": "tiny-hf"}


def test_offline_tells_both_services_to_stay_off_the_internet_and_makes_the_backend_internal():
    compose = yaml.safe_load(render_compose(load_catalog().get("deepseek-1.5b"), fixed_settings(OFFLINE="true")))
    vllm, webui = compose["services"]["vllm"], compose["services"]["webui"]
    assert vllm["environment"]["HF_HUB_OFFLINE"] == "1" and vllm["environment"]["TRANSFORMERS_OFFLINE"] == "1"
    assert webui["environment"]["OFFLINE_MODE"] == "true"
    assert compose["networks"]["backend"]["internal"] is True
    # vLLM sits only on the internal network; Open WebUI publishes its port through frontend.
    assert vllm["networks"] == ["backend"] and "ports" not in vllm
    assert webui["networks"] == ["backend", "frontend"] and webui["ports"]
    assert vllm["dns_opt"] == ["timeout:1", "attempts:1"]


def test_online_renders_none_of_it():
    compose = yaml.safe_load(render_compose(load_catalog().get("deepseek-1.5b"), fixed_settings()))
    assert "HF_HUB_OFFLINE" not in compose["services"]["vllm"]["environment"]
    assert "OFFLINE_MODE" not in compose["services"]["webui"]["environment"]
    assert compose["networks"]["backend"]["internal"] is False


@pytest.fixture
def site(tmp_path, monkeypatch) -> SiteConfig:
    for key in ("CONTROLLER_CATALOG", "VLLM_API_KEY", "WEBUI_ADMIN_PASSWORD", "WEBUI_SECRET_KEY", "OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    env = tmp_path / ".env"
    env.write_text(f"COMPOSE_PROJECT_NAME=offtest\nHF_CACHE_DIR={tmp_path / 'hf'}\nOFFLINE=true\n")
    return SiteConfig(root=tmp_path, env_file=env)


def _stack(site: SiteConfig, target: FakeTarget) -> Stack:
    catalog = load_catalog(write_catalog(site.root / "catalog.yaml", {"tiny-hf": HF_PROFILE}))
    return Stack(site, catalog, options=Options(lock_timeout_s=5), target_factory=lambda _site, _s: target)


def _nothing_changed(site: SiteConfig, target: FakeTarget, env_before: str) -> None:
    assert target.text is None and "pull" not in target.calls and "apply" not in target.calls
    assert site.env_file.read_text() == env_before  # no secret generated either
    assert JournalStore(site.state_dir).load().history == []


def test_missing_model_in_offline_mode_is_a_preflight_error_naming_it_and_the_bundle_command(site):
    target = FakeTarget()
    before = site.env_file.read_text()
    with pytest.raises(PreflightError) as caught:
        _stack(site, target).up("tiny-hf")
    assert MODEL in caught.value.message and "not in the Hugging Face cache" in caught.value.message
    assert "controller bundle create tiny-hf" in caught.value.hint and "controller bundle load" in caught.value.hint
    assert caught.value.exit_code == 2
    _nothing_changed(site, target, before)


def test_missing_image_in_offline_mode_is_a_preflight_error_naming_it(site):
    make_hub_cache(site.root / "hf", MODEL, "rev1", {"config.json": b"{}"})
    image = fixed_settings().webui_image
    target = FakeTarget(absent_images={image})
    before = site.env_file.read_text()
    with pytest.raises(PreflightError, match=f"image {image} is not on this machine"):
        _stack(site, target).up("tiny-hf")
    _nothing_changed(site, target, before)


def test_offline_with_monitoring_needs_its_images_too(site):
    make_hub_cache(site.root / "hf", MODEL, "rev1", {"config.json": b"{}"})
    with site.env_file.open("a") as env:
        env.write("MONITORING=grafana\n")
    image = "grafana/grafana-oss:11.5.2"
    target = FakeTarget(absent_images={image})
    with pytest.raises(PreflightError, match=f"image {image} is not on this machine"):
        _stack(site, target).up("tiny-hf")


def test_offline_up_with_everything_cached_starts(site):
    make_hub_cache(site.root / "hf", MODEL, "rev1", {"config.json": b"{}"})
    target = FakeTarget()
    _stack(site, target).up("tiny-hf")
    assert yaml.safe_load(target.text)["networks"]["backend"]["internal"] is True
    assert stack_status(_stack(site, target))["offline"] is True


def test_a_bundle_carries_the_monitoring_images_of_the_settings():
    from controller.bundle.create import _bundle_images
    from controller.config.monitoring_settings import MonitoringSettings

    settings, profile = fixed_settings(), load_catalog().get("deepseek-1.5b")
    monitoring = MonitoringSettings(MONITORING="grafana", ALERTMANAGER_IMAGE="prom/prometheus:v2.53.4")
    images = _bundle_images([profile], settings, monitoring.images)
    assert images == [
        settings.vllm_image,
        settings.webui_image,
        "prom/prometheus:v2.53.4",
        "prom/blackbox-exporter:v0.25.0",
        "prom/node-exporter:v1.8.2",
        "grafana/grafana-oss:11.5.2",
    ]
    assert _bundle_images([profile], settings, MonitoringSettings().images) == [
        settings.vllm_image,
        settings.webui_image,
    ]

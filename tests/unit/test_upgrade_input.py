"""`controller upgrade`'s input, checked before anything runs (the upgrade itself runs on the real
stack in tests/integration/test_upgrade.py): the new references validated as settings and named by
their option, and a setting the environment holds refused, since the upgrade writes .env."""

from __future__ import annotations

import pytest

from controller.backup.upgrade import requested_changes
from controller.errors import PreflightError, SettingsError
from tests.unit.fake_stack import make_stack
from tests.unit.fakes import FakeTarget


def test_without_a_running_stack_there_is_nothing_to_upgrade(site):
    with pytest.raises(PreflightError, match="no running stack to upgrade"):
        requested_changes(make_stack(site, FakeTarget()), webui_image="open-webui:1", vllm_image=None)


@pytest.fixture
def running(site):
    target = FakeTarget()
    stack = make_stack(site, target)
    stack.up("tiny-a")
    return stack


def test_the_new_references_default_to_the_settings_and_name_the_cpu_image_key(running):
    settings, wanted = requested_changes(running, webui_image="registry.example/open-webui:v0.13.0",
                                         vllm_image=None)  # fmt: skip
    # vLLM first: its rollback never touches Open WebUI's data.
    assert wanted == [("VLLM_CPU_IMAGE", "vllm", settings.vllm_cpu_image),
                      ("WEBUI_IMAGE", "webui", "registry.example/open-webui:v0.13.0")]  # fmt: skip


@pytest.mark.parametrize(("option", "value"), [("webui_image", "not a reference!"), ("vllm_image", "UPPER/case:x")])
def test_a_bad_reference_is_named_by_its_option(running, option, value):
    before = running.site.env_file.read_text()
    with pytest.raises(SettingsError, match=f"--{option.replace('_', '-')}: .*={value!r}".replace("!", ".")):
        requested_changes(running, **{"webui_image": None, "vllm_image": None, option: value})
    assert running.site.env_file.read_text() == before


def test_a_reference_the_environment_sets_is_refused(running, monkeypatch):
    monkeypatch.setenv("WEBUI_IMAGE", "open-webui:from-the-environment")
    with pytest.raises(SettingsError, match="WEBUI_IMAGE is set in the environment"):
        requested_changes(running, webui_image="open-webui:new", vllm_image=None)

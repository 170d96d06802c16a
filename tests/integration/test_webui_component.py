"""The Open WebUI client against a real Open WebUI container alone (testcontainers)."""

from __future__ import annotations

import secrets

import pytest
from testcontainers.core.container import DockerContainer

from controller.errors import NotReady
from controller.phases import wait_for
from controller.runtime.webui_client import WebUI

pytestmark = pytest.mark.integration


def _webui(image: str, **env: str) -> DockerContainer:
    container = DockerContainer(image).with_exposed_ports(8080).with_env("WEBUI_SECRET_KEY", secrets.token_hex(16))
    container = container.with_env("ENABLE_OLLAMA_API", "false").with_env("ENABLE_OPENAI_API", "false")
    for key, value in env.items():
        container = container.with_env(key, value)
    return container


def _client(container: DockerContainer) -> WebUI:
    url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(8080)}"
    webui = WebUI(url)

    def healthy() -> None:
        if not webui.healthy():
            raise NotReady("Open WebUI is not healthy yet")

    wait_for("webui health", healthy, deadline_s=180)
    return webui


def test_first_signup_becomes_admin_when_no_admin_env_is_given(images):
    """The fallback for images that do not create the admin from WEBUI_ADMIN_* themselves."""
    password = secrets.token_urlsafe(18)
    with _webui(images["webui"]) as container:
        webui = _client(container)
        assert webui.signin("ops@example.com", password) is None
        created = webui.signup_first_admin("Ops", "ops@example.com", password)
        assert created is not None and created.role == "admin"
        assert webui.signup_first_admin("Eve", "eve@example.com", secrets.token_urlsafe(18)) is None
        session = webui.signin("ops@example.com", password)
        assert session is not None and session.role == "admin"
        assert webui.signin("ops@example.com", password + "x") is None


def test_headless_admin_signs_in_and_default_model_is_stored(images):
    password = secrets.token_urlsafe(18)
    env = {"WEBUI_ADMIN_EMAIL": "ops@example.com", "WEBUI_ADMIN_PASSWORD": password, "DEFAULT_MODELS": "first"}
    with _webui(images["webui"], **env) as container:
        webui = _client(container)
        session = webui.signin("ops@example.com", password)
        assert session is not None and session.role == "admin"
        assert webui.serving_config(session.token) == ("first", None)
        webui.set_serving_config(session.token, "second", "legacy")
        assert webui.serving_config(session.token) == ("second", "legacy")
        webui.set_serving_config(session.token, "third", "native")
        assert webui.serving_config(session.token) == ("third", "native")
        assert webui.signup_first_admin("Eve", "eve@example.com", secrets.token_urlsafe(18)) is None

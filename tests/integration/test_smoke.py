"""The harness works: the real vLLM (CPU) and real Open WebUI images serve the tiny model under
real Compose, started by plain `docker compose up --wait` from the controller's rendered file."""

from __future__ import annotations

import time

import pytest

from controller.runtime.docker import ComposeProject
from controller.runtime.webui_client import WebUI
from tests.integration import harness

pytestmark = [pytest.mark.integration, pytest.mark.stack]


def test_rendered_tiny_stack_serves_a_chat_through_open_webui(test_site):
    rendered = test_site.controller("render", "tiny-a")
    assert rendered.returncode == 0, rendered.stderr
    settings = test_site.settings()
    project = ComposeProject(test_site.project, test_site.site.compose_file, test_site.site.env_file)

    start = time.monotonic()
    project.run("up", "--detach", "--wait", "--wait-timeout", "600", timeout=700)
    harness.TIMINGS["stack up (docker compose up --wait)"] = round(time.monotonic() - start, 1)

    with WebUI(test_site.url) as webui:
        assert webui.healthy()
        session = webui.signin(settings.webui_admin_email, settings.webui_admin_password.get_secret_value())
        assert session is not None, "the admin from WEBUI_ADMIN_EMAIL/PASSWORD cannot sign in"
        assert session.role == "admin"
        assert "tiny-a" in webui.model_ids(session.token)
        reply = webui.chat(session.token, "tiny-a", "hello", max_tokens=5)
        # Shaped like the browser's request: Open WebUI adds its built-in tools with tool_choice
        # "auto", which vLLM serves only with a tool-call parser (tiny-a has one). Nothing but the
        # rendered file is in play here: no controller call configured Open WebUI.
        ui_reply = webui.chat(session.token, "tiny-a", "hello", max_tokens=5, as_ui=True)
    assert ui_reply["choices"][0]["message"]["role"] == "assistant"
    # Random weights may answer with any token, even end-of-text at once; the path is what counts.
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert reply["usage"]["completion_tokens"] >= 1

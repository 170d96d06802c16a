"""The admin's Open WebUI session: reused from its 0600 file while Open WebUI accepts it, because
Open WebUI 0.12.4 answers 429 after 15 sign-ins per address in 3 minutes (a real Open WebUI is in
tests/integration; here its HTTP API is httpx's MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest

from controller.config.settings import Settings
from controller.errors import NotReady
from controller.lifecycle.webui_setup import sign_in_admin
from controller.runtime.webui_client import WebUI

EMAIL = "admin@example.com"
PASSWORD = "pw-Zq81-not-a-default"


class FakeOpenWebUI:
    """Sign-in, sign-up and the session endpoint, counting each sign-in like Open WebUI's limiter."""

    def __init__(self, *, role: str = "admin", limit: int = 15):
        self.tokens: dict[str, tuple[str, str]] = {}  # token -> (email, role)
        self.signins = 0
        self.role = role
        self.limit = limit

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auths/signin":
            self.signins += 1
            if self.signins > self.limit:
                return httpx.Response(429, json={"detail": "API rate limit exceeded"})
            body = json.loads(request.content)
            if (body["email"], body["password"]) != (EMAIL, PASSWORD):
                return httpx.Response(400, json={"detail": "The email or password provided is incorrect."})
            token = f"token-{self.signins}"
            self.tokens[token] = (EMAIL, self.role)
            return httpx.Response(200, json={"token": token, "role": self.role})
        if request.url.path == "/api/v1/auths/":
            found = self.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))
            if found is None:
                return httpx.Response(401, json={"detail": "Not authenticated"})
            return httpx.Response(200, json={"email": found[0], "role": found[1]})
        return httpx.Response(404)


def _client(server: FakeOpenWebUI) -> WebUI:
    webui = WebUI("http://webui.test")
    webui.http = httpx.Client(base_url="http://webui.test", transport=httpx.MockTransport(server))
    return webui


def _settings(email: str = EMAIL) -> Settings:
    return Settings(webui_admin_email=email, webui_admin_password=PASSWORD, vllm_api_key="k" * 32,
                    webui_secret_key="s" * 32)  # fmt: skip


def _saved(path) -> str:
    return json.loads(path.read_text())["token"]


def test_the_session_is_saved_0600_and_reused_without_another_sign_in(tmp_path):
    server, saved = FakeOpenWebUI(), tmp_path / ".controller" / "webui-admin.token"
    with _client(server) as webui:
        first = sign_in_admin(webui, _settings(), ".env", saved)
        assert (saved.stat().st_mode & 0o777) == 0o600 and _saved(saved) == first.token
        assert PASSWORD not in saved.read_text()
        for _ in range(30):  # twice Open WebUI's limit
            assert sign_in_admin(webui, _settings(), ".env", saved).token == first.token
    assert server.signins == 1


def test_a_token_open_webui_no_longer_accepts_is_replaced_by_a_sign_in(tmp_path):
    server, saved = FakeOpenWebUI(), tmp_path / "webui-admin.token"
    with _client(server) as webui:
        first = sign_in_admin(webui, _settings(), ".env", saved)
        server.tokens.clear()  # e.g. a wiped volume
        session = sign_in_admin(webui, _settings(), ".env", saved)
    assert server.signins == 2 and _saved(saved) == session.token != first.token


def test_a_changed_password_in_env_signs_in_again_and_is_refused_there(tmp_path):
    server, saved = FakeOpenWebUI(), tmp_path / "webui-admin.token"
    changed = Settings(webui_admin_email=EMAIL, webui_admin_password="another-long-password-9", vllm_api_key="k" * 32,
                       webui_secret_key="s" * 32)  # fmt: skip
    with _client(server) as webui:
        sign_in_admin(webui, _settings(), ".env", saved)
        with pytest.raises(NotReady):  # refused (400), then sign-up is closed here (404)
            sign_in_admin(webui, changed, ".env", saved)
    assert server.signins == 2


def test_a_saved_session_that_lost_the_admin_role_is_not_used(tmp_path):
    server, saved = FakeOpenWebUI(), tmp_path / "webui-admin.token"
    with _client(server) as webui:
        first = sign_in_admin(webui, _settings(), ".env", saved)
        server.tokens[first.token] = (EMAIL, "user")  # demoted since
        assert sign_in_admin(webui, _settings(), ".env", saved).token != first.token
    assert server.signins == 2


def test_open_webuis_sign_in_limit_is_named_and_waited_on(tmp_path):
    server = FakeOpenWebUI(limit=0)
    with _client(server) as webui, pytest.raises(NotReady, match=r"429: over 15 in 3 minutes"):
        sign_in_admin(webui, _settings(), ".env", None)
    assert server.signins == 1

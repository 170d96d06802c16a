"""TLS=internal on the real stack (issue 26): Caddy from the locally built front-door image
(Debian's package; users get the official image) in front of the real Open WebUI. HTTPS is checked
against the root certificate `up` copied out (the chain is verified, no error is ignored); HTTP
redirects; HSTS is on; a streamed chat passes through unbuffered; cookies are Secure; Open WebUI's
own port answers on this host only."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration.webui_api import admin_session

HOST = "localhost"


@pytest.fixture(scope="module")
def front_door(tmp_path_factory, docker_client, images, tiny_model) -> Iterator[tuple]:
    with harness.https_site(tmp_path_factory.mktemp("front-door"), docker_client, images, "tls", HOST) as https:
        yield https.site, https.result, https.https_port, https.http_port


def _trusting(root_ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=root_ca)


def test_https_verifies_against_the_root_up_copied_out_and_sends_hsts(front_door):
    _site, result, https_port, _ = front_door
    assert result["url"] == f"https://{HOST}:{https_port}"
    tls = result["tls"]
    # Caddy's own certificates live 12 hours and are renewed by Caddy: days_left is 0 here.
    not_after = datetime.fromisoformat(tls["certificate"]["not_after"])
    assert tls["mode"] == "internal" and tls["root_ca"] and not_after > datetime.now(UTC)
    answer = httpx.get(f"{result['url']}/health", verify=_trusting(tls["root_ca"]), timeout=30)
    assert answer.status_code == 200
    assert answer.headers["strict-transport-security"] == "max-age=31536000"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{result['url']}/health", timeout=30)  # the system's CAs do not know Caddy's own


def test_http_redirects_to_https_keeping_the_path(front_door):
    _site, _result, https_port, http_port = front_door
    answer = httpx.get(f"http://{HOST}:{http_port}/c/abc?x=1", follow_redirects=False, timeout=30)
    assert answer.status_code == 308
    assert answer.headers["location"] == f"https://{HOST}:{https_port}/c/abc?x=1"


def test_a_streamed_chat_passes_through_in_pieces_and_cookies_are_secure(front_door):
    site, result, _, _ = front_door
    trust = _trusting(result["tls"]["root_ca"])
    with WebUI(site.url) as webui:
        token = admin_session(site, webui).token
    settings = site.settings()
    signin = httpx.post(f"{result['url']}/api/v1/auths/signin", verify=trust, timeout=60,
                        json={"email": settings.webui_admin_email,
                              "password": settings.webui_admin_password.get_secret_value()})  # fmt: skip
    assert signin.status_code == 200, signin.text
    assert "secure" in signin.headers["set-cookie"].lower()
    body = {"model": "tiny-a", "stream": True, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    pieces = 0
    with httpx.stream("POST", f"{result['url']}/api/chat/completions", json=body, verify=trust, timeout=120,
                      headers={"Authorization": f"Bearer {token}"}) as answer:  # fmt: skip
        assert answer.status_code == 200
        for line in answer.iter_lines():
            pieces += line.startswith("data: {")
    assert pieces >= 2, "the answer did not stream in pieces through Caddy"


def test_open_webui_answers_on_this_host_only_and_status_shows_the_certificate(front_door, docker_client):
    site, result, _, _ = front_door
    (webui,) = docker_client.containers.list(filters={"label": [f"{harness.PROJECT_LABEL}={site.project}",
                                                                "com.docker.compose.service=webui"]})  # fmt: skip
    bindings = webui.attrs["HostConfig"]["PortBindings"]["8080/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    shown = site.controller("status", "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["url"] == result["url"] and status["tls"]["certificate"]["subject"]
    assert status["warnings"] == []

"""The directory probes behind `doctor` and `up`: OIDC discovery against a real HTTP server on this
host (what a provider answers is data; the HTTP and JSON handling is real), and LDAP against a port
where nothing listens. The LDAP bind and search themselves are tested against a real slapd in
tests/integration/test_directory_sign_in.py."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.config.directory_settings import DirectorySettings
from controller.errors import PreflightError
from controller.lifecycle.preflight import check_ldap
from controller.runtime.directory_probe import probe_ldap, probe_oidc

WELL_KNOWN = "/realms/lan/.well-known/openid-configuration"


@pytest.fixture
def provider() -> Iterator[tuple[str, dict]]:
    """A discovery endpoint whose document the test edits; the URL's origin is filled in."""
    document: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = json.dumps(document).encode() if self.path == WELL_KNOWN and document else b"not here"
            self.send_response(200 if self.path == WELL_KNOWN and document else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    issuer = f"{origin}/realms/lan"
    document.update(issuer=issuer, authorization_endpoint=f"{issuer}/auth", token_endpoint=f"{issuer}/token",
                    jwks_uri=f"{issuer}/certs", scopes_supported=["openid", "email", "profile"])  # fmt: skip
    try:
        yield origin + WELL_KNOWN, document
    finally:
        server.shutdown()


def _oidc(url: str, **more: str) -> DirectorySettings:
    return DirectorySettings.model_validate(
        {"OIDC": "on", "OPENID_PROVIDER_URL": url, "OAUTH_CLIENT_ID": "chat", "OAUTH_CLIENT_SECRET": "s", **more}
    )


def test_a_good_discovery_document_passes(provider):
    url, document = provider
    result = probe_oidc(_oidc(url))
    assert result.ok and document["issuer"] in result.finding


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        ({"issuer": "https://elsewhere.example/realms/lan"}, "names the issuer https://elsewhere.example"),
        ({"jwks_uri": ""}, "lacks jwks_uri"),
        ({"scopes_supported": ["openid"]}, "does not offer the scopes email, profile"),
    ],
)
def test_a_bad_discovery_document_is_named(provider, change, finding):
    url, document = provider
    document.update(change)
    result = probe_oidc(_oidc(url))
    assert not result.ok and finding in result.finding and result.fix


def test_a_wrong_url_and_a_closed_port_are_named(provider):
    url, _ = provider
    wrong = url.replace("/realms/lan/", "/realms/other/")
    result = probe_oidc(_oidc(wrong))
    assert not result.ok and "answered 404 without a discovery document" in result.finding
    closed = probe_oidc(_oidc(f"http://127.0.0.1:{_closed_port()}{WELL_KNOWN}"))
    assert not closed.ok and "did not answer" in closed.finding


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free once closed: nothing listens there


def test_an_unreachable_ldap_server_is_named_and_up_refuses_it():
    port = _closed_port()
    settings = DirectorySettings.model_validate(
        {
            "LDAP": "on",
            "LDAP_SERVER_HOST": "127.0.0.1",
            "LDAP_SERVER_PORT": str(port),
            "LDAP_SEARCH_BASE": "dc=example,dc=lan",
            "LDAP_APP_DN": "cn=r,dc=example,dc=lan",
            "LDAP_APP_PASSWORD": "never-shown",
        }  # fmt: skip
    )
    result = probe_ldap(settings)
    assert not result.ok and f"cannot reach the LDAP server ldap://127.0.0.1:{port}" in result.finding
    assert "Connection refused" in result.finding
    with pytest.raises(PreflightError) as refused:
        check_ldap(settings)
    assert refused.value.exit_code == 2 and "controller doctor" in refused.value.hint
    assert "never-shown" not in refused.value.message + refused.value.hint

"""The HTTPS front door and sign-in with the site's directory (issue 26), on one real stack: Caddy
with TLS=internal (the locally built front-door image, Debian's package; users get the official
image) in front of the real Open WebUI, a real OpenLDAP (Debian's slapd,
tests/integration/directory_server.py), and Debian's Chromium trusting Caddy's CA from its NSS
database, as a person's browser does once the root is imported. HTTPS is always verified against the
root `up` copied out; no certificate error is ignored. One stack for both, since each costs a minute.

Front door: HTTP redirects, HSTS is on, a streamed chat passes through unbuffered, cookies are Secure,
Open WebUI's own port answers on this host only.

People: alice is in cn=chat-users (LDAP_SEARCH_FILTERS lets that group in), bob is not. The search
account's password holds `$`, a double quote and a space: it must reach Open WebUI literally.
OIDC is on too, with a provider this closed network cannot reach: Open WebUI shows its button, and
the client secret is audited with the bind password.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration import webui_page as ui
from tests.integration.directory_server import Directory, running_directory
from tests.integration.webui_api import admin_session

pytestmark = [pytest.mark.integration, pytest.mark.stack]

HOST = "localhost"
CLIENT_SECRET = 'oidc-$ecret "client" value'
DISCOVERY = "https://sso.example.invalid/realms/lan/.well-known/openid-configuration"


@pytest.fixture(scope="module")
def directory(docker_client, images) -> Iterator[Directory]:
    with running_directory(docker_client, images["directory"]) as server:
        yield server


def _ldap_env(directory: Directory, **changes: str) -> str:
    values = {
        "LDAP": "on", "LDAP_SERVER_HOST": directory.host, "LDAP_SERVER_PORT": str(directory.port),
        "LDAP_SEARCH_BASE": directory.people_dn, "LDAP_APP_DN": directory.bind_dn,
        "LDAP_APP_PASSWORD": directory.bind_password, "LDAP_SEARCH_FILTERS": directory.allowed_filter,
        # OIDC is on too, which would make new people `pending`: the directory's filter decides here.
        "DIRECTORY_USER_ROLE": "user", **changes,
    }  # fmt: skip
    return "".join(f"{key}='{value}'\n" for key, value in values.items())


@pytest.fixture(scope="module")
def site(tmp_path_factory, docker_client, images, tiny_model, directory) -> Iterator[tuple]:
    oidc = (f"OIDC=on\nOPENID_PROVIDER_URL={DISCOVERY}\nOAUTH_CLIENT_ID=llm-chat\n"
            f"OAUTH_CLIENT_SECRET='{CLIENT_SECRET}'\nOAUTH_PROVIDER_NAME='Example SSO'\n")  # fmt: skip
    sign_in = _ldap_env(directory) + oidc
    root = tmp_path_factory.mktemp("directory")
    with harness.https_site(root, docker_client, images, "ldap", HOST, sign_in) as https:
        yield https.site, https.result, https.up, https.http_port


@pytest.fixture(scope="module")
def front_door(site) -> tuple:
    test_site, result, _up, http_port = site
    return test_site, result, int(result["url"].rsplit(":", 1)[1]), http_port


@pytest.fixture(scope="module")
def untrusting_error(site) -> str:
    """What the same browser says without the root imported (one Chromium at a time: before the other)."""
    _site, result, _up, _ = site
    with ui.chromium() as untrusting, pytest.raises(PlaywrightError) as refused:
        ui.new_page(untrusting).goto(f"{result['url']}/auth")
    return str(refused.value)


@pytest.fixture(scope="module")
def browser(site, untrusting_error, tmp_path_factory):
    _site, result, _up, _ = site
    home = ui.trusting_home(tmp_path_factory.mktemp("browser-home"), result["tls"]["root_ca"])
    with ui.chromium(home) as chromium:
        yield chromium


def _ldap_login(page, url: str, user: str, password: str):
    """Submit the LDAP form and return Open WebUI's answer to it: what the page shows next is
    waited on from there (an error is a toast, which a busy machine shows seconds later)."""
    page.goto(f"{url}/auth")
    page.fill("#username", user)
    page.fill("#password", password)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/auths/ldap") and r.request.method == "POST",
                              timeout=ui.UI_TIMEOUT_MS) as answer:  # fmt: skip
        page.keyboard.press("Enter")
    return answer.value


def test_https_verifies_in_the_browser_against_the_imported_root(site, browser, untrusting_error):
    _site, result, _up, _ = site
    page = ui.new_page(browser)
    response = page.goto(f"{result['url']}/auth")
    assert response.ok and page.url.startswith(f"{result['url']}/auth")
    assert "Caddy Local Authority" in response.security_details()["issuer"]
    expect(page.get_by_text("Sign in to Open WebUI with LDAP")).to_be_visible(timeout=ui.UI_TIMEOUT_MS)
    expect(page.get_by_text("Continue with Example SSO")).to_be_visible(timeout=ui.UI_TIMEOUT_MS)  # OIDC reached it
    ui.screenshot(page, "ldap-01-https-login")
    page.close()
    assert "ERR_CERT_AUTHORITY_INVALID" in untrusting_error  # the same browser without the root refuses


def test_http_redirects_to_https_in_the_browser(site, browser):
    _site, result, _up, http_port = site
    page = ui.new_page(browser)
    page.goto(f"http://{HOST}:{http_port}/auth")
    assert page.url == f"{result['url']}/auth"
    page.close()


def test_a_directory_user_signs_in_through_the_form_and_chats(site, browser, directory):
    test_site, result, _up, _ = site
    page = ui.new_page(browser)
    assert _ldap_login(page, result["url"], directory.alice.uid, directory.alice.password).ok
    ui.wait_for_chat_box(page, "after alice's LDAP sign-in")
    ui.dismiss_release_notes(page)
    token = ui.token(page)
    me = httpx.get(f"{test_site.url}/api/v1/auths/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    # DIRECTORY_USER_ROLE=user (the default): the directory decided who gets in, so no approval wait.
    assert me.json()["email"] == directory.alice.mail and me.json()["role"] == "user"
    question = "Hello from the directory"
    chat_id = ui.send_message(page, question)
    reply = ui.assistant_reply(test_site.url, token, chat_id, question)
    assert not reply.get("error") and reply.get("content", "").strip()
    ui.screenshot(page, "ldap-02-alice-chats")
    page.close()


def test_a_wrong_directory_password_is_refused(site, browser, directory):
    _site, result, _up, _ = site
    page = ui.new_page(browser)
    answer = _ldap_login(page, result["url"], directory.alice.uid, directory.alice.password + "x")
    assert answer.status == 400 and answer.json()["detail"] == "Authentication failed."
    expect(page.get_by_text("Authentication failed")).to_be_visible(timeout=ui.UI_TIMEOUT_MS)
    assert page.evaluate("localStorage.token") is None and page.url.endswith("/auth")
    page.close()


def test_a_user_outside_the_filter_is_refused(site, browser, directory):
    _site, result, _up, _ = site
    page = ui.new_page(browser)
    answer = _ldap_login(page, result["url"], directory.bob.uid, directory.bob.password)
    assert answer.status == 400 and answer.json()["detail"] == "User not found in the LDAP server"
    expect(page.get_by_text("User not found in the LDAP server")).to_be_visible(timeout=ui.UI_TIMEOUT_MS)
    assert page.evaluate("localStorage.token") is None
    ui.screenshot(page, "ldap-03-bob-refused")
    page.close()


def test_the_local_admin_still_signs_in(site, browser):
    test_site, result, _up, _ = site
    settings = test_site.settings()
    page = ui.new_page(browser)
    page.goto(f"{result['url']}/auth")
    page.get_by_text("Continue with Email").click()
    page.fill("#email", settings.webui_admin_email)
    page.fill("#password", settings.webui_admin_password.get_secret_value())
    page.keyboard.press("Enter")
    ui.wait_for_chat_box(page, "after the local admin's sign-in")
    assert page.get_by_text("Sign up").count() == 0
    page.close()


def test_a_second_up_finds_open_webuis_sign_in_as_env_says(site):
    test_site, _result, first, _ = site
    assert "sign-in settings differed from .env" in first.stderr  # the first `up` set them
    again = test_site.controller("up", "tiny-a")
    assert again.returncode == 0, again.stderr
    assert "sign-in settings" not in again.stderr, again.stderr


def test_the_bind_password_and_client_secret_appear_in_no_file_argv_label_or_log(site, docker_client, directory):
    test_site, _result, up, _ = site
    secrets = [directory.bind_password, CLIENT_SECRET]
    # Files the controller wrote (the compose file, its state); .env alone holds them, 0600.
    for path in test_site.site.root.rglob("*"):
        if path.is_file() and path != test_site.site.env_file and "hf-cache" not in path.parts:
            text = path.read_bytes()
            assert not any(s.encode() in text for s in secrets), f"a secret is in {path}"
    assert test_site.site.env_file.stat().st_mode & 0o777 == 0o600
    shown = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    status = test_site.controller("status", "--json")
    doctor = test_site.controller("doctor", "tiny-a")
    for label, text in [("ps", shown), ("up", up.stdout + up.stderr), ("status", status.stdout + status.stderr),
                        ("doctor", doctor.stdout + doctor.stderr)]:  # fmt: skip
        assert not any(s in text for s in secrets), f"a secret is in the output of {label}"
    assert "sign-in: ldap" in doctor.stdout
    assert json.loads(status.stdout)["sign_in"] == {"ldap": f"{directory.host}:{directory.port}", "oidc": DISCOVERY,
                                                    "local_form": True, "new_directory_users": "user"}  # fmt: skip
    containers = docker_client.containers.list(
        all=True, filters={"label": f"{harness.PROJECT_LABEL}={test_site.project}"}
    )
    assert {c.labels["com.docker.compose.service"] for c in containers} >= {"webui", "caddy", "vllm"}
    for container in containers:
        config = container.attrs["Config"]
        visible = json.dumps([config.get("Cmd"), config.get("Entrypoint"), config.get("Labels"),
                              container.attrs.get("Args")]) + container.logs().decode(errors="replace")  # fmt: skip
        assert not any(s in visible for s in secrets), f"a secret is in {container.name}'s argv, labels or log"
    # The bind password reaches Open WebUI only through its admin API: not even its environment holds it.
    (webui,) = [c for c in containers if c.labels["com.docker.compose.service"] == "webui"]
    assert not any(directory.bind_password in item for item in webui.attrs["Config"]["Env"])
    assert f"OAUTH_CLIENT_SECRET={CLIENT_SECRET}" in webui.attrs["Config"]["Env"]  # literal through Compose


def test_doctor_names_what_fails_and_up_refuses_an_unreachable_directory(directory, tmp_path, images):
    (tmp_path / "checked").mkdir()
    (tmp_path / "refused").mkdir()
    checked = harness.new_test_site(tmp_path / "checked", images, "ldap-doctor")
    with checked.site.env_file.open("a") as env:
        env.write(_ldap_env(directory, LDAP_APP_PASSWORD="wrong-password"))
    doctor = checked.controller("doctor", "tiny-a", "--json")
    (ldap,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "sign-in: ldap"]
    assert ldap["status"] == "fail" and "invalidCredentials" in ldap["finding"], ldap
    assert "wrong-password" not in doctor.stdout + doctor.stderr

    # Open WebUI finds a directory user's account by e-mail: alice with the admin's would be the admin.
    env = checked.site.env_file
    lines = [line for line in env.read_text().splitlines() if not line.startswith(("WEBUI_ADMIN_EMAIL", "LDAP_APP_"))]
    env.write_text("\n".join([*lines, f"WEBUI_ADMIN_EMAIL={directory.alice.mail}",
                               f"LDAP_APP_PASSWORD='{directory.bind_password}'"]) + "\n")  # fmt: skip
    env.write_text(env.read_text() + f"LDAP_APP_DN='{directory.bind_dn}'\n")
    doctor = checked.controller("doctor", "tiny-a", "--json")
    (ldap,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "sign-in: ldap"]
    assert ldap["status"] == "fail" and "Open WebUI would sign that person in as the admin" in ldap["finding"], ldap

    closed = harness.free_port()  # nothing listens there
    refused = harness.new_test_site(tmp_path / "refused", images, "ldap-refused")
    with refused.site.env_file.open("a") as env:
        env.write(_ldap_env(directory, LDAP_SERVER_PORT=str(closed)))
    before = refused.site.env_file.read_bytes()
    up = refused.controller("up", "tiny-a")
    assert up.returncode == 2, up.stderr
    assert f"cannot reach the LDAP server ldap://{directory.host}:{closed}" in up.stderr
    assert "Traceback" not in up.stderr and "controller doctor" in up.stderr
    assert not (refused.site.root / "compose" / "docker-compose.yml").exists()
    assert refused.site.env_file.read_bytes() == before


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

"""Open WebUI as a user of the real stack sees it: the admin's session, chats made and read back over
its HTTP API, and a model proven to serve from a script and from the browser."""

from __future__ import annotations

import httpx

from controller.lifecycle.webui_setup import saved_admin_token, sign_in_admin
from controller.runtime.webui_client import WebUI


def admin_session(site, webui: WebUI):
    """The site's admin session, as the controller holds it (its saved token, or a sign-in): Open
    WebUI 0.12.4 refuses more than 15 sign-ins per address in 3 minutes, and tests on a shared stack
    with the controller's own commands would pass that."""
    session = sign_in_admin(webui, site.settings(), site.site.env_file, saved_admin_token(site.site.state_dir))
    assert session.role == "admin"
    return session


def create_chat(url: str, token: str, title: str) -> str:
    """A new, empty chat titled `title`; its id."""
    response = httpx.post(
        f"{url}/api/v1/chats/new",
        headers={"Authorization": f"Bearer {token}"},
        json={"chat": {"title": title, "models": ["tiny-a"], "messages": []}},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["id"]


def chat_title(url: str, token: str, chat_id: str) -> str | None:
    """The title of chat `chat_id`, or None when Open WebUI does not have it (any non-200 answer)."""
    response = httpx.get(f"{url}/api/v1/chats/{chat_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return response.json()["title"] if response.status_code == 200 else None


def assert_serving(site, served: str) -> None:
    """Open WebUI lists the model and a chat with it works, from a script and from the browser."""
    with WebUI(site.url) as webui:
        session = admin_session(site, webui)
        assert served in webui.model_ids(session.token)
        assert webui.chat(session.token, served, "hello", max_tokens=3)
        assert webui.chat(session.token, served, "hello", max_tokens=3, as_ui=True)

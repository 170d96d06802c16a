"""Open WebUI in front of the model: the admin signs in, the vLLM key is current, the model is
listed and default with the right function calling, and a chat shaped like the browser's works."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

from controller.config.directory_settings import DirectorySettings
from controller.config.settings import Settings
from controller.deploy.spec import SLOTS, vllm_url
from controller.errors import AdminError, NotReady
from controller.files import write_atomic
from controller.phases import ADMIN, CHAT_PATH, DEFAULT_MODEL, MODEL_IN_WEBUI, OLD_MODEL_UNLISTED, PhaseRunner
from controller.runtime.target import WebUIClient

CHAT_PROBE_PROMPT = "Reply with one word: ready?"


class Served(Protocol):
    """What Open WebUI needs to know of a model (a catalog Profile or a journal Deployment)."""

    served_model_name: str
    function_calling: str


def saved_admin_token(state_dir: Path) -> Path:
    """Where the seeded admin's Open WebUI session is kept (0600), reused while Open WebUI accepts it."""
    return state_dir / "webui-admin.token"


def sign_in_admin(webui: WebUIClient, settings: Settings, env_file: object, saved_token: Path | None = None):
    """The configured admin's session: the saved one while Open WebUI still accepts it, else a
    sign-in (or the first sign-up where the image did not create the admin), saved 0600 for next time.

    Why saved: Open WebUI 0.12.4 allows 15 sign-ins per address in 3 minutes and answers 429 after,
    so a command per sign-in would lock the controller (and the admin's browser) out during a busy
    stretch of switches; checking a saved token is not rate-limited."""
    email, password = settings.webui_admin_email, settings.webui_admin_password.get_secret_value()
    # The saved session counts only for the credentials it was made with: a changed e-mail or
    # password in .env signs in again (and is refused there if it does not match the admin).
    credentials = hashlib.sha256(
        f"{settings.webui_secret_key.get_secret_value()}\0{email}\0{password}".encode()
    ).hexdigest()
    if saved_token is not None and (session := _saved_session(webui, saved_token, credentials)) is not None:
        return session
    session = webui.signin(email, password)
    if session is None:
        session = webui.signup_first_admin(settings.webui_admin_name, email, password)
    if session is None:
        raise AdminError(
            f"Open WebUI already has an admin, and {email} with the password in {env_file} does not sign in",
            hint="set WEBUI_ADMIN_EMAIL and WEBUI_ADMIN_PASSWORD in .env to the existing admin's; "
            "nothing was reset or changed",
        )
    if session.role != "admin":
        raise AdminError(
            f"{email} signs in to Open WebUI but has role '{session.role}', not admin",
            hint="promote it in Admin Panel > Users, or set WEBUI_ADMIN_EMAIL to the admin's address",
        )
    if saved_token is not None:
        write_atomic(saved_token, json.dumps({"credentials": credentials, "token": session.token}), mode=0o600)
    return session


def _saved_session(webui: WebUIClient, path: Path, credentials: str):
    """The saved admin session, when it was made with these credentials and is still an admin's."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        token = saved["token"] if saved.get("credentials") == credentials else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # none saved yet, or unreadable: sign in afresh
    try:
        found = webui.session_for(token) if token else None
    except NotReady:  # any answer but a session (or none): a sign-in decides
        return None
    if found is None:
        return None
    _, session = found
    return session if session.role == "admin" else None


class WebUISetup:
    """The Open WebUI steps of up, switch and rollback, each a phase of the given runner."""

    def __init__(self, webui: WebUIClient, settings: Settings, env_file: object, warn: Callable[[str], None],
                 ensure_running: Callable[[PhaseRunner], str | None] | None = None,
                 saved_token: Path | None = None, directory: DirectorySettings | None = None):  # fmt: skip
        self.webui = webui
        self.settings = settings
        self.env_file = env_file
        self.saved_token = saved_token
        self.directory = directory
        self.warn = warn
        # Starts a stopped Open WebUI and says what it found (Target.ensure_webui).
        self.ensure_running = ensure_running
        self.session = None

    def _running(self, runner: PhaseRunner) -> None:
        """Open WebUI killed while vLLM loaded would otherwise turn each step below into a wait
        to its deadline, then a rollback that waits the same again and fails."""
        if self.ensure_running and (found := self.ensure_running(runner)):
            self.warn(f"Open WebUI was not running ({found}); started it again (its users and chats are on its volume)")

    def admin(self, runner: PhaseRunner, *, deadline_s: float | None = None):
        """Sign in (waiting while Open WebUI starts) and make sure it holds the current vLLM key."""
        self._running(runner)
        sign_in = partial(sign_in_admin, self.webui, self.settings, self.env_file, self.saved_token)
        self.session = runner.wait(ADMIN, sign_in, deadline_s=deadline_s)
        if self._connect_every_slot():
            self.warn("Open WebUI held another vLLM API key or instance in its database; updated it to VLLM_API_KEY")
        self._apply_sign_in()
        return self.session

    def _apply_sign_in(self) -> None:
        """Directory sign-in as .env says, at every `up`: Open WebUI reads these settings from its
        environment only at its first start, and the bind password goes through the API this way,
        never into the compose file or a container's environment."""
        directory = self.directory
        if directory is None:
            return
        ldap_on = None if directory.ldap is None else directory.ldap == "on"
        changed = self.webui.set_sign_in(self.session.token, ldap_on,
                                         directory.ldap_server_config() if ldap_on else {},
                                         directory.admin_changes())  # fmt: skip
        if changed:
            self.warn(f"Open WebUI's sign-in settings differed from .env; set {', '.join(changed)} as .env says")

    def _connect_every_slot(self) -> bool:
        """Open WebUI holds one connection per vLLM slot, running or not, so a switch only moves the
        default model and never touches the connections. Why: changing them makes Open WebUI 0.12.4
        empty its model table in place (`clear_models_cache`), and a chat that passed its "model
        exists" check at that moment fails with `400 {"detail": "'MODEL'"}` (measured: one chat per
        switch when each switch added and removed a connection). The idle slot costs one refused
        connection per model listing (Open WebUI logs `Connection error`). Other connections stay."""
        key = self.settings.vllm_api_key.get_secret_value()
        urls = [vllm_url(slot) for slot in SLOTS]
        return self.webui.set_openai_backends(self.session.token, urls, key, tuple(urls))

    def listed(self, runner: PhaseRunner, profile: Served, *, deadline_s: float | None = None) -> None:
        self._running(runner)
        runner.wait(MODEL_IN_WEBUI, lambda: self._listed(profile.served_model_name), deadline_s=deadline_s)

    def serve(self, runner: PhaseRunner, profile: Served, *, deadline_s: float | None = None) -> None:
        """The model is the default with its function calling, and a browser-shaped chat answers:
        success is never reported for a stack a person cannot use."""
        self._running(runner)
        runner.wait(DEFAULT_MODEL, lambda: self._set_serving_config(profile), deadline_s=deadline_s)
        served = profile.served_model_name
        if self.directory is not None and self.directory.enabled:  # people other than the admin chat
            self.webui.share_model(self.session.token, served)
        runner.wait(
            CHAT_PATH,
            lambda: self.webui.chat(self.session.token, served, CHAT_PROBE_PROMPT, max_tokens=1, as_ui=True),
            deadline_s=deadline_s,
        )

    def activate(self, runner: PhaseRunner, profile: Served, *, deadline_s: float | None = None) -> None:
        self.listed(runner, profile, deadline_s=deadline_s)
        self.serve(runner, profile, deadline_s=deadline_s)

    def unlisted(self, runner: PhaseRunner, served_name: str) -> None:
        """After its instance is removed, Open WebUI drops the model from its list (cached for 1 s in
        0.12.4) when asked for the list. Until then a browser tab still holding the old model got
        "Server Connection Error" (Open WebUI still routed it to the removed instance); after it,
        "Model not found" (seen in tests/integration/test_browser.py)."""

        def gone() -> None:
            if served_name in self.webui.model_ids(self.session.token):
                raise NotReady(f"Open WebUI still lists '{served_name}'")

        runner.wait(OLD_MODEL_UNLISTED, gone)

    def _listed(self, served_name: str) -> None:
        try:
            ids = self.webui.model_ids(self.session.token)
        except (ValueError, KeyError, TypeError) as exc:  # a half-written answer while it reconnects to vLLM
            raise NotReady(f"Open WebUI's model list was not readable: {exc}") from None
        if served_name not in ids:
            raise NotReady(f"Open WebUI does not list '{served_name}' yet (it lists {ids or 'nothing'})")

    def _set_serving_config(self, profile: Served) -> None:
        """Idempotent: writes only when Open WebUI holds something else, then checks it was kept."""
        wanted = (profile.served_model_name, profile.function_calling)
        token = self.session.token
        if self.webui.serving_config(token) == wanted:
            return
        self.webui.set_serving_config(token, *wanted)
        if self.webui.serving_config(token) != wanted:
            raise AdminError(
                f"Open WebUI did not keep '{wanted[0]}' as its default model with {wanted[1]} function calling"
            )

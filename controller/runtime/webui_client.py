"""Open WebUI's HTTP API, as the controller uses it (httpx)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx

from controller.errors import AdminError, ChatRefused, NotReady


@dataclass(frozen=True)
class Session:
    token: str
    role: str


class WebUI:
    def __init__(self, base_url: str, *, timeout: float = 15.0):
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> WebUI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs) -> httpx.Response:
        """Send a request; a transport error or an unexpected status is NotReady (waits retry it)."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise NotReady(f"Open WebUI did not answer {method} {path}: {exc}") from None
        if response.status_code >= 400 and response.status_code not in ok:
            raise NotReady(f"Open WebUI answered {response.status_code} to {method} {path}: {_detail(response)}")
        return response

    def healthy(self) -> bool:
        try:
            response = self._request("GET", "/health", timeout=5)
        except NotReady:
            return False
        return response.json().get("status") is True

    def signin(self, email: str, password: str) -> Session | None:
        """A session, or None when the credentials are refused."""
        response = self._request(
            "POST", "/api/v1/auths/signin", json={"email": email, "password": password}, ok=(400, 401, 403, 429)
        )
        if response.status_code == 429:
            # Open WebUI 0.12.4 counts every attempt, right or wrong, per address: 15 in 3 minutes.
            raise NotReady(f"Open WebUI refuses sign-ins as {email} for now (429: over 15 in 3 minutes); "
                           "it accepts them again within 3 minutes")  # fmt: skip
        if response.status_code >= 400:
            return None
        body = response.json()
        return Session(token=body["token"], role=body.get("role", ""))

    def session_for(self, token: str) -> tuple[str, Session] | None:
        """The (email, session) a saved token still signs in as, or None when Open WebUI no longer
        accepts it (expired, another secret key, another database). Not rate-limited, unlike signin."""
        response = self._request("GET", "/api/v1/auths/", headers=_bearer(token), ok=(401, 403))
        if response.status_code >= 400:
            return None
        body = response.json()
        return body.get("email", ""), Session(token=token, role=body.get("role", ""))

    def signup_first_admin(self, name: str, email: str, password: str) -> Session | None:
        """Sign up as the first user (who becomes admin). None when sign-up is closed (users exist)."""
        response = self._request(
            "POST", "/api/v1/auths/signup", json={"name": name, "email": email, "password": password},
            ok=(400, 403, 422),
        )  # fmt: skip
        if response.status_code == 403:
            return None
        if response.status_code >= 400:
            raise AdminError(f"Open WebUI refused the admin sign-up: {_detail(response)}")
        body = response.json()
        if body.get("role") != "admin":
            raise AdminError(f"the sign-up of {email} gave role '{body.get('role')}', not admin")
        return Session(token=body["token"], role="admin")

    def latest_chat(self, token: str) -> tuple[str, str] | None:
        """(id, title) of the signed-in user's most recent chat, or None without one."""
        chats = self._request("GET", "/api/v1/chats/list", headers=_bearer(token), params={"page": 1}).json()
        return (chats[0]["id"], chats[0]["title"]) if chats else None

    def chat_title(self, token: str, chat_id: str) -> str | None:
        """The title of the user's chat `chat_id`, or None when Open WebUI does not have it."""
        response = self._request("GET", f"/api/v1/chats/{chat_id}", headers=_bearer(token), ok=(401, 404))
        return response.json().get("title") if response.status_code == 200 else None

    def model_ids(self, token: str, *, refresh: bool = True) -> list[str]:
        params = {"refresh": "true"} if refresh else None
        response = self._request("GET", "/api/models", headers=_bearer(token), params=params, timeout=30)
        return [item["id"] for item in response.json().get("data", [])]

    def models_config(self, token: str) -> dict:
        return self._request("GET", "/api/v1/configs/models", headers=_bearer(token)).json()

    def serving_config(self, token: str) -> tuple[str | None, str | None]:
        """The default model and the default function-calling mode, as Open WebUI holds them."""
        config = self.models_config(token)
        params = config.get("DEFAULT_MODEL_PARAMS") or {}
        return config.get("DEFAULT_MODELS"), params.get("function_calling")

    def set_serving_config(self, token: str, model_id: str, function_calling: str) -> None:
        """Make model_id the default and set how tools are offered to models by default.

        Open WebUI keeps both in its database after the first start, so they are set here, not
        through the environment. Other default parameters stay as they are, and an operator's
        per-model setting (Admin Panel > Models) still wins over this default.
        """
        config = self.models_config(token)
        config["DEFAULT_MODELS"] = model_id
        config["DEFAULT_MODEL_PARAMS"] = {**(config.get("DEFAULT_MODEL_PARAMS") or {}),
                                          "function_calling": function_calling}  # fmt: skip
        self._request("POST", "/api/v1/configs/models", headers=_bearer(token), json=config)

    def ensure_openai_backend(self, token: str, base_url: str, api_key: str) -> bool:
        return self.set_openai_backends(token, [base_url], api_key)

    def set_openai_backends(self, token: str, urls: list[str], api_key: str, managed: tuple[str, ...] = ()) -> bool:
        """Open WebUI keeps its OpenAI connections in its database (the environment counts only at
        its first start), so the controller sets them through the admin API: each of `urls` is
        present with `api_key` (a rotated key in .env reaches Open WebUI this way), and any other
        URL in `managed` (the vLLM slots) is removed. Other connections stay as they are, each with
        its settings (Open WebUI keys them by position, so they are re-keyed). True when it changed."""
        config = self._request("GET", "/openai/config", headers=_bearer(token)).json()
        old_urls = list(config.get("OPENAI_API_BASE_URLS") or [])
        keys = list(config.get("OPENAI_API_KEYS") or [])
        keys += [""] * (len(old_urls) - len(keys))
        configs = config.get("OPENAI_API_CONFIGS") or {}
        rows = [(u, k, configs.get(str(i))) for i, (u, k) in enumerate(zip(old_urls, keys, strict=False))
                if u in urls or u not in managed]  # fmt: skip
        rows = [(u, api_key if u in urls else k, c) for u, k, c in rows]
        rows += [(u, api_key, None) for u in urls if u not in old_urls]
        new_urls, new_keys = [u for u, _, _ in rows], [k for _, k, _ in rows]
        if new_urls == old_urls and new_keys == keys and config.get("ENABLE_OPENAI_API") is not False:
            return False
        form = {
            "ENABLE_OPENAI_API": True,
            "OPENAI_API_BASE_URLS": new_urls,
            "OPENAI_API_KEYS": new_keys,
            "OPENAI_API_CONFIGS": {str(i): c for i, (_, _, c) in enumerate(rows) if c is not None},
        }
        self._request("POST", "/openai/config/update", headers=_bearer(token), json=form)
        return True

    def set_sign_in(self, token: str, ldap_on: bool | None, ldap_server: dict, admin_changes: dict) -> list[str]:
        """Directory sign-in as the settings say (Open WebUI keeps all of it in its database after its
        first start, so the environment cannot change it later): LDAP on (with the `ldap_server`
        form), off, or left alone (None), and the admin settings in `admin_changes`
        (DEFAULT_USER_ROLE, ENABLE_LOGIN_FORM). Writes only what differs, and returns what it
        changed, by name (never by value: the form holds the bind password)."""
        changed = []
        if ldap_on is None and not admin_changes:
            return changed
        if ldap_on:
            held = self._request("GET", "/api/v1/auths/admin/config/ldap/server", headers=_bearer(token)).json()
            if any(held.get(key) != value for key, value in ldap_server.items()):
                self._request("POST", "/api/v1/auths/admin/config/ldap/server", headers=_bearer(token),
                              json={**held, **ldap_server})  # fmt: skip
                changed.append("the LDAP server settings")
        if ldap_on is not None:
            held_on = self._request("GET", "/api/v1/auths/admin/config/ldap", headers=_bearer(token)).json()
            if bool(held_on.get("ENABLE_LDAP")) != ldap_on:
                self._request("POST", "/api/v1/auths/admin/config/ldap", headers=_bearer(token),
                              json={"enable_ldap": ldap_on})  # fmt: skip
                changed.append(f"LDAP sign-in {'on' if ldap_on else 'off'}")
        if not admin_changes:
            return changed
        config = self._request("GET", "/api/v1/auths/admin/config", headers=_bearer(token)).json()
        differs = [key for key, value in admin_changes.items() if config.get(key) != value]
        if differs:
            self._request("POST", "/api/v1/auths/admin/config", headers=_bearer(token),
                          json={**config, **admin_changes})  # fmt: skip
            changed += differs
        return changed

    def share_model(self, token: str, model_id: str) -> bool:
        """Every signed-in user may read (chat with) `model_id`. Open WebUI 0.12.4 shows a connection's
        models to admins only until a model entry grants more, so a directory user's chat box had
        nothing to send to. An entry that exists is left as it is: its access is the admin's choice
        (Admin Panel > Models). True when it made the entry."""
        held = self._request("GET", "/api/v1/models/model", headers=_bearer(token), params={"id": model_id},
                             ok=(401, 404))  # fmt: skip
        if held.status_code != 404:
            return False
        everyone = [{"principal_type": "user", "principal_id": "*", "permission": "read"}]
        form = {"id": model_id, "name": model_id, "base_model_id": None, "meta": {}, "params": {},
                "access_grants": everyone}  # fmt: skip
        self._request("POST", "/api/v1/models/create", headers=_bearer(token), json=form)
        return True

    def chat(self, token: str, model_id: str, prompt: str, *, max_tokens: int = 8, as_ui: bool = False) -> dict:
        """One chat completion through Open WebUI; returns the OpenAI-shaped response body.

        as_ui shapes the request like one from the browser: a socket session id makes Open WebUI
        add its built-in tools (with tool_choice "auto") when the model uses native function
        calling, which vLLM refuses unless it runs a tool-call parser. API requests without a
        session get no hidden tools, so only this shape proves a person's chat works.
        """
        body = {"model": model_id, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens, "stream": False}  # fmt: skip
        if as_ui:
            body["session_id"] = f"controller-check-{secrets.token_hex(8)}"
        response = self._request(
            "POST", "/api/chat/completions", headers=_bearer(token), timeout=120, json=body, ok=(400,)
        )
        if response.status_code == 400:
            # vLLM refused the request itself (a wrong setting, not a slow start): no retry helps.
            raise ChatRefused(
                f"a chat through Open WebUI was refused: {_detail(response)}",
                hint="a model without a tool-call parser needs Open WebUI's legacy function calling; "
                "`controller up` or `switch` sets it, unless Admin Panel > Models overrides it",
            )
        body = response.json()
        if not body.get("choices"):
            raise NotReady(f"chat through Open WebUI returned no choices: {str(body)[:200]}")
        return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _detail(response: httpx.Response) -> str:
    """The error's text. FastAPI's validation errors echo the rejected input (a password, say):
    only their location and message are kept."""
    try:
        detail = response.json().get("detail", response.text[:200])
    except (ValueError, AttributeError):
        return response.text[:200] if response.status_code != 422 else "the request was not accepted"
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(map(str, item.get('loc', [])))}: {item.get('msg', '')}"
            for item in detail
            if isinstance(item, dict)
        )
    return str(detail)

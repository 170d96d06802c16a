"""Open WebUI's HTTP API, as the controller uses it (httpx)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from controller.errors import AdminError


@dataclass(frozen=True)
class Session:
    token: str
    role: str


class NotReady(Exception):
    """The service answered, but not yet as wanted; a wait retries on this."""


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

    def healthy(self) -> bool:
        try:
            response = self.http.get("/health", timeout=5)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json().get("status") is True

    def signin(self, email: str, password: str) -> Session | None:
        """A session, or None when the credentials are refused."""
        response = self.http.post("/api/v1/auths/signin", json={"email": email, "password": password})
        if response.status_code in (400, 401, 403):
            return None
        response.raise_for_status()
        body = response.json()
        return Session(token=body["token"], role=body.get("role", ""))

    def signup_first_admin(self, name: str, email: str, password: str) -> Session | None:
        """Sign up as the first user (who becomes admin). None when sign-up is closed (users exist)."""
        response = self.http.post("/api/v1/auths/signup", json={"name": name, "email": email, "password": password})
        if response.status_code == 403:
            return None
        if response.status_code >= 400:
            raise AdminError(f"Open WebUI refused the admin sign-up: {_detail(response)}")
        body = response.json()
        if body.get("role") != "admin":
            raise AdminError(f"the sign-up of {email} gave role '{body.get('role')}', not admin")
        return Session(token=body["token"], role="admin")

    def model_ids(self, token: str, *, refresh: bool = True) -> list[str]:
        params = {"refresh": "true"} if refresh else None
        response = self.http.get("/api/models", headers=_bearer(token), params=params, timeout=30)
        response.raise_for_status()
        return [item["id"] for item in response.json().get("data", [])]

    def models_config(self, token: str) -> dict:
        response = self.http.get("/api/v1/configs/models", headers=_bearer(token))
        response.raise_for_status()
        return response.json()

    def set_default_model(self, token: str, model_id: str) -> None:
        """Open WebUI keeps DEFAULT_MODELS in its database after the first start; set it there."""
        config = self.models_config(token)
        config["DEFAULT_MODELS"] = model_id
        response = self.http.post("/api/v1/configs/models", headers=_bearer(token), json=config)
        response.raise_for_status()

    def default_model(self, token: str) -> str | None:
        return self.models_config(token).get("DEFAULT_MODELS")

    def chat(self, token: str, model_id: str, prompt: str, *, max_tokens: int = 8) -> str:
        response = self.http.post(
            "/api/chat/completions",
            headers=_bearer(token),
            json={
                "model": model_id,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "stream": False,
            },
            timeout=120,
        )
        if response.status_code >= 400:
            raise NotReady(f"chat through Open WebUI answered {response.status_code}: {_detail(response)}")
        body = response.json()
        return body["choices"][0]["message"]["content"] or ""


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text[:200]))
    except ValueError:
        return response.text[:200]

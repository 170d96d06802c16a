"""An in-memory target and Open WebUI for fast tests of the sequencing (up, switch, rollback,
recovery). They record every call in order; failures are injected per served model name."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from controller.errors import ChatRefused, RuntimeFailure, StartupFailed
from controller.phases import WEIGHTS_LOAD, PhaseRunner
from controller.spec import PROFILE_LABEL, VLLM_BASE_URL
from controller.webui import Session


def _profile_of(text: str) -> str:
    return yaml.safe_load(text)["services"]["vllm"]["labels"][PROFILE_LABEL]


@dataclass
class FakeWebUI:
    target: FakeTarget
    config: tuple[str | None, str | None] = (None, None)
    refuse_chat_for: set[str] = field(default_factory=set)

    def __enter__(self) -> FakeWebUI:
        return self

    def __exit__(self, *exc: object) -> None: ...

    def healthy(self) -> bool:
        return True

    def signin(self, email: str, password: str) -> Session:
        self.target.calls.append("signin")
        return Session("token", "admin")

    def signup_first_admin(self, name: str, email: str, password: str) -> Session:
        return Session("token", "admin")

    def ensure_openai_backend(self, token: str, base_url: str, api_key: str) -> bool:
        return False

    def model_ids(self, token: str) -> list[str]:
        return [self.target.serving] if self.target.serving else []

    def serving_config(self, token: str) -> tuple[str | None, str | None]:
        return self.config

    def set_serving_config(self, token: str, model_id: str, function_calling: str) -> None:
        self.target.calls.append(f"webui default {model_id} {function_calling}")
        self.config = (model_id, function_calling)

    def chat(self, token: str, model_id: str, prompt: str, *, max_tokens: int = 8, as_ui: bool = False) -> dict:
        self.target.calls.append(f"chat {model_id}{' as ui' if as_ui else ''}")
        if model_id in self.refuse_chat_for:
            raise ChatRefused(f"refused {model_id}")
        return {"choices": [{"message": {"role": "assistant", "content": "ok"}}]}


@dataclass
class FakeTarget:
    """The deployment as data: the written text, what vLLM serves, and a log of calls."""

    backend_url: str = VLLM_BASE_URL
    text: str | None = None
    vllm_text: str | None = None
    serving: str | None = None
    running: str | None = None
    calls: list[str] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)
    interrupt_on: set[str] = field(default_factory=set)
    fail_pull: bool = False
    preflight_error: Exception | None = None

    def __post_init__(self) -> None:
        self.ui = FakeWebUI(self)

    def gpu_runtime(self) -> bool:
        return False

    def preflight(self, *, switching: bool, needs_download_bytes: int | None) -> list[str]:
        self.calls.append("preflight")
        if self.preflight_error:
            raise self.preflight_error
        return []

    def current_text(self) -> str | None:
        return self.text

    def write(self, text: str) -> bool:
        self.calls.append(f"write {_profile_of(text)}")
        changed, self.text = text != self.text, text
        return changed

    def pull(self, runner: PhaseRunner, *services: str) -> None:
        self.calls.append("pull")
        if self.fail_pull:
            raise RuntimeFailure("an image is not on this machine and could not be pulled")

    def apply(self, runner: PhaseRunner) -> None:
        self.calls.append("apply")
        if self.text != self.vllm_text or self.running is None:  # like Compose: only what changed
            self._start_vllm()

    def recreate_vllm(self, runner: PhaseRunner) -> None:
        self.calls.append(f"recreate {_profile_of(self.text)}")
        self._start_vllm()

    def _start_vllm(self) -> None:
        self.vllm_text, self.serving = self.text, None
        self.running = _profile_of(self.text)

    def wait_vllm(self, runner: PhaseRunner, served_model_name: str) -> dict:
        self.calls.append(f"wait vllm {served_model_name}")
        if served_model_name in self.interrupt_on:
            raise KeyboardInterrupt
        if served_model_name in self.broken:
            self.running = None
            raise StartupFailed(f"vLLM failed to start {served_model_name}", phase=WEIGHTS_LOAD.name)
        self.serving = served_model_name
        return {"load_time_s": 1.0, "max_model_len": 512, "kv_cache_tokens": 1, "max_concurrency": 1.0}

    def stop_vllm(self) -> None:
        self.calls.append("stop vllm")
        self.running = self.serving = None

    def wait_webui(self, runner: PhaseRunner) -> None:
        self.calls.append("wait webui")

    def webui(self) -> FakeWebUI:
        return self.ui

    def running_profile(self) -> str | None:
        return self.running

    def running_ids(self) -> dict[str, str | None]:
        return {"vllm": self.vllm_text and str(hash(self.vllm_text)), "webui": "webui" if self.vllm_text else None}

    def healthy(self) -> bool:
        return self.serving is not None

    def down(self, *, volumes: bool) -> None:
        self.calls.append("down")
        self.running = self.serving = self.vllm_text = None

    def services(self) -> dict[str, dict]:
        state = "running" if self.running else "absent"
        return {s: {"state": state, "health": None, "uptime_s": None, "image": None} for s in ("vllm", "webui")}

    def metrics(self) -> dict:
        return {}

    def logs(self, service: str | None, *, follow: bool) -> None: ...

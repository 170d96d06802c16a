"""An in-memory target and Open WebUI for fast tests of the sequencing (up, switch, rollback,
recovery). They record every call in order; failures are injected per served model name."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import yaml

from controller.deploy.spec import PROFILE_LABEL, SLOTS, vllm_url
from controller.errors import ChatRefused, RuntimeFailure, StartupFailed
from controller.phases import WEIGHTS_LOAD, PhaseRunner
from controller.runtime.webui_client import Session


def _profiles(text: str) -> dict[str, str]:
    """vLLM service -> profile, in the file's order."""
    services = yaml.safe_load(text)["services"]
    return {name: s["labels"][PROFILE_LABEL] for name, s in services.items() if name in SLOTS}


def _profile_of(text: str, service: str | None = None) -> str:
    profiles = _profiles(text)
    return profiles[service] if service else next(iter(profiles.values()))


@dataclass
class FakeWebUI:
    target: FakeTarget
    config: tuple[str | None, str | None] = (None, None)
    refuse_chat_for: set[str] = field(default_factory=set)
    signed_in_as: str | None = None

    def __enter__(self) -> FakeWebUI:
        return self

    def __exit__(self, *exc: object) -> None: ...

    def healthy(self) -> bool:
        return True

    def _answer(self) -> None:
        if self.target.webui_stopped:  # fails at once: a wait on it would run to its deadline
            raise RuntimeFailure("Open WebUI is not running")

    def signin(self, email: str, password: str) -> Session:
        self._answer()
        self.target.calls.append("signin")
        self.signed_in_as = email
        return Session("token", "admin")

    def session_for(self, token: str) -> tuple[str, Session] | None:
        """A saved session is the admin step too (the real one skips the rate-limited sign-in)."""
        self._answer()
        self.target.calls.append("signin")
        return (self.signed_in_as, Session(token, "admin")) if self.signed_in_as else None

    def signup_first_admin(self, name: str, email: str, password: str) -> Session:
        return Session("token", "admin")

    def set_openai_backends(self, token: str, urls: list[str], api_key: str, managed: tuple[str, ...] = ()) -> bool:
        if urls == self.target.connections:
            return False
        self.target.calls.append("connect " + " ".join(url.split("/")[2].split(":")[0] for url in urls))
        self.target.connections = list(urls)
        return True

    def set_sign_in(self, token: str, ldap_on: bool | None, ldap_server: dict, admin_changes: dict) -> list[str]:
        if ldap_on is None and not admin_changes:
            return []
        self.target.calls.append(f"sign-in ldap={ldap_on} {sorted(admin_changes.items())}")
        return ["DEFAULT_USER_ROLE"] if admin_changes else []

    def share_model(self, token: str, model_id: str) -> bool:
        self.target.calls.append(f"share {model_id}")
        return True

    def model_ids(self, token: str) -> list[str]:
        self._answer()
        slots = [url.split("/")[2].split(":")[0] for url in self.target.connections]
        return [self.target.serves[slot] for slot in slots if self.target.serves.get(slot)]

    def serving_config(self, token: str) -> tuple[str | None, str | None]:
        return self.config

    def set_serving_config(self, token: str, model_id: str, function_calling: str) -> None:
        self._answer()
        self.target.calls.append(f"webui default {model_id} {function_calling}")
        self.config = (model_id, function_calling)

    def chat(self, token: str, model_id: str, prompt: str, *, max_tokens: int = 8, as_ui: bool = False) -> dict:
        self._answer()
        self.target.calls.append(f"chat {model_id}{' as ui' if as_ui else ''}")
        if model_id in self.refuse_chat_for:
            raise ChatRefused(f"refused {model_id}")
        return {"choices": [{"message": {"role": "assistant", "content": "ok"}}]}


@dataclass
class FakeTarget:
    """The deployment as data: the written text, what vLLM serves, and a log of calls."""

    slot: str = SLOTS[0]
    text: str | None = None
    vllm_text: str | None = None
    runs: dict[str, str] = field(default_factory=dict)  # slot -> profile of a running vLLM
    serves: dict[str, str] = field(default_factory=dict)  # slot -> served model name, once healthy
    connections: list[str] = field(default_factory=lambda: [vllm_url(slot) for slot in SLOTS])
    # slot -> successive /metrics answers: (running + waiting, finished so far)
    in_flight: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    host_memory: int | None = 24 * 1024**3
    kv_cache_tokens: int | None = None  # what vLLM "logs" at start-up
    calls: list[str] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)
    interrupt_on: set[str] = field(default_factory=set)
    fail_pull: bool = False
    # Served names whose load ends with Open WebUI killed (`docker kill`: stopped, not restarted).
    kill_webui_on: set[str] = field(default_factory=set)
    webui_stopped: bool = False
    preflight_error: Exception | None = None
    absent_images: set[str] = field(default_factory=set)  # images the "engine" lacks (OFFLINE=true checks)
    # `controller bench`: served names whose benchmark fails or is interrupted (Ctrl-C), the
    # argument lists it was given, and the p99 TTFT (ms) each level reports: 100 x the level.
    bench_broken: set[str] = field(default_factory=set)
    bench_interrupt: set[str] = field(default_factory=set)
    bench_runs: list[list[list[str]]] = field(default_factory=list)

    def use_slot(self, service: str) -> None:
        self.slot = service

    def __post_init__(self) -> None:
        self.ui = FakeWebUI(self)

    @property
    def running(self) -> str | None:
        return self.runs.get(self.slot)

    @property
    def serving(self) -> str | None:
        return self.serves.get(self.slot)

    def gpu_runtime(self) -> bool:
        return False

    def missing_images(self, images: list[str]) -> list[str]:
        return [image for image in images if image in self.absent_images]

    def preflight(self, *, switching: bool, needs_download_bytes: int | None) -> list[str]:
        self.calls.append("preflight")
        if self.preflight_error:
            raise self.preflight_error
        return []

    def current_text(self) -> str | None:
        return self.text

    def write(self, text: str) -> bool:
        self.calls.append("write " + " ".join(_profiles(text).values()))
        changed, self.text = text != self.text, text
        return changed

    def pull(self, runner: PhaseRunner, *services: str) -> None:
        self.calls.append("pull")
        missing = set(services) - set(yaml.safe_load(self.text)["services"])
        if missing:  # like Compose: "no such service"
            raise RuntimeFailure(f"no such service: {', '.join(sorted(missing))}")
        if self.fail_pull:
            raise RuntimeFailure("an image is not on this machine and could not be pulled")

    def apply(self, runner: PhaseRunner) -> None:
        self.calls.append("apply")
        if self.text != self.vllm_text or self.running is None:  # like Compose: only what changed
            self._start_vllm()

    def recreate_vllm(self, runner: PhaseRunner, service: str | None = None) -> None:
        service = service or self.slot
        profile = _profile_of(self.text, service)
        if service != self.slot:
            self.calls.append(f"start {service} {profile}")
        elif self.runs.get(service) == profile and service in self.serves and len(_profiles(self.text)) == 1:
            # Like Compose: an unchanged, running service is left alone (a rollback after a cut-over).
            self.calls.append(f"keep {profile}")
            return
        else:
            self.calls.append(f"recreate {profile}")
        self._start_vllm(service)

    def _start_vllm(self, service: str | None = None) -> None:
        service = service or self.slot
        if service == self.slot:
            self.vllm_text = self.text
        self.serves.pop(service, None)
        self.runs[service] = _profile_of(self.text, service)

    def wait_vllm(self, runner: PhaseRunner, served_model_name: str, service: str | None = None) -> dict:
        service = service or self.slot
        self.calls.append(f"wait vllm {served_model_name}")
        if served_model_name in self.interrupt_on:
            raise KeyboardInterrupt
        if served_model_name in self.kill_webui_on:
            self.webui_stopped = True
        if served_model_name in self.broken:
            self.runs.pop(service, None)
            raise StartupFailed(f"vLLM failed to start {served_model_name}", phase=WEIGHTS_LOAD.name)
        self.serves[service] = served_model_name
        return {"load_time_s": 1.0, "max_model_len": 512, "kv_cache_tokens": self.kv_cache_tokens,
                "max_concurrency": 1.0}  # fmt: skip

    def stop_vllm(self) -> None:
        self.calls.append("stop vllm")
        self.runs.pop(self.slot, None)
        self.serves.pop(self.slot, None)

    def remove_vllm(self, service: str) -> None:
        if service in self.runs:
            self.calls.append(f"remove {service}")
        self.runs.pop(service, None)
        self.serves.pop(service, None)

    def request_counts(self, service: str) -> tuple[int, int]:
        answers = self.in_flight.get(service) or [(0, 0)]
        self.calls.append(f"in flight {service} {answers[0][0]}")
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def host_memory_bytes(self) -> int | None:
        return self.host_memory

    def wait_webui(self, runner: PhaseRunner) -> None:
        self.calls.append("wait webui")

    def ensure_webui(self, runner: PhaseRunner) -> str | None:
        if not self.webui_stopped:
            return None
        self.calls.append("start webui")
        self.webui_stopped = False
        return "exited, exit code 137"

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
        self.runs, self.serves, self.vllm_text = {}, {}, None

    def services(self) -> dict[str, dict]:
        state = "running" if self.running else "absent"
        return {s: {"state": state, "health": None, "uptime_s": None, "image": None} for s in ("vllm", "webui")}

    def metrics(self) -> dict:
        return {}

    def logs(self, service: str | None, *, follow: bool) -> None: ...

    def bench_facts(self) -> dict:
        self.calls.append(f"bench facts {self.running}")
        return {"image": "controller-test/vllm-cpu:fake", "vllm_version": "0.32.0",
                "hardware": {"cpu": "Fake CPU", "cpu_count": 2, "memory_gib": 24.0, "gpus": []},
                "weights_gib": None, "kv_cache_tokens": self.kv_cache_tokens}  # fmt: skip

    def bench_serve(self, runs: list[list[str]], *, result_dir: str, timeout_s: float) -> list[str]:
        served = runs[0][runs[0].index("--model") + 1]
        levels = [int(argv[argv.index("--max-concurrency") + 1]) for argv in runs]
        self.calls.append(f"bench {served} {','.join(map(str, levels))}")
        self.bench_runs.append(runs)
        if served in self.bench_interrupt:
            raise KeyboardInterrupt
        if served in self.bench_broken:
            raise RuntimeFailure(f"vLLM's benchmark failed for {served}")
        return [json.dumps(vllm_result(level, int(argv[argv.index("--num-prompts") + 1])))
                for level, argv in zip(levels, runs, strict=True)]  # fmt: skip


def vllm_result(level: int, prompts: int = 16, *, ttft_p99_ms: float | None = None, failed: int = 0) -> dict:
    """A result shaped like the JSON `vllm bench serve --save-result` writes (vLLM 0.32; the full
    key set is in tests/unit/data/vllm-bench-serve-result.json)."""
    ttft = 100.0 * level if ttft_p99_ms is None else ttft_p99_ms
    return {
        "backend": "openai", "num_prompts": prompts, "max_concurrency": level, "request_rate": "inf",
        "duration": 10.0, "completed": prompts - failed, "failed": failed,
        "request_throughput": 0.5 * level, "output_throughput": 20.0 * level, "total_token_throughput": 60.0 * level,
        "p50_ttft_ms": ttft / 2, "p99_ttft_ms": ttft, "median_ttft_ms": ttft / 2,
        "p50_tpot_ms": 50.0, "p99_tpot_ms": 60.0, "p50_itl_ms": 50.0, "p99_itl_ms": 70.0,
        "p50_e2el_ms": 1000.0, "p99_e2el_ms": 1200.0,
    }  # fmt: skip

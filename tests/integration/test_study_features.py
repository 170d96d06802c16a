"""What the model-selection study asks beyond serving, on one real CPU stack (profile tiny-study):
a LoRA adapter served next to its base model, the context doubled by RoPE scaling, DeepSeek-R1's
reasoning parser, and vLLM's prefix cache counted in `controller status`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from controller.config.settings import load_settings
from controller.config.site import SiteConfig
from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration import webui_page as ui

pytestmark = [pytest.mark.integration, pytest.mark.stack]

PROFILE, ADAPTER = "tiny-study", "tiny-lora"
# Greedy, and every request writes max_tokens tokens that all show in the text: the random weights
# often pick end-of-text or padding, which vLLM would stop at or drop (measured: empty answers).
UNTRIMMED = {"temperature": 0, "ignore_eos": True, "skip_special_tokens": False}
# Words the tiny tokenizer was trained on: about one token each.
WORDS = "the model server token cache memory vllm open webui controller compose docker container network".split()


class Study:
    def __init__(self, root: Path, project: str, port: int, vllm_port: int):
        self.root, self.project, self.port, self.vllm_port = root, project, port, vllm_port
        self.settings = load_settings(SiteConfig(root=root, env_file=root / ".env"))
        self.vllm = httpx.Client(
            base_url=f"http://127.0.0.1:{vllm_port}",
            headers={"Authorization": f"Bearer {self.settings.vllm_api_key.get_secret_value()}"},
            timeout=120,
        )

    def metrics(self) -> str:
        response = self.vllm.get("/metrics")
        response.raise_for_status()
        return response.text

    def prompt_ids(self, length: int, start: int = 0) -> list[int]:
        """A prompt of exactly `length` tokens (vLLM's own tokenizer counts them); another `start`
        gives another prompt."""
        text = " ".join(WORDS[(start + i * 7) % len(WORDS)] for i in range(length))
        response = self.vllm.post("/tokenize", json={"model": PROFILE, "prompt": text, "add_special_tokens": False})
        response.raise_for_status()
        return response.json()["tokens"][:length]

    def complete(self, model: str, prompt: str | list[int], max_tokens: int = 12) -> dict:
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, **UNTRIMMED}
        response = self.vllm.post("/v1/completions", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def chat(self, model: str, prompt: str, max_tokens: int = 12) -> dict:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                **UNTRIMMED}  # fmt: skip
        response = self.vllm.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return response.json()


def _counter(metrics: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(name + "{"))


@pytest.fixture(scope="module")
def study(docker_client, images, tiny_model):
    with harness.scratch_site(docker_client, images) as (root, project, port):
        vllm_port = harness.free_port()
        with (root / ".env").open("a") as env:
            env.write(f"VLLM_HOST_PORT={vllm_port}\n")  # vLLM's own API on 127.0.0.1, for the checks
        start = time.monotonic()
        up = harness.controller(root, "up", PROFILE, "--json")
        harness.TIMINGS[f"stack up (controller up {PROFILE})"] = round(time.monotonic() - start, 1)
        assert up.returncode == 0, up.stderr
        site = Study(root, project, port, vllm_port)
        yield site
        site.vllm.close()


def test_vllm_serves_the_doubled_context_and_the_adapter_beside_the_base(study, docker_client):
    models = {m["id"]: m for m in study.vllm.get("/v1/models").json()["data"]}
    assert models[PROFILE]["max_model_len"] == 1024  # the tiny model's 512 positions, RoPE factor 2
    assert models[ADAPTER]["parent"] == PROFILE
    # A prompt longer than the model's own 512 positions is served.
    assert study.complete(PROFILE, study.prompt_ids(700), max_tokens=4)["usage"]["prompt_tokens"] == 700
    # The adapter directory is mounted read-only.
    [container] = docker_client.containers.list(
        filters={"label": [f"{harness.PROJECT_LABEL}={study.project}", "com.docker.compose.service=vllm"]}
    )
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts[f"/adapters/{ADAPTER}"]["RW"] is False


def test_the_adapter_changes_the_answer_and_open_webui_lists_it(study):
    prompt = "hello model server"
    base, adapted = (study.complete(model, prompt, max_tokens=32)["choices"][0]["text"] for model in (PROFILE, ADAPTER))
    # The same prompt, greedy: only the adapter's weights can change the tokens.
    assert base != adapted, (base, adapted)
    with WebUI(f"http://127.0.0.1:{study.port}") as webui:
        session = webui.signin(study.settings.webui_admin_email, study.settings.webui_admin_password.get_secret_value())
        assert {PROFILE, ADAPTER} <= set(webui.model_ids(session.token))
        reply = webui.chat(session.token, ADAPTER, prompt, max_tokens=4)
    assert reply["choices"][0]["message"]["role"] == "assistant"


def test_reasoning_arrives_apart_from_the_answer(study):
    """The chat template opens <think>, so all the tiny model writes is reasoning: vLLM 0.32 returns
    it in `reasoning` (the field it renamed from `reasoning_content`), apart from `content`."""
    message = study.chat(PROFILE, "hello", max_tokens=8)["choices"][0]["message"]
    assert message["reasoning"], message
    assert message["reasoning"] not in (message["content"] or "")
    with WebUI(f"http://127.0.0.1:{study.port}") as webui:
        session = webui.signin(study.settings.webui_admin_email, study.settings.webui_admin_password.get_secret_value())
        token = session.token
    body = {"model": PROFILE, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, **UNTRIMMED}
    response = httpx.post(f"http://127.0.0.1:{study.port}/api/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {token}"}, timeout=120)  # fmt: skip
    assert response.status_code == 200, response.text
    through_webui = response.json()["choices"][0]["message"]
    # Open WebUI passes vLLM's answer through its API unchanged: the reasoning stays apart.
    assert through_webui.get("reasoning"), through_webui


def test_a_person_sees_the_reasoning_folded_above_the_answer(study):
    """In the browser, Open WebUI 0.12.4 gathers the streamed `reasoning` into a folded block
    headed "Thought for ..." (its own output item in the saved chat), which opens on a click."""
    url, settings = f"http://127.0.0.1:{study.port}", study.settings
    with ui.chromium() as browser:
        page = ui.new_page(browser)
        ui.sign_in(page, url, settings.webui_admin_email, settings.webui_admin_password.get_secret_value())
        assert ui.selected_model(page) == PROFILE
        chat_id = ui.send_message(page, "hello")
        reply = ui.assistant_reply(url, ui.token(page), chat_id, "hello")
        assert not reply.get("error"), reply
        reasoning = [item for item in reply.get("output") or [] if item.get("type") == "reasoning"]
        assert reasoning, reply
        thought = " ".join(part.get("text", "") for item in reasoning for part in item.get("content") or [])
        heading = page.get_by_text(re.compile(r"^Thought for")).first
        heading.wait_for(state="visible")
        ui.screenshot(page, "reasoning-folded")
        # Words of the reasoning that the folded page does not show: a click brings them into view.
        shown = page.inner_text("body")
        hidden = [word for word in re.findall(r"[A-Za-z]{5,}", thought) if word not in shown]
        assert hidden, (thought, shown)
        heading.click()
        page.get_by_text(hidden[0]).first.wait_for(state="visible")
        ui.screenshot(page, "reasoning-open")


def test_prefix_cache_hits_rise_for_a_repeated_prompt_and_status_shows_them(study):
    # Longer than a few of the CPU backend's 128-token blocks: only whole blocks are cached.
    prompt = study.prompt_ids(600, start=3)  # not the prefix of an earlier test's prompt
    before = study.metrics()
    study.complete(PROFILE, prompt, max_tokens=2)
    between = study.metrics()
    study.complete(PROFILE, prompt, max_tokens=2)
    after = study.metrics()
    hits = [_counter(m, "vllm:prefix_cache_hits_total") for m in (before, between, after)]
    queries = [_counter(m, "vllm:prefix_cache_queries_total") for m in (before, between, after)]
    assert queries[2] > queries[1] > queries[0]
    assert hits[2] - hits[1] >= 256, hits  # the second time, the prompt's whole blocks hit

    status = harness.controller(study.root, "status", "--json")
    assert status.returncode == 0, status.stderr
    metrics = json.loads(status.stdout)["metrics"]
    assert metrics["prefix_cache_hits"] >= hits[2] and metrics["prefix_cache_queries"] >= queries[2]
    assert metrics["prefix_cache_hit_rate"] == pytest.approx(
        metrics["prefix_cache_hits"] / metrics["prefix_cache_queries"]
    )
    assert {"requests_running", "requests_waiting", "kv_cache_usage"} <= set(metrics)
    human = harness.controller(study.root, "status")
    assert "prefix cache:" in human.stdout and "% of prompt tokens hit" in human.stdout

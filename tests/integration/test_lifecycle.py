"""`controller up` / `down` / `status` on the real stack: real Docker, real vLLM (CPU), real Open WebUI."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime

import pytest

from controller.config.catalog import load_catalog
from controller.config.envfile import write_env_values
from controller.planner.model_memory import kv_bytes_per_token
from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration.webui_api import admin_session, chat_title, create_chat

pytestmark = [pytest.mark.integration, pytest.mark.stack]


def test_up_serves_chats_is_idempotent_and_keeps_data_across_down(test_site, docker_client):
    start = time.monotonic()
    first = test_site.controller("up", "tiny-a", "--json")
    harness.TIMINGS["stack up (controller up tiny-a)"] = round(time.monotonic() - start, 1)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    settings = test_site.settings()
    secrets = {
        "WEBUI_ADMIN_PASSWORD": settings.webui_admin_password.get_secret_value(),
        "WEBUI_SECRET_KEY": settings.webui_secret_key.get_secret_value(),
        "VLLM_API_KEY": settings.vllm_api_key.get_secret_value(),
    }
    compose_text = test_site.site.compose_file.read_text()
    for name, value in secrets.items():
        assert value not in first.stdout + first.stderr, f"{name} was printed"
        assert value not in compose_text, f"{name} is in the rendered compose file"
    # Nor on a command line anyone can see (`ps`, `docker inspect`): only the environment holds them.
    for container in docker_client.containers.list(filters={"label": f"{harness.PROJECT_LABEL}={test_site.project}"}):
        config = container.attrs["Config"]
        visible = json.dumps([config.get("Cmd"), config.get("Entrypoint"), container.attrs.get("Args"),
                              config.get("Labels")])  # fmt: skip
        for name, value in secrets.items():
            assert value not in visible, f"{name} is on {container.name}'s command line or labels"
    assert summary["admin_password_in"] == str(test_site.site.env_file)
    assert {"weights load", "engine ready", "admin", "model in webui"} <= set(summary["phases"])

    with WebUI(test_site.url) as webui:
        session = admin_session(test_site, webui)
        assert webui.chat(session.token, "tiny-a", "hello", max_tokens=4)
        chat_id = create_chat(test_site.url, session.token, "kept across down")
        # Sign-up for anybody else stays closed.
        assert webui.signup_first_admin("Mallory", "mallory@example.com", "another-long-password") is None

    # The planner's KV bytes per token times vLLM's own KV capacity is the configured KV space.
    profile = load_catalog(harness.TEST_CATALOG).get("tiny-a")
    tokens = summary["vllm"]["kv_cache_tokens"]
    configured = profile.cpu_kv_cache_gib * 1024**3
    assert abs(kv_bytes_per_token(profile) * tokens - configured) / configured < 0.02

    def started() -> dict[str, str]:
        found = docker_client.containers.list(filters={"label": f"{harness.PROJECT_LABEL}={test_site.project}"})
        return {c.name: f"{c.id} {c.attrs['State']['StartedAt']}" for c in found}

    # A no-op: the same containers, not restarted. (Its time is in the per-phase timings; a wall-clock
    # bound would fail on a machine busy with other tests.)
    before = started()
    start = time.monotonic()
    again = test_site.controller("up", "tiny-a")
    harness.TIMINGS["second controller up (no-op)"] = round(time.monotonic() - start, 1)
    assert again.returncode == 0, again.stderr
    assert started() == before, "the second up recreated or restarted a container"

    other = test_site.controller("up", "tiny-b")
    assert other.returncode == 2
    assert "controller switch tiny-b" in other.stderr

    status = test_site.controller("status", "--json")
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["model"] == "tiny-a"
    assert state["url"] == test_site.url
    assert state["services"]["vllm"]["state"] == "running"
    assert state["services"]["webui"]["state"] == "running"
    assert "requests_running" in state["metrics"]

    down = test_site.controller("down")
    assert down.returncode == 0, down.stderr
    assert (
        docker_client.containers.list(all=True, filters={"label": f"{harness.PROJECT_LABEL}={test_site.project}"}) == []
    )
    assert docker_client.volumes.list(filters={"label": f"{harness.PROJECT_LABEL}={test_site.project}"})

    back = test_site.controller("up", "tiny-a")
    assert back.returncode == 0, back.stderr
    with WebUI(test_site.url) as webui:
        session = admin_session(test_site, webui)
        assert chat_title(test_site.url, session.token, chat_id) == "kept across down"

    # A rotated vLLM key reaches vLLM through compose and Open WebUI through its admin API
    # (Open WebUI keeps the first key in its database).
    write_env_values(test_site.site.env_file, {"VLLM_API_KEY": "rotated-vllm-key-0123456789"}, overwrite=True)
    rotated = test_site.controller("up", "tiny-a")
    assert rotated.returncode == 0, rotated.stderr
    assert "updated it to VLLM_API_KEY" in rotated.stderr
    assert "rotated-vllm-key-0123456789" not in rotated.stderr + rotated.stdout
    with WebUI(test_site.url) as webui:
        assert webui.chat(admin_session(test_site, webui).token, "tiny-a", "hello", max_tokens=2)

    # Credentials in .env that do not match the existing admin are reported; nothing is reset.
    write_env_values(test_site.site.env_file, {"WEBUI_ADMIN_PASSWORD": "a-different-long-password-1"}, overwrite=True)
    mismatch = test_site.controller("up", "tiny-a")
    assert mismatch.returncode == 1
    assert "already has an admin" in mismatch.stderr and "nothing was reset" in mismatch.stderr
    assert "a-different-long-password-1" not in mismatch.stderr + mismatch.stdout
    with WebUI(test_site.url) as webui:
        kept = webui.signin(test_site.settings().webui_admin_email, secrets["WEBUI_ADMIN_PASSWORD"])
        assert kept is not None and chat_title(test_site.url, kept.token, chat_id) == "kept across down"


def _log_time(line: str) -> float:
    stamp = line.split(" ", 1)[0].rstrip("Z")
    head, _, frac = stamp.partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def test_profile_that_vllm_rejects_fails_fast_with_its_message_and_a_hint(test_site, docker_client):
    result = test_site.controller("up", "tiny-broken")
    ended = time.time()
    assert result.returncode == 1, result.stderr
    assert "greater than the derived max_model_len" in result.stderr, "vLLM's own message is shown"
    assert "max_model_len: 512" in result.stderr, "the hint names the length that fits"
    assert "Traceback (most recent call last)" not in result.stderr.split("error:", 1)[0]

    container = docker_client.containers.list(
        all=True, filters={"label": [f"{harness.PROJECT_LABEL}={test_site.project}", "com.docker.compose.service=vllm"]}
    )[0]
    logged = container.logs(timestamps=True).decode()
    error_line = next(line for line in logged.splitlines() if "greater than the derived max_model_len" in line)
    delay = ended - _log_time(error_line)
    harness.TIMINGS["fail-fast delay after vLLM's error"] = round(delay, 1)
    assert delay < 60, f"the controller exited {delay:.0f} s after vLLM printed the error"
    container.reload()
    assert container.status == "exited", "the failing vLLM is stopped, not left restarting"


def test_gpu_profile_without_nvidia_runtime_fails_in_preflight(test_site, docker_client):
    result = test_site.controller("up", "deepseek-1.5b")
    assert result.returncode == 2, result.stderr
    assert "no NVIDIA runtime" in result.stderr and "nvidia-container-toolkit" in result.stderr
    assert "tiny-a" in result.stderr, "the hint suggests a cpu profile"
    assert (
        docker_client.containers.list(all=True, filters={"label": f"{harness.PROJECT_LABEL}={test_site.project}"}) == []
    )
    assert not test_site.site.compose_file.exists()


def test_occupied_webui_port_fails_in_preflight(test_site, docker_client):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", test_site.port))
        holder.listen()
        result = test_site.controller("up", "tiny-a")
    assert result.returncode == 2, result.stderr
    assert f"port {test_site.port}" in result.stderr and "in use" in result.stderr
    assert (
        docker_client.containers.list(all=True, filters={"label": f"{harness.PROJECT_LABEL}={test_site.project}"}) == []
    )


def test_webui_port_published_by_another_container_fails_in_preflight(test_site, docker_client, images):
    squatter = docker_client.containers.run(
        images["base"], ["sleep", "600"], detach=True, ports={"9/tcp": ("127.0.0.1", test_site.port)},
        labels={harness.PROJECT_LABEL: test_site.project + "-squatter"},
    )  # fmt: skip
    try:
        result = test_site.controller("up", "tiny-a")
    finally:
        squatter.remove(force=True)
    assert result.returncode == 2, result.stderr
    assert squatter.name in result.stderr

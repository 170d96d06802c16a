"""The blue-green switch on the real stack: an independent prober sees no failed chat and no cut
stream, a new model that cannot start leaves the old one serving, `auto` falls back to recreate
with the planner's reason, the file describes what runs, `status` shows both instances mid-switch, and `down`
leaves no instance.

The tests run on the suite's shared stack (conftest.py `shared_site`), in file order."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from controller.config.envfile import write_env_values
from controller.errors import NotReady
from controller.phases import wait_for
from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration.probe_report import ProberProcess, summarise
from tests.integration.webui_api import admin_session, chat_title, create_chat

pytestmark = [pytest.mark.integration, pytest.mark.stack]


def _containers(client, project: str) -> dict[str, str]:
    found = client.containers.list(all=True, filters={"label": f"{harness.PROJECT_LABEL}={project}"})
    return {c.name: c.id for c in found}


def _services(client, project: str) -> list[str]:
    found = client.containers.list(all=True, filters={"label": f"{harness.PROJECT_LABEL}={project}"})
    return sorted(c.labels["com.docker.compose.service"] for c in found)


def _hand_run_up_changes_nothing(site, client) -> None:
    before = _containers(client, site.project)
    by_hand = subprocess.run(
        ["docker", "compose", "--env-file", ".env", "-f", "compose/docker-compose.yml", "up", "-d"],
        cwd=site.root, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert by_hand.returncode == 0, by_hand.stderr
    assert _containers(client, site.project) == before, "a hand-run `docker compose up -d` changed a container"


def _switch(site, *args: str) -> dict:
    result = site.controller("switch", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_blue_green_switch_serves_every_chat_and_stream_and_leaves_one_instance(shared_site, docker_client, tmp_path):
    assert shared_site.controller("up", "tiny-a").returncode == 0
    settings = shared_site.settings()
    with WebUI(shared_site.url) as webui:
        session = admin_session(shared_site, webui)
        chat_id = create_chat(shared_site.url, session.token, "before blue-green")
    prober = ProberProcess.start(shared_site.url, settings.webui_admin_email,
                                 settings.webui_admin_password.get_secret_value(), tmp_path / "probe.json")  # fmt: skip
    start = time.time()
    try:
        summary = _switch(shared_site, "tiny-b", "--strategy", "blue-green")
        back = _switch(shared_site, "tiny-a")  # auto: both fit on this machine
    finally:
        end = time.time()
        seen = summarise(prober.finish(), start, end)
    print(json.dumps(seen))
    assert (summary["strategy"], summary["instance"], summary["downtime_s"]) == ("blue-green", "vllm-b", 0.0)
    assert back["strategy"] == "blue-green" and "both instances fit" in back["strategy_reason"]
    assert back["instance"] == "vllm"
    assert seen["chats"] > 10 and seen["streams"] >= 2, seen
    assert seen["failed"] == 0 and seen["truncated"] == 0, seen
    assert seen["streams_across_cut_over"] >= 1, seen

    assert _services(docker_client, shared_site.project) == ["vllm", "webui"]
    _hand_run_up_changes_nothing(shared_site, docker_client)
    status = json.loads(shared_site.controller("status", "--json").stdout)
    assert status["model"] == "tiny-a" and set(status["services"]) == {"vllm", "webui"}
    # Plan, then verify (issue 14): the planned KV tokens match vLLM's own start-up figure, read
    # here straight from the container's log.
    labels = [f"{harness.PROJECT_LABEL}={shared_site.project}", "com.docker.compose.service=vllm"]
    (vllm,) = docker_client.containers.list(filters={"label": labels})
    vllm_log = vllm.logs().decode(errors="replace")
    logged = [int(n.replace(",", "")) for n in re.findall(r"KV cache size: ([\d,]+) tokens", vllm_log)]
    kv = status["kv_tokens"]
    assert logged and kv["logged"] == logged[-1], (kv, logged)
    assert abs(kv["planned"] - kv["logged"]) <= 0.01 * kv["logged"], kv
    with WebUI(shared_site.url) as webui:
        session = admin_session(shared_site, webui)
        assert webui.serving_config(session.token) == ("tiny-a", "native")
        assert webui.model_ids(session.token) == ["tiny-a"]
        assert chat_title(shared_site.url, session.token, chat_id) == "before blue-green"


def test_a_new_model_that_fails_before_the_cut_over_leaves_the_old_one_serving(shared_site, docker_client):
    assert shared_site.controller("up", "tiny-a").returncode == 0
    before = _containers(docker_client, shared_site.project)
    failed = shared_site.controller("switch", "tiny-broken", "--strategy", "blue-green")
    assert failed.returncode == 1, failed.stderr
    message = " ".join(failed.stderr.split())
    assert "'tiny-broken' did not start beside 'tiny-a', which kept serving throughout" in message
    assert "greater than the derived max_model_len" in failed.stderr  # vLLM's own message
    # The old container is the same one, never restarted; the new one is gone.
    assert _containers(docker_client, shared_site.project) == before
    with WebUI(shared_site.url) as webui:
        session = admin_session(shared_site, webui)
        assert webui.model_ids(session.token) == ["tiny-a"]
        assert webui.chat(session.token, "tiny-a", "hello", max_tokens=2, as_ui=True)
    _hand_run_up_changes_nothing(shared_site, docker_client)


def _both_instances_in_status(site) -> dict:
    status = json.loads(site.controller("status", "--json").stdout)
    if "vllm-b" not in status["services"]:
        raise NotReady(f"status lists {sorted(status['services'])}")
    return status


def test_status_shows_both_instances_mid_switch_and_down_leaves_none(shared_site, docker_client):
    assert shared_site.controller("up", "tiny-a").returncode == 0
    switching = harness.controller_process(shared_site.root, "switch", "tiny-b", "--strategy", "blue-green")
    try:
        status = wait_for("status listing the new instance", lambda: _both_instances_in_status(shared_site),
                          deadline_s=300, interval_s=0.5)  # fmt: skip
    finally:
        _out, err = switching.communicate(timeout=900)
    assert switching.returncode == 0, err
    assert status["pending"]["in_progress"] is True and status["pending"]["target"] == "tiny-b"
    assert status["services"]["vllm"]["profile"] == "tiny-a"  # the active one, still serving
    assert status["services"]["vllm-b"]["profile"] == "tiny-b"
    assert _services(docker_client, shared_site.project) == ["vllm-b", "webui"]
    logs = shared_site.controller("logs", "vllm")
    assert logs.returncode == 0 and "vllm-b" in logs.stdout + logs.stderr
    down = shared_site.controller("down")
    assert down.returncode == 0, down.stderr
    assert _services(docker_client, shared_site.project) == []
    # And `up` starts again from the first slot.
    assert shared_site.controller("up", "tiny-a").returncode == 0
    assert _services(docker_client, shared_site.project) == ["vllm", "webui"]


# Last: it leaves tiny-b serving and SWITCH_RESERVE_GIB in .env.
def test_auto_recreates_when_the_pair_does_not_fit_and_says_why(shared_site, docker_client):
    assert shared_site.controller("up", "tiny-a").returncode == 0
    # Reserve more host memory than the machine has: the planner says the pair does not fit.
    write_env_values(shared_site.site.env_file, {"SWITCH_RESERVE_GIB": "4096"}, overwrite=True)
    refused = shared_site.controller("switch", "tiny-b", "--strategy", "blue-green")
    assert refused.returncode == 2 and "both instances do not fit" in refused.stderr, refused.stderr
    summary = _switch(shared_site, "tiny-b")
    assert summary["strategy"] == "recreate" and summary["downtime_s"] > 0
    assert (
        "both instances do not fit" in summary["strategy_reason"] and "4096 GiB reserve" in summary["strategy_reason"]
    )
    assert _services(docker_client, shared_site.project) == ["vllm", "webui"]

"""`controller switch` on the real stack: users and chats survive, failures roll back, runs serialise.

The concurrency test runs on the suite's shared stack (conftest.py `shared_site`). The first test
has a stack of its own (its many sign-ins would count against Open WebUI's limit of 15 per e-mail
in 3 minutes on the shared stack) and moves the active vLLM into the second slot (`vllm-b`) first:
a recreate switch there used to fail Open WebUI's chat path (500, "Server Connection Error"; Open
WebUI kept the old container's address, see the README), so it is the regression test of that fix.
The last test breaks its stack on purpose."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from controller.config.envfile import write_env_values
from controller.errors import NotReady
from controller.journal import JournalStore
from controller.phases import wait_for
from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration.webui_api import admin_session, assert_serving, chat_title, create_chat

pytestmark = [pytest.mark.integration, pytest.mark.stack]


def _active_slot(site) -> str:
    status = json.loads(site.controller("status", "--json").stdout)
    assert status["model"] == "tiny-a", status
    return status["services"]["vllm"]["service"]


def _up(site, model: str = "tiny-a") -> None:
    result = site.controller("up", model)
    assert result.returncode == 0, result.stderr


def test_switch_keeps_users_and_chats_and_a_broken_target_rolls_back(test_site, docker_client):
    site = test_site
    _up(site)
    if _active_slot(site) == "vllm":  # into the second slot, then back to tiny-a by recreate
        assert site.controller("switch", "tiny-b", "--strategy", "blue-green").returncode == 0
        assert site.controller("switch", "tiny-a", "--strategy", "recreate").returncode == 0
    assert _active_slot(site) == "vllm-b"
    with WebUI(site.url) as webui:
        session = admin_session(site, webui)
        chat_id = create_chat(site.url, session.token, "before the switch")

    switched = site.controller("switch", "tiny-b", "--strategy", "recreate", "--json")
    assert switched.returncode == 0, switched.stderr
    summary = json.loads(switched.stdout)
    assert summary["previous"] == "tiny-a" and summary["model"] == "tiny-b"
    load, downtime = summary["vllm"]["load_time_s"], summary["downtime_s"]
    harness.TIMINGS["switch: new model load time"] = load
    harness.TIMINGS["switch: chat downtime"] = downtime
    assert 0 < load <= downtime

    # The rendered file describes what runs: the README's hand-run command changes nothing.
    running = {
        c.name: c.id
        for c in docker_client.containers.list(filters={"label": f"{harness.PROJECT_LABEL}={site.project}"})
    }
    by_hand = subprocess.run(
        ["docker", "compose", "--env-file", ".env", "-f", "compose/docker-compose.yml", "up", "-d"],
        cwd=site.root, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert by_hand.returncode == 0, by_hand.stderr
    after = {
        c.name: c.id
        for c in docker_client.containers.list(filters={"label": f"{harness.PROJECT_LABEL}={site.project}"})
    }
    assert after == running, "a hand-run `docker compose up -d` after the switch recreated a container"

    with WebUI(site.url) as webui:
        session = admin_session(site, webui)
        # tiny-b has no tool-call parser: Open WebUI must offer tools by prompt, not in the request.
        assert webui.serving_config(session.token) == ("tiny-b", "legacy")
        assert chat_title(site.url, session.token, chat_id) == "before the switch"
    assert_serving(site, "tiny-b")

    broken = site.controller("switch", "tiny-broken", "--strategy", "recreate")
    assert broken.returncode == 1, broken.stderr
    assert "rolled back" in broken.stderr and "'tiny-b' is serving again" in broken.stderr
    assert "greater than the derived max_model_len" in broken.stderr
    assert_serving(site, "tiny-b")
    with WebUI(site.url) as webui:
        assert webui.serving_config(admin_session(site, webui).token) == ("tiny-b", "legacy")

    state = JournalStore(site.site.state_dir).load()
    assert state.active_profile == "tiny-b" and state.pending is None
    last = state.history[-1]
    assert (last.action, last.profile, last.outcome, last.previous) == (
        "switch",
        "tiny-broken",
        "rolled_back",
        "tiny-b",
    )
    assert "derived" in last.error or "max model len" in last.error
    status = json.loads(site.controller("status", "--json").stdout)
    assert status["model"] == "tiny-b"
    assert [e["outcome"] for e in status["history"]][-2:] == ["ok", "rolled_back"]


def _lock_owner(site) -> str:
    owner = site.site.state_dir / "controller.lock.owner"
    if not owner.exists():
        raise NotReady("no run holds the lock yet")
    return owner.read_text()


def test_concurrent_switches_do_not_interleave(shared_site):
    _up(shared_site)
    first = harness.controller_process(shared_site.root, "switch", "tiny-b")
    try:
        owner = wait_for("first switch holds the lock", lambda: _lock_owner(shared_site), deadline_s=60, interval_s=0.1)
        assert "switch tiny-b" in owner
        second = shared_site.controller("switch", "tiny-a", "--lock-timeout", "3")
        assert second.returncode == 1, second.stderr
        assert "waiting for another controller run" in second.stderr
        assert "holds the lock" in second.stderr and "switch tiny-b" in second.stderr
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert_serving(shared_site, "tiny-b")


def test_when_the_rollback_fails_too_both_causes_are_reported_and_recorded(test_site, tiny_model, tmp_path):
    # tiny-a serves a copy of the model that is broken once it runs, so the rollback cannot bring it back.
    model_copy = tmp_path / "tiny-a-model"
    shutil.copytree(tiny_model, model_copy)
    catalog = yaml.safe_load(harness.TEST_CATALOG.read_text())
    for profile in catalog["profiles"].values():
        profile["model"] = str(tiny_model)
    catalog["profiles"]["tiny-a"]["model"] = str(model_copy)
    catalog_file = tmp_path / "catalog.yaml"
    catalog_file.write_text(yaml.safe_dump(catalog))
    write_env_values(test_site.site.env_file, {"CONTROLLER_CATALOG": str(catalog_file)}, overwrite=True)
    _up(test_site)
    (model_copy / "config.json").rename(model_copy / "config.json.moved")

    result = test_site.controller("switch", "tiny-broken", "--strategy", "recreate")
    assert result.returncode == 1, result.stderr
    message = " ".join(result.stderr.split())
    assert "the switch to 'tiny-broken' failed" in message
    assert "greater than the derived max_model_len" in result.stderr or "max model len above derived" in message
    assert "and the rollback to 'tiny-a' failed too" in message

    state = JournalStore(test_site.site.state_dir).load()
    assert state.active is None and state.pending is None
    last = state.history[-1]
    assert (last.profile, last.outcome, last.previous) == ("tiny-broken", "rollback_failed", "tiny-a")
    assert "rollback:" in last.error

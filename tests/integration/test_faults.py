"""Faults nobody plans, on the real stack: vLLM or Open WebUI killed mid-`up` or mid-`switch`, and
the controller itself killed mid-switch.

Each test asserts a clear message and exit code, a stack that serves again (sign-in and a chat
through Open WebUI, shaped like the browser's) with no repair or the one command the README's
"When things break" names, and the users and chats made before the fault still there.

One stack serves every test in this module (one `up` instead of four): the tests run in file order
and each leaves the stack serving. Every wait for the moment of a fault polls a condition.
"""

from __future__ import annotations

import json
import signal
import threading
import uuid
from dataclasses import dataclass

import httpx
import pytest

from controller.config.site import SiteConfig
from controller.deploy.spec import PROFILE_LABEL
from controller.errors import NotReady
from controller.journal import JournalStore
from controller.phases import wait_for
from controller.runtime import vllm_log as vllm_text
from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration.webui_api import admin_session, chat_title, create_chat

pytestmark = [pytest.mark.integration, pytest.mark.stack]

SERVICE_LABEL = "com.docker.compose.service"
USER_EMAIL = "user@example.com"
USER_PASSWORD = "a-long-user-password-1"


@dataclass
class Before:
    """What existed before the faults: every test checks it is still there."""

    chat_id: str
    chat_title: str


@pytest.fixture(scope="module")
def site(tmp_path_factory, docker_client, images, tiny_model):
    root = tmp_path_factory.mktemp("faults")
    project = f"{harness.TEST_PROJECT_PREFIX}faults-{uuid.uuid4().hex[:6]}"
    port = harness.free_port()
    env_file = root / ".env"
    harness.write_site_env(env_file, project=project, port=port, images=images, hf_cache=root / "hf-cache")
    yield harness.TestSite(SiteConfig(root=root, env_file=env_file), project, port)
    harness.remove_project(docker_client, project)


@pytest.fixture(scope="module")
def before(site) -> Before:
    up = site.controller("up", "tiny-a")
    assert up.returncode == 0, up.stderr
    with WebUI(site.url) as webui:
        token = admin_session(site, webui).token
        response = httpx.post(
            f"{site.url}/api/v1/auths/add", headers={"Authorization": f"Bearer {token}"}, timeout=30,
            json={"name": "User", "email": USER_EMAIL, "password": USER_PASSWORD, "role": "user"},
        )  # fmt: skip
        response.raise_for_status()
        return Before(create_chat(site.url, token, "made before the faults"), "made before the faults")


def _serving_with_data(site: harness.TestSite, before: Before, served: str) -> None:
    """A person can use the stack again, and nothing made before the faults is lost."""
    with WebUI(site.url) as webui:
        token = admin_session(site, webui).token
        assert served in webui.model_ids(token)
        assert webui.chat(token, served, "hello", max_tokens=3, as_ui=True)["choices"]
        assert chat_title(site.url, token, before.chat_id) == before.chat_title
        assert webui.signin(USER_EMAIL, USER_PASSWORD) is not None, "the user made before the faults is gone"


def _container(docker_client, project: str, **labels: str):
    wanted = [f"{harness.PROJECT_LABEL}={project}", *(f"{k}={v}" for k, v in labels.items())]
    found = docker_client.containers.list(filters={"label": wanted})
    if not found:
        raise NotReady(f"no running container with {labels} yet")
    return found[0]


def _loading_vllm(docker_client, project: str, profile: str):
    """The vLLM container of `profile` while it is running and still loading its weights."""
    container = _container(docker_client, project, **{PROFILE_LABEL: profile})
    if vllm_text.server_started(container.logs().decode("utf-8", errors="replace")):
        pytest.fail(f"the {profile} vLLM finished loading before the test could kill it")
    return container


class Run:
    """The real CLI in the background, its progress on stderr read as it comes."""

    def __init__(self, site: harness.TestSite, *args: str):
        self.process = harness.controller_process(site.root, *args)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True)
        self._reader.start()

    def in_phase(self, phase: str) -> None:
        """The CLI printed that `phase` started (without a terminal it prints `  ... PHASE`)."""
        if f"... {phase}\n" not in [line.lstrip() for line in list(self.lines)]:
            raise NotReady(f"the controller has not started phase '{phase}' yet")

    def finish(self) -> tuple[int, str]:
        """Exit code and stderr, each run of whitespace made one space (rich wraps long lines)."""
        code = self.process.wait(timeout=900)
        self._reader.join(timeout=60)
        self.process.stdout.close()
        return code, " ".join("".join(self.lines).split())


def _wait_loading(docker_client, site: harness.TestSite, run: Run, profile: str):
    """The moment to inject a fault: the controller waits for the weights of `profile`, and vLLM
    is still loading them."""

    def loading():
        run.in_phase("weights load")
        return _loading_vllm(docker_client, site.project, profile)

    return wait_for(f"{profile} vLLM loading", loading, deadline_s=180, interval_s=0.2)


def test_vllm_killed_while_up_waits_for_the_weights(site, before, docker_client):
    down = site.controller("down")
    assert down.returncode == 0, down.stderr
    starting = Run(site, "up", "tiny-a")
    try:
        _wait_loading(docker_client, site, starting, "tiny-a").kill()  # `docker kill`: SIGKILL
    finally:
        code, err = starting.finish()
    assert code == 1, err
    assert "the vLLM container was killed (SIGKILL) before it was ready" in err and "dmesg" in err
    failed = JournalStore(site.site.state_dir).load().history[-1]
    assert (failed.action, failed.outcome) == ("up", "failed") and "killed" in failed.error
    assert "vllm started" in failed.phases and "weights load" not in failed.phases, "it failed in weights load"

    again = site.controller("up", "tiny-a")  # the README's one command
    assert again.returncode == 0, again.stderr
    _serving_with_data(site, before, "tiny-a")


def _active_and_other(site: harness.TestSite) -> tuple[str, str]:
    """The model serving now and the one to switch to (each test leaves either serving)."""
    active = JournalStore(site.site.state_dir).load().active_profile
    assert active in ("tiny-a", "tiny-b"), f"the previous test left {active!r} serving"
    return active, "tiny-b" if active == "tiny-a" else "tiny-a"


def test_vllm_killed_while_a_switch_waits_for_the_new_model_rolls_back(site, before, docker_client):
    old, new = _active_and_other(site)
    switching = Run(site, "switch", new, "--strategy", "recreate")
    try:
        _wait_loading(docker_client, site, switching, new).kill()
    finally:
        code, err = switching.finish()
    assert code == 1, err
    assert "the vLLM container was killed" in err
    assert f"rolled back, '{old}' is serving again" in err
    state = JournalStore(site.site.state_dir).load()
    assert state.pending is None and state.active_profile == old
    assert (state.history[-1].profile, state.history[-1].outcome) == (new, "rolled_back")
    _serving_with_data(site, before, old)


def _pending(site: harness.TestSite) -> dict:
    pending = JournalStore(site.site.state_dir).load().pending
    if pending is None:
        raise NotReady("no pending change in the journal yet")
    return vars(pending)


def test_a_controller_killed_mid_switch_is_reported_and_the_next_switch_finishes(site, before, docker_client):
    old, new = _active_and_other(site)
    switching = Run(site, "switch", new, "--strategy", "blue-green")
    try:
        wait_for("the switch's pending record", lambda: _pending(site), deadline_s=60, interval_s=0.1)
        _wait_loading(docker_client, site, switching, new)
    finally:
        switching.process.send_signal(signal.SIGKILL)  # no handler, no cleanup: only the journal knows
        switching.finish()

    shown = site.controller("status")
    assert shown.returncode == 0, shown.stderr
    text = " ".join((shown.stdout + shown.stderr).split())
    assert f"`switch {new}` (pid {switching.process.pid}" in text and "did not finish" in text
    assert "the next `controller up` or `controller switch` rolls it back" in text
    status = json.loads(site.controller("status", "--json").stdout)
    assert status["pending"]["target"] == new and status["pending"]["in_progress"] is False
    assert status["model"] == old, "the old model kept serving beside the half-started one"

    resumed = site.controller("switch", new)
    assert resumed.returncode == 0, resumed.stderr
    assert f"pid {switching.process.pid}" in resumed.stderr and "did not finish; rolling it back" in resumed.stderr
    state = JournalStore(site.site.state_dir).load()
    assert state.pending is None and state.active_profile == new
    outcomes = [(e.profile, e.outcome) for e in state.history[-2:]]
    assert outcomes == [(new, "rolled_back"), (new, "ok")]
    _serving_with_data(site, before, new)


def test_open_webui_killed_during_a_switch(site, before, docker_client):
    _, new = _active_and_other(site)
    # Recreate: the outage is already on while vLLM loads, the worst moment to lose Open WebUI too.
    switching = Run(site, "switch", new, "--strategy", "recreate")
    try:
        _wait_loading(docker_client, site, switching, new)
        _container(docker_client, site.project, **{SERVICE_LABEL: "webui"}).kill()
    finally:
        code, err = switching.finish()
    assert code == 0, err
    assert "Open WebUI was not running (exited, exit code 137); started it again" in err, err
    assert JournalStore(site.site.state_dir).load().active_profile == new
    _serving_with_data(site, before, new)

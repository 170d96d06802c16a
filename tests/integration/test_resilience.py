"""Faults nobody plans for, on one real stack shared by the module (in this order): the Docker
engine restarted under it, a full disk when a switch writes the journal, a switch under an
independent prober that leaves nothing behind (the long soak is benchmarks/bench_soak.py), a
secrets audit of everything the stack and the controller left behind, and `up`, `switch` and
`down` started at the same moment.

The site directory (.env, compose/, .controller/) is a small tmpfs of its own, so that the
full-disk test fills the filesystem the controller really writes to.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from controller.config.env_keys import SECRET_KEYS
from controller.config.envfile import read_env_file
from controller.config.site import SiteConfig
from controller.errors import NotReady
from controller.journal import JournalStore
from controller.phases import wait_for
from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration.soak import ControllerRun, Soak, changed_counts, dockerd_pid, run_controller
from tests.integration.webui_api import admin_session, chat_title, create_chat

pytestmark = [pytest.mark.integration, pytest.mark.stack, pytest.mark.serial]

PAGE = os.sysconf("SC_PAGE_SIZE")
# A made-up token: HF_TOKEN reaches vLLM's environment, so the audit covers it too.
FAKE_HF_TOKEN = "hf_" + uuid.uuid4().hex


class FaultSite(harness.TestSite):
    """The shared stack's site; every controller command run through it is kept for the audit."""

    runs: list[ControllerRun]

    def run(self, *args: str, timeout: float = 900) -> ControllerRun:
        result = run_controller(self.root, *args, timeout=timeout)
        self.runs.append(result)
        return result

    def status(self) -> dict:
        result = self.run("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    @property
    def journal(self) -> Path:
        return self.site.state_dir / "journal.json"

    def project_containers(self, client) -> list:
        return client.containers.list(all=True, filters={"label": f"{harness.PROJECT_LABEL}={self.project}"})

    def containers(self, client) -> dict[str, str]:
        return {c.name: c.id for c in self.project_containers(client)}

    def chat_works(self, model: str) -> None:
        with WebUI(self.url) as webui:
            session = admin_session(self, webui)
            assert webui.model_ids(session.token) == [model]
            assert webui.chat(session.token, model, "hello", max_tokens=2, as_ui=True)


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, docker_client, images, tiny_model) -> Iterator[FaultSite]:
    base = tmp_path_factory.mktemp("faults")
    root = base / "site"
    root.mkdir()
    _sh("mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(root))
    project = f"{harness.TEST_PROJECT_PREFIX}faults-{uuid.uuid4().hex[:6]}"
    port = harness.free_port()
    env_file = root / ".env"
    harness.write_site_env(env_file, project=project, port=port, images=images, hf_cache=base / "hf-cache")
    with env_file.open("a") as handle:
        handle.write(f"HF_TOKEN={FAKE_HF_TOKEN}\n")
    site = FaultSite(SiteConfig(root=root, env_file=env_file), project, port)
    site.runs = []
    try:
        up = site.run("up", "tiny-a", "--json")
        assert up.returncode == 0, up.stderr
        harness.TIMINGS["faults: stack up (tiny-a)"] = up.seconds
        yield site
    finally:
        _ensure_engine()  # whatever a test did to the engine, leave it running
        harness.remove_project(docker_client, project)
        subprocess.run(["umount", str(root)], check=False, capture_output=True)


# ----- the Docker engine restarted under a serving stack ------------------------------------


def _ensure_engine() -> None:
    """Start the engine the way CI does (scripts/ensure-docker.sh; it returns at once when it runs).
    Its own session: dockerd must outlive this test process and its process group."""
    done = subprocess.run(["bash", str(harness.REPO / "scripts" / "ensure-docker.sh")], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180, start_new_session=True, check=False)  # fmt: skip
    assert done.returncode == 0, f"the Docker engine did not start again:\n{done.stderr}"


def _gone(pid: int) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    raise NotReady(f"dockerd (pid {pid}) is still stopping")


def _serving_again(site: FaultSite, model: str) -> dict:
    status = site.status()
    states = {name: (s["state"], s["health"]) for name, s in status["services"].items()}
    if status["model"] != model or any(state != ("running", "healthy") for state in states.values()):
        raise NotReady(f"status says {status['model']}, {states}")
    return status


def test_engine_restart_brings_the_stack_back_and_up_is_a_fast_no_op(stack, docker_client):
    with WebUI(stack.url) as webui:
        chat_id = create_chat(stack.url, admin_session(stack, webui).token, "before the engine restart")
    before = stack.containers(docker_client)
    pid = dockerd_pid()
    assert pid is not None, "no dockerd process on this host"
    stopped_at = time.time()
    try:
        os.kill(pid, signal.SIGTERM)
        wait_for("dockerd stops", lambda: _gone(pid), deadline_s=120, interval_s=0.5)
        # With the engine down, `status` still answers: the journal's view, each service unknown.
        down = stack.status()
        assert {s["state"] for s in down["services"].values()} == {"unknown"}, down
        assert down["model"] is None and down["pending"] is None
    finally:
        _ensure_engine()
    restarted = time.monotonic()
    status = wait_for("stack serves again", lambda: _serving_again(stack, "tiny-a"), deadline_s=240, interval_s=1)
    harness.TIMINGS["faults: engine restart -> status healthy"] = round(time.monotonic() - restarted, 1)
    assert status["pending"] is None

    # The restart policy brought the same containers back; nothing was recreated.
    assert stack.containers(docker_client) == before
    for container in stack.project_containers(docker_client):
        started = container.attrs["State"]["StartedAt"]
        assert started > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stopped_at)), (container.name, started)

    up = stack.run("up", "tiny-a", "--json")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["noop"] is True
    harness.TIMINGS["faults: up after engine restart (no-op)"] = up.seconds
    assert up.seconds < 20, f"the no-op up took {up.seconds} s"
    assert stack.containers(docker_client) == before
    stack.chat_works("tiny-a")
    with WebUI(stack.url) as webui:
        assert chat_title(stack.url, admin_session(stack, webui).token, chat_id) == "before the engine restart"


# ----- a full disk when the journal is written --------------------------------------------


@contextmanager
def _full_filesystem(directory: Path, *, leave: int) -> Iterator[None]:
    """Fill the filesystem holding `directory` until only `leave` bytes are free; empty it after."""
    filler = directory / ".filler"
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    try:
        with filler.open("wb") as handle:
            handle.write(b"\0" * (free - leave))
        stats = os.statvfs(directory)
        assert stats.f_bavail * stats.f_frsize == leave
        yield
    finally:
        filler.unlink(missing_ok=True)


def test_a_full_disk_refuses_the_switch_before_anything_changes(stack, docker_client):
    journal = stack.journal.read_bytes()
    assert len(journal) > PAGE, "the journal must need more than the one page left free"
    before = stack.containers(docker_client)
    # One page free: the lock owner's line fits, the journal's pending change does not.
    with _full_filesystem(stack.root, leave=PAGE):
        refused = stack.run("switch", "tiny-b")
    assert refused.returncode == 1, refused.stderr
    message = " ".join(refused.stderr.split())
    assert f"cannot write {stack.journal}: No space left on device (journal.json is unchanged)" in message
    assert "is full: free some space and run the command again" in message
    assert "Traceback" not in refused.stderr and "internal error" not in refused.stderr
    assert stack.journal.read_bytes() == journal
    assert not [p.name for p in stack.site.state_dir.iterdir() if p.name.startswith(".journal.json.")]
    assert stack.containers(docker_client) == before
    assert stack.status()["model"] == "tiny-a"
    stack.chat_works("tiny-a")


# ----- the soak and the secrets audit --------------------------------------------------------


# One switch in CI: the prober, the leftover counts and the journal are checked the same way for
# any number, and benchmarks/bench_soak.py runs the same code for as many as you like (README).
SOAK_SWITCHES = 1


def test_soak_switches_lose_no_chat_and_leave_nothing_behind(stack, docker_client, tmp_path):
    settings = stack.settings()
    soak = Soak(stack.root, stack.project, stack.url, settings.webui_admin_email,
                settings.webui_admin_password.get_secret_value(), docker_client, runs=stack.runs)  # fmt: skip
    history = len(JournalStore(stack.site.state_dir).load().history)
    report = soak.run(SOAK_SWITCHES, tmp_path / "probe.json")
    print(json.dumps(report))
    harness.TIMINGS[f"faults: soak, {SOAK_SWITCHES} switches"] = sum(r.seconds for r in stack.runs[-SOAK_SWITCHES:])
    assert report["switches"] == SOAK_SWITCHES and report["final_model"] == "tiny-b"
    assert report["chats"] > 10 and report["failed_chats"] == 0 and report["truncated_streams"] == 0, report
    assert changed_counts(report) == {}, report
    assert report["before"]["containers"] == 2 and report["controller_peak_rss_mib"] > 0
    journal = JournalStore(stack.site.state_dir).load()
    assert journal.pending is None and journal.active.profile == "tiny-b"
    added = journal.history[history:]
    assert [(e.action, e.outcome) for e in added] == [("switch", "ok")] * SOAK_SWITCHES
    stack.chat_works("tiny-b")


def test_no_secret_in_inspect_top_logs_output_compose_or_journal(stack, docker_client):
    env = read_env_file(stack.site.env_file)
    secrets = {key: env[key] for key in SECRET_KEYS if env.get(key)}
    assert set(secrets) == {"WEBUI_ADMIN_PASSWORD", "WEBUI_SECRET_KEY", "VLLM_API_KEY", "HF_TOKEN"}
    assert len(stack.runs) >= 8, "the audit needs the earlier tests' commands (up, switches, status)"
    places: dict[str, str] = {}
    environments = ""
    for container in stack.project_containers(docker_client):
        attrs = json.loads(json.dumps(container.attrs))
        environments += "\n".join(attrs["Config"].pop("Env"))
        places[f"docker inspect {container.name} (all but Config.Env)"] = json.dumps(attrs)
        places[f"docker top {container.name}"] = json.dumps(harness.container_processes(container))
        places[f"logs of {container.name}"] = container.logs().decode(errors="replace")
    for run in stack.runs:
        places[f"output of `controller {' '.join(run.args)}`"] = run.stdout + run.stderr
    for directory in (stack.site.compose_dir, stack.site.state_dir):
        for path in directory.rglob("*"):
            if path.is_file():
                places[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    leaks = [f"{key} in {where}" for key, value in secrets.items() for where, text in places.items() if value in text]
    assert leaks == []
    # The values audited are the real ones: each is where it belongs, the containers' environment.
    assert all(value in environments for value in secrets.values())


# ----- up, switch and down at the same moment ------------------------------------------------


def _sequential(order: tuple[str, ...], model: str | None) -> tuple[dict[str, str], list[str], str | None]:
    """If the commands ran one after another in `order`: each one's outcome (ok, noop, refused),
    the actions the journal records (a no-op and a refusal record nothing), and the final model."""
    outcomes, recorded = {}, []
    for command in order:
        verb, _, target = command.partition(" ")
        if verb == "up" and model not in (None, target):
            outcomes[command] = "refused"  # `up` does not change the model
        elif verb == "up" and model == target:
            outcomes[command] = "noop"
        elif verb == "switch" and model is None:
            outcomes[command] = "refused"  # nothing to switch
        else:
            outcomes[command], model = "ok", (target or None)
            recorded.append(verb)
    return outcomes, recorded, model


def _outcome(returncode: int, stdout: str) -> str:
    if returncode == 2:
        return "refused"
    assert returncode == 0, f"exit {returncode}"
    return "noop" if json.loads(stdout).get("noop") else "ok"


def test_up_switch_and_down_at_once_run_one_after_another(stack, docker_client):
    model = stack.status()["model"]
    other = "tiny-b" if model == "tiny-a" else "tiny-a"
    commands = (f"up {model}", f"switch {other}", "down")
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    processes = {c: harness.controller_process(stack.root, *c.split(), "--json") for c in commands}
    outputs = {c: p.communicate(timeout=900) for c, p in processes.items()}
    stack.runs.extend(ControllerRun(tuple(c.split()), processes[c].returncode, *outputs[c], 0, 0) for c in commands)
    for command, (_out, err) in outputs.items():
        assert "Traceback" not in err and "internal error" not in err, (command, err)
    outcomes = {c: _outcome(processes[c].returncode, outputs[c][0]) for c in commands}
    journal = JournalStore(stack.site.state_dir).load()  # parses, and is of this version
    assert journal.pending is None
    events = sorted((e for e in journal.history if e.started >= started), key=lambda e: e.started)
    for earlier, later in itertools.pairwise(events):
        assert later.started >= earlier.finished, f"{earlier} overlaps {later}"
    # Serialised: what each command did and what the journal recorded are those of one order of the three.
    recorded = [e.action for e in events]
    predicted = [_sequential(order, model) for order in itertools.permutations(commands)]
    finals = [final for expected, actions, final in predicted if (expected, actions) == (outcomes, recorded)]
    print(f"at once: {outcomes}, the journal recorded {recorded}")
    assert len(finals) == 1, (outcomes, recorded, outputs)
    final = finals[0]
    status = stack.status()
    if final is None:
        assert journal.active is None and status["model"] is None
        assert all(s["state"] == "absent" for s in status["services"].values()), status
        return
    assert journal.active.profile == final and status["model"] == final
    assert stack.site.compose_file.read_text(encoding="utf-8") == journal.active.text
    stack.chat_works(final)

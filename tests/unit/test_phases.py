"""The phase table, its deadlines (defaults, .env, options) and the runner that waits on them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from controller.errors import NotReady, SettingsError, StartupFailed
from controller.phases import PHASES, VLLM_PHASES, VLLM_STARTED, WEIGHTS_LOAD, Deadlines, PhaseRunner, Reporter
from controller.runtime.vllm_probe import VllmProbe


class FakeEngine:
    """One vLLM container that exited right after it started."""

    def __init__(self, status: str, log: str = "Traceback ...\nSystemExit: 1\n", *, exit_code: int = 1,
                 oom_killed: bool = False, restarts: int = 0):  # fmt: skip
        state = {"StartedAt": "2026-11-26T00:00:00.000000000Z", "ExitCode": exit_code, "OOMKilled": oom_killed}
        attrs = {"State": state, "RestartCount": restarts}
        self.box = SimpleNamespace(status=status, attrs=attrs, reload=lambda: None)
        self.log = log

    def container(self, project: str, service: str):
        return self.box

    def logs_since(self, container, since=None) -> str:
        return self.log


def test_phase_names_are_unique_and_each_has_a_deadline_setting():
    names = [p.name for p in PHASES]
    assert len(names) == len(set(names))
    assert {p.env_key for p in PHASES} >= {"DEADLINE_WEIGHTS_LOAD_S", "DEADLINE_VLLM_STARTED_S"}
    assert all(p.default_deadline_s > 0 for p in PHASES)


def test_vllm_dying_in_its_first_phase_fails_in_a_vllm_phase_so_it_is_stopped():
    # Before phases were data, this failure carried "vllm container", a name in no phase list, so
    # a vLLM that died at once was left crash-looping.
    probe = VllmProbe(FakeEngine("exited"), "p", "key", port=8000)
    with pytest.raises(StartupFailed) as caught:
        probe.check_running()
    assert caught.value.phase == VLLM_STARTED.name and caught.value.phase in VLLM_PHASES


@pytest.mark.parametrize(
    ("status", "exit_code", "oom_killed", "says"),
    [
        ("exited", 1, False, "the vLLM container stopped (exit code 1)"),
        ("exited", 137, False, "the vLLM container was killed (SIGKILL) before"),
        ("restarting", 137, False, "was killed (SIGKILL) and Docker restarted it"),
        ("exited", 137, True, "killed for lack of memory"),
    ],
)
def test_a_vllm_that_ended_while_loading_says_how(status, exit_code, oom_killed, says):
    # A SIGKILL leaves nothing in vLLM's log: "exit code 137" alone sent operators to read a log
    # that cannot explain it.
    engine = FakeEngine(status, "Loading weights ...\n", exit_code=exit_code, oom_killed=oom_killed)
    probe = VllmProbe(engine, "p", "key", port=8000)
    with pytest.raises(StartupFailed) as caught:
        probe.check_loaded()
    assert says in caught.value.message and caught.value.phase == WEIGHTS_LOAD.name
    assert ("dmesg" in caught.value.hint) == (exit_code == 137 and not oom_killed)


def test_deadlines_come_from_the_table_then_env_then_options():
    deadlines = Deadlines().from_env({"DEADLINE_WEIGHTS_LOAD_S": "3600", "DEADLINE_CHAT_PATH_S": ""}, ".env")
    assert deadlines[WEIGHTS_LOAD] == 3600 and deadlines[VLLM_STARTED] == VLLM_STARTED.default_deadline_s
    overridden = deadlines.overridden({WEIGHTS_LOAD.name: 90.0, VLLM_STARTED.name: None}, lambda p: "--timeout")
    assert overridden[WEIGHTS_LOAD] == 90 and overridden[VLLM_STARTED] == VLLM_STARTED.default_deadline_s


@pytest.mark.parametrize("text", ["soon", "-1", "0", "nan", "inf", "1e9"])
def test_a_bad_deadline_in_env_names_the_setting(text):
    with pytest.raises(SettingsError) as caught:
        Deadlines().from_env({"DEADLINE_WEIGHTS_LOAD_S": text}, "/srv/.env")
    assert "DEADLINE_WEIGHTS_LOAD_S" in caught.value.message and "/srv/.env" in caught.value.message


def test_runner_times_reports_and_gives_up_at_the_phase_deadline():
    seen: list[str] = []

    class Recorder(Reporter):
        def phase_start(self, name: str) -> None:
            seen.append(f"start {name}")

        def phase_done(self, name: str, seconds: float) -> None:
            seen.append(f"done {name}")

    runner = PhaseRunner(Recorder(), Deadlines().overridden({VLLM_STARTED.name: 0.3}, lambda p: "test"))
    assert runner.run(WEIGHTS_LOAD, lambda: 7) == 7
    with pytest.raises(StartupFailed) as caught:
        runner.wait(VLLM_STARTED, lambda: (_ for _ in ()).throw(NotReady("not yet")))
    assert caught.value.phase == VLLM_STARTED.name and "0.3 s" in caught.value.message
    assert seen == ["start weights load", "done weights load", "start vllm started"]
    assert set(runner.timings) == {"weights load"}

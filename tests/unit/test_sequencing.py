"""up, switch, rollback, an interrupted switch, a failed rollback and recovery after SIGKILL,
driven against the in-memory target (tests/unit/fakes.py): the order of side effects and what the
journal records. The real-stack tests in tests/integration cover the same paths on Docker."""

from __future__ import annotations

import pytest

from controller.errors import ChatRefused, DockerUnavailable, PreflightError, RuntimeFailure, SwitchFailed
from controller.journal import JournalStore, Pending
from controller.lifecycle.status import stack_status
from controller.lifecycle.switch_command import switch
from tests.unit.fake_stack import make_stack, read_journal


def test_up_starts_waits_seeds_and_records(site, target):
    result = make_stack(site, target).up("tiny-a")
    assert result["noop"] is False
    assert target.calls == [
        "preflight", "write tiny-a", "pull", "apply", "wait vllm tiny-a", "wait webui", "signin",
        "webui default tiny-a legacy", "chat tiny-a as ui",
    ]  # fmt: skip
    recorded = read_journal(site)
    assert recorded.active.profile == "tiny-a" and recorded.active.text == target.text
    assert [(e.action, e.outcome) for e in recorded.history] == [("up", "ok")]
    assert "VLLM_API_KEY=" in site.env_file.read_text()  # stored only after preflight passed


def test_second_up_is_a_noop_that_still_proves_the_chat_path(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    target.calls.clear()
    assert stack.up("tiny-a")["noop"] is True
    assert "wait vllm tiny-a" not in target.calls and "chat tiny-a as ui" in target.calls


def test_up_refused_in_preflight_writes_nothing(site, target):
    before = site.env_file.read_bytes()
    target.preflight_error = PreflightError("port 7860 (WEBUI_PORT) is in use")
    with pytest.raises(PreflightError):
        make_stack(site, target).up("tiny-a")
    assert site.env_file.read_bytes() == before
    assert target.text is None and not JournalStore(site.state_dir).path.exists()


def test_up_failing_in_a_vllm_phase_stops_vllm_and_records_the_failure(site, target):
    with pytest.raises(RuntimeFailure):
        make_stack(site, target).up("tiny-broken")
    assert target.calls[-1] == "stop vllm"
    assert [(e.action, e.outcome) for e in read_journal(site).history] == [("up", "failed")]


def test_switch_recreates_vllm_and_records_the_new_active_model(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    target.calls.clear()
    result = switch(stack, "tiny-b")
    assert result["previous"] == "tiny-a" and result["strategy"] == "recreate"
    assert target.calls == [
        "preflight", "signin", "write tiny-b", "pull", "recreate tiny-b", "wait vllm tiny-b",
        "webui default tiny-b legacy", "chat tiny-b as ui",
    ]  # fmt: skip
    recorded = read_journal(site)
    assert recorded.active.profile == "tiny-b" and recorded.pending is None
    assert (recorded.history[-1].outcome, recorded.history[-1].previous) == ("ok", "tiny-a")


@pytest.mark.parametrize("strategy", ["recreate", "blue-green"])
def test_open_webui_killed_while_vllm_loads_is_started_again_and_the_switch_finishes(site, target, strategy):
    warnings: list[str] = []
    stack = make_stack(site, target, strategy)
    stack.reporter.warn = warnings.append
    stack.up("tiny-a")
    target.kill_webui_on.add("tiny-b")
    result = switch(stack, "tiny-b")
    assert result["strategy"] == strategy and target.serving == "tiny-b"
    after_load = target.calls[target.calls.index("wait vllm tiny-b") + 1 :]
    assert after_load[0] == "start webui" and "chat tiny-b as ui" in after_load
    assert any("Open WebUI was not running (exited, exit code 137); started it again" in w for w in warnings)
    assert read_journal(site).history[-1].outcome == "ok"


def test_failed_switch_rolls_back_to_the_previous_deployment(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    before = target.text
    with pytest.raises(SwitchFailed, match="rolled back, 'tiny-a' is serving again"):
        switch(stack, "tiny-broken")
    assert target.text == before and target.serving == "tiny-a"
    # Open WebUI's default never left tiny-a (the switch failed before it), so it is not written again.
    after_failure = target.calls[target.calls.index("wait vllm tiny-broken") + 1 :]
    assert after_failure == ["write tiny-a", "recreate tiny-a", "wait vllm tiny-a", "chat tiny-a as ui", "write tiny-a"]
    recorded = read_journal(site)
    assert recorded.active.profile == "tiny-a" and recorded.pending is None
    assert (recorded.history[-1].profile, recorded.history[-1].outcome) == ("tiny-broken", "rolled_back")


def test_ctrl_c_during_a_switch_rolls_back_and_records_it(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    target.interrupt_on.add("tiny-b")
    with pytest.raises(SwitchFailed, match="was interrupted"):
        switch(stack, "tiny-b")
    assert target.serving == "tiny-a"
    assert read_journal(site).history[-1].outcome == "rolled_back"


def test_failed_pull_restores_the_file_touches_no_container_and_is_recorded(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    before = target.text
    target.fail_pull = True
    with pytest.raises(RuntimeFailure, match="could not be pulled"):
        switch(stack, "tiny-b")
    assert target.text == before and not any(c.startswith("recreate") for c in target.calls)
    recorded = read_journal(site)
    assert recorded.history[-1].outcome == "failed" and recorded.active.profile == "tiny-a"


def test_failed_rollback_reports_both_causes_and_clears_the_active_model(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    target.broken.add("tiny-a")  # the old model cannot come back either
    with pytest.raises(SwitchFailed) as caught:
        switch(stack, "tiny-broken")
    assert "tiny-broken" in caught.value.message and "rollback" in caught.value.message
    recorded = read_journal(site)
    assert recorded.history[-1].outcome == "rollback_failed" and recorded.active is None and recorded.pending is None


def test_a_switch_killed_mid_way_is_reported_and_rolled_back_by_the_next_run(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    store = JournalStore(site.state_dir)
    active = read_journal(site).active
    tiny_b = stack.catalog.get("tiny-b")
    # What SIGKILL leaves: the pending change is on disk, no outcome; the new vLLM half started.
    # What the transaction writes before it touches anything; a killed process writes nothing after.
    store.update(lambda j: setattr(j, "pending", Pending("switch", tiny_b.name, "t0", 2**22 + 12345, active)))
    target.write(stack.prepare("tiny-b").compose_text)
    target.recreate_vllm(None)
    status = stack_status(make_stack(site, target))
    assert status["pending"]["target"] == "tiny-b" and status["pending"]["in_progress"] is False

    target.calls.clear()
    result = make_stack(site, target).up("tiny-a")
    assert target.calls[:4] == ["preflight", "signin", "write tiny-a", "recreate tiny-a"]
    assert result["noop"] is True  # after the rollback, tiny-a already serves
    recorded = read_journal(site)
    assert recorded.pending is None and recorded.active.profile == "tiny-a"
    assert (recorded.history[-1].profile, recorded.history[-1].outcome) == ("tiny-b", "rolled_back")


def test_switch_without_a_running_stack_is_refused(site, target):
    with pytest.raises(PreflightError, match="no running stack"):
        switch(make_stack(site, target), "tiny-b")


def test_a_first_up_that_fails_after_vllm_started_does_not_trap_the_operator(site, target):
    target.ui.refuse_chat_for.add("tiny-a")
    with pytest.raises(ChatRefused):
        make_stack(site, target).up("tiny-a")
    assert target.running == "tiny-a" and read_journal(site).active is None
    # No model is known as good, so neither `up` of another model nor `switch` refuses.
    make_stack(site, target).up("tiny-b")
    assert read_journal(site).active.profile == "tiny-b"


def test_switch_adopts_a_running_model_the_journal_does_not_know(site, target):
    make_stack(site, target).up("tiny-a")
    JournalStore(site.state_dir).path.unlink()  # e.g. state from before the journal, not migrated
    result = switch(make_stack(site, target), "tiny-b")
    assert result["previous"] == "tiny-a" and read_journal(site).active.profile == "tiny-b"


def test_a_failed_admin_sign_in_during_a_switch_is_recorded_and_touches_nothing(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    before = target.text
    down = RuntimeFailure("Open WebUI is down")
    target.ui.signin = lambda email, password: (_ for _ in ()).throw(down)
    target.ui.session_for = lambda token: (_ for _ in ()).throw(down)
    with pytest.raises(RuntimeFailure):
        switch(stack, "tiny-b")
    recorded = read_journal(site)
    assert target.text == before and recorded.pending is None
    assert (recorded.history[-1].profile, recorded.history[-1].outcome) == ("tiny-b", "failed")


def test_down_ends_an_unfinished_change_and_records_it(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    site.compose_dir.mkdir(parents=True, exist_ok=True)
    site.compose_file.write_text(target.text)
    active = read_journal(site).active
    JournalStore(site.state_dir).update(lambda j: setattr(j, "pending", Pending("switch", "tiny-b", "t0", 1, active)))
    make_stack(site, target).down()
    recorded = read_journal(site)
    assert recorded.pending is None and recorded.active is None
    assert [(e.profile, e.outcome) for e in recorded.history[-2:]] == [("tiny-b", "interrupted"), ("tiny-a", "ok")]


def test_status_without_docker_still_reports_the_unfinished_change(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    active = read_journal(site).active
    JournalStore(site.state_dir).update(lambda j: setattr(j, "pending", Pending("switch", "tiny-b", "t0", 1, active)))

    def no_docker() -> dict:
        raise DockerUnavailable("cannot reach the Docker engine")

    target.services = no_docker
    status = stack_status(make_stack(site, target))
    assert status["services"]["vllm"]["state"] == "unknown" and status["pending"]["target"] == "tiny-b"


def test_a_failed_rollback_stops_the_crash_looping_vllm(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    target.broken.add("tiny-a")
    with pytest.raises(SwitchFailed):
        switch(stack, "tiny-broken")
    # The failed rollback stops vLLM; the undo steps after it still run (the old compose file is put back).
    assert target.calls[-2:] == ["stop vllm", "write tiny-a"]

"""The blue-green switch against the in-memory target: the order of side effects, what Open WebUI
is pointed at, what the journal records, and the `auto` decision with its reason."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from controller.deploy.spec import vllm_url
from controller.errors import PreflightError, RenderError, SwitchFailed
from controller.journal import Deployment
from controller.lifecycle.pair_fit import pair_decision, pair_text
from controller.lifecycle.prepare import respec
from controller.lifecycle.switch_command import switch
from tests.unit._support import TINY_ARCH, make_profile
from tests.unit.fake_stack import make_stack, read_journal

GIB = 1024**3


def _running(site, target, strategy="blue-green"):
    stack = make_stack(site, target, strategy)
    stack.up("tiny-a")
    target.calls.clear()
    return stack


def test_blue_green_starts_beside_moves_webui_drains_then_removes_the_old(site, target):
    stack = _running(site, target)
    target.in_flight["vllm"] = [(2, 0), (1, 1), (0, 2)]
    result = switch(stack, "tiny-b")
    assert (result["strategy"], result["downtime_s"], result["instance"]) == ("blue-green", 0.0, "vllm-b")
    assert "old model unlisted" in result["phases"]  # a stale tab now gets "Model not found"
    assert target.calls == [
        "preflight", "signin", "write tiny-b tiny-a", "pull", "start vllm-b tiny-b", "wait vllm tiny-b",
        "webui default tiny-b legacy", "chat tiny-b as ui",
        "in flight vllm 2", "in flight vllm 1", "in flight vllm 0", "remove vllm", "write tiny-b",
    ]  # fmt: skip
    assert target.runs == {"vllm-b": "tiny-b"} and target.connections == [vllm_url("vllm"), vllm_url("vllm-b")]
    assert list(yaml.safe_load(target.text)["services"]) == ["vllm-b", "webui"]
    recorded = read_journal(site)
    assert (recorded.active.profile, recorded.active.service, recorded.pending) == ("tiny-b", "vllm-b", None)
    assert (recorded.history[-1].outcome, recorded.history[-1].previous) == ("ok", "tiny-a")


def test_the_next_blue_green_switch_goes_back_to_the_first_slot(site, target):
    stack = _running(site, target)
    switch(stack, "tiny-b")
    stack = make_stack(site, target, "blue-green")  # a new run reads the active slot from the journal
    assert switch(stack, "tiny-a")["instance"] == "vllm"
    assert target.runs == {"vllm": "tiny-a"} and read_journal(site).active.service == "vllm"
    assert switch(stack, "tiny-a")["noop"] is True


def test_a_recreate_after_a_blue_green_switch_recreates_the_active_slot(site, target):
    stack = _running(site, target)
    switch(stack, "tiny-b")
    stack = make_stack(site, target, "recreate")
    target.calls.clear()
    assert switch(stack, "tiny-a")["strategy"] == "recreate"
    assert target.calls[2:5] == ["write tiny-a", "pull", "recreate tiny-a"]
    assert target.runs == {"vllm-b": "tiny-a"} and list(yaml.safe_load(target.text)["services"])[0] == "vllm-b"


def test_a_new_model_failing_before_the_cut_over_leaves_the_old_one_untouched(site, target):
    stack = _running(site, target)
    before = target.text
    with pytest.raises(SwitchFailed, match="'tiny-broken' did not start beside 'tiny-a', which kept serving") as e:
        switch(stack, "tiny-broken")
    assert "vLLM failed to start tiny-broken" in e.value.message
    assert target.text == before and target.runs == {"vllm": "tiny-a"} and target.serving == "tiny-a"
    assert not any(c in target.calls for c in ("stop vllm", "remove vllm", "recreate tiny-a"))
    assert target.ui.config[0] == "tiny-a" and not any(c.startswith("connect") for c in target.calls)
    recorded = read_journal(site)
    assert recorded.active.profile == "tiny-a" and recorded.history[-1].outcome == "failed"


def test_a_failure_after_the_cut_over_points_webui_back_at_the_old_instance(site, target):
    stack = _running(site, target)
    target.ui.refuse_chat_for.add("tiny-b")
    with pytest.raises(SwitchFailed, match="rolled back, 'tiny-a' is serving again"):
        switch(stack, "tiny-b")
    after = target.calls[target.calls.index("chat tiny-b as ui") + 1 :]
    # The old instance never stopped: Compose keeps it, only Open WebUI moves back.
    assert after == ["write tiny-a", "keep tiny-a", "wait vllm tiny-a", "webui default tiny-a legacy",
                     "chat tiny-a as ui", "remove vllm-b", "write tiny-a"]  # fmt: skip
    assert target.runs == {"vllm": "tiny-a"} and target.ui.config[0] == "tiny-a"
    recorded = read_journal(site)
    assert recorded.active.profile == "tiny-a" and recorded.history[-1].outcome == "rolled_back"


def test_auto_chooses_recreate_with_the_reason_when_the_pair_does_not_fit(site, target):
    stack = _running(site, target, "auto")
    target.host_memory = 4 * GIB
    result = switch(stack, "tiny-b")
    assert result["strategy"] == "recreate" and "recreate tiny-b" in target.calls
    assert "do not fit" in result["strategy_reason"] and "Docker reports 4.0 GiB" in result["strategy_reason"]


def test_auto_chooses_blue_green_when_both_fit(site, target):
    result = switch(_running(site, target, "auto"), "tiny-b")
    assert result["strategy"] == "blue-green" and "both instances fit" in result["strategy_reason"]


def test_blue_green_asked_for_but_not_fitting_is_refused_before_anything_changes(site, target):
    stack = _running(site, target)
    target.host_memory = 4 * GIB
    before = target.text
    with pytest.raises(PreflightError, match="runs both models side by side, and both instances do not fit"):
        switch(stack, "tiny-b")
    assert target.text == before and target.calls == ["preflight"]


def test_pair_file_holds_the_old_block_byte_for_byte_and_refuses_one_slot_twice(site, target):
    stack = _running(site, target)
    old = target.text
    new = respec(stack.catalog, stack.prepare("tiny-b"), slot="vllm-b", gpu_memory_utilization=None).compose_text
    pair = pair_text(new, old)
    assert list(yaml.safe_load(pair)["services"]) == ["vllm-b", "vllm", "webui"]
    old_block = old[old.index("\nservices:\n") + 10 : old.index("\n  webui:\n")]
    assert old_block in pair
    with pytest.raises(RenderError, match="both instances would be service 'vllm'"):
        pair_text(stack.prepare("tiny-b").compose_text, old)


def test_pair_file_keeps_the_monitoring_services_beside_both_slots(site, target):
    with site.env_file.open("a") as env:
        env.write("MONITORING=on\n")
    stack = _running(site, target)
    new = respec(stack.catalog, stack.prepare("tiny-b"), slot="vllm-b", gpu_memory_utilization=None).compose_text
    services = list(yaml.safe_load(pair_text(new, target.text))["services"])
    assert services == ["vllm-b", "vllm", "webui", "prometheus", "alertmanager", "blackbox", "node-exporter"]


def _gpu(name: str, utilization: float):
    return make_profile(name, gpu_memory_utilization=utilization, max_model_len=1024,
                        architecture={**TINY_ARCH, "max_context": 4096})  # fmt: skip


def test_gpu_pair_plans_the_new_instance_in_what_is_left_and_says_so():
    decision = pair_decision(_gpu("new", 0.9), _gpu("old", 0.4), host_memory_bytes=None, gpu_memory_gib=12,
                             reserve_gib=2)  # fmt: skip
    assert decision.strategy == "blue-green" and decision.gpu_memory_utilization == 0.55
    assert "--gpu-memory-utilization 0.55 instead of 0.9" in decision.capacity
    assert "--strategy recreate` restores full capacity" in decision.capacity


def test_gpu_pair_with_no_room_left_is_recreate_with_the_reason():
    decision = pair_decision(_gpu("new", 0.9), _gpu("old", 0.9), host_memory_bytes=None, gpu_memory_gib=12,
                             reserve_gib=2)  # fmt: skip
    assert decision.strategy == "recreate" and "holds 90% of the GPU" in decision.reason


def test_a_journal_from_before_blue_green_loads_with_the_first_slot():
    old = Deployment.from_dict({"profile": "a", "served_model_name": "a", "since": "x", "text": "t"})
    assert (old.service, old.capacity) == ("vllm", None)


def test_two_instances_serving_one_model_name_are_recreate_with_the_reason():
    old = make_profile("old", served_model_name="same")
    decision = pair_decision(make_profile("new", served_model_name="same"), old, host_memory_bytes=64 * GIB,
                             gpu_memory_gib=None, reserve_gib=2)  # fmt: skip
    assert decision.strategy == "recreate" and "both instances would serve the model name 'same'" in decision.reason


def test_the_drain_waits_for_a_quiet_spell_not_one_idle_sample(site, target):
    # A chat finishing between two idle samples restarts the quiet spell: it may have a follower
    # still inside Open WebUI on its way to the old instance.
    stack = _running(site, target)
    stack.options = replace(stack.options, drain_quiet_s=0.3)
    target.in_flight["vllm"] = [(0, 1), (0, 2), (0, 2)]
    result = switch(stack, "tiny-b")
    checks = [c for c in target.calls if c.startswith("in flight vllm")]
    assert len(checks) >= 3 and target.calls.index("remove vllm") > target.calls.index(checks[-1])
    assert result["phases"]["drain"] >= 0.3

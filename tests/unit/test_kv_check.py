"""Plan, then verify: after up and switch, vLLM's own KV cache figure is checked against the plan,
kept in the journal and shown by status; more than 5% apart is a warning."""

from __future__ import annotations

import pytest

from controller.lifecycle.status import stack_status
from controller.lifecycle.switch_command import switch
from controller.planner.kv_check import kv_check
from tests.unit.fake_stack import make_stack, read_journal
from tests.unit.fakes import FakeTarget

# The unit tests' CPU profile: 1 GiB of KV space; float32 K and V over 4 layers x 2 KV heads x 64
# dims = 4096 bytes per token, so 262144 tokens (2048 blocks of 128, 16 blocks per 2048-token
# sequence: no rounding loss).
PLANNED = 1024**3 // (2 * 4 * 2 * 64 * 4)


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget()


def test_up_keeps_the_plan_and_vllms_figure_and_status_shows_them(site, target):
    target.kv_cache_tokens = PLANNED
    stack = make_stack(site, target)
    warnings: list[str] = []
    stack.reporter.warn = warnings.append
    result = stack.up("tiny-a")
    expected = {"planned": PLANNED, "logged": PLANNED, "difference_pct": 0.0, "within_tolerance": True}
    assert result["kv_tokens"] == expected
    assert read_journal(site).active.kv_tokens == expected
    assert stack_status(stack)["kv_tokens"] == expected
    assert not [w for w in warnings if "KV cache" in w]
    # A no-op `up` sees no start-up log; the figure from the start still serving stays.
    target.kv_cache_tokens = None
    assert stack.up("tiny-a")["noop"] is True
    assert read_journal(site).active.kv_tokens == expected


def test_a_switch_more_than_5_percent_off_the_plan_warns_and_records_it(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    warnings: list[str] = []
    stack.reporter.warn = warnings.append
    target.kv_cache_tokens = int(PLANNED / 1.06)
    result = switch(stack, "tiny-b")
    assert result["kv_tokens"]["within_tolerance"] is False
    assert read_journal(site).active.kv_tokens["logged"] == int(PLANNED / 1.06)
    assert any(f"holds {int(PLANNED / 1.06)} tokens, the plan said {PLANNED}" in w for w in warnings), warnings


@pytest.mark.parametrize(
    ("planned", "logged", "pct", "ok"),
    [(100, 100, 0.0, True), (105, 100, 5.0, True), (106, 100, 6.0, False), (94, 100, -6.0, False)],
)
def test_kv_check_tolerance_is_5_percent_of_vllms_figure(planned, logged, pct, ok):
    check = kv_check(planned, logged)
    assert (check["difference_pct"], check["within_tolerance"]) == (pct, ok)


def test_no_figure_from_vllm_is_no_check():
    assert kv_check(100, None) is None and kv_check(None, 100) is None

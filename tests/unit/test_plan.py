from __future__ import annotations

import pytest

from controller.config.catalog import load_catalog
from controller.planner.engine import GIB, GPU_BLOCK_TOKENS
from controller.planner.fit import plan
from controller.planner.model_memory import GB, kv_bytes_per_token, weight_bytes
from tests.unit._support import TINY_ARCH, fields_of, make_profile

CATALOG = load_catalog()


def _p(name: str):
    return CATALOG.get(name)


def _on(name: str, gib: float = 12, **kwargs):
    return plan(_p(name), gpu_memory_gib=gib, alternatives=CATALOG.profiles(), **kwargs)


# Reference figures: the model-card / DESIGN.md table.
def test_llama3_8b_fp16_weights_are_two_bytes_per_parameter():
    expected = 2 * 8.03e9
    assert abs(weight_bytes(_p("llama3-8b")) - expected) / expected < 0.05


@pytest.mark.parametrize("name", ["llama3-8b-gptq", "llama3-8b-awq"])
def test_int4_llama3_weights_are_between_4_and_6_gb(name):
    assert 4 < weight_bytes(_p(name)) / GB < 6


def test_deepseek_1_5b_weights_are_about_3_5_gb():
    assert 3.3 < weight_bytes(_p("deepseek-1.5b")) / GB < 3.7


@pytest.mark.parametrize(
    ("name", "layers", "kv_heads", "head_dim"),
    [("llama3-8b", 32, 8, 128), ("llama3-8b-gptq", 32, 8, 128), ("deepseek-1.5b", 28, 2, 128)],
)
def test_kv_bytes_per_token_in_fp16(name, layers, kv_heads, head_dim):
    expected = 2 * layers * kv_heads * head_dim * 2
    assert kv_bytes_per_token(_p(name)) == expected
    assert _on(name).kv_bytes_per_token == expected


def test_kv_per_token_reference_values():
    # 128 KiB and 28 KiB, as stated in DESIGN.md
    assert kv_bytes_per_token(_p("llama3-8b")) == 131072
    assert kv_bytes_per_token(_p("deepseek-1.5b")) == 28672


def test_fp8_kv_cache_halves_kv_per_token():
    fp8 = _p("llama3-8b").replace(kv_cache_dtype="fp8")
    assert kv_bytes_per_token(fp8) == 131072 // 2


def test_llama3_8b_fp16_does_not_fit_12_gib_and_recommends_a_quantized_profile():
    result = _on("llama3-8b")
    assert result.fits is False
    assert result.weights_gib > 12
    assert any("llama3-8b-gptq" in r or "llama3-8b-awq" in r for r in result.recommendations)


def test_llama3_8b_gptq_fits_12_gib_at_8192():
    result = _on("llama3-8b-gptq")
    assert result.fits is True and result.max_model_len == 8192
    assert result.max_concurrency >= 1
    assert result.recommendations == []


def test_deepseek_1_5b_serves_at_least_25_full_length_sequences_on_12_gib():
    result = _on("deepseek-1.5b")
    assert result.fits is True
    assert result.max_concurrency >= 25


def test_cpu_profile_kv_budget_is_its_kv_cache_space_with_float32_kv():
    profile = make_profile("tiny-cpu", accelerator="cpu", dtype="float32", cpu_kv_cache_gib=3)
    result = plan(profile)
    assert result.kv_budget_gib == 3.0
    per_token = 2 * TINY_ARCH["layers"] * TINY_ARCH["kv_heads"] * TINY_ARCH["head_dim"] * 4
    assert result.kv_bytes_per_token == per_token
    assert result.kv_cache_gib <= 3.0 and result.fits
    assert result.max_concurrency == pytest.approx(3 * GIB / per_token / 2048, abs=0.01)


def test_gpu_profile_needs_gpu_memory():
    with pytest.raises(ValueError):
        plan(_p("deepseek-1.5b"))


@pytest.mark.parametrize("name", ["deepseek-1.5b", "llama3-8b", "llama3-8b-gptq", "llama3-8b-awq"])
@pytest.mark.parametrize("gib", [6, 8, 9, 10, 12, 16, 24, 80])
def test_max_model_len_fit_is_whole_blocks_within_the_model_context(name, gib):
    result = _on(name, gib)
    assert result.max_model_len_fit % GPU_BLOCK_TOKENS == 0
    assert 0 <= result.max_model_len_fit <= _p(name).architecture.max_context
    assert result.fits == (result.max_model_len_fit >= result.max_model_len)


def test_max_model_len_fit_is_limited_by_kv_when_memory_is_short():
    # llama3-8b-gptq on an 8 GiB card at utilization 0.85: less KV room than one 8192-token
    # sequence but more than zero (the example: a shorter context runs on such cards).
    result = _on("llama3-8b-gptq", 8, gpu_memory_utilization=0.85)
    assert not result.fits
    assert 0 < result.max_model_len_fit < 8192
    assert result.max_model_len_fit * result.kv_bytes_per_token <= result.kv_budget_gib * GIB + 1e6


def test_tensor_parallel_2_halves_the_weights_per_gpu():
    one = _on("llama3-8b", 16)
    two = plan(_p("llama3-8b").replace(tensor_parallel_size=2), gpu_memory_gib=16)
    assert two.weights_gib == pytest.approx(one.weights_gib / 2, abs=0.002)
    assert two.kv_bytes_per_token == one.kv_bytes_per_token // 2  # KV heads are split across GPUs too
    assert two.fits and not one.fits


def test_max_model_len_override_changes_kv_per_sequence():
    default = _on("llama3-8b-gptq", 24)
    shorter = _on("llama3-8b-gptq", 24, max_model_len=4096)
    assert default.kv_bytes_per_sequence == 131072 * 8192
    assert shorter.kv_bytes_per_sequence == 131072 * 4096
    assert shorter.max_concurrency == pytest.approx(2 * default.max_concurrency, rel=0.01)


def test_short_card_names_the_length_that_fits_and_what_each_lever_buys():
    result = _on("llama3-8b-gptq", 8, gpu_memory_utilization=0.85)
    advice = "\n".join(result.recommendations)
    assert f"lower max_model_len to {result.max_model_len_fit}" in advice
    assert "larger GPU" not in advice
    for lever in ("--enforce-eager", "gpu_memory_utilization to 0.95", "max_num_seqs: 64", "kv_cache_dtype: fp8"):
        assert lever in advice, lever
    assert "+" in advice and "KV tokens" in advice


def test_higher_utilization_gives_more_kv_budget():
    assert _on("deepseek-1.5b", gpu_memory_utilization=0.95).kv_budget_gib > _on("deepseek-1.5b").kv_budget_gib


def test_as_dict_has_the_documented_keys():
    data = _on("deepseek-1.5b").as_dict()
    assert {"fits", "weights_gib", "kv_bytes_per_token", "kv_cache_gib", "max_concurrency", "max_model_len_fit"} <= set(
        data
    )
    assert data["fits"] is True and data["kv_bytes_per_token"] == 28672


def test_batch_fields_default_render_and_validate():
    from controller.config.catalog import build_profile
    from controller.deploy.spec import vllm_args
    from controller.errors import CatalogError

    args = vllm_args(_p("deepseek-1.5b"))
    assert args[args.index("--max-num-batched-tokens") + 1] == "2048"
    assert args[args.index("--max-num-seqs") + 1] == "256"
    fields = fields_of(_p("deepseek-1.5b"))
    with pytest.raises(CatalogError, match="max_num_batched_tokens.*at least max_num_seqs"):
        build_profile("x", {**fields, "max_num_batched_tokens": 128}, "test")
    with pytest.raises(CatalogError, match="max_num_seqs"):
        build_profile("x", {**fields, "max_num_seqs": 0}, "test")
    with pytest.raises(CatalogError, match="set by the controller"):
        build_profile("x", {**fields, "extra_args": ["--max-num-seqs=8"]}, "test")
    small = build_profile("x", {**fields, "max_num_seqs": 64}, "test")
    assert plan(small, gpu_memory_gib=12).kv_cache_tokens > plan(_p("deepseek-1.5b"), gpu_memory_gib=12).kv_cache_tokens


def test_unknown_vllm_version_is_an_input_error():
    from controller.errors import InputError

    with pytest.raises(InputError):
        _on("deepseek-1.5b", vllm_version="0.5")
    with pytest.raises(InputError):
        _on("deepseek-1.5b", vllm_version="latest")


def test_llama3_8b_16k_plans_the_scaled_context():
    """RoPE factor 2 doubles Llama-3's 8192 positions: a 16384-token sequence holds 2 GiB of fp16 KV,
    and the longest context that fits stops at the scaled 16384, not the trained 8192."""
    profile = load_catalog().get("llama3-8b-16k")
    assert (profile.max_model_len, profile.scaled_context) == (16384, 16384)
    result = plan(profile, gpu_memory_gib=80.0)
    assert result.kv_bytes_per_sequence == 16384 * 128 * 1024
    assert result.fits and result.max_model_len_fit == 16384
    assert not plan(profile, gpu_memory_gib=24.0).fits or plan(profile, gpu_memory_gib=24.0).max_concurrency < 8

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from controller.config.catalog import load_catalog
from controller.config.local_model import check_local_model
from controller.deploy.spec import vllm_args
from controller.errors import EXIT_BAD_INPUT, CatalogError
from tests.unit._support import BUILTIN_NAMES, CPU_PROFILE, TINY_ARCH, cpu_catalog, write_catalog

HF_IDS = {
    "deepseek-1.5b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    "llama3-8b": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama3-8b-16k": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama3-8b-gptq": "TechxGenus/Meta-Llama-3-8B-Instruct-GPTQ",
    "llama3-8b-awq": "casperhansen/llama-3-8b-instruct-awq",
}


def _new_profile(**fields) -> dict:
    return {
        "model": "org/new-model",
        "served_model_name": "new",
        "max_model_len": 1024,
        "architecture": TINY_ARCH,
        **fields,
    }


def test_builtins_load_with_real_hugging_face_ids():
    catalog = load_catalog()
    assert sorted(catalog.names()) == BUILTIN_NAMES
    assert {p.name: p.model for p in catalog.profiles()} == HF_IDS
    assert all(p.source == "builtin" and p.local_path is None for p in catalog.profiles())


def test_deepseek_runs_with_the_r1_reasoning_parser():
    args = vllm_args(load_catalog().get("deepseek-1.5b"))
    assert args[args.index("--reasoning-parser") + 1] == "deepseek_r1"


def test_only_llama3_8b_fp16_is_gated():
    catalog = load_catalog()
    assert catalog.get("llama3-8b").gated is True
    assert catalog.get("deepseek-1.5b").gated is False


def test_quantized_builtins_share_llama3_architecture_with_4_bit_weights():
    catalog = load_catalog()
    base = catalog.get("llama3-8b").architecture
    for name, method in (("llama3-8b-gptq", "gptq"), ("llama3-8b-awq", "awq")):
        profile = catalog.get(name)
        assert profile.quantization == method and profile.dtype == "half"
        assert (profile.architecture.layers, profile.architecture.kv_heads) == (base.layers, base.kv_heads) == (32, 8)
        assert profile.architecture.weight_bits == 4 and profile.architecture.quant_group_size == 128


def test_user_catalog_adds_a_profile_and_overrides_only_the_fields_it_sets(tmp_path):
    path = write_catalog(
        tmp_path / "mine.yaml",
        {
            "new-model": _new_profile(),
            "deepseek-1.5b": {"max_model_len": 4096, "architecture": {"max_context": 65536}},
        },
    )
    catalog = load_catalog(path)
    assert "new-model" in catalog.names() and len(catalog.names()) == len(BUILTIN_NAMES) + 1
    assert catalog.get("new-model").source == str(path)
    deepseek = catalog.get("deepseek-1.5b")
    assert deepseek.max_model_len == 4096
    assert deepseek.model == HF_IDS["deepseek-1.5b"]  # untouched field kept
    assert deepseek.reasoning_parser == "deepseek_r1"
    # architecture merges key by key: the other facts stay
    assert deepseek.architecture.max_context == 65536
    assert (deepseek.architecture.layers, deepseek.architecture.kv_heads) == (28, 2)
    assert deepseek.source == str(path)


def test_relative_local_model_path_resolves_against_the_catalog_directory(tmp_path, monkeypatch):
    sub = tmp_path / "site"
    path = cpu_catalog(sub)
    monkeypatch.chdir(tmp_path)  # a different working directory must not matter
    profile = load_catalog(path).get("tiny-cpu")
    expected = (sub / "models" / "tiny").resolve()
    assert profile.model == str(expected)
    assert profile.local_path == expected
    assert profile.container_model == "/models/tiny-cpu"


def _error(tmp_path: Path, profiles: dict) -> tuple[Path, CatalogError]:
    path = write_catalog(tmp_path / "bad.yaml", profiles)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    return path, info.value


@pytest.mark.parametrize(
    ("name", "fields", "field"),
    [
        ("new-model", _new_profile(max_modle_len=4096), "max_modle_len"),
        ("new-model", _new_profile(architecture={**TINY_ARCH, "layerz": 3}), "layerz"),
        ("llama3-8b-gptq", {"dtype": "bfloat16"}, "dtype"),
        ("llama3-8b-gptq", {"dtype": "auto"}, "dtype"),
        ("llama3-8b-awq", {"dtype": "bfloat16"}, "dtype"),
        ("llama3-8b-awq", {"dtype": "auto"}, "dtype"),
        ("llama3-8b", {"max_model_len": 16384}, "max_model_len"),
        ("deepseek-1.5b", {"gpu_memory_utilization": 0}, "gpu_memory_utilization"),
        ("deepseek-1.5b", {"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ("new-model", _new_profile(accelerator="tpu"), "accelerator"),
    ],
)
def test_validation_error_names_file_profile_and_field(tmp_path, name, fields, field):
    path, error = _error(tmp_path, {name: fields})
    assert error.exit_code == EXIT_BAD_INPUT == 2
    assert str(path) in error.message
    assert f"'{name}'" in error.message
    assert field in error.message


def test_max_model_len_above_context_is_accepted_with_rope_scaling(tmp_path):
    path = write_catalog(
        tmp_path / "rope.yaml",
        {"llama3-8b": {"max_model_len": 16384, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}},
    )
    assert load_catalog(path).get("llama3-8b").max_model_len == 16384


def test_gpu_memory_utilization_of_one_is_accepted(tmp_path):
    path = write_catalog(tmp_path / "full.yaml", {"deepseek-1.5b": {"gpu_memory_utilization": 1.0}})
    assert load_catalog(path).get("deepseek-1.5b").gpu_memory_utilization == 1.0


def test_unknown_model_name_lists_the_valid_names():
    with pytest.raises(CatalogError) as info:
        load_catalog().get("llama-70b")
    assert info.value.exit_code == 2
    assert "llama-70b" in info.value.message
    assert all(name in info.value.hint for name in BUILTIN_NAMES)


def test_invalid_yaml_is_a_catalog_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("profiles:\n  x: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(path) in info.value.message and "YAML" in info.value.message
    assert info.value.exit_code == 2


def test_catalog_with_a_wrong_top_level_shape_is_refused(tmp_path):
    path = tmp_path / "flat.yaml"
    path.write_text("deepseek-1.5b:\n  max_model_len: 4096\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="profiles"):
        load_catalog(path)


def test_missing_catalog_file_is_a_catalog_error(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(path) in info.value.message and "not found" in info.value.message
    assert info.value.exit_code == 2


def test_check_local_model_refuses_a_missing_directory(tmp_path):
    path = cpu_catalog(tmp_path, with_model_dir=False)
    profile = load_catalog(path).get("tiny-cpu")
    with pytest.raises(CatalogError) as info:
        check_local_model(profile)
    message = info.value.message
    assert str(path) in message and "'tiny-cpu'" in message and "model" in message
    assert str(tmp_path / "models" / "tiny") in message


def test_check_local_model_accepts_an_existing_directory_and_hf_ids(tmp_path):
    catalog = load_catalog(cpu_catalog(tmp_path))
    check_local_model(catalog.get("tiny-cpu"))
    check_local_model(catalog.get("deepseek-1.5b"))


def test_cpu_kv_cache_size_is_refused_on_a_gpu_profile(tmp_path):
    fields = {**CPU_PROFILE, "accelerator": "gpu"}
    path, error = _error(tmp_path, {"tiny-gpu": fields})
    assert "cpu_kv_cache_gib" in error.message and str(path) in error.message


def test_llama3_8b_16k_passes_rope_scaling_with_llama3_theta():
    profile = load_catalog().get("llama3-8b-16k")
    args = vllm_args(profile)
    assert args[args.index("--max-model-len") + 1] == "16384"
    # theta 500000 goes along: without it vLLM 0.32 falls back to 10000 (measured in the image)
    assert json.loads(args[args.index("--hf-overrides") + 1]) == {
        "rope_scaling": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 500000.0}
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_model_len": 16385}, "16385 is above the model's context (8192, 16384 with RoPE scaling)"),
        ({"rope_scaling": {"factor": "2"}}, "needs a numeric factor"),
        ({"rope_scaling": {"rope_type": "dynamic", "factor": 0.5}}, "needs a numeric factor"),
        ({"architecture": {"rope_theta": None}}, "set architecture.rope_theta"),
    ],
)
def test_scaled_context_is_validated(tmp_path, fields, expected):
    path = write_catalog(tmp_path / "c.yaml", {"llama3-8b-16k": fields})
    with pytest.raises(CatalogError, match=re.escape(expected)):
        load_catalog(path)


def test_extra_args_that_only_look_like_controlled_flags_are_accepted(tmp_path):
    args = [
        "--enforce-eager", "--max-num-partial-prefills=2", "--chat-template-content-format", "string",
        "--enable-lora-bias", "--config-format", "hf", "-O3", "--model-impl", "vllm", "--api-server-count", "1",
    ]  # fmt: skip
    path = write_catalog(tmp_path / "args.yaml", {"new-model": _new_profile(extra_args=args)})
    assert load_catalog(path).get("new-model").extra_args == args


def test_a_local_model_in_an_ordinary_directory_is_accepted(tmp_path):
    path = write_catalog(tmp_path / "local.yaml", {"new-model": _new_profile(model="/srv/models/var/lib/kubelet")})
    assert load_catalog(path).get("new-model").model == "/srv/models/var/lib/kubelet"

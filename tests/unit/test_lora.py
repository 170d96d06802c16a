"""LoRA adapters: PEFT configs checked against the profile, the flags and read-only mounts rendered,
and the memory the planner adds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controller.config.catalog import load_catalog
from controller.config.lora import check_adapters, lora_buffer_bytes
from controller.deploy.compose_file import render_compose
from controller.errors import EXIT_BAD_INPUT, CatalogError
from controller.planner.fit import plan
from tests.unit._support import CPU_PROFILE, fixed_settings, make_profile, write_catalog


def _adapter(directory: Path, *, r: int = 8, base: str = "tiny", **extra) -> Path:
    """An adapter directory as peft's save_pretrained writes it (the config fields that matter)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": r, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"],
              "base_model_name_or_path": base, "task_type": "CAUSAL_LM", **extra}  # fmt: skip
    (directory / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    (directory / "adapter_model.safetensors").write_bytes(b"")
    return directory


def _catalog(tmp_path: Path, **fields):
    (tmp_path / "models" / "tiny").mkdir(parents=True, exist_ok=True)
    path = write_catalog(tmp_path / "catalog.yaml", {"tiny-cpu": {**CPU_PROFILE, **fields}})
    return load_catalog(path).get("tiny-cpu")


def test_local_adapters_render_flags_and_read_only_mounts(tmp_path):
    _adapter(tmp_path / "adapters" / "zh", r=8)
    _adapter(tmp_path / "adapters" / "sql", r=12)
    profile = check_adapters(_catalog(tmp_path, lora_adapters={"zh": "./adapters/zh", "sql": "./adapters/sql"}))
    doc = yaml.safe_load(render_compose(profile, fixed_settings()))
    vllm = doc["services"]["vllm"]
    command = vllm["command"]
    # rank 12 rounds up to the next rank vLLM accepts; both adapters fit in one batch
    assert command[command.index("--enable-lora") :] == [
        "--enable-lora", "--max-loras", "2", "--max-lora-rank", "16",
        "--lora-modules", "sql=/adapters/sql", "zh=/adapters/zh",  # the catalog's order (sorted by the dump)
    ]  # fmt: skip
    mounts = {m["target"]: m for m in vllm["volumes"]}
    for name in ("zh", "sql"):
        assert mounts[f"/adapters/{name}"] == {
            "type": "bind", "source": str(tmp_path / "adapters" / name), "target": f"/adapters/{name}",
            "read_only": True,
        }  # fmt: skip
    # a local model and local adapters: vLLM needs no way out
    assert doc["networks"]["backend"]["internal"] is True


def test_an_adapter_from_hugging_face_needs_max_lora_rank_and_keeps_egress(tmp_path):
    with pytest.raises(CatalogError) as caught:
        _catalog(tmp_path, lora_adapters={"zh": "someone/tiny-zh-lora"})
    assert "field 'max_lora_rank'" in caught.value.message and "adapter_config.json" in caught.value.message
    profile = check_adapters(_catalog(tmp_path, lora_adapters={"zh": "someone/tiny-zh-lora"}, max_lora_rank=32))
    doc = yaml.safe_load(render_compose(profile, fixed_settings()))
    command = doc["services"]["vllm"]["command"]
    assert command[command.index("--lora-modules") + 1] == "zh=someone/tiny-zh-lora"
    assert command[command.index("--max-lora-rank") + 1] == "32"
    assert doc["networks"]["backend"]["internal"] is False  # vLLM downloads the adapter


def test_adapter_trained_on_another_base_model_is_refused_naming_profile_and_adapter(tmp_path):
    _adapter(tmp_path / "zh", base="meta-llama/Meta-Llama-3-8B-Instruct")
    profile = _catalog(tmp_path, lora_adapters={"zh": "./zh"})
    with pytest.raises(CatalogError) as caught:
        check_adapters(profile)
    message = caught.value.message
    assert "profile 'tiny-cpu': adapter 'zh'" in message and "meta-llama/Meta-Llama-3-8B-Instruct" in message
    assert caught.value.exit_code == EXIT_BAD_INPUT


def test_adapter_base_given_as_the_hub_id_matches_a_local_copy_of_that_model(tmp_path):
    _adapter(tmp_path / "zh", base="org/tiny")  # trained on org/tiny, served from ./models/tiny
    assert check_adapters(_catalog(tmp_path, lora_adapters={"zh": "./zh"})).max_lora_rank == 8


def test_adapter_rank_above_max_lora_rank_is_refused(tmp_path):
    _adapter(tmp_path / "zh", r=64)
    profile = _catalog(tmp_path, lora_adapters={"zh": "./zh"}, max_lora_rank=16)
    with pytest.raises(CatalogError, match=r"adapter 'zh': rank 64 is above the profile's max_lora_rank 16"):
        check_adapters(profile)


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda d: None, "adapter_config.json does not exist"),
        (lambda d: _adapter(d).joinpath("adapter_config.json").write_text("{not json"), "not a PEFT adapter config"),
        (lambda d: _adapter(d, r=0), "field 'r'"),
        (lambda d: _adapter(d, peft_type="IA3"), "vLLM serves LORA adapters only"),
    ],
)
def test_broken_adapter_directory_is_a_clear_error(tmp_path, write, expected):
    (tmp_path / "zh").mkdir()
    write(tmp_path / "zh")
    profile = _catalog(tmp_path, lora_adapters={"zh": "./zh"})
    with pytest.raises(CatalogError, match=expected):
        check_adapters(profile)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"lora_adapters": {"bad name": "./zh"}}, "lora_adapters.bad name.[key]"),
        ({"lora_adapters": {"zh": "not a/valid/id"}}, "lora_adapters.zh"),
        ({"lora_adapters": {"tiny-cpu": "./zh"}}, "lora_adapters"),  # the base model's served name
        ({"max_lora_rank": 12, "lora_adapters": {"zh": "./zh"}}, "max_lora_rank"),  # vLLM takes 8 or 16
        ({"max_loras": 2}, "max_loras"),  # without adapters
    ],
)
def test_bad_lora_fields_are_refused_naming_the_field(tmp_path, fields, field):
    with pytest.raises(CatalogError) as caught:
        _catalog(tmp_path, **fields)
    assert f"field '{field}'" in caught.value.message


def test_lora_memory_follows_vllms_buffer_sizing():
    llama = load_catalog().get("llama3-8b")
    assert lora_buffer_bytes(llama) == 0
    one = llama.replace(lora_adapters={"zh": "org/zh"}, max_lora_rank=16)
    # per layer: qkv (3 x 4096 in, (32 + 8 + 8) x 128 out) + o (4096 + 4096) + gate_up
    # (2 x 4096 + 2 x 14336) + down (14336 + 4096) = 81920; x 32 layers x rank 16 x 2 bytes
    assert lora_buffer_bytes(one) == 81920 * 32 * 16 * 2
    four = one.replace(max_loras=4, max_lora_rank=64)
    assert lora_buffer_bytes(four) == 16 * lora_buffer_bytes(one)


def test_planner_counts_lora_slots_with_the_weights():
    llama = load_catalog().get("llama3-8b")
    served = llama.replace(lora_adapters={"zh": "org/zh"}, max_lora_rank=64, max_loras=4)
    base, with_lora = plan(llama, gpu_memory_gib=24.0), plan(served, gpu_memory_gib=24.0)
    assert with_lora.weights_gib == pytest.approx(base.weights_gib + lora_buffer_bytes(served) / 1024**3, abs=1e-3)
    assert with_lora.kv_cache_tokens < base.kv_cache_tokens
    assert any(note.startswith("LoRA: 1.250 GiB for 1 adapter") for note in with_lora.notes)


def test_profile_without_adapters_renders_no_lora_flag():
    profile = make_profile()
    assert check_adapters(profile) is profile
    assert "--enable-lora" not in render_compose(profile, fixed_settings())

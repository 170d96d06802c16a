from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.config.catalog import load_catalog
from controller.deploy import compose_file as render
from controller.deploy.compose_file import render_compose, render_template
from controller.deploy.spec import build_spec, vllm_args
from controller.errors import RenderError
from tests.unit._support import DUMMY_SECRETS, cpu_catalog, fixed_settings

GOLDEN = Path(__file__).parent / "golden"


def _render(name: str, capability=None, catalog=None, **settings) -> str:
    profile = (catalog or load_catalog()).get(name)
    return render_compose(profile, fixed_settings(**settings), capability)


def _compose(name: str, capability=None, catalog=None, **settings) -> dict:
    return yaml.safe_load(_render(name, capability, catalog, **settings))


def _after(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


@pytest.mark.parametrize("name", ["deepseek-1.5b", "llama3-8b-gptq"])
def test_render_matches_reviewed_golden_file(name):
    assert _render(name) == (GOLDEN / f"{name}.yml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "model_id", "served"),
    [
        ("deepseek-1.5b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-r1-distill-qwen-1.5b"),
        ("llama3-8b-gptq", "TechxGenus/Meta-Llama-3-8B-Instruct-GPTQ", "llama3-8b-instruct-gptq"),
    ],
)
def test_vllm_command_starts_with_model_and_sets_core_flags(name, model_id, served):
    command = _compose(name)["services"]["vllm"]["command"]
    assert command[0] == model_id  # the image's entrypoint is `vllm serve`
    assert _after(command, "--served-model-name") == served
    assert _after(command, "--dtype") == "half"
    assert _after(command, "--max-model-len") == "8192"
    assert _after(command, "--port") == "8000"


def test_gptq_uses_marlin_kernel_unless_the_gpu_is_pre_ampere():
    assert _after(_compose("llama3-8b-gptq")["services"]["vllm"]["command"], "--quantization") == "gptq_marlin"
    turing = _compose("llama3-8b-gptq", capability=(7, 5))["services"]["vllm"]["command"]
    assert _after(turing, "--quantization") == "gptq"


def test_deepseek_has_reasoning_parser_and_no_quantization():
    command = _compose("deepseek-1.5b")["services"]["vllm"]["command"]
    assert _after(command, "--reasoning-parser") == "deepseek_r1"
    assert "--quantization" not in command


@pytest.mark.parametrize("name", ["deepseek-1.5b", "llama3-8b-gptq", "llama3-8b"])
def test_api_key_is_only_an_interpolation_in_the_environment(name):
    vllm = _compose(name)["services"]["vllm"]
    assert vllm["environment"]["VLLM_API_KEY"].startswith("${VLLM_API_KEY:?")
    assert "--api-key" not in vllm["command"]
    assert not any("VLLM_API_KEY" in arg for arg in vllm["command"])


@pytest.mark.parametrize("name", ["deepseek-1.5b", "llama3-8b-gptq", "llama3-8b", "llama3-8b-awq"])
def test_no_secret_value_appears_in_the_rendered_text(name):
    text = _render(name, HF_TOKEN="hf_dummyTokenValue0004")
    for secret in [*DUMMY_SECRETS.values(), "hf_dummyTokenValue0004"]:
        assert secret not in text


@pytest.mark.parametrize(
    ("gpu_devices", "device"),
    [
        ("all", {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}),
        ("2", {"driver": "nvidia", "count": 2, "capabilities": ["gpu"]}),
        ("device=0,1", {"driver": "nvidia", "device_ids": ["0", "1"], "capabilities": ["gpu"]}),
    ],
)
def test_gpu_reservation_follows_gpu_devices(gpu_devices, device):
    vllm = _compose("deepseek-1.5b", GPU_DEVICES=gpu_devices)["services"]["vllm"]
    assert vllm["deploy"]["resources"]["reservations"]["devices"] == [device]
    assert vllm["ipc"] == "host"


@pytest.fixture
def cpu_compose(tmp_path) -> tuple[dict, Path]:
    catalog = load_catalog(cpu_catalog(tmp_path))
    return _compose("tiny-cpu", catalog=catalog), tmp_path / "models" / "tiny"


def test_cpu_profile_has_no_gpu_reservation_and_sets_kv_space(cpu_compose):
    compose, _ = cpu_compose
    vllm = compose["services"]["vllm"]
    assert "deploy" not in vllm
    assert vllm["environment"]["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert vllm["environment"]["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"  # one process imports torch, not three
    assert "--gpu-memory-utilization" not in vllm["command"]


def test_a_gpu_profile_keeps_vllms_engine_processes():
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in _compose("deepseek-1.5b")["services"]["vllm"]["environment"]


def test_cpu_profile_mounts_local_model_read_only_and_serves_it(cpu_compose):
    compose, model_dir = cpu_compose
    vllm = compose["services"]["vllm"]
    mounts = [v for v in vllm["volumes"] if v["target"] == "/models/tiny-cpu"]
    assert mounts == [
        {"type": "bind", "source": str(model_dir.resolve()), "target": "/models/tiny-cpu", "read_only": True}
    ]
    assert vllm["command"][0] == "/models/tiny-cpu"


def test_local_model_puts_vllm_on_an_internal_network(cpu_compose):
    compose, _ = cpu_compose
    assert compose["networks"]["backend"]["internal"] is True
    assert compose["services"]["vllm"]["networks"] == ["backend"]
    assert _compose("deepseek-1.5b")["networks"]["backend"]["internal"] is False


def test_vllm_port_is_published_only_on_loopback_when_asked():
    assert "ports" not in _compose("deepseek-1.5b")["services"]["vllm"]
    vllm = _compose("deepseek-1.5b", VLLM_HOST_PORT="8001")["services"]["vllm"]
    assert vllm["ports"] == ["127.0.0.1:8001:8000"]


def test_webui_points_at_vllm_and_keeps_its_data():
    webui = _compose("llama3-8b-gptq")["services"]["webui"]
    env = webui["environment"]
    # One connection per blue-green slot, each with the key from .env.
    assert env["OPENAI_API_BASE_URLS"] == "http://vllm:8000/v1;http://vllm-b:8000/v1"
    assert env["ENABLE_OLLAMA_API"] == "false"
    # The default model is set through Open WebUI's admin API, so a switch never recreates it.
    assert "DEFAULT_MODELS" not in env
    assert env["OPENAI_API_KEYS"].split(";") == ["${VLLM_API_KEY:?set VLLM_API_KEY in .env}"] * 2
    assert env["WEBUI_SECRET_KEY"].startswith("${WEBUI_SECRET_KEY:?")
    assert "webui-data:/app/backend/data" in webui["volumes"]
    assert webui["ports"] == ["0.0.0.0:7860:8080"]
    assert any("/health" in part and "8080" in part for part in webui["healthcheck"]["test"])


def test_webui_port_follows_bind_address_and_port_settings():
    webui = _compose("deepseek-1.5b", WEBUI_BIND_ADDRESS="127.0.0.1", WEBUI_PORT="3000")["services"]["webui"]
    assert webui["ports"] == ["127.0.0.1:3000:8080"]


def test_both_services_restart_and_rotate_logs():
    compose = _compose("deepseek-1.5b")
    for service in ("vllm", "webui"):
        spec = compose["services"][service]
        assert spec["restart"] == "unless-stopped"
        assert spec["logging"]["driver"] == "json-file"
        assert set(spec["logging"]["options"]) == {"max-size", "max-file"}
        assert "healthcheck" in spec
    assert "webui-data" in compose["volumes"]


def test_vllms_own_cache_is_a_volume_that_outlives_the_container():
    compose = _compose("deepseek-1.5b")
    assert {"type": "volume", "source": "vllm-cache", "target": "/root/.cache/vllm"} in compose["services"]["vllm"][
        "volumes"
    ]
    assert "vllm-cache" in compose["volumes"]


def test_hf_cache_is_mounted_where_vllm_looks():
    volumes = _compose("deepseek-1.5b")["services"]["vllm"]["volumes"]
    assert {
        "type": "bind",
        "source": "/srv/hf",
        "target": "/root/.cache/huggingface",
        # A fresh machine has no cache directory yet; compose creates it.
        "bind": {"create_host_path": True},
    } in volumes


def test_header_says_generated():
    assert _render("deepseek-1.5b").splitlines()[0].startswith("# GENERATED")


def test_rendering_twice_gives_identical_text():
    assert _render("llama3-8b-gptq") == _render("llama3-8b-gptq")


def test_rope_scaling_is_passed_as_hf_overrides(tmp_path):
    path = tmp_path / "rope.yaml"
    path.write_text(
        "profiles:\n  llama3-8b:\n    max_model_len: 16384\n    rope_scaling: {rope_type: dynamic, factor: 2.0}\n",
        encoding="utf-8",
    )
    args = vllm_args(load_catalog(path).get("llama3-8b"))
    assert yaml.safe_load(_after(args, "--hf-overrides")) == {
        # llama3-8b's rope_theta is carried over: vLLM 0.32 loses it when rope_scaling is overridden.
        "rope_scaling": {"factor": 2.0, "rope_theta": 500000.0, "rope_type": "dynamic"}
    }


def test_undefined_template_variable_names_template_and_variable(monkeypatch):
    monkeypatch.setattr(
        render, "load_template", lambda name: "name: {{ project_name | q }}\nx: {{ no_such_variable | q }}\n"
    )
    with pytest.raises(RenderError) as info:
        render_template("bad.yml.j2", {"project_name": "p"})
    assert "bad.yml.j2" in info.value.message
    assert "no_such_variable" in info.value.message
    assert info.value.exit_code == 2


# ----- the rendered file's structure is fixed by code ----------------------------------------------

TAMPERED = {
    "privileged": ("    restart: unless-stopped\n", "    restart: unless-stopped\n    privileged: true\n"),
    "extra_mount": ("        target: /root/.cache/huggingface\n", "        target: /root/.cache/huggingface\n"
                    "      - /:/host\n"),
    "include": ("name: ", "include:\n  - other.yml\nname: "),
    "third_service": ("\nnetworks:\n", "  evil:\n    image: \"alpine:3\"\n\nnetworks:\n"),
    "published_vllm_port": ("    networks:\n      - backend\n", "    ports:\n      - \"8000:8000\"\n"
                            "    networks:\n      - backend\n"),
    "unescaped_dollar": ('"Admin"', '"$HOME"'),
    "duplicate_key": ("    restart: unless-stopped\n", "    restart: unless-stopped\n    restart: always\n"),
}  # fmt: skip


@pytest.mark.parametrize(("old", "new"), TAMPERED.values(), ids=TAMPERED.keys())
def test_structure_check_stops_anything_but_the_serving_spec(old, new):
    profile = load_catalog().get("deepseek-1.5b")
    settings = fixed_settings()
    context = render.render_context(build_spec(profile, settings))
    text = render_compose(profile, settings)
    assert old in text
    with pytest.raises(RenderError) as info:
        render.check_rendered(text.replace(old, new, 1), context)
    assert "rendered compose file" in info.value.message and info.value.exit_code == 2


def test_every_template_output_must_go_through_a_safe_filter(monkeypatch):
    monkeypatch.setattr(render, "load_template", lambda name: "name: {{ project_name }}\n")
    with pytest.raises(RenderError, match="did not go through"):
        render_template("unfiltered.yml.j2", {"project_name": "p"})


def test_ipv6_bind_address_renders_a_bracketed_port_mapping():
    compose = _compose("deepseek-1.5b", WEBUI_BIND_ADDRESS="::1")
    assert compose["services"]["webui"]["ports"] == ["[::1]:7860:8080"]


def test_dollar_and_quotes_in_values_are_escaped_for_yaml_and_compose():
    text = _render("deepseek-1.5b", WEBUI_ADMIN_NAME='Opé "$team" # {{ x }}: [a]')
    env = yaml.safe_load(text)["services"]["webui"]["environment"]
    assert env["WEBUI_ADMIN_NAME"] == 'Opé "$$team" # {{ x }}: [a]'

"""The command line as an operator runs it: `python -m controller` in a fresh project directory.

main() turns errors into messages and exit codes, so exit-code tests run a real subprocess.
"""

from __future__ import annotations

import json
import stat

import pytest
import yaml
from typer.testing import CliRunner

from controller.cli.main import app
from controller.config.envfile import read_env_file
from tests.unit._support import BUILTIN_NAMES, TINY_ARCH, write_catalog
from tests.unit.cli_support import SETTING_KEYS, collapse_whitespace, nothing_written, run_cli


@pytest.fixture
def invoke(monkeypatch, tmp_path):
    for key in SETTING_KEYS | {"CONTROLLER_HOME", "CONTROLLER_CATALOG"}:
        monkeypatch.delenv(key, raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["--project-dir", str(tmp_path), *args], catch_exceptions=False)


def test_models_json_lists_every_builtin_with_its_settings(invoke):
    result = invoke("models", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert sorted(rows) == BUILTIN_NAMES
    for row in rows.values():
        assert {"name", "model", "dtype", "quantization", "max_model_len"} <= set(row)
    gptq = rows["llama3-8b-gptq"]
    assert (gptq["model"], gptq["dtype"], gptq["quantization"], gptq["max_model_len"]) == (
        "TechxGenus/Meta-Llama-3-8B-Instruct-GPTQ",
        "half",
        "gptq",
        8192,
    )
    assert rows["deepseek-1.5b"]["quantization"] is None


def test_render_writes_compose_and_a_private_env(invoke, tmp_path):
    result = invoke("render", "llama3-8b-gptq")
    assert result.exit_code == 0
    compose_file = tmp_path / "compose" / "docker-compose.yml"
    env_file = tmp_path / ".env"
    compose = yaml.safe_load(compose_file.read_text())
    assert compose["services"]["vllm"]["command"][0] == "TechxGenus/Meta-Llama-3-8B-Instruct-GPTQ"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    secrets = read_env_file(env_file)
    assert {"WEBUI_ADMIN_PASSWORD", "WEBUI_SECRET_KEY", "VLLM_API_KEY"} <= set(secrets)
    text = compose_file.read_text()
    assert not any(value in text for value in secrets.values())


def test_render_unknown_model_exits_2_listing_valid_names_and_writes_nothing(tmp_path):
    result = run_cli(tmp_path, "render", "nope")
    assert result.returncode == 2
    assert "nope" in result.stderr
    assert all(name in result.stderr for name in BUILTIN_NAMES)
    assert "Traceback" not in result.stderr
    assert nothing_written(tmp_path)


def test_bad_user_catalog_exits_2_naming_file_profile_and_field(tmp_path):
    fields = {
        "model": "org/m",
        "served_model_name": "m",
        "max_model_len": 1024,
        "max_modle_len": 9,
        "architecture": TINY_ARCH,
    }
    catalog = write_catalog(tmp_path / "my-models.yaml", {"mine": fields})
    result = run_cli(tmp_path, "--catalog", str(catalog), "render", "mine")
    assert result.returncode == 2
    err = collapse_whitespace(result.stderr)
    assert str(catalog) in err and "'mine'" in err and "max_modle_len" in err
    assert "Traceback" not in result.stderr
    assert nothing_written(tmp_path) and not (tmp_path / ".controller").exists()


def test_weak_admin_password_exits_2_and_touches_nothing(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# ours\nWEBUI_ADMIN_PASSWORD='admin123'\n", encoding="utf-8")
    before = env_file.read_bytes()
    result = run_cli(tmp_path, "render", "deepseek-1.5b")
    assert result.returncode == 2
    assert "WEBUI_ADMIN_PASSWORD" in result.stderr
    assert "admin123" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert env_file.read_bytes() == before
    assert not (tmp_path / "compose").exists()


def test_plan_fp16_llama_on_12_gib_exits_1_with_fits_false(tmp_path):
    result = run_cli(tmp_path, "plan", "llama3-8b", "--gpu-memory", "12GiB", "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["fits"] is False
    assert any("llama3-8b-gptq" in r or "llama3-8b-awq" in r for r in data["recommendations"])
    assert "Traceback" not in result.stderr


def test_plan_gptq_llama_on_12_gib_exits_0(tmp_path):
    result = run_cli(tmp_path, "plan", "llama3-8b-gptq", "--gpu-memory", "12GiB", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["fits"] is True and data["gpu_memory_gib"] == 12.0 and data["memory_source"] == "--gpu-memory"
    assert nothing_written(tmp_path)


def test_debug_shows_the_traceback_of_an_error(tmp_path):
    result = run_cli(tmp_path, "--debug", "render", "nope")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "CatalogError" in result.stderr


def test_plan_refuses_a_context_above_the_scaled_one(tmp_path):
    result = run_cli(tmp_path, "plan", "llama3-8b-16k", "--gpu-memory", "80", "--max-model-len", "20000")
    assert result.returncode == 2
    assert "16384 tokens with its RoPE scaling" in result.stderr and "Traceback" not in result.stderr

"""Preflight refusals of `up` that come before any contact with Docker: gated models, memory fit,
and the confirmation that `down --volumes` needs. Run through the real CLI."""

from __future__ import annotations

from pathlib import Path

from tests.unit.cli_support import collapse_whitespace, run_cli


def _env(project: Path, **values: str) -> None:
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def test_gated_model_without_hf_token_is_refused_before_anything_starts(tmp_path):
    result = run_cli(tmp_path, "up", "llama3-8b")
    assert result.returncode == 2
    assert "gated" in result.stderr and "HF_TOKEN" in result.stderr
    assert not (tmp_path / "compose").exists()
    # A refused first run generates no secrets on disk: nothing changes before the checks pass.
    assert not (tmp_path / ".env").exists() and not (tmp_path / ".controller" / "journal.json").exists()


def test_model_that_does_not_fit_is_refused_with_recommendations(tmp_path):
    _env(tmp_path, GPU_MEMORY_GIB="12GiB", HF_TOKEN="hf_dummy_token_value")
    result = run_cli(tmp_path, "up", "llama3-8b")
    message = collapse_whitespace(result.stderr)
    assert result.returncode == 2
    assert "does not fit 12.0 GiB" in message
    assert "llama3-8b-gptq" in message and "--force" in message
    assert "hf_dummy_token_value" not in result.stderr + result.stdout
    assert not (tmp_path / "compose").exists()


def test_force_starts_anyway_with_a_warning(tmp_path, monkeypatch):
    # No engine to reach, so the run stops right after the checks this test is about, on any machine.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    _env(tmp_path, GPU_MEMORY_GIB="12", HF_TOKEN="hf_dummy_token_value")
    result = run_cli(tmp_path, "up", "llama3-8b", "--force")
    message = collapse_whitespace(result.stderr)
    assert "--force: starting anyway" in message
    assert "does not fit" in message and result.returncode == 2
    assert "Docker" in message


def test_low_concurrency_at_full_context_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    # 9 GiB: the engine model leaves llama3-8b-gptq about 1.9 full-length sequences (on 12 GiB,
    # where the old fixed 1 GiB + 8192-token overhead gave fewer than 4, it now has 4.5).
    _env(tmp_path, GPU_MEMORY_GIB="9")
    result = run_cli(tmp_path, "up", "llama3-8b-gptq")
    assert result.returncode == 2 and "Docker" in result.stderr
    assert "warning:" in result.stderr
    assert "full-length sequences fit at once" in collapse_whitespace(result.stderr)


def test_bad_gpu_memory_setting_names_the_setting(tmp_path):
    _env(tmp_path, GPU_MEMORY_GIB="lots")
    result = run_cli(tmp_path, "plan", "llama3-8b")
    assert result.returncode == 2
    assert "GPU_MEMORY_GIB" in result.stderr and "lots" in result.stderr


def test_down_volumes_without_a_terminal_needs_yes(tmp_path):
    result = run_cli(tmp_path, "down", "--volumes")
    assert result.returncode == 2
    assert "--yes" in result.stderr


def test_unreachable_docker_on_a_first_up_writes_nothing(tmp_path, monkeypatch):
    # Everything else is valid: the refusal comes from the engine, and it must come before the
    # generated secrets are stored (issue: a refused first run used to write .env anyway).
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    (tmp_path / "catalog.yaml").write_text(
        "profiles:\n  tiny-cpu:\n    model: ./models/tiny\n    served_model_name: tiny-cpu\n"
        "    max_model_len: 256\n    accelerator: cpu\n    architecture: {params_billion: 0.1, layers: 2,\n"
        "      hidden_size: 128, attention_heads: 2, kv_heads: 1, head_dim: 64, vocab_size: 512, max_context: 512}\n"
    )
    result = run_cli(tmp_path, "--catalog", str(tmp_path / "catalog.yaml"), "up", "tiny-cpu")
    assert result.returncode == 2, result.stderr
    assert "Docker" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / ".env").exists() and not (tmp_path / "compose").exists()
    assert not (tmp_path / ".controller" / "journal.json").exists()

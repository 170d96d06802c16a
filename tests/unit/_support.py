"""Small builders shared by the unit tests (no fixtures: pytest's own tmp_path/monkeypatch are used)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from controller.config.profile import Profile
from controller.config.profile_schema import validate_profile
from controller.config.settings import Settings, parse_settings

# Fixed, recognisable dummy secrets: a rendered file must contain none of them.
DUMMY_SECRETS = {
    "WEBUI_ADMIN_PASSWORD": "dummy-admin-password-0001",
    "WEBUI_SECRET_KEY": "dummy-webui-secret-key-0002",
    "VLLM_API_KEY": "dummy-vllm-api-key-0003",
}
FIXED_SETTINGS = {**DUMMY_SECRETS, "HF_CACHE_DIR": "/srv/hf", "COMPOSE_PROJECT_NAME": "llmstack"}

BUILTIN_NAMES = ["deepseek-1.5b", "llama3-8b", "llama3-8b-16k", "llama3-8b-awq", "llama3-8b-gptq"]

# A tiny model for the CPU backend; the numbers are small on purpose.
TINY_ARCH = {
    "params_billion": 0.1,
    "layers": 4,
    "hidden_size": 256,
    "attention_heads": 4,
    "kv_heads": 2,
    "head_dim": 64,
    "vocab_size": 32000,
    "max_context": 2048,
}
CPU_PROFILE = {
    "model": "./models/tiny",
    "served_model_name": "tiny-cpu",
    "dtype": "float32",
    "max_model_len": 2048,
    "accelerator": "cpu",
    "cpu_kv_cache_gib": 1,
    "architecture": TINY_ARCH,
}


def fixed_settings(**overrides: str) -> Settings:
    return parse_settings({**FIXED_SETTINGS, **overrides}, "test")


def write_catalog(path: Path, profiles: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"profiles": profiles}), encoding="utf-8")
    return path


def cpu_catalog(tmp_path: Path, *, with_model_dir: bool = True) -> Path:
    """A user catalog with one cpu profile `tiny-cpu` whose weights are ./models/tiny next to it."""
    if with_model_dir:
        (tmp_path / "models" / "tiny").mkdir(parents=True)
    return write_catalog(tmp_path / "catalog.yaml", {"tiny-cpu": CPU_PROFILE})


def fields_of(profile: Profile) -> dict:
    """A profile's fields as a catalog entry holds them (no name or source), to build a variant from."""
    fields = dataclasses.asdict(profile)
    del fields["name"], fields["source"]
    return fields


def make_profile(name: str = "p", **fields) -> Profile:
    base = {"model": "org/model", "served_model_name": name, "max_model_len": 2048, "architecture": TINY_ARCH}
    return validate_profile({**base, **fields, "name": name})


def make_hub_cache(cache_dir: Path, model_id: str, revision: str, files: dict[str, Path | bytes]) -> Path:
    """A Hugging Face hub cache holding `files` as revision `revision` of `model_id`, laid out as the hub
    library does: blobs/SHA256, snapshots/REV/FILE -> ../../blobs/SHA256, refs/main = REV."""
    import hashlib
    import os

    repo = cache_dir / "hub" / ("models--" + model_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return repo

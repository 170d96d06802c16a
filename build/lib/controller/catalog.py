"""Model profiles: typed, validated, from the built-in catalog plus an optional user catalog."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.errors import CatalogError

BUILTIN_CATALOG_NAME = "builtin"
QUANTIZED_METHODS = {"gptq", "gptq_marlin", "awq", "awq_marlin"}
# vLLM runs GPTQ/AWQ kernels in fp16 only; bf16 or fp32 activations are rejected at load time.
QUANTIZED_DTYPES = {"half", "float16"}
DTYPE_BYTES = {"half": 2, "float16": 2, "bfloat16": 2, "float": 4, "float32": 4, "auto": 2}
LOCAL_MODEL_MOUNT = "/models"
CPU_DEFAULT_KV_CACHE_GIB = 4


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Architecture(_Strict):
    """Facts from the model's config.json that memory planning needs."""

    params_billion: float = Field(gt=0)
    layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_context: int = Field(gt=0)
    weight_bits: Literal[4, 8, 16, 32] = 16
    quant_group_size: int | None = Field(default=None, gt=0)
    tied_embeddings: bool = False


class Profile(_Strict):
    name: str
    description: str = ""
    model: str = Field(min_length=1, description="Hugging Face id, or a local directory")
    served_model_name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    max_model_len: int = Field(gt=0)
    quantization: Literal["gptq", "gptq_marlin", "awq", "awq_marlin", "fp8"] | None = None
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=1)
    tensor_parallel_size: int = Field(default=1, ge=1)
    extra_args: list[str] = Field(default_factory=list)
    accelerator: Literal["gpu", "cpu"] = "gpu"
    gated: bool = False
    rope_scaling: dict[str, Any] | None = None
    # vLLM's parser for this model's tool-call format; set only for models trained to call tools.
    # Without one, Open WebUI is told to use prompt-based ("legacy") function calling for it.
    tool_call_parser: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    # A tool-aware chat template (a path inside the vLLM image), for models whose own lacks tools.
    chat_template: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
    cpu_kv_cache_gib: int | None = Field(default=None, ge=1)
    architecture: Architecture
    source: str = BUILTIN_CATALOG_NAME

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if self.quantization in QUANTIZED_METHODS and self.dtype not in QUANTIZED_DTYPES:
            raise ValueError(
                f"dtype '{self.dtype}' does not work with quantization '{self.quantization}'; set dtype: half"
            )
        if self.max_model_len > self.architecture.max_context and not self.rope_scaling:
            raise ValueError(
                f"max_model_len: {self.max_model_len} is above the model's context "
                f"({self.architecture.max_context}); lower it or set rope_scaling"
            )
        if self.chat_template is not None and self.tool_call_parser is None:
            raise ValueError("chat_template: only used together with tool_call_parser")
        if self.cpu_kv_cache_gib is not None and self.accelerator != "cpu":
            raise ValueError("cpu_kv_cache_gib: only applies to accelerator: cpu")
        return self

    @property
    def local_path(self) -> Path | None:
        """The host directory of a pre-downloaded model, or None for a Hugging Face id."""
        if self.model.startswith(("/", "./", "../", "~")):
            return Path(self.model).expanduser()
        return None

    @property
    def container_model(self) -> str:
        """What vLLM is told to serve: the HF id, or where the local directory is mounted."""
        return f"{LOCAL_MODEL_MOUNT}/{self.name}" if self.local_path else self.model

    @property
    def cpu_kv_cache_space_gib(self) -> int:
        return self.cpu_kv_cache_gib or CPU_DEFAULT_KV_CACHE_GIB

    @property
    def function_calling(self) -> Literal["native", "legacy"]:
        """How Open WebUI offers its tools for this model: in the request (native) needs vLLM's
        tool-call parser; otherwise Open WebUI picks tools by prompting the model itself."""
        return "native" if self.tool_call_parser else "legacy"

    @property
    def is_quantized(self) -> bool:
        return self.quantization is not None or self.architecture.weight_bits < 16


class Catalog:
    def __init__(self, profiles: dict[str, Profile]):
        self._profiles = dict(sorted(profiles.items()))

    def names(self) -> list[str]:
        return list(self._profiles)

    def profiles(self) -> list[Profile]:
        return list(self._profiles.values())

    def get(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            raise CatalogError(
                f"unknown model '{name}'",
                hint=f"valid models: {', '.join(self.names())} (add one with a user catalog: --catalog FILE)",
            ) from None


def _read_yaml(text: str, origin: str) -> dict[str, dict[str, Any]]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(f"catalog {origin}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or set(data) - {"profiles"} or not isinstance(data.get("profiles", {}), dict):
        raise CatalogError(
            f"catalog {origin}: expected a mapping with one key 'profiles: {{name: {{...}}}}'",
        )
    profiles = data.get("profiles") or {}
    for name, fields in profiles.items():
        if not isinstance(fields, dict):
            raise CatalogError(f"catalog {origin}: profile '{name}': expected a mapping of fields")
    return profiles


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A user profile that names a built-in changes only the fields it sets."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _resolve_local_model(fields: dict[str, Any], catalog_dir: Path) -> dict[str, Any]:
    model = fields.get("model")
    if isinstance(model, str) and model.startswith(("./", "../")):
        return {**fields, "model": str((catalog_dir / model).resolve())}
    return fields


def _build(name: str, fields: dict[str, Any], origin: str) -> Profile:
    try:
        return Profile.model_validate({**fields, "name": name, "source": origin})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if not field:
                # Checks across fields say which field they blame before the colon.
                field, _, msg = msg.partition(": ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling; see the built-in catalog for valid fields)"
            problems.append(f"field '{field}': {msg}")
        raise CatalogError(
            f"catalog {origin}: profile '{name}': {problems[0]}",
            details=problems[1:],
        ) from None


def builtin_catalog_text() -> str:
    return resources.files("controller").joinpath("builtin_models.yaml").read_text(encoding="utf-8")


def load_catalog(user_catalog: Path | None = None) -> Catalog:
    """Built-in profiles, then the user's catalog over them. Raises CatalogError on any problem."""
    raw = _read_yaml(builtin_catalog_text(), BUILTIN_CATALOG_NAME)
    origins = dict.fromkeys(raw, BUILTIN_CATALOG_NAME)
    if user_catalog is not None:
        path = Path(user_catalog).expanduser()
        if not path.is_file():
            raise CatalogError(
                f"catalog {path}: file not found",
                hint="set --catalog or CONTROLLER_CATALOG to an existing YAML file",
            )
        user = _read_yaml(path.read_text(encoding="utf-8"), str(path))
        for name, fields in user.items():
            fields = _resolve_local_model(fields, path.parent)
            raw[name] = _merge(raw[name], fields) if name in raw else fields
            origins[name] = str(path)
    return Catalog({name: _build(name, fields, origins[name]) for name, fields in raw.items()})


def check_local_model(profile: Profile) -> None:
    """A profile that serves a local directory needs that directory before anything starts."""
    local = profile.local_path
    if local is not None and not local.is_dir():
        raise CatalogError(
            f"catalog {profile.source}: profile '{profile.name}': field 'model': "
            f"local model directory {local} does not exist",
            hint="download the weights there first, or use a Hugging Face id",
        )


def local_weights_bytes(profile: Profile) -> int | None:
    """For a local model directory, the size of its safetensors files: the weights as stored."""
    local = profile.local_path
    if local is None or not local.is_dir():
        return None
    total = sum(f.stat().st_size for f in local.glob("*.safetensors"))
    return total or None

"""Model profiles: typed, validated, from the built-in catalog plus an optional user catalog."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from controller.config.values import printable
from controller.errors import CatalogError
from controller.files import expand_home, load_yaml, read_text_file, system_dir_problem

BUILTIN_CATALOG_NAME = "builtin"
QUANTIZED_METHODS = {"gptq", "gptq_marlin", "awq", "awq_marlin"}
# vLLM runs GPTQ/AWQ kernels in fp16 only; bf16 or fp32 activations are rejected at load time.
QUANTIZED_DTYPES = {"half", "float16"}
DTYPE_BYTES = {"half": 2, "float16": 2, "bfloat16": 2, "float": 4, "float32": 4, "auto": 2}
LOCAL_MODEL_MOUNT = "/models"
CPU_DEFAULT_KV_CACHE_GIB = 4
# The batch the server runs and vLLM profiles at start-up, always passed as flags so the memory
# plan and the server agree. Defaults: vLLM 0.32's own for its OpenAI server on cards below
# 70 GiB (engine/arg_utils.py get_batch_defaults: 2048 tokens, 256 sequences) and on the CPU
# (2048 tokens, 128 sequences). Chunked prefill (on by default in 0.32 for decoder models) lets
# the token budget be below max_model_len.
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
DEFAULT_MAX_NUM_SEQS = {"gpu": 256, "cpu": 128}
MAX_BATCH = 1 << 20


PROFILE_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
# Hugging Face's repo id rules: [namespace/]name, letters, digits, '-', '_', '.', at most 96 each.
_HF_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?"
HF_REPO_ID = re.compile(rf"(?:{_HF_PART}/)?{_HF_PART}", re.ASCII)
LOCAL_MODEL_PREFIXES = ("/", "./", "../", "~")
# Where local adapter directories are mounted (read-only), one per adapter name.
LORA_MOUNT = "/adapters"
# vLLM 0.32 config/lora.py MaxLoRARanks: --max-lora-rank takes only these.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Flags the controller derives from profile fields (or must own, like the key): not in extra_args.
CONTROLLED_FLAGS = frozenset(
    {
        "--model", "--host", "--port", "--api-key", "--served-model-name", "--dtype", "--max-model-len",
        "--quantization", "--kv-cache-dtype", "--gpu-memory-utilization", "--tensor-parallel-size",
        "--enable-auto-tool-choice", "--tool-call-parser", "--chat-template", "--hf-overrides",
        "--max-num-batched-tokens", "--max-num-seqs", "--reasoning-parser",
        "--enable-lora", "--lora-modules", "--max-lora-rank", "--max-loras",
    }
)  # fmt: skip


def _blame(field: str, message: str) -> PydanticCustomError:
    """A check across fields, with the field it blames kept apart from the message."""
    return PydanticCustomError("consistency", "{message}", {"field": field, "message": message})


def _model_reference(value: str) -> str:
    if value.startswith(LOCAL_MODEL_PREFIXES):
        printable(value)
        if any(ch in value for ch in "[]\\"):
            raise ValueError(f"local model path {value!r} may not contain [, ] or \\")
        problem = system_dir_problem(Path(value))
        if problem:
            raise ValueError(f"local model directory: {problem}")
        return value
    if not HF_REPO_ID.fullmatch(value) or "--" in value or ".." in value:
        raise ValueError(
            f"{ascii(value)} is neither a Hugging Face repo id (org/name: letters, digits, '-', '_', '.') "
            "nor a local directory (/absolute/path, ./relative or ~/path)"
        )
    return value


def _is_local(reference: str) -> bool:
    return reference.startswith(LOCAL_MODEL_PREFIXES)


def _vllm_arg(value: str) -> str:
    printable(value)
    flag = value.split("=", 1)[0]
    if flag in CONTROLLED_FLAGS:
        raise ValueError(f"{flag} is set by the controller (from the profile's fields); remove it")
    return value


LoraName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
ArgText = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_vllm_arg)]
JsonScalar = bool | int | float | str


class _Strict(BaseModel):
    # strict: YAML's `true` is not 1 and "8" is not 8; no inf/nan anywhere.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


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
    # config.json's rope_theta. vLLM 0.32 replaces the model's whole RoPE settings with an
    # --hf-overrides rope_scaling and then falls back to theta 10000 (measured: rope_parameters
    # lose rope_theta), so a profile with rope_scaling passes it again.
    rope_theta: float | None = Field(default=None, gt=0)
    # The MLP width (config.json intermediate_size): the largest activation in a forward pass.
    intermediate_size: int | None = Field(default=None, gt=0)
    weight_bits: Literal[4, 8, 16, 32] = 16
    quant_group_size: int | None = Field(default=None, gt=0)
    tied_embeddings: bool = False


class Profile(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=PROFILE_NAME_PATTERN)
    description: str = Field("", max_length=1000)
    model: Annotated[str, AfterValidator(_model_reference)] = Field(
        min_length=1, max_length=1024, description="Hugging Face id, or a local directory"
    )
    served_model_name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    max_model_len: int = Field(gt=0)
    quantization: Literal["gptq", "gptq_marlin", "awq", "awq_marlin", "fp8"] | None = None
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=1)
    # vLLM's --max-num-batched-tokens and --max-num-seqs; unset: the defaults above.
    max_num_batched_tokens: int | None = Field(default=None, ge=1, le=MAX_BATCH)
    max_num_seqs: int | None = Field(default=None, ge=1, le=MAX_BATCH)
    tensor_parallel_size: int = Field(default=1, ge=1)
    extra_args: list[ArgText] = Field(default_factory=list, max_length=64)
    accelerator: Literal["gpu", "cpu"] = "gpu"
    gated: bool = False
    rope_scaling: dict[str, JsonScalar | list[int | float]] | None = Field(default=None, max_length=32)
    # vLLM's parser for this model's tool-call format; set only for models trained to call tools.
    # Without one, Open WebUI is told to use prompt-based ("legacy") function calling for it.
    tool_call_parser: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    # A chat template (a path inside the vLLM container): a tool-aware one for models whose own
    # lacks tools, or one that opens the think block for a reasoning parser.
    # An absolute path may point into a local model's mount (/models/PROFILE/...).
    chat_template: str | None = Field(default=None, pattern=r"^/?[A-Za-z0-9_][A-Za-z0-9_./-]*$")
    cpu_kv_cache_gib: int | None = Field(default=None, ge=1)
    # vLLM's --reasoning-parser: splits the model's <think> block into the answer's `reasoning`.
    reasoning_parser: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    # LoRA adapters in PEFT format (what peft and Llama-Factory write): {name: HF id or local dir}.
    # Each is served as a model of its own name next to the base model.
    lora_adapters: dict[LoraName, Annotated[str, AfterValidator(_model_reference)]] = Field(
        default_factory=dict, max_length=64
    )
    # --max-lora-rank: at least every adapter's rank (`r`); unset, the smallest vLLM accepts that
    # covers the local adapters' ranks. An adapter from Hugging Face needs it set.
    max_lora_rank: Literal[VLLM_LORA_RANKS] | None = None  # type: ignore[valid-type]
    # --max-loras: adapters in one batch (vLLM keeps a buffer per slot); unset, all of them.
    max_loras: int | None = Field(default=None, ge=1)
    architecture: Architecture
    source: str = BUILTIN_CATALOG_NAME

    @field_validator("rope_scaling")
    @classmethod
    def _rope_keys(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, item in (value or {}).items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key, re.ASCII):
                raise ValueError(f"key {ascii(key)} is not a config.json field name")
            if isinstance(item, str):
                printable(item)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if self.quantization in QUANTIZED_METHODS and self.dtype not in QUANTIZED_DTYPES:
            raise _blame(
                "dtype", f"'{self.dtype}' does not work with quantization '{self.quantization}'; set dtype: half"
            )
        self._check_context()
        if self.chat_template is not None and self.tool_call_parser is None and self.reasoning_parser is None:
            raise _blame("chat_template", "only used together with tool_call_parser or reasoning_parser")
        if self.lora_adapters and self.lora_adapters.keys() & {self.served_model_name}:
            raise _blame("lora_adapters", f"adapter name '{self.served_model_name}' is the base model's served name")
        if not self.lora_adapters and (self.max_lora_rank is not None or self.max_loras is not None):
            raise _blame("max_lora_rank" if self.max_lora_rank is not None else "max_loras",
                         "only applies with lora_adapters")  # fmt: skip
        if self.max_lora_rank is None and any(not _is_local(ref) for ref in self.lora_adapters.values()):
            raise _blame(
                "max_lora_rank",
                "an adapter from Hugging Face is not read before vLLM starts; set max_lora_rank to its rank "
                f"(`r` in its adapter_config.json; one of {', '.join(map(str, VLLM_LORA_RANKS))})",
            )
        if self.cpu_kv_cache_gib is not None and self.accelerator != "cpu":
            raise _blame("cpu_kv_cache_gib", "only applies to accelerator: cpu")
        # vLLM 0.32 config/scheduler.py verify_max_model_len: the token budget must hold one
        # token of every sequence in a step.
        if self.batched_tokens < self.seqs:
            raise _blame(
                "max_num_batched_tokens" if self.max_num_batched_tokens is not None else "max_num_seqs",
                f"max_num_batched_tokens ({self.batched_tokens}) must be at least max_num_seqs ({self.seqs}); "
                "vLLM refuses a smaller token budget",
            )
        return self

    def _check_context(self) -> None:
        """max_model_len within the model's context, stretched by RoPE scaling's factor."""
        if self.rope_scaling:
            factor = self.rope_scaling.get("factor")
            if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 1:
                raise _blame("rope_scaling", "needs a numeric factor of at least 1 (e.g. factor: 2.0)")
            if "rope_theta" not in self.rope_scaling and self.architecture.rope_theta is None:
                raise _blame(
                    "rope_scaling",
                    "set architecture.rope_theta (config.json's rope_theta): vLLM 0.32 drops it when "
                    "rope_scaling is overridden and falls back to 10000",
                )
        if self.max_model_len > self.scaled_context:
            scaled = f", {self.scaled_context} with RoPE scaling" if self.rope_scaling else ""
            raise _blame(
                "max_model_len",
                f"{self.max_model_len} is above the model's context ({self.architecture.max_context}{scaled}); "
                "lower it" + (" or raise rope_scaling.factor" if self.rope_scaling else " or set rope_scaling"),
            )

    @property
    def scaled_context(self) -> int:
        """The longest context the model handles: config.json's, times RoPE scaling's factor."""
        factor = (self.rope_scaling or {}).get("factor", 1)
        return int(self.architecture.max_context * factor)

    @property
    def hf_overrides(self) -> dict[str, Any] | None:
        """--hf-overrides: the RoPE scaling, with the model's theta carried over (see Architecture)."""
        if not self.rope_scaling:
            return None
        theta = {"rope_theta": self.architecture.rope_theta} if self.architecture.rope_theta else {}
        return {"rope_scaling": {**theta, **self.rope_scaling}}

    @property
    def batched_tokens(self) -> int:
        """--max-num-batched-tokens as rendered: the profile's, else the default."""
        return self.max_num_batched_tokens or DEFAULT_MAX_NUM_BATCHED_TOKENS

    @property
    def seqs(self) -> int:
        """--max-num-seqs as rendered: the profile's, else the default for the accelerator."""
        return self.max_num_seqs or DEFAULT_MAX_NUM_SEQS[self.accelerator]

    @property
    def enforce_eager(self) -> bool:
        return "--enforce-eager" in self.extra_args

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
    data = load_yaml(text, f"catalog {origin}", CatalogError)
    data = {} if data is None else data
    if not isinstance(data, dict) or set(data) - {"profiles"} or not isinstance(data.get("profiles") or {}, dict):
        raise CatalogError(
            f"catalog {origin}: expected a mapping with one key 'profiles: {{name: {{...}}}}'",
        )
    profiles = data.get("profiles") or {}
    for name, fields in profiles.items():
        if not isinstance(name, str) or not re.fullmatch(PROFILE_NAME_PATTERN, name):
            raise CatalogError(
                f"catalog {origin}: profile name {ascii(name)}: use lowercase letters, digits, '.', '_' and '-', "
                "starting with a letter or digit"
            )
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
    """Relative local directories (the model's, the adapters') are relative to the catalog file."""

    def resolved(reference: Any) -> Any:
        if isinstance(reference, str) and reference.startswith(("./", "../")):
            return str((catalog_dir / reference).resolve())
        return reference

    fields = {**fields, "model": resolved(fields.get("model"))} if "model" in fields else dict(fields)
    adapters = fields.get("lora_adapters")
    if isinstance(adapters, dict):
        fields["lora_adapters"] = {name: resolved(ref) for name, ref in adapters.items()}
    return fields


def build_profile(name: str, fields: dict[str, Any], origin: str) -> Profile:
    """One validated profile; any problem is a CatalogError naming origin, profile and field."""
    try:
        return Profile.model_validate({**fields, "name": name, "source": origin})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "consistency":
                # Checks across fields name the field they blame in their context.
                field, msg = err["ctx"]["field"], err["ctx"]["message"]
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
        path = expand_home(Path(user_catalog), CatalogError, "catalog")
        if not path.exists():
            raise CatalogError(
                f"catalog {path}: file not found",
                hint="set --catalog or CONTROLLER_CATALOG to an existing YAML file",
            )
        user = _read_yaml(read_text_file(path, CatalogError, what="catalog"), str(path))
        for name, fields in user.items():
            fields = _resolve_local_model(fields, path.parent)
            raw[name] = _merge(raw[name], fields) if name in raw else fields
            origins[name] = str(path)
    return Catalog({name: build_profile(name, fields, origins[name]) for name, fields in raw.items()})


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

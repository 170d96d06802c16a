"""A model profile: what to serve and how, as one typed object, and the checks across its fields.

What each field may hold is checked where a catalog is read (controller.config.profile_schema,
pydantic). This module imports no pydantic: `models` and `plan` with the built-in catalog alone
take its profiles as they are (Profile.from_snapshot) and start about 0.1 s sooner without it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from controller.config.profile_fields import is_local

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
# Where local adapter directories are mounted (read-only), one per adapter name.
LORA_MOUNT = "/adapters"
# vLLM 0.32 config/lora.py MaxLoRARanks: --max-lora-rank takes only these.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# The values some fields may hold, named once for the profile and its schema.
WeightBits = Literal[4, 8, 16, 32]
Dtype = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
Quantization = Literal["gptq", "gptq_marlin", "awq", "awq_marlin", "fp8"]
KvCacheDtype = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]
Accelerator = Literal["gpu", "cpu"]


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """Facts from the model's config.json that memory planning needs."""

    params_billion: float
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    max_context: int
    # config.json's rope_theta. vLLM 0.32 replaces the model's whole RoPE settings with an
    # --hf-overrides rope_scaling and then falls back to theta 10000 (measured: rope_parameters
    # lose rope_theta), so a profile with rope_scaling passes it again.
    rope_theta: float | None = None
    # The MLP width (config.json intermediate_size): the largest activation in a forward pass.
    intermediate_size: int | None = None
    weight_bits: WeightBits = 16
    quant_group_size: int | None = None
    tied_embeddings: bool = False


@dataclass(frozen=True, kw_only=True)
class Profile:
    """One profile, as validated by controller.config.profile_schema.ProfileSchema, which declares
    the same fields with what each may hold (tests/unit/test_profile_schema.py checks that the two
    have the same fields, in the same order, with the same defaults and types)."""

    name: str
    description: str = ""
    model: str  # a Hugging Face id, or a local directory
    served_model_name: str
    dtype: Dtype = "auto"
    max_model_len: int
    quantization: Quantization | None = None
    kv_cache_dtype: KvCacheDtype = "auto"
    gpu_memory_utilization: float = 0.90
    # vLLM's --max-num-batched-tokens and --max-num-seqs; unset: the defaults above.
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    tensor_parallel_size: int = 1
    extra_args: list[str] = field(default_factory=list)
    accelerator: Accelerator = "gpu"
    gated: bool = False
    rope_scaling: dict[str, Any] | None = None
    # vLLM's parser for this model's tool-call format; set only for models trained to call tools.
    # Without one, Open WebUI is told to use prompt-based ("legacy") function calling for it.
    tool_call_parser: str | None = None
    # A chat template (a path inside the vLLM container): a tool-aware one for models whose own
    # lacks tools, or one that opens the think block for a reasoning parser.
    # An absolute path may point into a local model's mount (/models/PROFILE/...).
    chat_template: str | None = None
    cpu_kv_cache_gib: int | None = None
    # vLLM's --reasoning-parser: splits the model's <think> block into the answer's `reasoning`.
    reasoning_parser: str | None = None
    # LoRA adapters in PEFT format (what peft and Llama-Factory write): {name: HF id or local dir}.
    # Each is served as a model of its own name next to the base model.
    lora_adapters: dict[str, str] = field(default_factory=dict)
    # --max-lora-rank: at least every adapter's rank (`r`); unset, the smallest vLLM accepts that
    # covers the local adapters' ranks. An adapter from Hugging Face needs it set.
    max_lora_rank: int | None = None
    # --max-loras: adapters in one batch (vLLM keeps a buffer per slot); unset, all of them.
    max_loras: int | None = None
    architecture: Architecture
    source: str = BUILTIN_CATALOG_NAME

    @classmethod
    def from_snapshot(cls, name: str, fields: dict[str, Any]) -> Profile:
        """A profile of the package's built-in snapshot, taken as it is: validating it again at each
        start would import pydantic (about 0.1 s, more than the rest of `controller models`).
        tests/unit/test_catalog_snapshot.py checks that validation makes exactly this of each."""
        architecture = Architecture(**fields["architecture"])
        return cls(**{**fields, "name": name, "architecture": architecture})

    def replace(self, **changes: Any) -> Profile:
        """This profile with some fields changed, not validated again (as pydantic's model_copy did):
        for the planner's variants and a share of the GPU that the settings checked."""
        return dataclasses.replace(self, **changes)

    def consistency_problem(self) -> tuple[str, str] | None:
        """The first check across fields that fails, as (the field it blames, the message)."""
        if self.quantization in QUANTIZED_METHODS and self.dtype not in QUANTIZED_DTYPES:
            return ("dtype", f"'{self.dtype}' does not work with quantization '{self.quantization}'; set dtype: half")
        if problem := self._context_problem():
            return problem
        if self.chat_template is not None and self.tool_call_parser is None and self.reasoning_parser is None:
            return ("chat_template", "only used together with tool_call_parser or reasoning_parser")
        if self.lora_adapters and self.lora_adapters.keys() & {self.served_model_name}:
            return ("lora_adapters", f"adapter name '{self.served_model_name}' is the base model's served name")
        if not self.lora_adapters and (self.max_lora_rank is not None or self.max_loras is not None):
            return ("max_lora_rank" if self.max_lora_rank is not None else "max_loras",
                    "only applies with lora_adapters")  # fmt: skip
        if self.max_lora_rank is None and any(not is_local(ref) for ref in self.lora_adapters.values()):
            return (
                "max_lora_rank",
                "an adapter from Hugging Face is not read before vLLM starts; set max_lora_rank to its rank "
                f"(`r` in its adapter_config.json; one of {', '.join(map(str, VLLM_LORA_RANKS))})",
            )
        if self.cpu_kv_cache_gib is not None and self.accelerator != "cpu":
            return ("cpu_kv_cache_gib", "only applies to accelerator: cpu")
        # vLLM 0.32 config/scheduler.py verify_max_model_len: the token budget must hold one
        # token of every sequence in a step.
        if self.batched_tokens < self.seqs:
            return (
                "max_num_batched_tokens" if self.max_num_batched_tokens is not None else "max_num_seqs",
                f"max_num_batched_tokens ({self.batched_tokens}) must be at least max_num_seqs ({self.seqs}); "
                "vLLM refuses a smaller token budget",
            )
        return None

    def _context_problem(self) -> tuple[str, str] | None:
        """max_model_len within the model's context, stretched by RoPE scaling's factor."""
        if self.rope_scaling:
            factor = self.rope_scaling.get("factor")
            if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 1:
                return ("rope_scaling", "needs a numeric factor of at least 1 (e.g. factor: 2.0)")
            if "rope_theta" not in self.rope_scaling and self.architecture.rope_theta is None:
                return (
                    "rope_scaling",
                    "set architecture.rope_theta (config.json's rope_theta): vLLM 0.32 drops it when "
                    "rope_scaling is overridden and falls back to 10000",
                )
        if self.max_model_len > self.scaled_context:
            scaled = f", {self.scaled_context} with RoPE scaling" if self.rope_scaling else ""
            return (
                "max_model_len",
                f"{self.max_model_len} is above the model's context ({self.architecture.max_context}{scaled}); "
                "lower it" + (" or raise rope_scaling.factor" if self.rope_scaling else " or set rope_scaling"),
            )
        return None

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
        if is_local(self.model):
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

"""Memory planner (pure): does a profile fit a GPU, and how many full-length sequences at once.

The arithmetic follows how vLLM sizes its KV cache at start-up:
    KV budget = GPU memory x gpu_memory_utilization - weights - non-KV overhead
    KV bytes per token = 2 (K and V) x layers x KV heads x head dim x bytes of the KV dtype
    maximum concurrency = KV budget / (KV bytes per token x max_model_len)
On the CPU backend the KV budget is exactly VLLM_CPU_KVCACHE_SPACE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from controller.catalog import DTYPE_BYTES, Profile

GIB = 1024**3
GB = 1000**3
# vLLM allocates the KV cache in blocks of 16 tokens.
KV_BLOCK_TOKENS = 16
# Estimate of memory vLLM holds besides weights and KV cache, from its own start-up logs
# ("Model loading took", "Available KV cache memory", "Graph capturing ... took"):
#  - a fixed part for the CUDA context, NCCL/cuBLAS workspaces and captured CUDA graphs
#    (0.6-1.0 GiB on 8-24 GB cards with the default capture sizes);
#  - the profiling run's peak activations, which grow with the batch of prefill tokens
#    (max_num_batched_tokens, 8192 by default for the OpenAI server) times the hidden size:
#    about 16 fp16 values per token per hidden unit for attention, MLP and norm buffers.
FIXED_OVERHEAD_GIB = 1.0
PROFILE_BATCH_TOKENS = 8192
ACTIVATION_VALUES_PER_TOKEN_PER_HIDDEN = 16
CONCURRENCY_WARNING_BELOW = 4
# Quantized checkpoints keep one fp16 scale and one packed zero point per group of weights.
SCALE_BITS = 16


@dataclass(frozen=True)
class Plan:
    profile: str
    accelerator: str
    gpu_memory_gib: float
    gpu_memory_utilization: float
    max_model_len: int
    weights_gib: float
    overhead_gib: float
    kv_budget_gib: float
    kv_bytes_per_token: int
    kv_bytes_per_sequence: int
    kv_cache_gib: float
    max_concurrency: float
    max_model_len_fit: int
    fits: bool
    notes: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def weight_bytes(profile: Profile) -> int:
    """Weights in bytes: quantized linear layers at their bits plus group scales and zero points;
    embeddings and lm_head stay in 16 bit."""
    arch = profile.architecture
    total = arch.params_billion * 1e9
    if arch.weight_bits >= 16:
        return int(total * DTYPE_BYTES.get(profile.dtype, 2) if arch.weight_bits == 16 else total * 4)
    embedding = arch.vocab_size * arch.hidden_size
    unquantized = embedding if arch.tied_embeddings else 2 * embedding
    linear = total - unquantized
    group = arch.quant_group_size or 128
    bits_per_weight = arch.weight_bits + (SCALE_BITS + arch.weight_bits) / group
    return int(unquantized * 2 + linear * bits_per_weight / 8)


def kv_dtype_bytes(profile: Profile) -> int:
    if profile.kv_cache_dtype.startswith("fp8"):
        return 1
    if profile.dtype == "auto":
        # An "auto" dtype keeps the checkpoint's precision: 16 bit for these models.
        return 2
    return DTYPE_BYTES[profile.dtype]


def kv_bytes_per_token(profile: Profile) -> int:
    arch = profile.architecture
    kv_heads_per_gpu = max(1, arch.kv_heads // profile.tensor_parallel_size)
    return 2 * arch.layers * kv_heads_per_gpu * arch.head_dim * kv_dtype_bytes(profile)


def overhead_bytes(profile: Profile) -> int:
    if profile.accelerator == "cpu":
        return 0
    activations = PROFILE_BATCH_TOKENS * profile.architecture.hidden_size * ACTIVATION_VALUES_PER_TOKEN_PER_HIDDEN * 2
    return int(FIXED_OVERHEAD_GIB * GIB + activations)


def _round_down_to_block(tokens: float) -> int:
    return max(0, int(tokens) // KV_BLOCK_TOKENS * KV_BLOCK_TOKENS)


def plan(
    profile: Profile,
    *,
    gpu_memory_gib: float | None = None,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    weights_bytes_override: int | None = None,
    alternatives: list[Profile] | None = None,
) -> Plan:
    """Plan one profile. gpu_memory_gib is per GPU; ignored for cpu profiles, whose KV space is set."""
    length = max_model_len or profile.max_model_len
    utilization = gpu_memory_utilization or profile.gpu_memory_utilization
    tp = profile.tensor_parallel_size
    weights = (weights_bytes_override or weight_bytes(profile)) / tp
    per_token = kv_bytes_per_token(profile)
    per_sequence = per_token * length
    notes: list[str] = []
    if profile.accelerator == "cpu":
        memory_gib = 0.0
        budget = profile.cpu_kv_cache_space_gib * GIB
        overhead = 0
        notes.append("cpu profile: the KV cache is VLLM_CPU_KVCACHE_SPACE; weights live in RAM")
    else:
        if gpu_memory_gib is None:
            raise ValueError("gpu_memory_gib is required for a gpu profile")
        memory_gib = gpu_memory_gib
        overhead = overhead_bytes(profile)
        budget = gpu_memory_gib * GIB * utilization - weights - overhead
    budget = max(0.0, budget)
    kv_tokens = _round_down_to_block(budget / per_token)
    concurrency = kv_tokens / length
    context_cap = profile.architecture.max_context if not profile.rope_scaling else 10**9
    fit_len = min(kv_tokens, context_cap)
    fits = kv_tokens >= length
    if fits and concurrency < CONCURRENCY_WARNING_BELOW:
        notes.append(f"only {concurrency:.1f} full-length sequences fit at once; users will queue at long contexts")
    result = Plan(
        profile=profile.name,
        accelerator=profile.accelerator,
        gpu_memory_gib=memory_gib,
        gpu_memory_utilization=utilization,
        max_model_len=length,
        weights_gib=round(weights / GIB, 3),
        overhead_gib=round(overhead / GIB, 3),
        kv_budget_gib=round(budget / GIB, 3),
        kv_bytes_per_token=per_token,
        kv_bytes_per_sequence=per_sequence,
        kv_cache_gib=round(kv_tokens * per_token / GIB, 3),
        max_concurrency=round(concurrency, 2),
        max_model_len_fit=fit_len,
        fits=fits,
        notes=notes,
    )
    if not fits and profile.accelerator == "gpu":
        result.recommendations.extend(_recommend(result, profile, alternatives or []))
    return result


def _recommend(result: Plan, profile: Profile, alternatives: list[Profile]) -> list[str]:
    advice = []
    for other in alternatives:
        same_model = other.architecture.layers == profile.architecture.layers and (
            other.architecture.hidden_size == profile.architecture.hidden_size
        )
        if other.name == profile.name or not same_model or not other.is_quantized or other.accelerator != "gpu":
            continue
        alt = plan(other, gpu_memory_gib=result.gpu_memory_gib, max_model_len=result.max_model_len)
        if alt.fits:
            advice.append(
                f"use the quantized profile '{other.name}' ({alt.weights_gib:.1f} GiB of weights, "
                f"{alt.max_concurrency:.1f} full-length sequences)"
            )
    if result.max_model_len_fit >= 512:
        advice.append(f"lower max_model_len to {result.max_model_len_fit} (--max-model-len)")
    if result.gpu_memory_utilization < 0.95:
        higher = plan(
            profile,
            gpu_memory_gib=result.gpu_memory_gib,
            max_model_len=result.max_model_len,
            gpu_memory_utilization=0.95,
        )
        if higher.fits:
            advice.append("raise gpu_memory_utilization to 0.95 (only if nothing else uses this GPU)")
    if not advice:
        advice.append("this model needs a larger GPU or tensor parallelism across several GPUs")
    return advice


def resolve_gpu_memory(flag_gib: float | None, gpus: list, setting_gib: float | None) -> tuple[float | None, str]:
    """The GPU memory to plan for, and where it came from: --gpu-memory, else the detected GPU,
    else GPU_MEMORY_GIB. `plan`, `up` and `switch` all decide it here."""
    if flag_gib is not None:
        return flag_gib, "--gpu-memory"
    if gpus:
        gpu = gpus[0]
        return gpu.total_gib, f"GPU 0: {gpu.name}, compute {gpu.capability[0]}.{gpu.capability[1]}"
    if setting_gib is not None:
        return setting_gib, "GPU_MEMORY_GIB"
    return None, "none"

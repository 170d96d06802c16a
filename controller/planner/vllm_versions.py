"""How each vLLM version range sizes its KV cache, as far as it differs (pure): which versions are
modelled, which engine a version runs (V0 or V1), how it counts non-torch memory, the sampler's
working set at warm-up, whether CUDA graphs are subtracted, and the batch it picks when not told.
The arithmetic that uses these rules is controller.planner.engine; the sources read are listed there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.errors import InputError

# The vLLM version the images pin (settings.py: vllm/vllm-openai:v0.32.0 and the CPU image).
PINNED_VLLM_VERSION = "0.32"
# Oldest and newest versions whose code was read; others are refused or planned like the nearest.
OLDEST_MODELLED = (0, 6)
NEWEST_READ = (0, 32)

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

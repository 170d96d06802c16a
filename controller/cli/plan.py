"""`controller plan MODEL` (declared in controller.cli.main): the GPU memory to plan for, and the plan
printed for a person or as JSON. Reads only; detects GPUs only when no memory is given."""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.cli.console import print_json, print_plan
from controller.errors import InputError

if TYPE_CHECKING:
    from controller.config.catalog import Catalog
    from controller.config.settings import SiteConfig


def gpu_memory_option(text: str) -> float:
    from controller.config.values import parse_memory_gib

    try:
        return parse_memory_gib(text)
    except ValueError as exc:
        raise InputError(f"--gpu-memory {exc}") from None


def _detect_gpus() -> list:
    from controller.runtime.gpu import detect_gpus  # only when asked to detect: NVML and nvidia-smi are slow

    return detect_gpus()


def run_plan(site: SiteConfig, catalog: Catalog, model: str, *, gpu_memory: str | None, max_model_len: int | None,
             utilization: float | None, vllm_version: str | None, explain: bool, as_json: bool) -> bool:  # fmt: skip
    """Plan and print; True when the model fits. Bad input is an InputError before any detection."""
    from controller.config.local_model import local_weights_bytes
    from controller.config.settings import gpu_memory_setting
    from controller.planner.fit import plan
    from controller.planner.gpu_memory import resolve_gpu_memory
    from controller.planner.vllm_versions import parse_version

    profile = catalog.get(model)
    if max_model_len is not None and max_model_len > profile.scaled_context:
        raise InputError(
            f"--max-model-len {max_model_len} is above the context of '{profile.name}' "
            f"({profile.scaled_context} tokens{' with its RoPE scaling' if profile.rope_scaling else ''})",
            hint="plan for a shorter context, or add (or raise) rope_scaling in the profile in your catalog",
        )
    if vllm_version is not None:
        parse_version(vllm_version)
    flag = gpu_memory_option(gpu_memory) if gpu_memory is not None else None
    gpus = _detect_gpus() if profile.accelerator == "gpu" and flag is None else []
    memory, source = resolve_gpu_memory(flag, gpus, gpu_memory_setting(site.env_file))
    if profile.accelerator == "gpu" and memory is None:
        raise InputError(
            "no GPU detected to plan for",
            hint="pass --gpu-memory 12GiB (or set GPU_MEMORY_GIB in .env)",
        )
    result = plan(
        profile,
        gpu_memory_gib=memory,
        max_model_len=max_model_len,
        gpu_memory_utilization=utilization,
        weights_bytes_override=local_weights_bytes(profile),
        alternatives=catalog.profiles(),
        vllm_version=vllm_version,
        capability=gpus[0].capability if gpus else None,
        gpu_name=gpus[0].name if gpus else "",
    )
    if as_json:
        print_json({**result.as_dict(), "memory_source": source})
    else:
        print_plan(profile.name, memory, source, result, explain=explain)
    return result.fits

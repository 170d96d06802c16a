"""`controller models` and `controller plan MODEL`: the profiles, and whether one fits the GPU (the
GPU memory to plan for, and the plan). Reads only; detects GPUs only when no memory is given."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.console import print_models, print_plan
from controller.cli.context import JsonOption, ModelArg, context, finite
from controller.cli.output import emit
from controller.errors import InputError

if TYPE_CHECKING:
    from controller.config.catalog import Catalog
    from controller.config.site import SiteConfig


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
    from controller.config.env_values import gpu_memory_setting
    from controller.config.local_model import local_weights_bytes
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
    emit(result, as_json=as_json, json_of=lambda r: {**r.as_dict(), "memory_source": source},
         text=lambda r: print_plan(profile.name, memory, source, r, explain=explain))  # fmt: skip
    return result.fits


def models(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the model profiles (built-in and from your catalog)."""
    from controller.planner.engine import GIB
    from controller.planner.model_memory import GB, weight_bytes

    rows = []
    for profile in context(ctx).catalog().profiles():
        weights = weight_bytes(profile)
        rows.append(
            {
                "name": profile.name,
                "model": profile.model,
                "served_model_name": profile.served_model_name,
                "dtype": profile.dtype,
                "quantization": profile.quantization,
                "max_model_len": profile.max_model_len,
                "accelerator": profile.accelerator,
                "gated": profile.gated,
                "weights_gb": round(weights / GB, 2),
                "weights_gib": round(weights / GIB, 2),
                "source": profile.source,
            }
        )
    emit(rows, as_json=as_json, text=print_models)


def plan_command(
    ctx: typer.Context,
    model: ModelArg,
    gpu_memory: Annotated[
        str | None, typer.Option("--gpu-memory", help="GPU memory, e.g. 12GiB [default: detected, or GPU_MEMORY_GIB].")
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option("--max-model-len", min=1, max=10_000_000, help="Context to plan for.")
    ] = None,
    utilization: Annotated[
        float | None,
        typer.Option("--gpu-memory-utilization", min=0.01, max=1.0, callback=finite, help="Fraction vLLM may use."),
    ] = None,
    vllm_version: Annotated[
        str | None,
        typer.Option("--vllm-version", help="Plan for this vLLM version, e.g. 0.10 [default: the image's, 0.32]."),
    ] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show each term of the KV budget and its source.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Tell whether MODEL fits the GPU, and how many full-length chats it serves at once."""
    c = context(ctx)
    fits = run_plan(c.site, c.catalog(), model, gpu_memory=gpu_memory, max_model_len=max_model_len,
                    utilization=utilization, vllm_version=vllm_version, explain=explain, as_json=as_json)  # fmt: skip
    if not fits:
        raise typer.Exit(1)


def add_commands(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("plan")(plan_command)

"""Checks of the operator's input before launch that need no Docker: a gated model's token, and
whether the model fits the GPU. The target adds its own checks (engine, runtime, port, disk)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from controller.config.directory_settings import DirectorySettings
from controller.config.profile import Profile
from controller.config.settings import Settings
from controller.errors import PreflightError
from controller.planner.engine import GIB
from controller.planner.fit import Plan


def check_gated(profile: Profile, settings: Settings, env_file: Path) -> None:
    if profile.gated and not settings.hf_token:
        raise PreflightError(
            f"'{profile.name}' ({profile.model}) is a gated Hugging Face repository and HF_TOKEN is not set",
            hint=f"accept the licence on huggingface.co, create a read token and set HF_TOKEN=... in {env_file}",
        )


def check_ldap(directory: DirectorySettings, admin_email: str | None = None) -> None:
    """A stack whose sign-in cannot reach its directory locks everyone but the local admin out."""
    from controller.runtime.directory_probe import probe_ldap

    probe = probe_ldap(directory, admin_email)
    if not probe.ok:
        raise PreflightError(f"LDAP=on, but {probe.finding}", hint=f"{probe.fix}; `controller doctor` checks it again")


def check_fit(result: Plan, free_gpu_gib: float | None, *, force: bool, warn: Callable[[str], None]) -> None:
    if not result.fits:
        message = (
            f"'{result.profile}' does not fit {result.gpu_memory_gib:.1f} GiB of GPU memory: "
            f"{result.weights_gib:.1f} GiB of weights leave {result.kv_budget_gib:.2f} GiB for the KV cache, "
            f"one {result.max_model_len}-token sequence needs {result.kv_bytes_per_sequence / GIB:.2f} GiB"
        )
        if not force:
            raise PreflightError(message, hint="; ".join(result.recommendations) + " (or --force to try anyway)")
        warn(message + " (--force: starting anyway)")
    for note in result.notes:
        warn(note)
    wanted = result.gpu_memory_gib * result.gpu_memory_utilization
    if free_gpu_gib is not None and free_gpu_gib < wanted:
        warn(
            f"only {free_gpu_gib:.1f} GiB of the GPU is free and vLLM wants {wanted:.1f} GiB: "
            "another process holds GPU memory (see nvidia-smi)"
        )

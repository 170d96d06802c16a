"""Decisions that depend on the GPU's CUDA compute capability (pure)."""

from __future__ import annotations

from controller.config.profile import Profile

AMPERE = (8, 0)
MARLIN_KERNELS = {"gptq": "gptq_marlin", "awq": "awq_marlin"}
PLAIN_KERNELS = {v: k for k, v in MARLIN_KERNELS.items()}


def parse_capability(text: str) -> tuple[int, int]:
    major, _, minor = text.strip().partition(".")
    return int(major), int(minor or 0)


def effective_dtype(profile: Profile, capability: tuple[int, int] | None) -> str:
    """bfloat16 needs compute capability 8.0 (Ampere); older cards run the model in half."""
    if profile.dtype == "bfloat16" and capability is not None and capability < AMPERE:
        return "half"
    return profile.dtype


def effective_quantization(profile: Profile, capability: tuple[int, int] | None) -> str | None:
    """Marlin kernels are much faster but need compute capability 8.0.

    With no GPU to ask (rendering on another machine), assume the Marlin kernel: every card
    this stack targets (RTX 30xx/40xx, A100, H100) has it.
    """
    quantization = profile.quantization
    if quantization is None or profile.accelerator == "cpu":
        return quantization
    if capability is not None and capability < AMPERE:
        return PLAIN_KERNELS.get(quantization, quantization)
    return MARLIN_KERNELS.get(quantization, quantization)

"""Which GPU memory to plan for, decided in one place for `plan`, `up`, `switch` and `doctor`."""

from __future__ import annotations


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

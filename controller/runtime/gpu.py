"""GPU inventory (NVML, falling back to nvidia-smi) and whether Docker can reach an NVIDIA runtime."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from controller.errors import ControllerError
from controller.planner.capability import parse_capability
from controller.planner.engine import GIB


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    capability: tuple[int, int]

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GIB

    @property
    def free_gib(self) -> float:
        return self.free_bytes / GIB


NVIDIA_SMI_QUERY = "index,name,memory.total,memory.free,compute_cap"


def parse_nvidia_smi(csv_text: str) -> list[Gpu]:
    """Parse `nvidia-smi --query-gpu=index,name,memory.total,memory.free,compute_cap
    --format=csv,noheader,nounits` (memory in MiB)."""
    gpus = []
    for line in csv_text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        index, name, total, free, cap = parts
        gpus.append(
            Gpu(int(index), name, int(float(total)) * 1024**2, int(float(free)) * 1024**2, parse_capability(cap))
        )
    return gpus


def from_nvml(nvml) -> list[Gpu]:
    """Read GPUs through an NVML module (pynvml from nvidia-ml-py); raises its NVMLError if absent."""
    nvml.nvmlInit()
    try:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(
                Gpu(
                    index,
                    name.decode() if isinstance(name, bytes) else name,
                    int(memory.total),
                    int(memory.free),
                    (int(major), int(minor)),
                )
            )
        return gpus
    finally:
        nvml.nvmlShutdown()


# The banner of plain `nvidia-smi`: "| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2 |".
# `--query-gpu` has the driver but not the CUDA version the driver supports.
_DRIVER_VERSION = re.compile(r"Driver Version:\s*([0-9][0-9.]*)")
_CUDA_VERSION = re.compile(r"CUDA Version:\s*([0-9][0-9.]*)")


def parse_nvidia_smi_banner(text: str) -> tuple[str | None, str | None]:
    """(driver version, highest CUDA version the driver supports) from plain `nvidia-smi` output."""
    driver, cuda = _DRIVER_VERSION.search(text), _CUDA_VERSION.search(text)
    return (driver.group(1) if driver else None), (cuda.group(1) if cuda else None)


def query_nvidia_smi(smi: str) -> list[Gpu]:
    """The GPUs as `nvidia-smi` lists them; raises ControllerError when it fails (no driver loaded)."""
    from controller.runtime.docker import run_command

    out = run_command([smi, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"], timeout=20).stdout
    return parse_nvidia_smi(out)


def detect_gpus() -> list[Gpu]:
    """Every NVIDIA GPU on this host; an empty list where there is none or no driver.

    NVML and the subprocess wrapper are imported on use, when detection is asked for, so that
    importing this module (and `controller plan --gpu-memory ...`) stays cheap.
    """
    try:
        import pynvml

        return from_nvml(pynvml)
    except Exception:  # noqa: BLE001 - any NVML failure means "ask nvidia-smi instead"
        pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        return query_nvidia_smi(smi)
    except ControllerError:
        return []


def docker_has_nvidia_runtime(info: dict) -> bool:
    """From `docker info`: an 'nvidia' runtime, or CDI devices named nvidia.com/gpu."""
    if "nvidia" in (info.get("Runtimes") or {}):
        return True
    cdi = info.get("DiscoveredDevices") or []
    return any(str(dev.get("ID", "")).startswith("nvidia.com/gpu") for dev in cdi)

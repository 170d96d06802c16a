"""`controller doctor`'s GPU checks: the NVIDIA driver and CUDA, each GPU against the profile
(dtype, Marlin), the planner on the first GPU, and whether a container can see a GPU (pure).
"""

from __future__ import annotations

from controller.config.profile import Profile
from controller.doctor.records import (
    FAIL,
    OK,
    WARN,
    Check,
    ContainerGpuFacts,
    DockerFacts,
    NvidiaFacts,
    dotted,
    parse_version,
)
from controller.planner.capability import AMPERE, effective_dtype, effective_quantization
from controller.planner.fit import plan
from controller.planner.gpu_memory import resolve_gpu_memory
from controller.runtime.gpu import Gpu

# vLLM's CUDA images are built for CUDA 12; NVIDIA's CUDA 12 needs driver 525.60.13 or newer.
MIN_CUDA_MAJOR = 12
CUDA12_DRIVER = "525.60.13"
NVIDIA_TOOLKIT_FIX = (
    "install nvidia-container-toolkit, run `nvidia-ctk runtime configure --runtime=docker` and restart Docker"
)


def _cpu_way_forward(cpu_profiles: list[str]) -> str:
    if cpu_profiles:
        return f"use a cpu profile: {', '.join(cpu_profiles)} (e.g. `controller doctor {cpu_profiles[0]}`)"
    return (
        "add a profile with `accelerator: cpu` to your catalog (README: A CPU-only demo, `make demo`), "
        "or run on a machine with an NVIDIA GPU"
    )


def check_nvidia(profile: Profile, nvidia: NvidiaFacts, cpu_profiles: list[str]) -> Check:
    """The NVIDIA driver and CUDA version, or that there is no GPU, and what that means for the profile."""
    name = "NVIDIA driver"
    details = {"driver": nvidia.driver_version, "cuda": nvidia.cuda_version, "gpus": len(nvidia.gpus)}
    if nvidia.smi_path is None or nvidia.error or not nvidia.gpus:
        if nvidia.smi_path is None:
            what = "no NVIDIA GPU on this machine (nvidia-smi is not installed)"
        elif nvidia.error:
            what = f"no usable NVIDIA GPU: nvidia-smi failed ({nvidia.error})"
        else:
            what = "no NVIDIA GPU on this machine (nvidia-smi lists none)"
        if profile.accelerator == "cpu":
            return Check(name, OK, f"{what}; '{profile.name}' runs on the CPU", details=details)
        fix = _cpu_way_forward(cpu_profiles)
        if nvidia.error:
            fix = f"load the NVIDIA driver (reinstall it or reboot), or {fix}"
        return Check(name, FAIL, f"{what}; '{profile.name}' needs one", fix, details)
    finding = f"driver {nvidia.driver_version or '?'}, CUDA {nvidia.cuda_version or '?'}, {len(nvidia.gpus)} GPU(s)"
    if profile.accelerator == "cpu":
        return Check(name, OK, f"{finding}; '{profile.name}' runs on the CPU and does not use them", details=details)
    cuda = parse_version(nvidia.cuda_version)
    if cuda and cuda[0] < MIN_CUDA_MAJOR:
        return Check(
            name, FAIL, f"{finding}: vLLM's images need CUDA {MIN_CUDA_MAJOR}",
            f"install NVIDIA driver {CUDA12_DRIVER} or newer", details,
        )  # fmt: skip
    return Check(name, OK, finding, details=details)


def check_gpu(profile: Profile, gpu: Gpu) -> Check:
    """One GPU: name, memory, compute capability, and what follows for the profile (dtype, Marlin)."""
    dtype = effective_dtype(profile, gpu.capability)
    quantization = effective_quantization(profile, gpu.capability)
    capability = dotted(gpu.capability)
    ampere = gpu.capability >= AMPERE
    supports = "bfloat16 and Marlin kernels" if ampere else f"no bfloat16, no Marlin kernels (need {dotted(AMPERE)})"
    runs = f"--dtype {dtype}" + (f" instead of {profile.dtype}" if dtype != profile.dtype else "")
    if quantization:
        runs += f", --quantization {quantization}"
    finding = (
        f"{gpu.name}, {gpu.total_gib:.1f} GiB ({gpu.free_gib:.1f} free), compute {capability}: {supports}; "
        f"'{profile.name}' runs with {runs}"
    )
    details = {
        "index": gpu.index, "name": gpu.name, "memory_gib": round(gpu.total_gib, 2),
        "free_gib": round(gpu.free_gib, 2), "compute_capability": capability,
        "bfloat16": ampere, "marlin": ampere, "dtype": dtype, "quantization": quantization,
    }  # fmt: skip
    return Check(f"GPU {gpu.index}", OK, finding, details=details)


def check_gpu_memory(profile: Profile, gpus: list[Gpu], setting_gib: float | None,
                     catalog_profiles: list[Profile]) -> Check:  # fmt: skip
    """The planner on the first GPU (the one vLLM gets), as `up` runs it before starting."""
    memory, source = resolve_gpu_memory(None, gpus, setting_gib)
    gpu = gpus[0]
    result = plan(profile, gpu_memory_gib=memory, alternatives=catalog_profiles, capability=gpu.capability,
                  gpu_name=gpu.name)  # fmt: skip
    details = {"gpu_memory_gib": memory, "source": source, "fits": result.fits,
               "weights_gib": round(result.weights_gib, 2), "kv_cache_tokens": result.kv_cache_tokens,
               "max_concurrency": round(result.max_concurrency, 1)}  # fmt: skip
    if not result.fits:
        return Check(
            "GPU memory", FAIL,
            f"'{profile.name}' does not fit {memory:.1f} GiB: {result.weights_gib:.1f} GiB of weights leave "
            f"{result.kv_budget_gib:.2f} GiB for the KV cache",
            "; ".join(result.recommendations[:2]) or f"see `controller plan {profile.name} --explain`", details,
        )  # fmt: skip
    finding = (
        f"'{profile.name}' fits {memory:.1f} GiB: {result.weights_gib:.1f} GiB of weights, "
        f"KV cache {result.kv_cache_tokens} tokens, {result.max_concurrency:.1f} full-length chats at once"
    )
    wanted = memory * result.gpu_memory_utilization
    if gpu.free_gib < wanted:
        return Check(
            "GPU memory", WARN, f"{finding}; but only {gpu.free_gib:.1f} GiB is free and vLLM wants {wanted:.1f}",
            "another process holds GPU memory: find it with `nvidia-smi` and stop it", details,
        )  # fmt: skip
    return Check("GPU memory", OK, finding, details=details)


def check_nvidia_runtime(docker: DockerFacts) -> Check:
    if docker.nvidia_runtime:
        return Check("NVIDIA runtime", OK, "Docker has the nvidia runtime (NVIDIA Container Toolkit)")
    return Check("NVIDIA runtime", FAIL, "Docker has no nvidia runtime: containers cannot see a GPU",
                 NVIDIA_TOOLKIT_FIX)  # fmt: skip


def check_gpu_container(result: ContainerGpuFacts) -> Check:
    name = "GPU in a container"
    if not result.ran:
        return Check(name, WARN, f"not tried: the image {result.image} is not on this machine",
                     "pull it (`docker pull`), then run `controller doctor` again")  # fmt: skip
    listed = [line.strip() for line in result.output.splitlines() if line.strip().startswith("GPU ")]
    if result.error or not listed:
        return Check(name, FAIL, f"a `--gpus all` container sees no GPU: {result.error or 'nvidia-smi -L is empty'}",
                     NVIDIA_TOOLKIT_FIX)  # fmt: skip
    return Check(name, OK, f"a `--gpus all` container sees {len(listed)} GPU(s): {listed[0]}")

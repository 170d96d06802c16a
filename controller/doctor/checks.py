"""`controller doctor`: what on this machine would stop `up` for a profile, check by check (pure).

Each check reads the facts that controller.doctor.facts gathered and returns ok, warn or fail with
a one-line finding and a one-line fix. Nothing here touches the machine, so every conclusion is
unit-tested from recorded outputs (tests/unit/data/nvidia-smi/).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller.config.profile import Profile
from controller.planner.capability import AMPERE, effective_dtype, effective_quantization
from controller.planner.engine import GIB
from controller.planner.fit import plan
from controller.planner.gpu_memory import resolve_gpu_memory
from controller.planner.model_memory import weight_bytes
from controller.runtime.compose_target import DISK_MARGIN
from controller.runtime.gpu import Gpu

OK, WARN, FAIL = "ok", "warn", "fail"

# The oldest engine this stack is run and tested on (Debian's docker.io 20.10, API 1.41).
MIN_ENGINE = (20, 10)
# `docker compose pull --policy missing`, which `up` runs, came with Compose 2.22.0.
MIN_COMPOSE = (2, 22)
# vLLM's CUDA images are built for CUDA 12; NVIDIA's CUDA 12 needs driver 525.60.13 or newer.
MIN_CUDA_MAJOR = 12
CUDA12_DRIVER = "525.60.13"
NVIDIA_TOOLKIT_FIX = (
    "install nvidia-container-toolkit, run `nvidia-ctk runtime configure --runtime=docker` and restart Docker"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn or fail
    finding: str
    fix: str | None = None
    details: dict = field(default_factory=dict)


# ----- facts (gathered by controller.doctor.facts; recorded ones in the unit tests) -----------


@dataclass(frozen=True)
class NvidiaFacts:
    smi_path: str | None  # None: nvidia-smi is not installed
    gpus: list[Gpu] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    error: str | None = None  # nvidia-smi is there but failed (no driver loaded)


@dataclass(frozen=True)
class DockerFacts:
    engine_version: str | None = None
    engine_error: str | None = None
    nvidia_runtime: bool = False
    compose_version: str | None = None
    compose_error: str | None = None


@dataclass(frozen=True)
class ImageFacts:
    role: str  # "vLLM" or "Open WebUI"
    setting: str  # the .env key that names it
    image: str
    present: bool
    pullable: bool | None = None  # None: not asked (present)
    error: str | None = None


@dataclass(frozen=True)
class PortFacts:
    port: int
    address: str
    ours: list[str] = field(default_factory=list)  # containers of this stack publishing it
    foreign: list[str] = field(default_factory=list)  # other containers publishing it
    program: bool = False  # a program outside Docker listens on it


@dataclass(frozen=True)
class DiskFacts:
    cache_dir: Path
    checked_at: Path  # the cache or its nearest existing parent
    free_bytes: int
    model_cached: bool  # the HF id's snapshot is in the cache
    local_model_found: bool = False  # a profile serving a local directory: that it exists


@dataclass(frozen=True)
class EnvFacts:
    path: Path
    exists: bool
    mode: int | None = None
    missing_secrets: list[str] = field(default_factory=list)
    hf_token_set: bool = False
    gpu_memory_gib: float | None = None
    offline: bool = False  # OFFLINE=true in the settings
    settings_error: str | None = None
    settings_hint: str | None = None


@dataclass(frozen=True)
class ContainerGpuFacts:
    """The one-shot `--gpus` container: run only when the engine has an NVIDIA runtime and the image is here."""

    image: str
    ran: bool
    output: str = ""
    error: str | None = None


@dataclass(frozen=True)
class Facts:
    nvidia: NvidiaFacts
    docker: DockerFacts
    env: EnvFacts
    images: list[ImageFacts] = field(default_factory=list)  # empty when the settings are invalid
    port: PortFacts | None = None
    disk: DiskFacts | None = None
    gpu_container: ContainerGpuFacts | None = None


# ----- the checks --------------------------------------------------------------------------


def diagnose(profile: Profile, facts: Facts, *, catalog_profiles: list[Profile], offline: bool = False) -> list[Check]:
    """Every check for `profile` on the machine the facts describe, in the order an operator fixes them."""
    cpu_profiles = [p.name for p in catalog_profiles if p.accelerator == "cpu"]
    checks = [check_nvidia(profile, facts.nvidia, cpu_profiles)]
    if profile.accelerator == "gpu" and facts.nvidia.gpus:
        checks += [check_gpu(profile, gpu) for gpu in facts.nvidia.gpus]
        checks.append(check_gpu_memory(profile, facts.nvidia.gpus, facts.env.gpu_memory_gib, catalog_profiles))
    checks.append(check_engine(facts.docker))
    if profile.accelerator == "gpu" and facts.docker.engine_version:
        checks.append(check_nvidia_runtime(facts.docker))
        if facts.gpu_container is not None:
            checks.append(check_gpu_container(facts.gpu_container))
    checks.append(check_compose(facts.docker))
    checks += [check_image(image) for image in facts.images]
    if facts.disk is not None:
        checks.append(check_disk(profile, facts.disk))
    if facts.port is not None:
        checks.append(check_port(facts.port))
    checks += check_settings(profile, facts.env)
    checks += offline_checks(profile, facts, offline=offline)
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


def _version(text: str | None) -> tuple[int, ...]:
    """'20.10.24+dfsg1' -> (20, 10, 24); 'v2.40.3' -> (2, 40, 3); () when there is no version."""
    match = re.match(r"v?(\d+(?:\.\d+)*)", (text or "").strip())
    return tuple(int(n) for n in match.group(1).split(".")) if match else ()


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in version)


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
    cuda = _version(nvidia.cuda_version)
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
    capability = _dotted(gpu.capability)
    ampere = gpu.capability >= AMPERE
    supports = "bfloat16 and Marlin kernels" if ampere else f"no bfloat16, no Marlin kernels (need {_dotted(AMPERE)})"
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


def check_engine(docker: DockerFacts) -> Check:
    name = "Docker engine"
    if docker.engine_error or not docker.engine_version:
        return Check(name, FAIL, f"cannot reach the Docker engine: {docker.engine_error or 'no version'}",
                     "start it (systemctl start docker) and check this user may use /var/run/docker.sock")  # fmt: skip
    version = _version(docker.engine_version)
    if version[:2] < MIN_ENGINE:
        return Check(name, FAIL, f"Docker {docker.engine_version} is older than {_dotted(MIN_ENGINE)}",
                     f"upgrade Docker Engine to {_dotted(MIN_ENGINE)} or newer")  # fmt: skip
    return Check(name, OK, f"Docker {docker.engine_version} (at least {_dotted(MIN_ENGINE)})")


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


def check_compose(docker: DockerFacts) -> Check:
    name = "Compose v2"
    fix = f"install the docker-compose-plugin package (Compose {_dotted(MIN_COMPOSE)} or newer)"
    if docker.compose_error or not docker.compose_version:
        return Check(name, FAIL, f"`docker compose` does not work: {docker.compose_error or 'no version'}", fix)
    if _version(docker.compose_version)[:2] < MIN_COMPOSE:
        return Check(name, FAIL, f"Compose {docker.compose_version} is older than {_dotted(MIN_COMPOSE)} "
                     "(`pull --policy missing`)", fix)  # fmt: skip
    return Check(name, OK, f"Compose {docker.compose_version} (at least {_dotted(MIN_COMPOSE)})")


def check_image(image: ImageFacts) -> Check:
    name = f"{image.role} image"
    details = {"image": image.image, "present": image.present, "pullable": image.pullable, "error": image.error}
    if image.present:
        return Check(name, OK, f"{image.image} is on this machine", details=details)
    if image.pullable:
        return Check(name, WARN, f"{image.image} is not on this machine; `up` pulls it",
                     "nothing to do, or pull it now (`docker pull`) to start faster", details)  # fmt: skip
    # The engine's error ends in its cause ("...: no such host"); all of it is in details.
    why = f" ({image.error.rsplit(': ', 1)[-1]})" if image.error else ""
    return Check(
        name, FAIL, f"{image.image} is not on this machine and its registry does not answer{why}",
        f"bring it with `controller bundle load` (or `docker load`), or set {image.setting} in .env to an "
        "image on this machine", details,
    )  # fmt: skip


def check_disk(profile: Profile, disk: DiskFacts) -> Check:
    """Free disk for the HF cache against the profile's weights; a local model needs none."""
    name = "disk for weights"
    local = profile.local_path
    if local is not None:
        if not disk.local_model_found:
            return Check(name, FAIL, f"the local model directory {local} does not exist",
                         "download the weights there first, or use a Hugging Face id")  # fmt: skip
        return Check(name, OK, f"serves the local directory {local}; nothing to download")
    need = weight_bytes(profile)
    details = {"free_gib": round(disk.free_bytes / GIB, 1), "weights_gib": round(need / GIB, 1),
               "cached": disk.model_cached, "path": str(disk.checked_at)}  # fmt: skip
    free = f"{disk.free_bytes / GIB:.1f} GiB free at {disk.checked_at}"
    if disk.model_cached:
        return Check(name, OK, f"{profile.model} is in the HF cache ({disk.cache_dir}); {free}", details=details)
    if disk.free_bytes < need * DISK_MARGIN:
        return Check(name, FAIL, f"{free}; the weights of {profile.model} need about {need / GIB:.1f} GiB",
                     "free disk space, or set HF_CACHE_DIR in .env to a larger disk", details)  # fmt: skip
    return Check(name, OK, f"{free}; the weights need about {need / GIB:.1f} GiB", details=details)


def check_port(port: PortFacts) -> Check:
    name = "Web UI port"
    where = f"{port.address}:{port.port} (WEBUI_PORT)"
    fix = "stop it, or set WEBUI_PORT in .env to a free port"
    if port.foreign:
        return Check(name, FAIL, f"{where} is published by container {', '.join(port.foreign)}", fix)
    if port.ours:
        return Check(name, OK, f"{where} is held by this stack ({', '.join(port.ours)})")
    if port.program:
        return Check(name, FAIL, f"{where} is in use by a program outside Docker",
                     "find it with `ss -ltnp`; " + fix)  # fmt: skip
    return Check(name, OK, f"{where} is free")


def check_settings(profile: Profile, env: EnvFacts) -> list[Check]:
    """.env: valid, mode 0600, its secrets present, and HF_TOKEN for a gated model."""
    checks = []
    if env.settings_error:
        checks.append(Check("settings", FAIL, env.settings_error, env.settings_hint or f"correct {env.path}"))
    if not env.exists:
        checks.append(Check(".env", OK, f"{env.path} does not exist yet: `up` creates it with generated "
                            "secrets (mode 0600)"))  # fmt: skip
    elif env.mode is not None and env.mode & 0o077:
        checks.append(Check(".env", FAIL, f"{env.path} has mode {env.mode:04o}: other users can read its secrets",
                            f"chmod 600 {env.path}", {"mode": f"{env.mode:04o}"}))  # fmt: skip
    else:
        mode = f"{env.mode:04o}" if env.mode is not None else "?"
        checks.append(Check(".env", OK, f"{env.path} has mode {mode}", details={"mode": mode}))
    if env.exists and env.missing_secrets:
        checks.append(Check(
            "secrets", WARN, f"not set yet: {', '.join(env.missing_secrets)}; `up` generates them into .env",
            f"to have them now: `controller render {profile.name}`",
        ))  # fmt: skip
    elif env.exists:
        checks.append(Check("secrets", OK, "the admin password, Web UI secret key and vLLM API key are set"))
    if profile.gated:
        if env.hf_token_set:
            checks.append(Check("HF_TOKEN", OK, f"set for the gated model {profile.model}"))
        else:
            checks.append(Check(
                "HF_TOKEN", FAIL, f"{profile.model} is a gated Hugging Face repository and HF_TOKEN is not set",
                f"accept the licence on huggingface.co, create a read token and set HF_TOKEN=... in {env.path}",
            ))  # fmt: skip
    return checks


def offline_checks(profile: Profile, facts: Facts, *, offline: bool) -> list[Check]:
    """With OFFLINE=true nothing may be downloaded: every image and the weights must be here.

    The fixes name the bundle commands (controller.lifecycle.offline), the one verified way to bring both.
    """
    from controller.lifecycle.offline import BUNDLE_HINT

    hint = BUNDLE_HINT.format(profile=profile.name)
    if not offline:
        return []
    checks = []
    missing = [i.image for i in facts.images if not i.present]
    if missing:
        checks.append(Check("offline: images", FAIL, f"OFFLINE=true and not on this machine: {', '.join(missing)}",
                            hint))  # fmt: skip
    else:
        checks.append(Check("offline: images", OK, "every image is on this machine"))
    if profile.local_path is not None:
        return checks
    if facts.disk is not None and facts.disk.model_cached:
        checks.append(Check("offline: weights", OK, f"{profile.model} is in the HF cache"))
    else:
        checks.append(Check(
            "offline: weights", FAIL, f"OFFLINE=true and {profile.model} is not in the HF cache",
            hint,
        ))  # fmt: skip
    return checks


def as_dict(profile: Profile, checks: list[Check], model_source: str) -> dict:
    counts = {status: sum(c.status == status for c in checks) for status in (OK, WARN, FAIL)}
    return {
        "model": profile.name,
        "accelerator": profile.accelerator,
        "model_source": model_source,
        "ok": not failed(checks),
        "counts": counts,
        "checks": [asdict(c) for c in checks],
    }

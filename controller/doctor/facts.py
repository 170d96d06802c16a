"""The facts `controller doctor` judges, read from this machine: nvidia-smi, the Docker engine,
Compose, images, the Web UI port, the HF cache's disk and `.env`. Reads only: nothing is written,
no secret is generated or shown. The one container it may start (`--gpus all`, nvidia-smi -L) is
removed when it ends."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from controller.config.backups import backup_dir, newest_backup
from controller.config.certificates import check_files
from controller.config.directory_settings import DirectorySettings
from controller.config.env_values import collect_values
from controller.config.profile import Profile
from controller.config.settings import GENERATED_SECRETS, Settings, read_settings
from controller.config.site import SiteConfig
from controller.deploy.spec import build_spec
from controller.doctor.records import (
    BackupFacts,
    ContainerGpuFacts,
    DiskFacts,
    DockerFacts,
    EnvFacts,
    Facts,
    ImageFacts,
    NvidiaFacts,
    PortFacts,
)
from controller.errors import ControllerError, DockerUnavailable
from controller.runtime import hf_cache
from controller.runtime.docker import PROJECT_LABEL, Engine, compose_v2_version
from controller.runtime.gpu import docker_has_nvidia_runtime, parse_nvidia_smi_banner, query_nvidia_smi
from controller.runtime.host import free_disk_bytes, host_port_in_use

# A container that only runs nvidia-smi -L; a slow first start of a large image included.
GPU_CONTAINER_TIMEOUT_S = 120


def gather(site: SiteConfig, profile: Profile) -> Facts:
    """Everything the checks need; what cannot be read (no engine, invalid settings) stays empty
    and the check that explains why fails instead."""
    env, settings = env_facts(site)
    engine, docker = docker_facts()
    images, port, disk, container = [], None, None, None
    if settings is not None:
        disk = disk_facts(settings, profile)
    if settings is not None and engine is not None:
        spec = build_spec(profile, settings)
        vllm_setting = "VLLM_CPU_IMAGE" if profile.accelerator == "cpu" else "VLLM_IMAGE"
        images = [image_facts(engine, "vLLM", vllm_setting, spec.vllm_image),
                  image_facts(engine, "Open WebUI", "WEBUI_IMAGE", spec.webui_image)]  # fmt: skip
        port = port_facts(engine, settings)
        if profile.accelerator == "gpu" and docker.nvidia_runtime:
            container = gpu_container_facts(engine, images[0])
    return Facts(nvidia_facts(), docker, env, images, port, disk, container, backup_facts(site))


def backup_facts(site: SiteConfig) -> BackupFacts:
    newest = newest_backup(backup_dir(site.root))
    if newest is None:
        return BackupFacts(str(backup_dir(site.root)))
    return BackupFacts(str(backup_dir(site.root)), str(newest[0]), newest[1])


def nvidia_facts() -> NvidiaFacts:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return NvidiaFacts(smi_path=None)
    from controller.runtime.docker import run_command

    try:
        gpus = query_nvidia_smi(smi)
        driver, cuda = parse_nvidia_smi_banner(run_command([smi], timeout=20).stdout)
    except ControllerError as exc:
        return NvidiaFacts(smi_path=smi, error=_one_line(exc))
    return NvidiaFacts(smi, gpus, driver, cuda)


def docker_facts() -> tuple[Engine | None, DockerFacts]:
    try:
        compose_version, compose_error = compose_v2_version(), None
    except DockerUnavailable as exc:
        compose_version, compose_error = None, _one_line(exc)
    try:
        engine = Engine()
        version = engine.client.version().get("Version")
        runtime = docker_has_nvidia_runtime(engine.info())
    except ControllerError as exc:
        return None, DockerFacts(engine_error=_one_line(exc), compose_version=compose_version,
                                 compose_error=compose_error)  # fmt: skip
    return engine, DockerFacts(version, None, runtime, compose_version, compose_error)


def image_facts(engine: Engine, role: str, setting: str, image: str) -> ImageFacts:
    """Is the image here; if not, does its registry answer for it (no download)."""
    import docker.errors

    try:
        engine.client.images.get(image)
        return ImageFacts(role, setting, image, present=True)
    except docker.errors.ImageNotFound:
        pass
    try:
        engine.client.images.get_registry_data(image)
        return ImageFacts(role, setting, image, present=False, pullable=True)
    except docker.errors.APIError as exc:
        return ImageFacts(role, setting, image, present=False, pullable=False, error=str(exc.explanation or exc))


def gpu_container_facts(engine: Engine, vllm_image: ImageFacts) -> ContainerGpuFacts:
    """`docker run --rm --gpus all IMAGE nvidia-smi -L`: the toolkit puts nvidia-smi in the container.

    Created, started and removed step by step: `containers.run(remove=True)` leaves the container
    behind when the engine refuses to start it (no GPU driver), which is the case to report.
    """
    import docker.errors
    import docker.types
    import requests

    if not vllm_image.present:
        return ContainerGpuFacts(vllm_image.image, ran=False)
    gpus = docker.types.DeviceRequest(count=-1, capabilities=[["gpu", "utility"]])
    try:
        container = engine.client.containers.create(
            vllm_image.image, ["-L"], entrypoint="nvidia-smi", device_requests=[gpus]
        )
    except docker.errors.APIError as exc:
        return ContainerGpuFacts(vllm_image.image, ran=True, error=str(exc.explanation or exc))
    try:
        container.start()
        code = container.wait(timeout=GPU_CONTAINER_TIMEOUT_S).get("StatusCode")
        output = container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")
    except docker.errors.APIError as exc:
        return ContainerGpuFacts(vllm_image.image, ran=True, error=str(exc.explanation or exc))
    except requests.exceptions.RequestException:
        return ContainerGpuFacts(vllm_image.image, ran=True, error=f"no answer within {GPU_CONTAINER_TIMEOUT_S} s")
    finally:
        container.remove(force=True)
    error = None if code == 0 else f"nvidia-smi -L exited with {code}: {_first_line(output)}"
    return ContainerGpuFacts(vllm_image.image, ran=True, output=output, error=error)


def port_facts(engine: Engine, settings: Settings) -> PortFacts:
    port, address = settings.webui_port, str(settings.webui_bind_address)
    holders = engine.port_holders(port)
    ours = [c.name for c in holders if c.labels.get(PROJECT_LABEL) == settings.compose_project_name]
    foreign = [c.name for c in holders if c.name not in ours]
    program = not holders and host_port_in_use(address, port)
    return PortFacts(port, address, ours, foreign, program)


def disk_facts(settings: Settings, profile: Profile) -> DiskFacts:
    cache = settings.hf_cache_path
    checked_at, free = free_disk_bytes(cache)
    local = profile.local_path
    return DiskFacts(
        cache, checked_at, free, model_in_cache(cache, profile.model), local is not None and local.is_dir()
    )


def model_in_cache(cache: Path, model: str) -> bool:
    """The revision in use is in Hugging Face's cache layout (the same test `up` makes offline)."""
    return hf_cache.find_snapshot(cache, model) is not None


def env_facts(site: SiteConfig) -> tuple[EnvFacts, Settings | None]:
    """`.env`'s mode, which secrets it lacks (never their values), and whether the settings are valid."""
    path = site.env_file
    exists = path.exists()
    mode = path.stat().st_mode & 0o777 if exists else None
    try:
        values = collect_values(path).values
        loaded = read_settings(site)  # generates missing secrets in memory only; nothing is written
    except ControllerError as exc:
        return EnvFacts(path, exists, mode, settings_error=_one_line(exc), settings_hint=exc.hint), None
    settings = loaded.settings
    missing = [key for key in GENERATED_SECRETS if not values.get(key)]
    tls, days_left = loaded.tls, None
    if tls.mode == "files":  # read_settings checked the pair; here only how long it lasts
        days_left = check_files(tls.cert_file, tls.key_file, tls.host).days_left(datetime.now(UTC))
    facts = EnvFacts(path, exists, mode, missing, settings.hf_token is not None, settings.gpu_memory_gib,
                     offline=settings.offline, tls_mode=tls.mode, tls_host=tls.host,
                     tls_days_left=days_left,
                     sign_in=sign_in_probes(loaded.directory, settings.webui_admin_email))  # fmt: skip
    return facts, settings


def sign_in_probes(directory: DirectorySettings, admin_email: str) -> tuple:
    from controller.runtime.directory_probe import probe_ldap, probe_oidc

    probes = [("ldap", probe_ldap(directory, admin_email))] if directory.ldap == "on" else []
    return tuple(probes + ([("oidc", probe_oidc(directory))] if directory.oidc == "on" else []))


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _one_line(exc: ControllerError) -> str:
    return "; ".join([exc.message, *exc.details[:1]])

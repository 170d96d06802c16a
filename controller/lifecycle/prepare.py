"""Everything `up`, `switch` and `render` check before they touch anything: the profile and
settings validated and rendered in memory (`Prepared`), then preflight (input first, then the
machine). Nothing here writes a file or starts a container."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from controller.config.catalog import Catalog
from controller.config.local_model import check_local_model, local_weights_bytes
from controller.config.lora import check_adapters
from controller.config.profile import Profile
from controller.config.settings import LoadedSettings, Settings, read_settings
from controller.config.site import SiteConfig
from controller.deploy.compose_file import render_spec
from controller.deploy.spec import ServingSpec, build_spec
from controller.errors import PreflightError
from controller.journal import Deployment, now_iso
from controller.lifecycle.blue_green import DRAIN_QUIET_S
from controller.phases import Deadlines
from controller.planner.fit import Plan, plan, planned_kv_tokens
from controller.planner.gpu_memory import resolve_gpu_memory
from controller.planner.model_memory import weight_bytes
from controller.runtime.target import Target


@dataclass(frozen=True)
class Options:
    deadlines: Deadlines = field(default_factory=Deadlines)
    lock_timeout_s: float = 600.0
    force: bool = False
    switch_strategy: str = "auto"
    # Host memory a blue-green switch on CPU leaves free beyond both instances (SWITCH_RESERVE_GIB).
    reserve_gib: float = 2.0
    # How long the old instance must stay idle before the drain ends (controller.lifecycle.blue_green).
    drain_quiet_s: float = DRAIN_QUIET_S


@dataclass
class Prepared:
    profile: Profile
    loaded: LoadedSettings
    spec: ServingSpec
    compose_text: str
    gpus: list = field(default_factory=list)
    plan: Plan | None = None
    free_gpu_gib: float | None = None
    gpu_memory_gib: float | None = None
    capacity: str | None = None
    # The KV cache tokens vLLM should log for this deployment, and the check against what it did.
    planned_kv_tokens: int | None = None
    kv_tokens: dict | None = None

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    def deployment(self) -> Deployment:
        spec = self.spec
        return Deployment(
            spec.profile_name,
            spec.served_model_name,
            now_iso(),
            self.compose_text,
            spec.function_calling,
            spec.vllm_service,
            self.capacity,
            self.kv_tokens,
        )


def prepare(catalog: Catalog, site: SiteConfig, model: str, *, slot: Callable[[Settings], str],
            gpus: Callable[[Profile], list]) -> Prepared:  # fmt: skip
    """Validate MODEL's profile and the settings, and render for the vLLM slot `slot(settings)`."""
    profile = check_adapters(_checked(catalog.get(model)))
    loaded = read_settings(site)
    return _assemble(catalog, profile, loaded, slot(loaded.settings), gpus(profile))


def respec(catalog: Catalog, prepared: Prepared, *, slot: str, gpu_memory_utilization: float | None) -> Prepared:
    """The same profile and settings for another slot and GPU share (a blue-green switch's new
    instance): .env is not read again and GPUs are not detected again."""
    profile = prepared.profile
    if gpu_memory_utilization is not None:
        profile = profile.replace(gpu_memory_utilization=gpu_memory_utilization)
    return _assemble(catalog, profile, prepared.loaded, slot, prepared.gpus)


def _checked(profile: Profile) -> Profile:
    check_local_model(profile)
    return profile


def _assemble(catalog: Catalog, profile: Profile, loaded: LoadedSettings, slot: str, gpus: list) -> Prepared:
    settings = loaded.settings
    capability = gpus[0].capability if gpus else None
    spec = build_spec(
        profile,
        settings,
        capability,
        service=slot,
        monitoring=loaded.monitoring,
        tls=loaded.tls,
        directory=loaded.directory,
    )
    prepared = Prepared(profile, loaded, spec, render_spec(spec), gpus=gpus)
    memory, _source = resolve_gpu_memory(None, gpus, settings.gpu_memory_gib)
    prepared.gpu_memory_gib = memory
    weights_override = local_weights_bytes(profile)
    if profile.accelerator == "cpu" or memory:
        prepared.planned_kv_tokens = planned_kv_tokens(profile, gpu_memory_gib=memory, capability=capability,
                                                       weights_bytes_override=weights_override)  # fmt: skip
    if profile.accelerator == "gpu" and memory:
        prepared.plan = plan(profile, gpu_memory_gib=memory, weights_bytes_override=weights_override,
                             alternatives=catalog.profiles())  # fmt: skip
        prepared.free_gpu_gib = gpus[0].free_gib if gpus else None
    return prepared


def preflight(prepared: Prepared, target: Target, catalog: Catalog, site: SiteConfig, *, force: bool,
              warn: Callable[[str], None], switching: bool = False) -> None:  # fmt: skip
    """Every check that can fail before a container is touched: input first, then the machine."""
    from controller.lifecycle.preflight import check_fit, check_gated

    settings, profile = prepared.settings, prepared.profile
    if not settings.offline:  # offline, the weights must be cached already: no token needed
        check_gated(profile, settings, site.env_file)
    if prepared.plan is not None:
        check_fit(prepared.plan, prepared.free_gpu_gib, force=force, warn=warn)
    needs = None if profile.local_path or settings.offline else weight_bytes(profile)
    if settings.offline:
        from controller.lifecycle.offline import check_offline_ready

        images = [prepared.spec.vllm_image, prepared.spec.webui_image, *prepared.loaded.monitoring.images]
        check_offline_ready(profile, settings, target.missing_images(images))
    if prepared.loaded.directory.ldap == "on" and not switching:  # a switch leaves sign-in as it is
        from controller.lifecycle.preflight import check_ldap

        check_ldap(prepared.loaded.directory, settings.webui_admin_email)
    for warning in target.preflight(switching=switching, needs_download_bytes=needs):
        warn(warning)
    if profile.accelerator == "gpu" and not target.gpu_runtime():
        cpu_profiles = [p.name for p in catalog.profiles() if p.accelerator == "cpu"]
        raise PreflightError(
            f"'{profile.name}' needs an NVIDIA GPU, but this Docker engine has no NVIDIA runtime",
            hint="install the NVIDIA driver and nvidia-container-toolkit, run "
            "`nvidia-ctk runtime configure --runtime=docker` and restart Docker"
            + (f"; or use a cpu profile: {', '.join(cpu_profiles)}" if cpu_profiles else ""),
        )

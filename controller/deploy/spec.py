"""The serving spec: one frozen description of what runs, built once from profile + settings +
GPU facts. Every renderer (Compose today, Kubernetes later) and every probe reads it; the fixed
ports, URLs, labels and names are defined here once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from controller.config.directory_settings import LDAP_CA_IN_CONTAINER, DirectorySettings
from controller.config.lora import container_path, local_adapters, max_loras
from controller.config.monitoring_settings import MonitoringSettings
from controller.config.profile import Profile
from controller.config.settings import Settings
from controller.config.tls_settings import TlsSettings
from controller.deploy.front_door import FrontDoorSpec, build_front_door
from controller.deploy.monitoring import MonitoringSpec, build_monitoring
from controller.deploy.sign_in import oidc_environment
from controller.planner.capability import effective_dtype, effective_quantization

VLLM_PORT = 8000
WEBUI_PORT = 8080
# How Open WebUI reaches vLLM inside the deployment (no trailing slash: Open WebUI appends paths).
VLLM_BASE_URL = f"http://vllm:{VLLM_PORT}/v1"
HEALTH_PATH = "/health"
SERVICES = ("vllm", "webui")
# The two slots vLLM can run in. A stack starts in the first; a blue-green switch starts the new
# model in the other slot beside the old one, so the two alternate. Open WebUI reaches a slot by
# its service name.
SLOTS = ("vllm", "vllm-b")


def vllm_url(service: str) -> str:
    """The OpenAI base URL of the vLLM in `service`, as Open WebUI reaches it."""
    return f"http://{service}:{VLLM_PORT}/v1"


# Open WebUI holds a connection to every slot, always (see controller.lifecycle.webui_setup.WebUISetup.connect):
# its environment lists them for its first start, `;`-separated as Open WebUI reads them.
WEBUI_BACKEND_URLS = ";".join(vllm_url(slot) for slot in SLOTS)


def other_slot(service: str) -> str:
    return SLOTS[1] if service == SLOTS[0] else SLOTS[0]


PROFILE_LABEL = "io.llmstack.profile"
SERVED_NAME_LABEL = "io.llmstack.served-model-name"
HF_CACHE_TARGET = "/root/.cache/huggingface"
# The only `${...}` a rendered file may hold: the runtime fills them from .env, so no secret is in it.
SECRET_REFERENCES = {
    "VLLM_API_KEY": "${VLLM_API_KEY:?set VLLM_API_KEY in .env}",
    "WEBUI_SECRET_KEY": "${WEBUI_SECRET_KEY:?set WEBUI_SECRET_KEY in .env}",
    "WEBUI_ADMIN_PASSWORD": "${WEBUI_ADMIN_PASSWORD:?set WEBUI_ADMIN_PASSWORD in .env}",
    "HF_TOKEN": "${HF_TOKEN:-}",
    "GRAFANA_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD in .env}",
    "OAUTH_CLIENT_SECRET": "${OAUTH_CLIENT_SECRET:?set OAUTH_CLIENT_SECRET in .env}",
}

# Its API key once per connection; the one reference besides SECRET_REFERENCES' own.
WEBUI_BACKEND_KEYS = ";".join([SECRET_REFERENCES["VLLM_API_KEY"]] * len(SLOTS))


@dataclass(frozen=True)
class GpuReservation:
    count: str | None
    device_ids: tuple[str, ...] | None

    @classmethod
    def from_setting(cls, value: str) -> GpuReservation:
        if value.startswith("device="):
            return cls(count=None, device_ids=tuple(value.removeprefix("device=").split(",")))
        return cls(count=value, device_ids=None)


def vllm_args(profile: Profile, capability: tuple[int, int] | None = None) -> list[str]:
    """The arguments after `vllm serve`; the API key comes from the environment, never argv."""
    args = [
        profile.container_model,
        "--served-model-name", profile.served_model_name,
        "--host", "0.0.0.0",
        "--port", str(VLLM_PORT),
        "--dtype", effective_dtype(profile, capability),
        "--max-model-len", str(profile.max_model_len),
        # The batch `controller plan` planned for: vLLM profiles exactly this at start-up.
        "--max-num-batched-tokens", str(profile.batched_tokens),
        "--max-num-seqs", str(profile.seqs),
    ]  # fmt: skip
    quantization = effective_quantization(profile, capability)
    if quantization:
        args += ["--quantization", quantization]
    if profile.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", profile.kv_cache_dtype]
    if profile.accelerator == "gpu":
        args += ["--gpu-memory-utilization", f"{profile.gpu_memory_utilization:g}",
                 "--tensor-parallel-size", str(profile.tensor_parallel_size)]  # fmt: skip
    if profile.tool_call_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", profile.tool_call_parser]
    if profile.reasoning_parser:
        args += ["--reasoning-parser", profile.reasoning_parser]
    if profile.chat_template:
        args += ["--chat-template", profile.chat_template]
    if profile.hf_overrides:
        args += ["--hf-overrides", json.dumps(profile.hf_overrides, sort_keys=True)]
    if profile.lora_adapters:
        args += ["--enable-lora", "--max-loras", str(max_loras(profile))]
        if profile.max_lora_rank:  # derived from the adapters' configs by controller.config.lora.check_adapters
            args += ["--max-lora-rank", str(profile.max_lora_rank)]
        args += ["--lora-modules", *(f"{name}={container_path(profile, name)}" for name in profile.lora_adapters)]
    return args + list(profile.extra_args)


@dataclass(frozen=True)
class ServingSpec:
    project_name: str
    profile_name: str
    served_model_name: str
    accelerator: str
    function_calling: str
    vllm_image: str
    webui_image: str
    vllm_args: tuple[str, ...]
    container_model: str
    gpu: GpuReservation | None
    cpu_kv_cache_gib: int | None
    hf_cache_dir: str
    local_model_dir: str | None
    # Local LoRA adapter directories, (host, container) pairs, mounted read-only.
    lora_mounts: tuple[tuple[str, str], ...]
    # A local model (and local adapters) need no download, so vLLM can live on a network without
    # egress; nor does an offline site (OFFLINE=true), whose weights are in the HF cache already.
    backend_internal: bool
    webui_bind_address: str
    webui_host_port: int
    vllm_host_port: int | None
    admin_email: str
    admin_name: str
    vllm_service: str = SLOTS[0]
    vllm_port: int = VLLM_PORT
    webui_port: int = WEBUI_PORT
    vllm_base_url: str = VLLM_BASE_URL
    webui_backend_urls: str = WEBUI_BACKEND_URLS
    health_path: str = HEALTH_PATH
    # OFFLINE=true: vLLM and Open WebUI are told never to reach Hugging Face.
    offline: bool = False
    # MONITORING=on: Prometheus, Alertmanager and their exporters beside the stack.
    monitoring: MonitoringSpec | None = None
    # TLS=internal|files|acme: Caddy in front of Open WebUI, which then knows its public https:// URL.
    front_door: FrontDoorSpec | None = None
    public_url: str | None = None
    # OIDC=on: Open WebUI's OIDC variables (the client secret is referenced from .env); LDAP=on
    # with LDAP_TLS=ldaps: the directory's CA certificate, mounted read-only.
    sign_in_env: tuple[tuple[str, str], ...] = ()
    ldap_ca_cert_file: str | None = None
    ldap_ca_in_container: str = LDAP_CA_IN_CONTAINER

    @property
    def labels(self) -> dict[str, str]:
        return {PROFILE_LABEL: self.profile_name, SERVED_NAME_LABEL: self.served_model_name}


def build_spec(profile: Profile, settings: Settings, capability: tuple[int, int] | None = None, *,
               service: str = SLOTS[0], monitoring: MonitoringSettings | None = None,
               tls: TlsSettings | None = None, directory: DirectorySettings | None = None) -> ServingSpec:  # fmt: skip
    local = profile.local_path
    cpu = profile.accelerator == "cpu"
    return ServingSpec(
        project_name=settings.compose_project_name,
        profile_name=profile.name,
        served_model_name=profile.served_model_name,
        accelerator=profile.accelerator,
        function_calling=profile.function_calling,
        vllm_image=settings.vllm_cpu_image if cpu else settings.vllm_image,
        webui_image=settings.webui_image,
        vllm_args=tuple(vllm_args(profile, capability)),
        container_model=profile.container_model,
        gpu=None if cpu else GpuReservation.from_setting(settings.gpu_devices),
        cpu_kv_cache_gib=profile.cpu_kv_cache_space_gib if cpu else None,
        hf_cache_dir=str(settings.hf_cache_path),
        local_model_dir=str(local) if local else None,
        lora_mounts=tuple((str(path), container_path(profile, name)) for name, path in local_adapters(profile).items()),
        backend_internal=settings.offline
        or (local is not None and len(local_adapters(profile)) == len(profile.lora_adapters)),
        webui_bind_address=str(settings.webui_bind_address),
        webui_host_port=settings.webui_port,
        vllm_host_port=settings.vllm_host_port,
        admin_email=settings.webui_admin_email,
        admin_name=settings.webui_admin_name,
        vllm_service=service,
        offline=settings.offline,
        monitoring=build_monitoring(
            monitoring,
            vllm_slots=SLOTS,
            vllm_port=VLLM_PORT,
            max_num_seqs=profile.seqs,
            webui_health_url=f"http://webui:{WEBUI_PORT}{HEALTH_PATH}",
        )  # fmt: skip
        if monitoring
        else None,
        front_door=build_front_door(tls, upstream=f"webui:{WEBUI_PORT}") if tls else None,
        public_url=tls.public_url if tls else None,
        # Without TLS, no URL is right for every browser (127.0.0.1 is this host): Open WebUI then
        # derives the callback from each request.
        sign_in_env=tuple(oidc_environment(directory, tls.public_url if tls else None).items()),
        ldap_ca_cert_file=directory.ldap_ca_cert_file if directory and directory.ldap == "on" else None,
    )

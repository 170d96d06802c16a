"""Compose rendering: profile + settings -> `compose/docker-compose.yml` through Jinja templates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import jinja2

from controller.capability import effective_dtype, effective_quantization
from controller.catalog import Profile
from controller.errors import RenderError
from controller.settings import Settings

TEMPLATES_PACKAGE = "controller.templates"
COMPOSE_TEMPLATE = "docker-compose.yml.j2"
VLLM_PORT = 8000
# How Open WebUI reaches vLLM on the compose network (no trailing slash: Open WebUI appends paths).
VLLM_BASE_URL = f"http://vllm:{VLLM_PORT}/v1"
WEBUI_PORT = 8080


@dataclass(frozen=True)
class GpuReservation:
    count: str | None
    device_ids: list[str] | None

    @classmethod
    def from_setting(cls, value: str) -> GpuReservation:
        if value.startswith("device="):
            return cls(count=None, device_ids=value.removeprefix("device=").split(","))
        return cls(count=value, device_ids=None)


def vllm_args(profile: Profile, capability: tuple[int, int] | None = None) -> list[str]:
    """The arguments after `vllm serve`; the API key comes from the environment, never argv."""
    args = [
        profile.container_model,
        "--served-model-name",
        profile.served_model_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(VLLM_PORT),
        "--dtype",
        effective_dtype(profile, capability),
        "--max-model-len",
        str(profile.max_model_len),
    ]
    quantization = effective_quantization(profile, capability)
    if quantization:
        args += ["--quantization", quantization]
    if profile.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", profile.kv_cache_dtype]
    if profile.accelerator == "gpu":
        args += [
            "--gpu-memory-utilization",
            f"{profile.gpu_memory_utilization:g}",
            "--tensor-parallel-size",
            str(profile.tensor_parallel_size),
        ]
    if profile.tool_call_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", profile.tool_call_parser]
    if profile.chat_template:
        args += ["--chat-template", profile.chat_template]
    if profile.rope_scaling:
        args += ["--hf-overrides", json.dumps({"rope_scaling": profile.rope_scaling}, sort_keys=True)]
    return args + list(profile.extra_args)


def render_context(profile: Profile, settings: Settings, capability: tuple[int, int] | None = None) -> dict:
    local = profile.local_path
    return {
        "project_name": settings.compose_project_name,
        "profile": profile,
        "vllm_image": settings.vllm_cpu_image if profile.accelerator == "cpu" else settings.vllm_image,
        "webui_image": settings.webui_image,
        "vllm_args": vllm_args(profile, capability),
        "vllm_port": VLLM_PORT,
        "vllm_base_url": VLLM_BASE_URL,
        "vllm_host_port": settings.vllm_host_port,
        "webui_port": WEBUI_PORT,
        "webui_host_port": settings.webui_port,
        "webui_bind_address": settings.webui_bind_address,
        "admin_email": settings.webui_admin_email,
        "admin_name": settings.webui_admin_name,
        "gpu": GpuReservation.from_setting(settings.gpu_devices) if profile.accelerator == "gpu" else None,
        "cpu_kv_cache_gib": profile.cpu_kv_cache_space_gib,
        "hf_cache_dir": str(settings.hf_cache_path),
        "local_model_dir": str(local) if local else None,
        # A local model needs no download, so vLLM can live on a network without egress.
        "backend_internal": local is not None,
    }


def _load_template(name: str) -> str:
    # From the installed package (wheel, pipx) or, in an editable install, from templates/.
    return resources.files(TEMPLATES_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # JSON strings are valid YAML scalars, so every value is quoted safely.
    env.filters["q"] = lambda value: json.dumps(value)
    return env


def render_template(name: str, context: dict) -> str:
    try:
        return _environment().get_template(name).render(**context)
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {name}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        where = getattr(exc, "filename", None) or name
        line = getattr(exc, "lineno", None)
        raise RenderError(f"template {where}{f':{line}' if line else ''}: {exc}") from None


def render_compose(profile: Profile, settings: Settings, capability: tuple[int, int] | None = None) -> str:
    return render_template(COMPOSE_TEMPLATE, render_context(profile, settings, capability))

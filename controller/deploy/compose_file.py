"""Compose rendering: profile + settings -> `compose/docker-compose.yml` through Jinja templates."""

from __future__ import annotations

import functools
from dataclasses import fields
from importlib import resources
from typing import Any

import jinja2
import yaml

from controller.config.profile import Profile
from controller.config.settings import Settings
from controller.deploy.spec import (
    HF_CACHE_TARGET,
    SECRET_REFERENCES,
    WEBUI_BACKEND_KEYS,
    GpuReservation,
    ServingSpec,
    build_spec,
)
from controller.errors import RenderError
from controller.files import load_yaml

TEMPLATES_PACKAGE = "controller.templates"
COMPOSE_TEMPLATE = "docker-compose.yml.j2"
WEBUI_DATA_MOUNT = "webui-data:/app/backend/data"
# OFFLINE=true: what each service is told so that it never reaches Hugging Face.
OFFLINE_VLLM_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
OFFLINE_WEBUI_ENV = {"OFFLINE_MODE": "true", "HF_HUB_OFFLINE": "1"}
# A lookup of a name outside the stack fails after 1 s instead of 10 s (measured, Docker 20.10).
OFFLINE_DNS_OPTIONS = ("timeout:1", "attempts:1")


def _healthcheck(port: int, path: str) -> list[str]:
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=4)"
    return ["CMD", "python3", "-c", probe]


def _port_mapping(address: str, host_port: int, container_port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{host_port}:{container_port}"


def render_context(spec: ServingSpec) -> dict:
    """The template's variables: the spec's fields, plus what only Compose spells (port mappings,
    healthcheck commands, labels as a mapping)."""
    context = {f.name: getattr(spec, f.name) for f in fields(spec)}
    context.update(
        labels=spec.labels,
        webui_port_mapping=_port_mapping(spec.webui_bind_address, spec.webui_host_port, spec.webui_port),
        vllm_port_mapping=(
            _port_mapping("127.0.0.1", spec.vllm_host_port, spec.vllm_port) if spec.vllm_host_port else None
        ),
        vllm_healthcheck=_healthcheck(spec.vllm_port, spec.health_path),
        webui_healthcheck=_healthcheck(spec.webui_port, spec.health_path),
    )
    return context


def _load_template(name: str) -> str:
    # From the installed package (wheel, pipx) or, in an editable install, from templates/.
    return resources.files(TEMPLATES_PACKAGE).joinpath(name).read_text(encoding="utf-8")


class Rendered(str):
    """Template output that went through a safe filter."""


def compose_escape(text: str) -> str:
    """Compose interpolates `$` in every value it reads; `$$` is a literal `$`."""
    return text.replace("$", "$$")


def compose_unescape(text: str) -> str:
    return text.replace("$$", "$")


def _defined(value: object) -> None:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable


def yaml_string(value: object) -> Rendered:
    """`value` as one YAML double-quoted scalar on one line (PyYAML escapes quotes, line breaks and
    non-printable characters), with `$` doubled so that Compose keeps it literal."""
    _defined(value)
    if not isinstance(value, str):
        raise RenderError(f"template value {value!r} is not a string; use |n for numbers")
    dumped = yaml.safe_dump(value, default_style='"', allow_unicode=True, width=2**31 - 1).rstrip("\n")
    if "\n" in dumped or not (dumped.startswith('"') and dumped.endswith('"')):
        raise RenderError(f"template value {value!r} did not quote to a single line")
    return Rendered(compose_escape(dumped))


def yaml_int(value: object) -> Rendered:
    _defined(value)
    if type(value) is not int:
        raise RenderError(f"template value {value!r} is not an integer")
    return Rendered(str(value))


def _only_filtered(value: object) -> object:
    # Every {{ ... }} in the template must end in |q or |n: nothing reaches the file unescaped.
    if not isinstance(value, Rendered):
        raise RenderError(f"template output {value!r} did not go through |q or |n")
    return value


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: _load_template(name)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        finalize=_only_filtered,
    )
    env.filters["q"] = yaml_string
    env.filters["n"] = yaml_int
    return env


def render_template(name: str, context: dict) -> str:
    try:
        return _environment().get_template(name).render(**context)
    except RenderError as exc:
        raise RenderError(f"template {name}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {name}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        where = getattr(exc, "filename", None) or name
        line = getattr(exc, "lineno", None)
        raise RenderError(f"template {where}{f':{line}' if line else ''}: {exc}") from None


def render_spec(spec: ServingSpec) -> str:
    """The compose file as text, checked: it parses to exactly the structure the spec implies."""
    context = render_context(spec)
    text = render_template(COMPOSE_TEMPLATE, context)
    check_rendered(text, context)
    return text


def render_compose(profile: Profile, settings: Settings, capability: tuple[int, int] | None = None) -> str:
    return render_spec(build_spec(profile, settings, capability))


# ----- the serving spec the rendered file must match -------------------------------------------


def expected_compose(context: dict) -> dict[str, Any]:
    """The whole document that `docker compose` must see, built from the values alone.

    The rendered file is compared with this after parsing, so no value can add a key, a service,
    a mount, a device, a port or a privilege: anything else stops before the file is written.
    """
    logging = {"driver": "json-file", "options": {"max-size": "50m", "max-file": "5"}}
    return {
        "name": context["project_name"],
        "x-logging": logging,
        "services": {
            context["vllm_service"]: _expected_vllm(context, logging),
            "webui": _expected_webui(context, logging),
        },
        "networks": {"backend": {"internal": bool(context["backend_internal"])}, "frontend": {}},
        "volumes": {"webui-data": {}},
    }


def _expected_vllm(context: dict, logging: dict) -> dict[str, Any]:
    gpu: GpuReservation | None = context["gpu"]
    volumes: list[dict[str, Any]] = [
        {
            "type": "bind",
            "source": context["hf_cache_dir"],
            "target": HF_CACHE_TARGET,
            "bind": {"create_host_path": True},
        }
    ]
    if context["local_model_dir"]:
        volumes.append(
            {
                "type": "bind",
                "source": context["local_model_dir"],
                "target": context["container_model"],
                "read_only": True,
            }
        )
    volumes += [
        {"type": "bind", "source": source, "target": target, "read_only": True}
        for source, target in context["lora_mounts"]
    ]
    vllm_env = {"VLLM_API_KEY": SECRET_REFERENCES["VLLM_API_KEY"], "HF_TOKEN": SECRET_REFERENCES["HF_TOKEN"]}
    if context["accelerator"] == "cpu":
        vllm_env["VLLM_CPU_KVCACHE_SPACE"] = str(context["cpu_kv_cache_gib"])
        vllm_env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    if context["offline"]:
        vllm_env.update(OFFLINE_VLLM_ENV)
    vllm: dict[str, Any] = {
        "image": context["vllm_image"],
        "command": list(context["vllm_args"]),
        "environment": vllm_env,
        "volumes": volumes,
        "networks": ["backend", "frontend"] if context["vllm_host_port"] else ["backend"],
        "healthcheck": {
            "test": context["vllm_healthcheck"],
            "interval": "5s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "30m",
        },
        "restart": "unless-stopped",
        "logging": logging,
        "labels": dict(context["labels"]),
    }
    if gpu:
        device: dict[str, Any] = {"driver": "nvidia", "capabilities": ["gpu"]}
        if gpu.device_ids:
            device["device_ids"] = list(gpu.device_ids)
        else:
            device["count"] = gpu.count if gpu.count == "all" else int(gpu.count or 0)
        vllm["ipc"] = "host"
        vllm["deploy"] = {"resources": {"reservations": {"devices": [device]}}}
    else:
        vllm["shm_size"] = "2gb"
    if context["vllm_port_mapping"]:
        vllm["ports"] = [context["vllm_port_mapping"]]
    if context["offline"]:
        vllm["dns_opt"] = list(OFFLINE_DNS_OPTIONS)
    return vllm


def _expected_webui(context: dict, logging: dict) -> dict[str, Any]:
    webui = {
        "image": context["webui_image"],
        "environment": {
            "OPENAI_API_BASE_URLS": context["webui_backend_urls"],
            "OPENAI_API_KEYS": WEBUI_BACKEND_KEYS,
            "ENABLE_OLLAMA_API": "false",
            "WEBUI_SECRET_KEY": SECRET_REFERENCES["WEBUI_SECRET_KEY"],
            "WEBUI_ADMIN_EMAIL": context["admin_email"],
            "WEBUI_ADMIN_NAME": context["admin_name"],
            "WEBUI_ADMIN_PASSWORD": SECRET_REFERENCES["WEBUI_ADMIN_PASSWORD"],
            "ENABLE_SIGNUP": "false",
            **(OFFLINE_WEBUI_ENV if context["offline"] else {}),
        },
        "volumes": [WEBUI_DATA_MOUNT],
        "ports": [context["webui_port_mapping"]],
        "networks": ["backend", "frontend"],
        "healthcheck": {
            "test": context["webui_healthcheck"],
            "interval": "5s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "5m",
        },
        "restart": "unless-stopped",
        "logging": logging,
    }
    return webui


_REFERENCES = frozenset([*SECRET_REFERENCES.values(), WEBUI_BACKEND_KEYS])


def _as_compose_reads(node: Any, path: str) -> Any:
    """Strings as Compose will use them: `$$` becomes `$`; any other `$` must be a known reference."""
    if isinstance(node, dict):
        return {_as_compose_reads(k, path): _as_compose_reads(v, f"{path}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_as_compose_reads(v, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):
        if node in _REFERENCES:
            return node
        if "$" in node.replace("$$", ""):
            raise RenderError(f"rendered compose file: {path.lstrip('.')} holds an unescaped '$'")
        return compose_unescape(node)
    return node


def _first_difference(got: Any, want: Any, path: str) -> str | None:
    if isinstance(want, dict) and isinstance(got, dict):
        extra, missing = sorted(map(str, set(got) - set(want))), sorted(map(str, set(want) - set(got)))
        if extra or missing:
            return f"{path or 'top level'}: unexpected keys {extra}, missing keys {missing}"
        for key in want:
            found = _first_difference(got[key], want[key], f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            found = _first_difference(g, w, f"{path}[{i}]")
            if found:
                return found
        return None
    if type(got) is not type(want) or got != want:
        return f"{path}: expected {want!r}, found {got!r}"
    return None


def check_rendered(text: str, context: dict) -> None:
    """Parse the rendered file and compare it with the serving spec; raise RenderError on any difference."""
    parsed = load_yaml(text, "rendered compose file", RenderError)
    problem = _first_difference(_as_compose_reads(parsed, ""), expected_compose(context), "")
    if problem:
        raise RenderError(
            f"rendered compose file does not match the serving spec ({problem}); nothing was written",
            hint="this is a bug in the controller or its template; please report it with the profile and .env keys",
        )

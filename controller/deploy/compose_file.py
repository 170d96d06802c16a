"""Compose rendering: profile + settings -> `compose/docker-compose.yml` through the Jinja template,
checked after rendering: the file must parse to the template's own structure whatever the values."""

from __future__ import annotations

import functools
from dataclasses import fields
from importlib import resources
from typing import Any

import jinja2
import yaml

from controller.config.profile import Profile
from controller.config.settings import Settings
from controller.deploy.spec import SECRET_REFERENCES, WEBUI_BACKEND_KEYS, ServingSpec, build_spec
from controller.errors import RenderError
from controller.yaml_in import load_yaml
from controller.yaml_out import double_quoted

TEMPLATES_PACKAGE = "controller.templates"
COMPOSE_TEMPLATE = "docker-compose.yml.j2"


def _healthcheck(port: int, path: str) -> list[str]:
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=4)"
    return ["CMD", "python3", "-c", probe]


# The front door's ports are the way in from the network: every interface.
ANY = "0.0.0.0"


def _port_mapping(address: str, host_port: int, container_port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{host_port}:{container_port}"


def _monitoring_port(spec: ServingSpec, service: str) -> str | None:
    monitoring = spec.monitoring
    if monitoring is None:
        return None
    host_port, port = getattr(monitoring, f"{service}_host_port"), getattr(monitoring, f"{service}_port")
    return _port_mapping(monitoring.bind_address, host_port, port)


def render_context(spec: ServingSpec) -> dict:
    """The template's variables: the spec's fields, plus what only Compose spells (port mappings,
    healthcheck commands, labels as a mapping)."""
    context = {f.name: getattr(spec, f.name) for f in fields(spec)}
    front, grafana = spec.front_door, spec.monitoring.grafana if spec.monitoring else None
    context.update(
        labels=spec.labels,
        webui_port_mapping=_port_mapping(spec.webui_bind_address, spec.webui_host_port, spec.webui_port),
        vllm_port_mapping=(
            _port_mapping("127.0.0.1", spec.vllm_host_port, spec.vllm_port) if spec.vllm_host_port else None
        ),
        vllm_healthcheck=_healthcheck(spec.vllm_port, spec.health_path),
        prometheus_port_mapping=_monitoring_port(spec, "prometheus"),
        alertmanager_port_mapping=_monitoring_port(spec, "alertmanager"),
        https_port_mapping=_port_mapping(ANY, front.https_host_port, front.https_port) if front else None,
        http_port_mapping=_port_mapping(ANY, front.http_host_port, front.http_port) if front else None,
        grafana_port_mapping=(
            _port_mapping(spec.monitoring.bind_address, grafana.host_port, grafana.port) if grafana else None
        ),
        webui_healthcheck=_healthcheck(spec.webui_port, spec.health_path),
    )
    return context


def load_template(name: str) -> str:
    """A template's text: from the installed package (wheel, pipx) or, in an editable install,
    from templates/ (shipped as the package controller.templates)."""
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
    dumped = double_quoted(value)
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
def _environment(placeholders: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        # Looked up on each load, so that tests can hand in a template of their own.
        loader=jinja2.FunctionLoader(lambda name: load_template(name)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        finalize=_only_filtered,
    )
    env.filters["q"] = _placeholder if placeholders else yaml_string
    env.filters["n"] = yaml_int
    return env


def render_template(name: str, context: dict, *, placeholders: bool = False) -> str:
    """Render one template; with placeholders, every |q value is an inert token (see below)."""
    try:
        return _environment(placeholders).get_template(name).render(**context)
    except RenderError as exc:
        raise RenderError(f"template {name}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {name}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        where = getattr(exc, "filename", None) or name
        line = getattr(exc, "lineno", None)
        raise RenderError(f"template {where}{f':{line}' if line else ''}: {exc}") from None


def render_spec(spec: ServingSpec) -> str:
    """The compose file as text, checked: it parses to exactly the template's structure, holding
    the spec's values where the template puts them."""
    context = render_context(spec)
    text = render_template(COMPOSE_TEMPLATE, context)
    check_rendered(text, context)
    return text


def render_compose(profile: Profile, settings: Settings, capability: tuple[int, int] | None = None) -> str:
    return render_spec(build_spec(profile, settings, capability))


# ----- the structural check: the template is the one description of the file --------------------
# The template is rendered a second time with every |q value replaced by an inert placeholder that
# names it. That parses to the structure the template alone gives; putting each value back where
# its placeholder is gives the document `docker compose` must see. A value that changed the
# structure of the real file (a key, a service, a mount, a device, a port, a privilege) shows up
# as a difference, and nothing is written. So a change to the layout is made in the template only.

_PLACEHOLDER = "=value:"
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _placeholder(value: object) -> Rendered:
    """|q for the structural check: refuses what |q refuses, and renders `value` as a token that
    holds it in hex, which no YAML or Compose reading can change."""
    yaml_string(value)
    return Rendered(f'"{_PLACEHOLDER}{str(value).encode("utf-8", "surrogatepass").hex()}"')


def _put_back(node: Any) -> Any:
    if isinstance(node, dict):
        return {_put_back(k): _put_back(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_put_back(v) for v in node]
    if isinstance(node, str) and node.startswith(_PLACEHOLDER):
        return bytes.fromhex(node.removeprefix(_PLACEHOLDER)).decode("utf-8", "surrogatepass")
    return node


def expected_compose(context: dict) -> Any:
    """The whole document that `docker compose` must see, as it reads it: the template's own
    structure, with each value in its place exactly as given."""
    skeleton = render_template(COMPOSE_TEMPLATE, context, placeholders=True)
    # Our own template with inert tokens, so libyaml's loader (when PyYAML has it) is safe here and
    # keeps the check cheap; the rendered file itself is read with the strict loader.
    parsed = yaml.load(skeleton, Loader=_FAST_SAFE_LOADER)  # noqa: S506 - a safe loader
    return _put_back(_as_compose_reads(parsed, ""))


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
    """Parse the rendered file and compare it with the template's structure holding the spec's
    values (expected_compose); raise RenderError on any difference."""
    parsed = load_yaml(text, "rendered compose file", RenderError)
    problem = _first_difference(_as_compose_reads(parsed, ""), expected_compose(context), "")
    if problem:
        raise RenderError(
            f"rendered compose file does not match the serving spec ({problem}); nothing was written",
            hint="this is a bug in the controller or its template; please report it with the profile and .env keys",
        )

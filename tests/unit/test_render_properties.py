"""Properties of the rendered compose file under hostile values (Hypothesis) and secret isolation.

For every text field an operator can set (in `.env`, the environment, or a catalog), arbitrary
strings (quotes, newlines, `$`, `${...}`, `{{`, `#`, YAML indicators, unicode line breaks) either
are refused by validation (SettingsError / CatalogError), or the file renders, parses with plain
PyYAML to the same structure as without them (services, keys, mounts, ports, networks, devices),
and the value comes back literally where it belongs once Compose's `$$` is undone.

Examples: EXAMPLES per field (below) over FIELDS fields; the whole module runs in a few seconds.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.config.catalog import build_profile
from controller.config.env_values import KNOWN_KEYS, env_key_warnings
from controller.config.envfile import read_env_file, write_env_values
from controller.config.settings import parse_settings, read_settings
from controller.config.site import SiteConfig
from controller.deploy.compose_file import render_compose
from controller.deploy.spec import vllm_args
from controller.errors import CatalogError, SettingsError
from tests.unit._support import TINY_ARCH

EXAMPLES = 40
# CI runs the same examples every time (a red CI must be reproducible); a developer's run explores
# new ones, and what it finds becomes a named case in test_bad_input_*.py.
DERANDOMIZE = os.environ.get("CI") == "true"
SECRETS = {
    "WEBUI_ADMIN_PASSWORD": "quiet-otter-lantern-4817",
    "WEBUI_SECRET_KEY": "webui-secret-key-for-tests-000000000001",
    "VLLM_API_KEY": "vllm-api-key-for-tests-00000000000000002",
    "HF_TOKEN": "hf_token_for_tests_0000000000000003",
}
BASE_SETTINGS = {**SECRETS, "HF_CACHE_DIR": "/srv/hf", "VLLM_HOST_PORT": "8001"}
ARCH = TINY_ARCH
# A RoPE scaling vLLM accepts: a factor, and the theta it would otherwise lose.
ROPE = {"factor": 2.0, "rope_theta": 10000.0}
BASE_PROFILE = {"model": "org/model", "served_model_name": "served", "max_model_len": 1024, "architecture": ARCH}

# Pieces that break naive YAML or Compose handling; joined at random and mixed with any text.
NASTY = [
    '"', "'", "\\", "\n", "\r", "\t", "\x00", "\x1b", "\x85", "\u2028", "\u2029", "\ufeff", "$", "$$", "${",
    "${VLLM_API_KEY}", "$VLLM_API_KEY", "${HF_TOKEN:-x}", "{{", "}}", "{%", "#", ": ", "- ", "[", "]", "{", "}",
    "&a", "*a", "!!python/object", "|", ">", "%", "@", "`", ",", "?", "---", "...", "privileged: true", " ", "é",
    "😀", "0", "org/", "/", "..", "~", "-", ".", "_", "a", "Z", "1",
]  # fmt: skip
hostile = st.one_of(st.text(max_size=40), st.lists(st.sampled_from(NASTY), max_size=12).map("".join))


def _parse(text: str) -> dict:
    return yaml.safe_load(text)  # plain PyYAML, independent of the controller's own loader


def _literal(rendered: str) -> str:
    """What Compose makes of a rendered string: every `$` must be doubled, `$$` is one `$`."""
    assert "$" not in rendered.replace("$$", ""), f"unescaped $ in {rendered!r}"
    return rendered.replace("$$", "$")


def _devices(service: dict) -> list:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def shape(doc: dict) -> dict:
    services = doc["services"]

    def mounts(service: dict) -> list:
        return [
            (v["type"], v["target"], v.get("read_only", False)) if isinstance(v, dict) else v
            for v in service.get("volumes", [])
        ]

    return {
        "top": sorted(doc),
        "services": {name: sorted(s) for name, s in services.items()},
        "environment": {name: sorted(s.get("environment", {})) for name, s in services.items()},
        "mounts": {name: mounts(s) for name, s in services.items()},
        "ports": {name: len(s.get("ports", [])) for name, s in services.items()},
        "networks": {name: s.get("networks") for name, s in services.items()},
        "top_networks": doc["networks"],
        "top_volumes": doc["volumes"],
        # count or device_ids: the same reservation, chosen by GPU_DEVICES.
        "devices": [
            sorted("select" if key in ("count", "device_ids") else key for key in device)
            for device in _devices(services["vllm"])
        ],
        "privileged": [s.get("privileged") for s in services.values()],
    }  # fmt: skip


def _render(profile_fields: dict | None = None, name: str = "p", **setting_values: str) -> tuple[str, Any, Any]:
    """Validate and render; returns (text, profile, settings). Raises SettingsError / CatalogError."""
    settings_obj = parse_settings({**BASE_SETTINGS, **setting_values}, "property test")
    profile = build_profile(name, {**BASE_PROFILE, **(profile_fields or {})}, "property test")
    return render_compose(profile, settings_obj), profile, settings_obj


def _after(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


@dataclass(frozen=True)
class Field:
    """One operator-settable text field: how to set a value, and where it must come back."""

    make: Callable[[str], tuple[dict | None, str, dict]]  # value -> (profile fields, name, settings)
    values: st.SearchStrategy
    # (parsed document, profile, settings, value) -> list of (rendered string, expected literal)
    where: Callable[[dict, Any, Any, str], list[tuple[str, str]]]
    base: Callable[[], tuple[dict | None, str, dict]] = lambda: (None, "p", {})


def _setting(key: str) -> Callable[[str], tuple[dict | None, str, dict]]:
    return lambda value: (None, "p", {key: value})


def _profile_field(key: str, extra: dict | None = None) -> Callable[[str], tuple[dict | None, str, dict]]:
    return lambda value: ({**(extra or {}), key: value}, "p", {})


def _webui_env(key: str) -> Callable:
    return lambda doc, profile, s, value: [(doc["services"]["webui"]["environment"][key], value)]


def _port_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


LOCAL = {"model": "/srv/models/base"}
TOOLS = {"tool_call_parser": "hermes"}

FIELDS: dict[str, Field] = {
    "WEBUI_BIND_ADDRESS": Field(
        _setting("WEBUI_BIND_ADDRESS"),
        st.one_of(hostile, st.ip_addresses().map(str)),
        lambda doc, p, s, v: [
            (doc["services"]["webui"]["ports"][0], f"{_port_host(s.webui_bind_address)}:{s.webui_port}:8080")
        ],
    ),
    "WEBUI_PORT": Field(
        _setting("WEBUI_PORT"),
        st.one_of(hostile, st.integers(-10, 70000).map(str)),
        lambda doc, p, s, v: [(doc["services"]["webui"]["ports"][0], f"0.0.0.0:{int(v)}:8080")],
    ),
    "VLLM_HOST_PORT": Field(
        _setting("VLLM_HOST_PORT"),
        # Empty means "not published", a different structure on purpose.
        st.one_of(hostile, st.integers(1, 65535).map(str)).filter(bool),
        lambda doc, p, s, v: [(doc["services"]["vllm"]["ports"][0], f"127.0.0.1:{int(v)}:8000")],
    ),
    "WEBUI_ADMIN_EMAIL": Field(
        _setting("WEBUI_ADMIN_EMAIL"),
        st.one_of(hostile, hostile.map(lambda t: f"{t}@example.com")),
        _webui_env("WEBUI_ADMIN_EMAIL"),
    ),
    "WEBUI_ADMIN_NAME": Field(_setting("WEBUI_ADMIN_NAME"), hostile, _webui_env("WEBUI_ADMIN_NAME")),
    "HF_CACHE_DIR": Field(
        _setting("HF_CACHE_DIR"),
        st.one_of(hostile, hostile.map(lambda t: f"/srv/hf/{t}")),
        lambda doc, p, s, v: [(doc["services"]["vllm"]["volumes"][0]["source"], str(Path(v).expanduser()))],
    ),
    "VLLM_IMAGE": Field(
        _setting("VLLM_IMAGE"),
        st.one_of(hostile, hostile.map(lambda t: f"registry.local:5000/team/vllm:{t}")),
        lambda doc, p, s, v: [(doc["services"]["vllm"]["image"], v)],
    ),
    "VLLM_CPU_IMAGE": Field(
        lambda v: ({"accelerator": "cpu"}, "p", {"VLLM_CPU_IMAGE": v}),
        st.one_of(hostile, hostile.map(lambda t: f"registry.local/vllm-cpu:{t}")),
        lambda doc, p, s, v: [(doc["services"]["vllm"]["image"], v)],
        base=lambda: ({"accelerator": "cpu"}, "p", {}),
    ),
    "WEBUI_IMAGE": Field(
        _setting("WEBUI_IMAGE"),
        st.one_of(hostile, hostile.map(lambda t: f"ghcr.io/open-webui/open-webui:{t}")),
        lambda doc, p, s, v: [(doc["services"]["webui"]["image"], v)],
    ),
    "GPU_DEVICES": Field(
        _setting("GPU_DEVICES"),
        st.one_of(hostile, st.lists(st.integers(0, 9).map(str), min_size=1).map(lambda ids: "device=" + ",".join(ids))),
        lambda doc, p, s, v: [
            (",".join(d.get("device_ids", [])) or str(d["count"]), v.removeprefix("device="))
            for d in doc["services"]["vllm"]["deploy"]["resources"]["reservations"]["devices"]
        ],
    ),
    "COMPOSE_PROJECT_NAME": Field(_setting("COMPOSE_PROJECT_NAME"), hostile, lambda doc, p, s, v: [(doc["name"], v)]),
    "profile name": Field(
        lambda v: (None, v, {}),
        hostile,
        lambda doc, p, s, v: [(doc["services"]["vllm"]["labels"]["io.llmstack.profile"], v)],
    ),
    "model (Hugging Face id)": Field(
        _profile_field("model"),
        # A value that starts like a path is a local directory, the next field's case.
        st.one_of(hostile, hostile.map(lambda t: f"org/{t}")).filter(lambda t: not t.startswith(("/", ".", "~"))),
        lambda doc, p, s, v: [(doc["services"]["vllm"]["command"][0], v)],
    ),
    "model (local directory)": Field(
        _profile_field("model"),
        hostile.map(lambda t: f"/srv/models/{t}"),
        lambda doc, p, s, v: [(doc["services"]["vllm"]["volumes"][1]["source"], str(Path(v)))],
        base=lambda: (LOCAL, "p", {}),
    ),
    "served_model_name": Field(
        _profile_field("served_model_name"),
        st.one_of(hostile, hostile.map(lambda t: f"m{t}")),
        lambda doc, p, s, v: [
            (doc["services"]["vllm"]["labels"]["io.llmstack.served-model-name"], v),
            (_after(doc["services"]["vllm"]["command"], "--served-model-name"), v),
        ],
    ),
    "extra_args": Field(
        lambda v: ({"extra_args": [v, "--x"]}, "p", {}),
        st.one_of(hostile, hostile.map(lambda t: f"--flag={t}")),
        lambda doc, p, s, v: [(doc["services"]["vllm"]["command"][-2], v)],
        base=lambda: ({"extra_args": ["--flag", "--x"]}, "p", {}),
    ),
    "tool_call_parser": Field(
        _profile_field("tool_call_parser"),
        hostile,
        lambda doc, p, s, v: [(_after(doc["services"]["vllm"]["command"], "--tool-call-parser"), v)],
        base=lambda: (TOOLS, "p", {}),
    ),
    "chat_template": Field(
        _profile_field("chat_template", TOOLS),
        st.one_of(hostile, hostile.map(lambda t: f"examples/{t}")),
        lambda doc, p, s, v: [(_after(doc["services"]["vllm"]["command"], "--chat-template"), v)],
        base=lambda: ({**TOOLS, "chat_template": "t.jinja"}, "p", {}),
    ),
    "rope_scaling value": Field(
        lambda v: ({"rope_scaling": {**ROPE, "rope_type": v}}, "p", {}),
        hostile,
        lambda doc, p, s, v: [
            (
                _after(doc["services"]["vllm"]["command"], "--hf-overrides"),
                json.dumps({"rope_scaling": {**ROPE, "rope_type": v}}, sort_keys=True),
            )
        ],
        base=lambda: ({"rope_scaling": {**ROPE, "rope_type": "yarn"}}, "p", {}),
    ),
}


def _base_text(field: Field) -> str:
    fields, name, values = field.base()
    return _render(fields, name, **values)[0]


@pytest.mark.parametrize("field_name", FIELDS)
def test_hostile_value_is_refused_or_renders_literally_in_the_same_structure(field_name):
    field = FIELDS[field_name]
    baseline = shape(_parse(_base_text(field)))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=DERANDOMIZE,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(value=field.values)
    def check(value: str) -> None:
        fields, name, values = field.make(value)
        try:
            text, profile, settings_obj = _render(fields, name, **values)
        except (SettingsError, CatalogError):
            return  # refused by validation, with a clear error: fine
        doc = _parse(text)
        assert shape(doc) == baseline
        for rendered, expected in field.where(doc, profile, settings_obj, value):
            assert _literal(rendered) == expected
        assert not any(secret in text for secret in SECRETS.values())

    check()


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE)
@given(secret=hostile.filter(lambda s: len(s) >= 16))
def test_secret_values_never_change_the_rendered_file(secret):
    """A secret, whatever it holds, is only ever referenced as ${VAR}: the file is the same without it."""
    baseline = _render()[0]
    for key in SECRETS:
        try:
            text = _render(**{key: secret})[0]
        except SettingsError:
            continue
        assert text == baseline


# ----- .env itself: what the controller writes there reads back literally -----------------------


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE)
@given(value=hostile)
def test_env_value_is_refused_unchanged_or_stored_and_read_back_literally(value):
    """A value written to .env (a project path, a generated secret) is either refused with the file
    byte-identical, or read back exactly; other lines stay; and Compose reads it literally too: it is
    single-quoted, or double-quoted without anything Compose would expand or unescape."""
    with tempfile.TemporaryDirectory() as tmp:
        env = Path(tmp) / ".env"
        env.write_text("# notes\nWEBUI_PORT=8081\n", encoding="utf-8")
        before = env.read_bytes()
        try:
            write_env_values(env, {"CONTROLLER_CATALOG": value}, overwrite=True)
        except SettingsError:
            assert env.read_bytes() == before
            return
        assert read_env_file(env) == {"WEBUI_PORT": "8081", "CONTROLLER_CATALOG": value}
        line = env.read_text(encoding="utf-8").split("\n")[-2]
        assert line == f"CONTROLLER_CATALOG='{value}'" or (
            line == f'CONTROLLER_CATALOG="{value}"' and not set(value) & set('"\\$`\n\r')
        )


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE)
@given(key=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True))
def test_env_key_is_read_a_near_miss_refused_or_an_unknown_one_warned(key):
    """No key in .env is silently ignored: it is read, or refused naming the key it resembles, or warned about."""
    with tempfile.TemporaryDirectory() as tmp:
        env = Path(tmp) / ".env"
        env.write_text(f"{key}=1\n", encoding="utf-8")
        try:
            warnings = env_key_warnings(env)
        except SettingsError as exc:
            assert key not in KNOWN_KEYS and exc.message.endswith("?")
            assert exc.message.rsplit("did you mean ", 1)[1][:-1] in KNOWN_KEYS
            return
        assert (key in KNOWN_KEYS) == (not warnings)
        assert all(key in warning for warning in warnings)


# ----- no secret reaches compose/ or vLLM's command line, for every operator-settable field ------

REFERENCES = ["${VLLM_API_KEY}", "$VLLM_API_KEY", "${WEBUI_ADMIN_PASSWORD}", "${HF_TOKEN}", "${WEBUI_SECRET_KEY}"]
SETTING_FIELDS = [
    "WEBUI_BIND_ADDRESS", "WEBUI_PORT", "VLLM_HOST_PORT", "WEBUI_ADMIN_EMAIL", "WEBUI_ADMIN_NAME", "HF_CACHE_DIR",
    "VLLM_IMAGE", "VLLM_CPU_IMAGE", "WEBUI_IMAGE", "GPU_DEVICES", "GPU_MEMORY_GIB", "COMPOSE_PROJECT_NAME",
    "CONTROLLER_CATALOG",
]  # fmt: skip
PROFILE_FIELDS = [
    "description", "model", "served_model_name", "extra_args", "tool_call_parser", "chat_template", "rope_scaling",
]  # fmt: skip


def _env_site(tmp_path: Path, lines: str) -> SiteConfig:
    env = tmp_path / ".env"
    env.write_text("".join(f"{k}='{v}'\n" for k, v in SECRETS.items()) + lines, encoding="utf-8")
    return SiteConfig(root=tmp_path, env_file=env)


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("key", SETTING_FIELDS)
def test_no_secret_from_a_setting_reaches_compose_or_vllm_args(tmp_path, monkeypatch, key, reference):
    for name in [*SETTING_FIELDS, *SECRETS]:
        monkeypatch.delenv(name, raising=False)
    for quoting in ("'{}'", '"{}"', "{}"):
        site = _env_site(tmp_path, f"HF_CACHE_DIR=/srv/hf\n{key}={quoting.format(reference)}\n".replace(
            "HF_CACHE_DIR=/srv/hf\nHF_CACHE_DIR", "HF_CACHE_DIR"))  # fmt: skip
        try:
            loaded = read_settings(site, environ={})
        except SettingsError:
            continue
        profile = build_profile("p", {**BASE_PROFILE, "accelerator": "cpu"}, "test")
        text = render_compose(profile, loaded.settings)
        args = vllm_args(profile)
        for secret in SECRETS.values():
            assert secret not in text and all(secret not in arg for arg in args)
        if key == "WEBUI_ADMIN_NAME":  # read literally, rendered as $$ so Compose keeps it literal
            assert loaded.settings.webui_admin_name == reference
            assert _parse(text)["services"]["webui"]["environment"]["WEBUI_ADMIN_NAME"] == reference.replace("$", "$$")


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("key", PROFILE_FIELDS)
def test_no_secret_from_a_catalog_field_reaches_compose_or_vllm_args(key, reference):
    value: Any = {
        "extra_args": [reference],
        "rope_scaling": {**ROPE, "rope_type": reference},
    }.get(key, reference)
    fields = {"tool_call_parser": "hermes"} if key == "chat_template" else {}
    try:
        text, profile, _ = _render({**fields, key: value})
    except CatalogError:
        return
    for secret in SECRETS.values():
        assert secret not in text and all(secret not in arg for arg in vllm_args(profile))
    for line in text.splitlines():
        if reference.replace("$", "$$") in line:
            assert not re.search(r"(?<!\$)\$(?!\$)", line.split(": ", 1)[-1].replace("$$", "")), line


def test_issue_examples_render_literally():
    """`WEBUI_ADMIN_NAME='Ops $team'` stays 'Ops $team' for Compose (it was 'Ops ')."""
    text = _render(WEBUI_ADMIN_NAME="Ops $team")[0]
    assert 'WEBUI_ADMIN_NAME: "Ops $$team"' in text
    assert _literal(_parse(text)["services"]["webui"]["environment"]["WEBUI_ADMIN_NAME"]) == "Ops $team"

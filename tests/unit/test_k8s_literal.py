"""Values reach their consumers literally: a rendered kustomize directory read by the real
`kubectl kustomize` (go-yaml, YAML 1.2) and then expanded by the kubelet's `$(VAR)` rule, and a
rendered Compose file read by the real `docker compose config`, give back the operator's input,
as strings; and the namespaces that belong to Kubernetes are refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from controller.config.catalog import load_catalog
from controller.config.site import SiteConfig
from controller.deploy.compose_file import render_compose
from controller.deploy.k8s_manifests import render_manifests
from controller.deploy.k8s_settings import K8sSettings, parse_k8s_settings
from controller.deploy.spec import build_spec
from controller.errors import CatalogError, SettingsError
from controller.lifecycle.render_k8s import render_k8s
from tests.unit._support import DUMMY_SECRETS, TINY_ARCH, fixed_settings, make_profile, write_catalog
from tests.unit.k8s_support import compose_config, env_mapping, kubelet_expand, kustomize

# Plain scalars a YAML 1.1 or 1.2 reader (PyYAML, go-yaml) would read as a number, a bool or null,
# and text the kubelet or Compose would expand.
HOSTILE = [
    "1e3",
    "0o17",
    "true",
    "~",
    "$(X)",
    "$(WEBUI_SECRET_KEY)",
    "$$",
    "$$(X)",
    "$",
    "a: b # c",
    "null",
    "08",
    "yes",
    "Off",
    "0x1F",
    "+inf",
    ".nan",
    "1_000",
    "12:30",
    "0b101",
    "-1e-3",
    "=",
    "2024-01-02",
]
SERVED_NAME_OK = {"1e3", "0o17", "true", "null", "08", "yes", "Off", "0x1F", "1_000", "0b101", "2024-01-02"}
K8S_KEYS = [*K8sSettings.model_fields, *(f.alias for f in K8sSettings.model_fields.values())]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for key in [*K8S_KEYS, "HF_TOKEN", "GPU_MEMORY_GIB", "WEBUI_ADMIN_NAME", *DUMMY_SECRETS]:
        monkeypatch.delenv(str(key), raising=False)


def _project(tmp_path: Path, value: str) -> tuple[SiteConfig, Path]:
    env = "".join(f"{k}={v}\n" for k, v in DUMMY_SECRETS.items())
    (tmp_path / ".env").write_text(env, encoding="utf-8")
    served = value if value in SERVED_NAME_OK else "served"
    profile = {"model": "org/model", "served_model_name": served, "max_model_len": 1024, "architecture": TINY_ARCH,
               "extra_args": [f"--x={value}", value]}  # fmt: skip
    return SiteConfig(root=tmp_path, env_file=tmp_path / ".env"), write_catalog(tmp_path / "c.yaml", {"p": profile})


def _by_kind(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _container(docs: list[dict], name: str) -> dict:
    return _by_kind(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def _expanded_env(container: dict) -> dict[str, str]:
    """Each env value as the kubelet hands it to the process: expanded against the ones before it."""
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            assert isinstance(item["value"], str), item
            env[item["name"]] = kubelet_expand(item["value"], env_mapping(env))
        else:
            env[item["name"]] = "<secret>"
    return env


@pytest.mark.parametrize("value", HOSTILE)
def test_kustomize_and_the_kubelet_give_back_each_value_literally(tmp_path, monkeypatch, value):
    site, catalog = _project(tmp_path, value)
    monkeypatch.setenv("WEBUI_ADMIN_NAME", value)
    render_k8s(site, load_catalog(catalog), "p", tmp_path / "k8s")
    docs = kustomize(tmp_path / "k8s")
    vllm = _container(docs, "vllm")
    env = _expanded_env(vllm)
    args = [kubelet_expand(arg, env_mapping(env)) for arg in vllm["args"]]
    assert all(isinstance(arg, str) for arg in vllm["args"])
    assert args[-2:] == [f"--x={value}", value]
    served = value if value in SERVED_NAME_OK else "served"
    assert args[args.index("--served-model-name") + 1] == served
    assert _expanded_env(_container(docs, "webui"))["WEBUI_ADMIN_NAME"] == value


def test_a_namespace_that_reads_as_a_number_stays_a_string(tmp_path, monkeypatch):
    site, catalog = _project(tmp_path, "x")
    monkeypatch.setenv("K8S_NAMESPACE", "1e3")
    render_k8s(site, load_catalog(catalog), "p", tmp_path / "k8s")
    docs = kustomize(tmp_path / "k8s")
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"1e3"}
    assert _by_kind(docs, "Namespace", "1e3")["metadata"]["name"] == "1e3"


def test_the_expansion_port_follows_the_kubelet_rule():
    env = env_mapping({"VAR_A": "A", "BIG_MONEY": "$$$"})
    cases = {"$(VAR_A)": "A", "$$(VAR_A)": "$(VAR_A)", "$(UNKNOWN)": "$(UNKNOWN)", "$(VAR_A": "$(VAR_A",
             "a$b$": "a$b$", "$$": "$",
             "$$$$$$(BIG_MONEY)": "$$$(BIG_MONEY)", "$$$$$$$(BIG_MONEY)": "$$$$$$"}  # fmt: skip
    assert {given: kubelet_expand(given, env) for given in cases} == cases


@pytest.mark.parametrize("value", ["$(WEBUI_SECRET_KEY)", "--x=$(VLLM_API_KEY)", "$$", "$$(X)", "a$", "$(X"])
def test_no_secret_reaches_argv_or_the_admin_name_through_expansion(value):
    profile = make_profile("p", extra_args=[value])
    spec = build_spec(profile, fixed_settings(WEBUI_ADMIN_NAME=value), None)
    files = render_manifests(spec, K8sSettings(), load_timeout_s=600, gpus=1)
    docs = [d for text in files.values() for d in yaml.safe_load_all(text) if d and "metadata" in d]
    secrets = {"WEBUI_SECRET_KEY": "S3CRET", "VLLM_API_KEY": "K3Y", "OPENAI_API_KEY": "K3Y"}
    webui, vllm = _container(docs, "webui"), _container(docs, "vllm")
    env = {**_expanded_env(webui), **secrets}
    assert kubelet_expand(next(e["value"] for e in webui["env"] if e["name"] == "WEBUI_ADMIN_NAME"),
                          env_mapping(env)) == value  # fmt: skip
    assert kubelet_expand(vllm["args"][-1], env_mapping({**_expanded_env(vllm), **secrets})) == value


# ----- namespaces -----------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease", "kube-x"])
def test_a_kubernetes_system_namespace_is_refused(namespace):
    with pytest.raises(SettingsError) as caught:
        parse_k8s_settings({"K8S_NAMESPACE": namespace}, {}, "test")
    assert caught.value.exit_code == 2
    assert "K8S_NAMESPACE" in caught.value.message and "kube-" in caught.value.message


def test_the_default_namespace_gets_no_namespace_object(tmp_path, monkeypatch):
    site, catalog = _project(tmp_path, "x")
    monkeypatch.setenv("K8S_NAMESPACE", "default")
    result = render_k8s(site, load_catalog(catalog), "p", tmp_path / "k8s")
    assert "namespace.yaml" not in result["files"] and not (tmp_path / "k8s" / "namespace.yaml").exists()
    docs = kustomize(tmp_path / "k8s")
    assert "Namespace" not in {d["kind"] for d in docs}
    assert {d["metadata"]["namespace"] for d in docs} == {"default"}


# ----- the same values through Compose ----------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_docker_compose_config_gives_back_each_value_literally(tmp_path, value):
    served = value if value in SERVED_NAME_OK else "served"
    profile = make_profile("p", served_model_name=served, extra_args=[f"--x={value}", value])
    (tmp_path / "compose.yml").write_text(render_compose(profile, fixed_settings(WEBUI_ADMIN_NAME=value)))
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in DUMMY_SECRETS.items()))
    services = compose_config(tmp_path / "compose.yml", tmp_path / ".env")["services"]
    # `config` prints `$` as `$$` again, so that its output can be read back.
    command = [arg.replace("$$", "$") for arg in services["vllm"]["command"]]
    assert command[-2:] == [f"--x={value}", value]
    assert command[command.index("--served-model-name") + 1] == served
    assert services["webui"]["environment"]["WEBUI_ADMIN_NAME"].replace("$$", "$") == value


# ----- any text, through the real kustomize ----------------------------------------------------------

NASTY = [
    "1e3",
    "0o17",
    "0x",
    "true",
    "~",
    "null",
    "$",
    "$$",
    "$(",
    ")",
    "#",
    ": ",
    "- ",
    "'",
    '"',
    "\\",
    "\t",
    " ",
    "+",
    ".",
    "inf",
    "nan",
    "_",
    "0",
    "1",
    "9",
    "e",
    ":",
    "{",
    "[",
    "&",
    "*",
    "!",
    "%",
    "@",
    "`",
    "é",
    "\u2028",
]
text = st.one_of(st.text(max_size=30), st.lists(st.sampled_from(NASTY), min_size=1, max_size=8).map("".join))


@settings(max_examples=25, deadline=None, derandomize=os.environ.get("CI") == "true",
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(admin=text, arg=text)
def test_any_text_setting_reads_back_literally_after_kustomize(tmp_path_factory, admin, arg):
    try:
        profile = make_profile("p", extra_args=[arg] if arg else [])
        settings_ = fixed_settings(WEBUI_ADMIN_NAME=admin)
    except (CatalogError, SettingsError, ValueError):
        assume(False)
        return
    files = render_manifests(build_spec(profile, settings_, None), K8sSettings(), load_timeout_s=600, gpus=1)
    out = tmp_path_factory.mktemp("k8s")
    for name, content in {**files, "secrets.env": "A=b\n"}.items():
        (out / name).write_text(content, encoding="utf-8")
    docs = kustomize(out)
    webui, vllm = _container(docs, "webui"), _container(docs, "vllm")
    assert _expanded_env(webui)["WEBUI_ADMIN_NAME"] == settings_.webui_admin_name
    if arg:
        assert kubelet_expand(vllm["args"][-1], env_mapping(_expanded_env(vllm))) == arg
    # the structure is the one without hostile values
    plain = render_manifests(build_spec(make_profile("p"), fixed_settings(), None), K8sSettings(),
                             load_timeout_s=600, gpus=1)  # fmt: skip
    assert {n: len(list(yaml.safe_load_all(t))) for n, t in files.items()} == {
        n: len(list(yaml.safe_load_all(t))) for n, t in plain.items()
    }
    assert [sorted(c) for c in (webui, vllm)] == [sorted(c) for c in (webui, vllm)]


def test_tls_for_compose_is_named_as_not_applying_to_the_cluster(tmp_path, monkeypatch):
    from controller.lifecycle.render_k8s import summary_lines

    site, catalog = _project(tmp_path, "x")
    monkeypatch.setenv("TLS", "internal")
    monkeypatch.setenv("TLS_HOST", "llm.example.lan")
    result = render_k8s(site, load_catalog(catalog), "p", tmp_path / "k8s")
    assert "K8S_INGRESS_TLS_SECRET" in result["tls_note"]
    assert any("TLS=internal" in line for line in summary_lines(result))
    monkeypatch.setenv("K8S_INGRESS_HOST", "llm.example.lan")
    monkeypatch.setenv("K8S_INGRESS_TLS_SECRET", "llm-tls")
    assert render_k8s(site, load_catalog(catalog), "p", tmp_path / "k8s")["tls_note"] is None

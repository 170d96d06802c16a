"""Containers' environments on Kubernetes, as the kubelet reads them: literal values with `$`
doubled (kubelet_literal), and secrets only as references to the Secret's keys. Open WebUI's holds
what the Compose file's does, and directory sign-in (controller.deploy.sign_in, and LDAP too: a
cluster has no `up` to set it through the admin API)."""

from __future__ import annotations

from typing import Any

from controller.config.directory_settings import DirectorySettings
from controller.deploy.k8s_settings import K8sSettings
from controller.deploy.sign_in import OIDC_SECRET_KEY, ldap_environment, oidc_environment, sign_in_choices_environment
from controller.deploy.spec import ServingSpec

# kustomize appends a hash of the content to this name and rewrites every reference to it, so a
# rotated key rolls the pods that read it.
SECRET_NAME = "llmstack-secrets"
LDAP_SECRET_KEY = "LDAP_APP_PASSWORD"


def kubelet_literal(text: str) -> str:
    """`text` as the kubelet must read it in a container's command, args or env value: it expands
    `$(NAME)` there and reads `$$` as one `$` (k8s.io/kubernetes third_party/forked/golang/expansion),
    so every `$` is doubled and the process gets `text` itself."""
    return text.replace("$", "$$")


def literal_env(env: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**item, "value": kubelet_literal(item["value"])} if "value" in item else item for item in env]


def secret_env(name: str, key: str, k8s: K8sSettings, *, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": k8s.existing_secret or SECRET_NAME, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def webui_env(spec: ServingSpec, k8s: K8sSettings, directory: DirectorySettings | None = None,
              public_url: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    env = [
        {"name": "OPENAI_API_BASE_URL", "value": spec.vllm_base_url},
        secret_env("OPENAI_API_KEY", "VLLM_API_KEY", k8s),
        {"name": "ENABLE_OLLAMA_API", "value": "false"},
        secret_env("WEBUI_SECRET_KEY", "WEBUI_SECRET_KEY", k8s),
        {"name": "WEBUI_ADMIN_EMAIL", "value": spec.admin_email},
        {"name": "WEBUI_ADMIN_NAME", "value": spec.admin_name},
        secret_env("WEBUI_ADMIN_PASSWORD", "WEBUI_ADMIN_PASSWORD", k8s),
        {"name": "ENABLE_SIGNUP", "value": "false"},
    ]
    if spec.offline:  # Open WebUI does not fetch its embedding models or check for updates
        env += [{"name": "OFFLINE_MODE", "value": "true"}, {"name": "HF_HUB_OFFLINE", "value": "1"}]
    oidc = oidc_environment(directory, public_url)
    env += [{"name": name, "value": value} for name, value in oidc.items()]
    if oidc:
        env.append(secret_env(OIDC_SECRET_KEY, OIDC_SECRET_KEY, k8s))
    if directory is not None:
        env += [{"name": name, "value": value} for name, value in sign_in_choices_environment(directory).items()]
    if directory is not None and directory.ldap == "on":
        env += [{"name": name, "value": value} for name, value in ldap_environment(directory).items()]
        if directory.ldap_bind_dn:
            env.append(secret_env(LDAP_SECRET_KEY, LDAP_SECRET_KEY, k8s))
    return literal_env(env)

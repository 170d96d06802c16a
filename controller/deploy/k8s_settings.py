"""Kubernetes site settings: the K8S_* keys (and VLLM_REPLICAS) of `.env`, the environment over them.

Kept apart from controller.config.settings so that Compose users never see them fail. Every value is
checked strictly here, so no setting can change the structure of a rendered manifest; an error
names the key and where it was set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from controller.config.env_keys import K8S_KEYS
from controller.config.keyed_settings import keyed_values, validate_keyed

# RFC 1123 names (namespaces, label values of names) and DNS subdomains (object names, hosts).
DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
# A storage request: a positive number with a binary or decimal suffix, e.g. 50Gi, 500G.
QUANTITY = r"^[1-9][0-9]{0,5}(\.[0-9]{1,3})?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)$"
_LABEL_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
LABEL_KEY = re.compile(rf"(?:{DNS_SUBDOMAIN[1:-1]}/)?{_LABEL_NAME}")
LABEL_VALUE = re.compile(rf"(?:{_LABEL_NAME})?")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
MAX_REPLICAS = 64


def _label_key(key: str) -> str:
    if not LABEL_KEY.fullmatch(key):
        raise ValueError(f"{key!r} is not a label key (prefix/name: letters, digits, '-', '_', '.')")
    return key


def _node_selector(text: str) -> dict[str, str]:
    """`key=value,key2=value2` -> mapping; keys and values follow Kubernetes' label rules."""
    selector: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not LABEL_VALUE.fullmatch(value):
            raise ValueError(f"{item!r} is not key=value with a label value; write e.g. nvidia.com/gpu.present=true")
        if key in selector:
            raise ValueError(f"{key!r} is given twice")
        selector[_label_key(key)] = value
    return selector


def _tolerations(text: str) -> list[dict[str, str]]:
    """`key[=value]:Effect,...` (kubectl taint's syntax) -> tolerations; no value means Exists."""
    result = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        taint, sep, effect = item.rpartition(":")
        if not sep or effect not in TAINT_EFFECTS:
            raise ValueError(
                f"{item!r} is not key[=value]:Effect with Effect one of {', '.join(TAINT_EFFECTS)}; "
                "write e.g. nvidia.com/gpu:NoSchedule"
            )
        key, has_value, value = taint.partition("=")
        if has_value and not LABEL_VALUE.fullmatch(value):
            raise ValueError(f"{value!r} in {item!r} is not a taint value")
        toleration = {"key": _label_key(key), "operator": "Equal" if has_value else "Exists"}
        if has_value:
            toleration["value"] = value
        result.append({**toleration, "effect": effect})
    return result


def _optional(value: object) -> object:
    return None if value == "" else value


Name = Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
Quantity = Annotated[str, Field(pattern=QUANTITY)]


class K8sSettings(BaseModel):
    """What only the Kubernetes target reads. Defaults fit a cluster with a default storage class
    and the NVIDIA device plugin (or GPU Operator)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, str_strip_whitespace=False)

    vllm_replicas: int = Field(1, alias="VLLM_REPLICAS", ge=1, le=MAX_REPLICAS, strict=False)
    namespace: str = Field("llmstack", alias="K8S_NAMESPACE", pattern=DNS_LABEL)
    storage_class: Name | None = Field(None, alias="K8S_STORAGE_CLASS")
    model_cache_size: Quantity = Field("50Gi", alias="K8S_MODEL_CACHE_SIZE")
    webui_data_size: Quantity = Field("5Gi", alias="K8S_WEBUI_DATA_SIZE")
    # `key=value,...` in .env; a mapping here.
    node_selector: dict[str, str] = Field(default_factory=dict, alias="K8S_NODE_SELECTOR")
    # `key[=value]:Effect,...` in .env (kubectl taint's syntax); tolerations here.
    tolerations: list[dict[str, str]] = Field(default_factory=list, alias="K8S_TOLERATIONS")
    runtime_class: Name | None = Field(None, alias="K8S_RUNTIME_CLASS")
    ingress_host: Name | None = Field(None, alias="K8S_INGRESS_HOST")
    ingress_class: Name | None = Field(None, alias="K8S_INGRESS_CLASS")
    ingress_tls_secret: Name | None = Field(None, alias="K8S_INGRESS_TLS_SECRET")
    # A cert-manager ClusterIssuer: the Ingress asks it for its certificate (K8S_INGRESS_TLS_SECRET wins).
    cert_issuer: Name | None = Field(None, alias="K8S_CERT_ISSUER")
    existing_secret: Name | None = Field(None, alias="K8S_EXISTING_SECRET")
    local_model_claim: Name | None = Field(None, alias="K8S_LOCAL_MODEL_CLAIM")

    @field_validator(
        "storage_class", "runtime_class", "ingress_host", "ingress_class", "ingress_tls_secret", "cert_issuer",
        "existing_secret", "local_model_claim", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return _optional(value)

    @field_validator("namespace")
    @classmethod
    def _not_kubernetes_own(cls, value: str) -> str:
        if value.startswith("kube-"):
            raise ValueError(
                "kube-* namespaces belong to Kubernetes itself (kube-system, kube-public, kube-node-lease); "
                "choose one of your own, e.g. llmstack"
            )
        return value

    @field_validator("node_selector", mode="before")
    @classmethod
    def _parse_selector(cls, value: object) -> object:
        return _node_selector(value) if isinstance(value, str) else value

    @field_validator("tolerations", mode="before")
    @classmethod
    def _parse_tolerations(cls, value: object) -> object:
        return _tolerations(value) if isinstance(value, str) else value

    @field_validator("vllm_replicas", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,3}", value.strip()):
            raise ValueError(f"is not a whole number from 1 to {MAX_REPLICAS}")
        return value

    @model_validator(mode="after")
    def _tls_needs_host(self) -> K8sSettings:
        if (self.ingress_tls_secret or self.ingress_class or self.cert_issuer) and not self.ingress_host:
            raise ValueError("K8S_INGRESS_TLS_SECRET, K8S_CERT_ISSUER and K8S_INGRESS_CLASS need K8S_INGRESS_HOST")
        return self


# The keys, named once in controller.config.env_keys (a test holds them equal to the aliases above).
KEYS = K8S_KEYS


def k8s_values(env_file: Path, environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """The raw K8S_* values and where each came from: `.env`, then the environment over it."""
    return keyed_values(KEYS, env_file, environ)


def parse_k8s_settings(values: Mapping[str, str], sources: Mapping[str, str], origin: str) -> K8sSettings:
    return validate_keyed(K8sSettings, values, sources, origin, hint="see `From one box to a cluster` in README.md")


def load_k8s_settings(env_file: Path, environ: Mapping[str, str] | None = None) -> K8sSettings:
    values, sources = k8s_values(env_file, environ)
    return parse_k8s_settings(values, sources, str(env_file))

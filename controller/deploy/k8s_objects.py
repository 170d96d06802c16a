"""The Kubernetes objects of one serving spec, as Python data (controller.deploy.k8s_manifests dumps them).

The vLLM arguments are the spec's (`spec.vllm_args`), the very list the Compose file's `command:`
holds, `$` doubled for the kubelet as for Compose (kubelet_literal). Secrets appear only as
references to a Secret's keys. The vLLM Service is named `vllm`, so the spec's backend URL
(http://vllm:8000/v1) is right for Open WebUI in the same namespace, as it is on the Compose network.
"""

from __future__ import annotations

import math
from typing import Any

from controller.config.directory_settings import LDAP_CA_IN_CONTAINER, DirectorySettings
from controller.deploy.k8s_env import SECRET_NAME, kubelet_literal, literal_env, secret_env, webui_env
from controller.deploy.k8s_settings import K8sSettings
from controller.deploy.k8s_tls import (
    CERT_FILE,
    ISSUER_ANNOTATION,
    KEY_FILE,
    LDAP_CA_CONFIG_MAP,
    LDAP_CA_FILE,
    IngressTls,
)
from controller.deploy.spec import HF_CACHE_TARGET, ServingSpec

WEBUI_DATA_PATH = "/app/backend/data"
STARTUP_PERIOD_S = 10
GPU_RESOURCE = "nvidia.com/gpu"
MANAGED_BY = "llmstack-controller"


def selector(spec: ServingSpec, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": spec.project_name}


def meta(spec: ServingSpec, k8s: K8sSettings, name: str, component: str) -> dict[str, Any]:
    labels = {
        **selector(spec, component),
        "app.kubernetes.io/part-of": "llmstack",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    return {"name": name, "namespace": k8s.namespace, "labels": labels}


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


# Root inside the images (both run as root by default), but without privileges it does not need.
SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _pvc(spec: ServingSpec, k8s: K8sSettings, name: str, component: str, size: str, shared: bool) -> dict:
    body: dict[str, Any] = {
        "accessModes": ["ReadWriteMany" if shared else "ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if k8s.storage_class:
        body["storageClassName"] = k8s.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(spec, k8s, name, component),
        "spec": body,
    }


def _service(spec: ServingSpec, k8s: K8sSettings, component: str, port: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(spec, k8s, component, component),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec, component),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _scrape(spec: ServingSpec) -> dict[str, str]:
    """MONITORING=on: the pod annotations that a cluster's Prometheus (its usual `kubernetes-pods` job) scrapes by."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(spec.vllm_port), "prometheus.io/path": "/metrics"}


def _deployment(spec: ServingSpec, k8s: K8sSettings, component: str, replicas: int, pod: dict) -> dict:
    # One replica gets Recreate: the old pod frees its GPU (or its ReadWriteOnce volume) before the
    # new one asks for it. More replicas roll one at a time and never ask for an extra GPU.
    if replicas == 1:
        strategy: dict[str, Any] = {"type": "Recreate"}
    else:
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    metadata = meta(spec, k8s, component, component)
    template_meta: dict[str, Any] = {"labels": dict(metadata["labels"])}
    if component == "vllm":
        # What is served, for `kubectl describe` and tools; label values cannot hold a '/'.
        metadata["annotations"] = dict(spec.labels)
        template_meta["annotations"] = dict(spec.labels) | (_scrape(spec) if spec.monitoring else {})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(spec, component)},
            "strategy": strategy,
            "template": {"metadata": template_meta, "spec": pod},
        },
    }


def _vllm_container(spec: ServingSpec, k8s: K8sSettings, load_timeout_s: float, gpus: int) -> dict:
    env = [secret_env("VLLM_API_KEY", "VLLM_API_KEY", k8s), secret_env("HF_TOKEN", "HF_TOKEN", k8s, optional=True)]
    if spec.accelerator == "cpu":
        env.append({"name": "VLLM_CPU_KVCACHE_SPACE", "value": str(spec.cpu_kv_cache_gib)})
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "model-cache", "mountPath": HF_CACHE_TARGET}]
    if spec.local_model_dir or spec.offline:  # OFFLINE=true: the weights come from the cache volume only
        env += [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "TRANSFORMERS_OFFLINE", "value": "1"}]
    if spec.local_model_dir:
        mounts.append({"name": "local-model", "mountPath": spec.container_model, "readOnly": True})
    for index, (_, mount_path) in enumerate(spec.lora_mounts):
        mounts.append({"name": f"lora-{index}", "mountPath": mount_path, "readOnly": True})
    container: dict[str, Any] = {
        "name": "vllm",
        "image": spec.vllm_image,
        # The image's entrypoint is `vllm serve`; these are the Compose file's `command:`.
        "args": [kubelet_literal(arg) for arg in spec.vllm_args],
        "env": literal_env(env),
        "ports": [{"name": "http", "containerPort": spec.vllm_port, "protocol": "TCP"}],
        # /health is not behind the API key (it guards /v1 only). The startup window is the load deadline.
        "startupProbe": _probe(spec.health_path, STARTUP_PERIOD_S, math.ceil(load_timeout_s / STARTUP_PERIOD_S)),
        "readinessProbe": _probe(spec.health_path, 10, 3),
        "livenessProbe": _probe(spec.health_path, 20, 3),
        "volumeMounts": mounts,
        "securityContext": SECURITY_CONTEXT,
    }
    if gpus:
        container["resources"] = {"requests": {GPU_RESOURCE: gpus}, "limits": {GPU_RESOURCE: gpus}}
    return container


def _vllm_pod(spec: ServingSpec, k8s: K8sSettings, load_timeout_s: float, gpus: int) -> dict:
    # vLLM shares tensors between its processes through /dev/shm; a pod's default is 64 MiB.
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi" if gpus else "2Gi"}},
        {"name": "model-cache", "persistentVolumeClaim": {"claimName": "vllm-model-cache"}},
    ]
    if spec.local_model_dir and k8s.local_model_claim:
        volumes.append(
            {"name": "local-model", "persistentVolumeClaim": {"claimName": k8s.local_model_claim, "readOnly": True}}
        )
    elif spec.local_model_dir:
        # The same directory must exist on every node that can run vLLM (or set K8S_LOCAL_MODEL_CLAIM).
        volumes.append({"name": "local-model", "hostPath": {"path": spec.local_model_dir, "type": "Directory"}})
    # Local LoRA adapter directories, like a local model: the same path on every node that can run vLLM.
    for index, (host_path, _) in enumerate(spec.lora_mounts):
        volumes.append({"name": f"lora-{index}", "hostPath": {"path": host_path, "type": "Directory"}})
    pod: dict[str, Any] = {
        # Without this, a Service named `vllm` injects VLLM_PORT=tcp://..., which vLLM reads as its own setting.
        "enableServiceLinks": False,
        "containers": [_vllm_container(spec, k8s, load_timeout_s, gpus)],
        "volumes": volumes,
    }
    if k8s.node_selector:
        pod["nodeSelector"] = dict(k8s.node_selector)
    if k8s.tolerations:
        pod["tolerations"] = [dict(t) for t in k8s.tolerations]
    if k8s.runtime_class:
        pod["runtimeClassName"] = k8s.runtime_class
    return pod


def _network_policy(spec: ServingSpec, k8s: K8sSettings) -> dict:
    """Only Open WebUI's pods reach vLLM's port. vLLM gets no way out when it needs none: a local
    model with local adapters, or OFFLINE=true (the Compose file's internal backend network)."""
    body: dict[str, Any] = {
        "podSelector": {"matchLabels": selector(spec, "vllm")},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"podSelector": {"matchLabels": selector(spec, "webui")}}],
                "ports": [{"protocol": "TCP", "port": spec.vllm_port}],
            }
        ],
    }
    if spec.backend_internal:
        body["policyTypes"].append("Egress")
        body["egress"] = []
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(spec, k8s, "vllm-from-webui-only", "vllm"),
        "spec": body,
    }


def vllm_objects(spec: ServingSpec, k8s: K8sSettings, load_timeout_s: float, gpus: int) -> list[dict]:
    shared = k8s.vllm_replicas > 1
    return [
        _pvc(spec, k8s, "vllm-model-cache", "vllm", k8s.model_cache_size, shared),
        _deployment(spec, k8s, "vllm", k8s.vllm_replicas, _vllm_pod(spec, k8s, load_timeout_s, gpus)),
        _service(spec, k8s, "vllm", spec.vllm_port),
        _network_policy(spec, k8s),
    ]


def webui_objects(spec: ServingSpec, k8s: K8sSettings, directory: DirectorySettings | None = None,
                  public_url: str | None = None) -> list[dict]:  # fmt: skip
    """One replica (its database is SQLite on a ReadWriteOnce volume); nothing here depends on the
    model, so a switch leaves Open WebUI running. The default model is set through its admin API."""
    container = {
        "name": "webui",
        "image": spec.webui_image,
        "env": webui_env(spec, k8s, directory, public_url),
        "ports": [{"name": "http", "containerPort": spec.webui_port, "protocol": "TCP"}],
        "startupProbe": _probe(spec.health_path, 5, 60),
        "readinessProbe": _probe(spec.health_path, 10, 3),
        "livenessProbe": _probe(spec.health_path, 20, 3),
        "volumeMounts": [{"name": "data", "mountPath": WEBUI_DATA_PATH}],
        "securityContext": SECURITY_CONTEXT,
    }
    pod = {
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "webui-data"}}],
    }
    if needs_ldap_ca(directory):  # kustomize's configMapGenerator makes it (kustomization below)
        container["volumeMounts"].append({"name": "ldap-ca", "mountPath": LDAP_CA_IN_CONTAINER,
                                          "subPath": LDAP_CA_FILE, "readOnly": True})  # fmt: skip
        pod["volumes"].append({"name": "ldap-ca", "configMap": {"name": LDAP_CA_CONFIG_MAP}})
    return [
        _pvc(spec, k8s, "webui-data", "webui", k8s.webui_data_size, False),
        _deployment(spec, k8s, "webui", 1, pod),
        _service(spec, k8s, "webui", spec.webui_port),
    ]


def namespace_object(spec: ServingSpec, k8s: K8sSettings) -> dict:
    metadata = meta(spec, k8s, k8s.namespace, "namespace")
    del metadata["namespace"]
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def ingress_object(spec: ServingSpec, k8s: K8sSettings, tls: IngressTls | None = None) -> dict:
    host = k8s.ingress_host
    backend = {"service": {"name": "webui", "port": {"number": spec.webui_port}}}
    body: dict[str, Any] = {
        "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]
    }
    if k8s.ingress_class:
        body["ingressClassName"] = k8s.ingress_class
    metadata = meta(spec, k8s, "webui", "webui")
    if tls is not None:
        body["tls"] = [{"hosts": [host], "secretName": tls.secret_name}]
        if tls.cluster_issuer:
            metadata["annotations"] = {ISSUER_ANNOTATION: tls.cluster_issuer}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": body}


def needs_ldap_ca(directory: DirectorySettings | None) -> bool:
    return directory is not None and directory.ldap == "on" and directory.ldap_ca_cert_file is not None


def kustomization(k8s: K8sSettings, resources: list[str], secret_env_file: str, tls: IngressTls | None = None,
                  ldap_ca: bool = False) -> dict:  # fmt: skip
    body: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": k8s.namespace,
        "resources": resources,
    }
    generators = [] if k8s.existing_secret else [{"name": SECRET_NAME, "envs": [secret_env_file]}]
    if tls is not None and tls.from_files:
        generators.append({"name": tls.secret_name, "type": "kubernetes.io/tls", "files": [CERT_FILE, KEY_FILE]})
    if generators:
        body["secretGenerator"] = generators
    if ldap_ca:
        body["configMapGenerator"] = [{"name": LDAP_CA_CONFIG_MAP, "files": [LDAP_CA_FILE]}]
    return body

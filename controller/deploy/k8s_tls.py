"""HTTPS on a cluster from the same settings as on one box (pure): the Ingress serves it, with the
certificate from one of three places, the first that is set:

- K8S_INGRESS_TLS_SECRET: a `kubernetes.io/tls` Secret the cluster already holds;
- K8S_CERT_ISSUER: a cert-manager ClusterIssuer, which writes the Secret (`cert-manager.io/cluster-issuer`);
- TLS=files: the site's certificate and key, copied beside the manifests and turned into a Secret by
  kustomize (its content hash in the name, so a renewed certificate rolls out).

TLS=internal and TLS=acme name Caddy's own CA and Caddy's ACME client, which a cluster does not run:
they map to nothing, and `render --target k8s` says what to set instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.config.tls_settings import TlsSettings
from controller.deploy.k8s_settings import K8sSettings

TLS_SECRET_NAME = "llmstack-tls"
# The secretGenerator's files, in the kustomize directory; the key is 0600 and kept out of git.
CERT_FILE, KEY_FILE = "tls.crt", "tls.key"
ISSUER_ANNOTATION = "cert-manager.io/cluster-issuer"
# LDAP_TLS=ldaps with LDAP_CA_CERT_FILE: the directory's CA, copied beside the manifests, as a ConfigMap.
LDAP_CA_FILE, LDAP_CA_CONFIG_MAP = "ldap-ca.pem", "llmstack-ldap-ca"


@dataclass(frozen=True)
class IngressTls:
    secret_name: str
    cluster_issuer: str | None = None
    from_files: bool = False  # TLS=files: the Secret is generated from CERT_FILE and KEY_FILE


def ingress_tls(tls: TlsSettings, k8s: K8sSettings) -> IngressTls | None:
    if not k8s.ingress_host:
        return None
    if k8s.ingress_tls_secret:
        return IngressTls(k8s.ingress_tls_secret)
    if k8s.cert_issuer:
        return IngressTls(TLS_SECRET_NAME, cluster_issuer=k8s.cert_issuer)
    if tls.mode == "files":
        return IngressTls(TLS_SECRET_NAME, from_files=True)
    return None


def tls_note(tls: TlsSettings, k8s: K8sSettings) -> str | None:
    """What the operator should know when a TLS setting does not reach the cluster's Ingress."""
    if tls.mode == "off" or ingress_tls(tls, k8s) is not None:
        return None
    return (f"TLS={tls.mode} runs Caddy on the Compose stack; on Kubernetes the Ingress serves HTTPS: set "
            "K8S_INGRESS_HOST and K8S_CERT_ISSUER (a cert-manager ClusterIssuer) or K8S_INGRESS_TLS_SECRET, "
            "or use TLS=files")  # fmt: skip

"""The `.env` keys read outside the Settings model, named once, and the check of a file's keys.

The settings model's keys are listed here too (SETTINGS_KEYS, held equal to the model's aliases by
tests/unit/test_settings.py), so that commands that never validate settings need not load it;
together with the others they are every key the controller reads (env_values.KNOWN_KEYS). A key
in `.env` that is none of them is a typo or a note: a near miss of a known key (`OFFLNE`,
`K8S_NAMESPACES`, `offline`) is an error naming the key it resembles, anything else a warning,
since it is silently ignored otherwise.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from pathlib import Path

from controller.config.envfile import EnvEntry
from controller.errors import SettingsError
from controller.phases import PHASES

# The aliases of controller.config.settings.Settings, in its order.
SETTINGS_KEYS = (
    "WEBUI_PORT", "WEBUI_BIND_ADDRESS", "WEBUI_ADMIN_EMAIL", "WEBUI_ADMIN_NAME", "WEBUI_ADMIN_PASSWORD",
    "WEBUI_SECRET_KEY", "VLLM_API_KEY", "HF_TOKEN", "HF_CACHE_DIR", "VLLM_IMAGE", "VLLM_CPU_IMAGE", "WEBUI_IMAGE",
    "GPU_DEVICES", "GPU_MEMORY_GIB", "COMPOSE_PROJECT_NAME", "VLLM_HOST_PORT", "OFFLINE",
)  # fmt: skip
# The secrets among them: never shown in a message, and single-quoted in .env when they hold a `$`.
SECRET_KEYS = frozenset({"WEBUI_ADMIN_PASSWORD", "WEBUI_SECRET_KEY", "VLLM_API_KEY", "GRAFANA_ADMIN_PASSWORD",
                         "HF_TOKEN", "LDAP_APP_PASSWORD", "OAUTH_CLIENT_SECRET"})  # fmt: skip
CONTROLLER_CATALOG = "CONTROLLER_CATALOG"
SWITCH_STRATEGY = "SWITCH_STRATEGY"
SWITCH_RESERVE_GIB = "SWITCH_RESERVE_GIB"
# What only the Kubernetes target reads (controller.deploy.k8s_settings.K8sSettings, whose aliases
# tests/unit/test_settings.py holds equal to these).
K8S_KEYS = (
    "VLLM_REPLICAS", "K8S_NAMESPACE", "K8S_STORAGE_CLASS", "K8S_MODEL_CACHE_SIZE", "K8S_WEBUI_DATA_SIZE",
    "K8S_NODE_SELECTOR", "K8S_TOLERATIONS", "K8S_RUNTIME_CLASS", "K8S_INGRESS_HOST", "K8S_INGRESS_CLASS",
    "K8S_INGRESS_TLS_SECRET", "K8S_CERT_ISSUER", "K8S_EXISTING_SECRET", "K8S_LOCAL_MODEL_CLAIM",
)  # fmt: skip
# What only monitoring reads (controller.config.monitoring_settings.MonitoringSettings, whose aliases
# tests/unit/test_settings.py holds equal to these).
MONITORING_KEYS = (
    "MONITORING", "PROMETHEUS_IMAGE", "ALERTMANAGER_IMAGE", "BLACKBOX_EXPORTER_IMAGE", "NODE_EXPORTER_IMAGE",
    "MONITORING_BIND_ADDRESS", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "PROMETHEUS_RETENTION",
    "PROMETHEUS_RETENTION_SIZE", "PROMETHEUS_SCRAPE_INTERVAL", "ALERT_DOWN_AFTER", "ALERT_KV_CACHE_PERCENT",
    "ALERT_QUEUE_SECONDS", "ALERT_TTFT_P95_MS", "ALERT_HF_CACHE_FREE_PERCENT", "ALERT_WEBHOOK_URL", "ALERT_EMAIL_TO",
    "ALERT_EMAIL_FROM", "ALERT_SMTP_SMARTHOST", "ALERT_GROUP_WAIT", "ALERT_REPEAT_INTERVAL", "GRAFANA_IMAGE",
    "GRAFANA_PORT", "GRAFANA_ADMIN_PASSWORD",
)  # fmt: skip
# What only the front door reads (controller.config.tls_settings.TlsSettings, whose aliases
# tests/unit/test_tls_settings.py holds equal to these).
TLS_KEYS = ("TLS", "TLS_HOST", "HTTPS_PORT", "HTTP_PORT", "TLS_CERT_FILE", "TLS_KEY_FILE", "ACME_EMAIL", "CADDY_IMAGE")
# What only directory sign-in reads (controller.config.directory_settings.DirectorySettings, whose
# aliases tests/unit/test_directory_settings.py holds equal to these).
DIRECTORY_KEYS = (
    "LDAP", "LDAP_SERVER_HOST", "LDAP_SERVER_PORT", "LDAP_TLS", "LDAP_CA_CERT_FILE", "LDAP_APP_DN", "LDAP_APP_PASSWORD",
    "LDAP_SEARCH_BASE", "LDAP_SEARCH_FILTERS", "LDAP_ATTRIBUTE_FOR_USERNAME", "LDAP_ATTRIBUTE_FOR_MAIL", "OIDC",
    "OPENID_PROVIDER_URL", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OAUTH_PROVIDER_NAME",
    "DIRECTORY_USER_ROLE", "LOCAL_SIGNIN",
)  # fmt: skip
DEADLINE_KEYS = tuple(phase.env_key for phase in PHASES)
OTHER_KEYS = frozenset(
    {
        CONTROLLER_CATALOG,
        SWITCH_STRATEGY,
        SWITCH_RESERVE_GIB,
        *K8S_KEYS,
        *MONITORING_KEYS,
        *TLS_KEYS,
        *DIRECTORY_KEYS,
        *DEADLINE_KEYS,
    }
)

# difflib's similarity ratio above which an unknown key is taken for a typo of a known one: one
# wrong, missing or swapped letter in the shortest key (OFFLINE, 7 letters) is 0.857; unrelated
# keys people keep in .env stay below (VLLM_API_BASE ~ VLLM_API_KEY is 0.80, HF_HOME ~ HF_TOKEN 0.67).
NEAR_MISS_CUTOFF = 0.85


def near_miss(key: str, known: Collection[str]) -> str | None:
    """The known key that `key` (unknown) was most likely meant to be, or None."""
    matches = difflib.get_close_matches(key.upper(), known, n=1, cutoff=NEAR_MISS_CUTOFF)
    return matches[0] if matches else None


def unknown_keys(env_file: Path, entries: Mapping[str, EnvEntry], known: Collection[str]) -> tuple[str, ...]:
    """A warning for each key of the file that is not `known`; a near miss of a known key (a typo
    the controller would silently ignore) is a SettingsError naming both, the file and the line."""
    typos, unknown = [], []
    for key, entry in entries.items():
        if key in known:
            continue
        where = f"settings file {env_file} line {entry.line}"
        meant = near_miss(key, known)
        if meant:
            typos.append(f"{where}: {key}: did you mean {meant}?")
        else:
            unknown.append(f"{where}: {key} is not a setting the controller reads; it is ignored")
    if typos:
        raise SettingsError(
            typos[0], details=typos[1:],
            hint="correct the key's spelling (see .env.example and README.md, Settings and secrets); "
            "as it is, the controller would ignore it",
        )  # fmt: skip
    return tuple(unknown)

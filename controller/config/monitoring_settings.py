"""Monitoring settings (MONITORING=on adds Prometheus, Alertmanager and two exporters to the stack):
images, where their ports are published, retention, alert thresholds and where alerts go.

Kept apart from the main settings like the Kubernetes ones; every value is checked strictly, since
it ends up in a configuration file that Prometheus or Alertmanager reads literally.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from controller.config.env_keys import MONITORING_KEYS
from controller.config.keyed_settings import KeyedSettings, keyed_values, validate_keyed
from controller.config.setting_types import ImageReference, Key, Port
from controller.config.values import ip_address, printable

# Prometheus' durations, one unit (15d, 90s, 500ms); a sign or a bare number is refused.
DURATION = r"^[1-9][0-9]{0,5}(ms|s|m|h|d|w|y)$"
# --storage.tsdb.retention.size: a whole number and a byte unit.
BYTE_SIZE = r"^[1-9][0-9]{0,5}(B|KB|MB|GB|TB|PB)$"
# host:port of an SMTP relay, as Alertmanager's smarthost.
SMARTHOST = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?:[1-9][0-9]{0,4}$"
EMAIL = r"^[^@\s\"'\\,<>]+@[^@\s\"'\\,<>]+\.[^@\s\"'\\,<>]+$"
SECONDS_BY_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _duration(value: str) -> str:
    if not re.fullmatch(DURATION, value):
        raise ValueError("is not a duration: a whole number above 0 and one unit of ms, s, m, h, d, w, y (e.g. 15d)")
    return value


def _byte_size(value: str) -> str:
    if not re.fullmatch(BYTE_SIZE, value):
        raise ValueError("is not a size: a whole number above 0 and one unit of B, KB, MB, GB, TB, PB (e.g. 10GB)")
    return value


Duration = Annotated[str, AfterValidator(_duration)]


def duration_seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9]+)([a-z]+)", text).groups()
    return int(number) * SECONDS_BY_UNIT[unit]


def _webhook_url(value: str) -> str:
    printable(value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
        raise ValueError("is not an http:// or https:// URL with a host; write e.g. https://alerts.example.com/hook")
    return value


WebhookUrl = Annotated[str, AfterValidator(_webhook_url)]


class MonitoringSettings(KeyedSettings):
    # grafana: `on`, and Grafana with the stack's dashboard.
    mode: Literal["off", "on", "grafana"] = Field("off", alias="MONITORING")
    prometheus_image: ImageReference = Field("prom/prometheus:v2.53.4", alias="PROMETHEUS_IMAGE")
    alertmanager_image: ImageReference = Field("prom/alertmanager:v0.28.1", alias="ALERTMANAGER_IMAGE")
    blackbox_image: ImageReference = Field("prom/blackbox-exporter:v0.25.0", alias="BLACKBOX_EXPORTER_IMAGE")
    node_exporter_image: ImageReference = Field("prom/node-exporter:v1.8.2", alias="NODE_EXPORTER_IMAGE")
    # Their web UIs and APIs have no sign-in: published on this host only, unless set otherwise.
    bind_address: Annotated[str, AfterValidator(ip_address)] = Field("127.0.0.1", alias="MONITORING_BIND_ADDRESS")
    prometheus_port: Port = Field(9090, alias="PROMETHEUS_PORT")
    alertmanager_port: Port = Field(9093, alias="ALERTMANAGER_PORT")
    retention: Duration = Field("15d", alias="PROMETHEUS_RETENTION")
    retention_size: Annotated[str, AfterValidator(_byte_size)] = Field("10GB", alias="PROMETHEUS_RETENTION_SIZE")
    scrape_interval: Duration = Field("15s", alias="PROMETHEUS_SCRAPE_INTERVAL")
    # How long vLLM or Open WebUI may be down or not ready before the alert fires.
    down_after: Duration = Field("2m", alias="ALERT_DOWN_AFTER")
    kv_cache_percent: float = Field(90, alias="ALERT_KV_CACHE_PERCENT", gt=0, le=100, allow_inf_nan=False)
    queue_seconds: float = Field(30, alias="ALERT_QUEUE_SECONDS", gt=0, le=3600, allow_inf_nan=False)
    ttft_p95_ms: float = Field(2000, alias="ALERT_TTFT_P95_MS", gt=0, le=600_000, allow_inf_nan=False)
    hf_cache_free_percent: float = Field(10, alias="ALERT_HF_CACHE_FREE_PERCENT", gt=0, lt=100, allow_inf_nan=False)
    webhook_url: WebhookUrl | None = Field(None, alias="ALERT_WEBHOOK_URL")
    email_to: str | None = Field(None, alias="ALERT_EMAIL_TO", pattern=EMAIL)
    email_from: str | None = Field(None, alias="ALERT_EMAIL_FROM", pattern=EMAIL)
    smtp_smarthost: str | None = Field(None, alias="ALERT_SMTP_SMARTHOST", pattern=SMARTHOST)
    # Alertmanager waits this long after a first alert for others of the group, then sends them together.
    group_wait: Duration = Field("30s", alias="ALERT_GROUP_WAIT")
    repeat_interval: Duration = Field("4h", alias="ALERT_REPEAT_INTERVAL")
    grafana_image: ImageReference = Field("grafana/grafana-oss:11.5.2", alias="GRAFANA_IMAGE")
    grafana_port: Port = Field(3000, alias="GRAFANA_PORT")
    # Generated into .env (0600) by the first command that reads MONITORING=grafana; Compose passes it on.
    grafana_admin_password: Key | None = Field(None, alias="GRAFANA_ADMIN_PASSWORD")

    @model_validator(mode="after")
    def _consistent(self) -> MonitoringSettings:
        email = {"ALERT_EMAIL_TO": self.email_to, "ALERT_EMAIL_FROM": self.email_from,
                 "ALERT_SMTP_SMARTHOST": self.smtp_smarthost}  # fmt: skip
        if any(email.values()) and not all(email.values()):
            missing = ", ".join(key for key, value in email.items() if not value)
            raise ValueError(
                f"e-mail alerts need ALERT_EMAIL_TO, ALERT_EMAIL_FROM and ALERT_SMTP_SMARTHOST; set {missing}"
            )
        if duration_seconds(self.scrape_interval) > 300:
            raise ValueError("PROMETHEUS_SCRAPE_INTERVAL above 5m: Prometheus would see every target as stale")
        ports = {"PROMETHEUS_PORT": self.prometheus_port, "ALERTMANAGER_PORT": self.alertmanager_port}
        if self.grafana:
            ports["GRAFANA_PORT"] = self.grafana_port
        clashing = [key for key, port in ports.items() if list(ports.values()).count(port) > 1]
        if self.enabled and clashing:
            raise ValueError(f"{' and '.join(clashing)} are the same port; give each its own")
        return self

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @property
    def grafana(self) -> bool:
        return self.mode == "grafana"

    @property
    def images(self) -> tuple[str, ...]:
        """The images these settings run: what an offline `up` needs and `bundle create` carries."""
        if not self.enabled:
            return ()
        services = (self.prometheus_image, self.alertmanager_image, self.blackbox_image, self.node_exporter_image)
        return tuple(dict.fromkeys((*services, *((self.grafana_image,) if self.grafana else ()))))


HINT = "see `Monitoring and alerts` in README.md"


def load_monitoring_settings(env_file: Path, environ: Mapping[str, str] | None = None) -> MonitoringSettings:
    values, sources = keyed_values(MONITORING_KEYS, env_file, environ)
    return validate_keyed(MonitoringSettings, values, sources, str(env_file), HINT)

"""What MONITORING=on adds to the stack, as one frozen description for the Compose template:
Prometheus (scrapes every vLLM slot, probes Open WebUI through the blackbox exporter, reads the HF
cache's disk through node-exporter, evaluates controller.deploy.alert_rules) and Alertmanager
(routes to the webhook and e-mail of the settings). Each configuration file is rendered here as
text; the template places it in the compose file as an inline config, so the compose file stays
the one rendered file.

The services start their binaries by path with explicit arguments, so the official images and the
locally built test image (Debian's packages, scripts/image_builder) run alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.config.monitoring_settings import MonitoringSettings
from controller.config.site import METRICS_DIR_FROM_COMPOSE
from controller.deploy.alert_rules import HF_CACHE_JOB, HF_CACHE_MOUNT, VLLM_JOB, WEBUI_JOB, rules_document
from controller.deploy.dashboard import (
    DASHBOARDS_DIR,
    dashboard_json,
    dashboard_provisioning,
    datasource_provisioning,
)
from controller.yaml_out import dump_all

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
BLACKBOX_PORT = 9115
NODE_EXPORTER_PORT = 9100
GRAFANA_PORT = 3000
CONFIG_DIR = "/etc/llmstack"
PROMETHEUS_DATA = "/prometheus"
ALERTMANAGER_DATA = "/alertmanager"
# Open WebUI's probe: the blackbox exporter's module, and the URL it fetches.
PROBE_MODULE = "http_2xx"
# Where node-exporter reads the controller's metric files (the site's metrics folder, read-only).
TEXTFILE_MOUNT = "/textfile"


def _yaml(document: dict) -> str:
    return dump_all([document])


def prometheus_config(settings: MonitoringSettings, *, vllm_slots: tuple[str, ...], vllm_port: int,
                      webui_health_url: str) -> str:  # fmt: skip
    interval = settings.scrape_interval
    return _yaml({
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [f"{CONFIG_DIR}/rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"alertmanager:{ALERTMANAGER_PORT}"]}]}]},
        "scrape_configs": [
            {
                # Every slot by its service name: a slot without a container has no address and so
                # no target (a blue-green switch's second instance is scraped while it exists).
                "job_name": VLLM_JOB,
                "dns_sd_configs": [{"names": list(vllm_slots), "type": "A", "port": vllm_port,
                                    "refresh_interval": interval}],
                "relabel_configs": [{"source_labels": ["__meta_dns_name"], "target_label": "instance"}],
            },
            {
                "job_name": WEBUI_JOB,
                "metrics_path": "/probe",
                "params": {"module": [PROBE_MODULE]},
                "static_configs": [{"targets": [webui_health_url]}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": f"blackbox:{BLACKBOX_PORT}"},
                ],
            },
            {"job_name": HF_CACHE_JOB, "static_configs": [{"targets": [f"node-exporter:{NODE_EXPORTER_PORT}"]}]},
            {"job_name": "prometheus", "static_configs": [{"targets": [f"localhost:{PROMETHEUS_PORT}"]}]},
            {"job_name": "alertmanager", "static_configs": [{"targets": [f"alertmanager:{ALERTMANAGER_PORT}"]}]},
        ],
    })  # fmt: skip


def alertmanager_config(settings: MonitoringSettings) -> str:
    receiver: dict = {"name": "operators"}
    if settings.webhook_url:
        receiver["webhook_configs"] = [{"url": settings.webhook_url, "send_resolved": True}]
    if settings.email_to:
        receiver["email_configs"] = [{"to": settings.email_to, "from": settings.email_from,
                                      "smarthost": settings.smtp_smarthost, "send_resolved": True}]  # fmt: skip
    return _yaml({
        "route": {
            "receiver": "operators",
            "group_by": ["alertname", "instance"],
            "group_wait": settings.group_wait,
            # A resolved alert is sent at the group's next turn: as soon as the first wait.
            "group_interval": settings.group_wait,
            "repeat_interval": settings.repeat_interval,
        },
        "receivers": [receiver],
    })  # fmt: skip


def blackbox_config() -> str:
    probe = {"prober": "http", "timeout": "5s", "http": {"valid_status_codes": [200], "preferred_ip_protocol": "ip4"}}
    return _yaml({"modules": {PROBE_MODULE: probe}})


@dataclass(frozen=True)
class MonitoringSpec:
    prometheus_image: str
    alertmanager_image: str
    blackbox_image: str
    node_exporter_image: str
    bind_address: str
    prometheus_host_port: int
    alertmanager_host_port: int
    prometheus_args: tuple[str, ...]
    alertmanager_args: tuple[str, ...]
    blackbox_args: tuple[str, ...]
    node_exporter_args: tuple[str, ...]
    prometheus_config: str
    rules: str
    alertmanager_config: str
    blackbox_config: str
    config_dir: str = CONFIG_DIR
    prometheus_port: int = PROMETHEUS_PORT
    alertmanager_port: int = ALERTMANAGER_PORT
    prometheus_data: str = PROMETHEUS_DATA
    alertmanager_data: str = ALERTMANAGER_DATA
    hf_cache_mount: str = HF_CACHE_MOUNT
    textfile_source: str = METRICS_DIR_FROM_COMPOSE
    textfile_mount: str = TEXTFILE_MOUNT
    grafana: GrafanaSpec | None = None


@dataclass(frozen=True)
class GrafanaSpec:
    """MONITORING=grafana: Grafana with Prometheus as its data source and the stack's dashboard,
    provisioned read-only; sign-in as `admin` with GRAFANA_ADMIN_PASSWORD from .env."""

    image: str
    host_port: int
    datasources: str
    dashboard_providers: str
    dashboard: str
    port: int = GRAFANA_PORT
    dashboards_dir: str = DASHBOARDS_DIR


def build_monitoring(settings: MonitoringSettings, *, vllm_slots: tuple[str, ...], vllm_port: int,
                     webui_health_url: str, max_num_seqs: int) -> MonitoringSpec | None:  # fmt: skip
    if not settings.enabled:
        return None
    return MonitoringSpec(
        prometheus_image=settings.prometheus_image,
        alertmanager_image=settings.alertmanager_image,
        blackbox_image=settings.blackbox_image,
        node_exporter_image=settings.node_exporter_image,
        bind_address=settings.bind_address,
        prometheus_host_port=settings.prometheus_port,
        alertmanager_host_port=settings.alertmanager_port,
        prometheus_args=(
            f"--config.file={CONFIG_DIR}/prometheus.yml",
            f"--storage.tsdb.path={PROMETHEUS_DATA}",
            f"--storage.tsdb.retention.time={settings.retention}",
            f"--storage.tsdb.retention.size={settings.retention_size}",
            f"--web.listen-address=:{PROMETHEUS_PORT}",
        ),
        alertmanager_args=(
            f"--config.file={CONFIG_DIR}/alertmanager.yml",
            f"--storage.path={ALERTMANAGER_DATA}",
            f"--web.listen-address=:{ALERTMANAGER_PORT}",
            # One Alertmanager: no cluster to gossip with.
            "--cluster.listen-address=",
        ),
        blackbox_args=(f"--config.file={CONFIG_DIR}/blackbox.yml", f"--web.listen-address=:{BLACKBOX_PORT}"),
        node_exporter_args=(
            # Only the file systems, read in the container (the HF cache's is mounted at HF_CACHE_MOUNT),
            # and the files the controller writes (the KV-cache check of the last start-up).
            "--collector.disable-defaults",
            "--collector.filesystem",
            "--collector.textfile",
            f"--collector.textfile.directory={TEXTFILE_MOUNT}",
            f"--web.listen-address=:{NODE_EXPORTER_PORT}",
        ),
        prometheus_config=prometheus_config(
            settings, vllm_slots=vllm_slots, vllm_port=vllm_port, webui_health_url=webui_health_url
        ),  # fmt: skip
        rules=_yaml(rules_document(settings, max_num_seqs=max_num_seqs)),
        alertmanager_config=alertmanager_config(settings),
        blackbox_config=blackbox_config(),
        grafana=GrafanaSpec(
            image=settings.grafana_image,
            host_port=settings.grafana_port,
            datasources=_yaml(datasource_provisioning(f"http://prometheus:{PROMETHEUS_PORT}")),
            dashboard_providers=_yaml(dashboard_provisioning()),
            dashboard=dashboard_json(),
        )
        if settings.grafana
        else None,
    )

"""MONITORING=on in the rendered compose file: the four services, their inline configs (which parse
to what Prometheus and Alertmanager are meant to read), ports on localhost, and nothing of it when
monitoring is off. `promtool` and the real services check the same text in tests/integration."""

from __future__ import annotations

import yaml

from controller.config.catalog import load_catalog
from controller.config.env_keys import MONITORING_KEYS
from controller.config.monitoring_settings import MonitoringSettings
from controller.deploy.alert_rules import alert_rules
from controller.deploy.compose_file import render_spec
from controller.deploy.spec import SLOTS, build_spec
from tests.unit._support import fixed_settings

MONITORED = ("prometheus", "alertmanager", "blackbox", "node-exporter")


def _compose(monitoring: dict | None) -> dict:
    profile = load_catalog(None).get("deepseek-1.5b")
    settings = MonitoringSettings.model_validate(monitoring) if monitoring is not None else None
    return yaml.safe_load(render_spec(build_spec(profile, fixed_settings(), monitoring=settings)))


def _config(compose: dict, name: str) -> dict:
    # Compose reads `$$` as `$`.
    return yaml.safe_load(compose["configs"][name]["content"].replace("$$", "$"))


def test_the_settings_keys_are_the_ones_env_keys_lists():
    assert tuple(f.alias for f in MonitoringSettings.model_fields.values()) == MONITORING_KEYS


def test_monitoring_off_adds_nothing():
    for monitoring in (None, {}, {"MONITORING": "off"}):
        compose = _compose(monitoring)
        assert not set(MONITORED) & set(compose["services"]) and "configs" not in compose


def test_monitoring_on_adds_the_four_services_with_ports_on_localhost():
    compose = _compose({"MONITORING": "on", "PROMETHEUS_PORT": "19090"})
    services = compose["services"]
    assert set(MONITORED) <= set(services)
    assert services["prometheus"]["ports"] == ["127.0.0.1:19090:9090"]
    assert services["alertmanager"]["ports"] == ["127.0.0.1:9093:9093"]
    assert "ports" not in services["blackbox"] and "ports" not in services["node-exporter"]
    assert "--storage.tsdb.retention.time=15d" in services["prometheus"]["command"]
    hf_mount = services["node-exporter"]["volumes"][0]
    assert hf_mount["read_only"] and hf_mount["target"] == "/hf-cache"


def test_prometheus_scrapes_every_vllm_slot_by_name_and_loads_the_rules():
    prometheus = _config(_compose({"MONITORING": "on", "PROMETHEUS_SCRAPE_INTERVAL": "5s"}), "prometheus-config")
    assert prometheus["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["vllm"]["dns_sd_configs"][0]["names"] == list(SLOTS)
    assert jobs["webui"]["static_configs"][0]["targets"] == ["http://webui:8080/health"]
    assert prometheus["rule_files"] == ["/etc/llmstack/rules.yml"]


def test_the_rules_hold_the_thresholds_and_prometheus_templates_survive_compose():
    compose = _compose({"MONITORING": "on", "ALERT_KV_CACHE_PERCENT": "85", "ALERT_DOWN_AFTER": "30s"})
    rules = {rule["alert"]: rule for rule in _config(compose, "alert-rules")["groups"][0]["rules"]}
    assert set(rules) == {rule.name for rule in alert_rules(MonitoringSettings(), max_num_seqs=1)}
    assert rules["KvCacheFull"]["expr"].endswith("> 85") and rules["VllmDown"]["for"] == "30s"
    # `{{ $value }}` reaches Prometheus as written: the compose file holds `$$`, which Compose reads as `$`.
    assert "{{ $labels.instance }}" in rules["KvCacheFull"]["annotations"]["summary"]
    assert "$$labels" in compose["configs"]["alert-rules"]["content"]


def test_alerts_go_to_the_webhook_and_mail_of_the_settings():
    alertmanager = _config(
        _compose(
            {
                "MONITORING": "on",
                "ALERT_WEBHOOK_URL": "https://hooks.example.com/a?b=$c",
                "ALERT_EMAIL_TO": "ops@example.com",
                "ALERT_EMAIL_FROM": "llm@example.com",
                "ALERT_SMTP_SMARTHOST": "mail.example.com:25",
            }
        ),  # fmt: skip
        "alertmanager-config",
    )
    (receiver,) = alertmanager["receivers"]
    assert receiver["webhook_configs"] == [{"url": "https://hooks.example.com/a?b=$c", "send_resolved": True}]
    assert receiver["email_configs"][0]["smarthost"] == "mail.example.com:25"
    assert alertmanager["route"]["receiver"] == receiver["name"]


def test_node_exporter_reads_the_sites_metrics_folder_relative_to_the_compose_file(tmp_path):
    from controller.config.site import SiteConfig

    services = _compose({"MONITORING": "on"})["services"]
    textfile = services["node-exporter"]["volumes"][1]
    site = SiteConfig(tmp_path, tmp_path / ".env")
    # Compose resolves the source from the compose file's folder: it must land on the site's metrics folder.
    assert (site.compose_dir / textfile["source"]).resolve() == site.metrics_dir.resolve()
    assert (
        textfile["read_only"]
        and f"--collector.textfile.directory={textfile['target']}" in (services["node-exporter"]["command"])
    )


def test_the_kv_textfile_holds_both_figures_with_escaped_labels():
    from controller.deploy.controller_metrics import kv_textfile

    text = kv_textfile('odd"name\\', {"planned": 1100, "logged": 1000, "difference_pct": 10.0})
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples == [
        'llmstack_kv_cache_tokens{model="odd\\"name\\\\",source="plan"} 1100',
        'llmstack_kv_cache_tokens{model="odd\\"name\\\\",source="vllm"} 1000',
    ]
    assert text.endswith("\n")


def test_monitoring_grafana_adds_grafana_with_the_dashboard_and_no_secret_in_the_file():
    import json

    from controller.deploy.dashboard import DATASOURCE_UID, queries

    compose = _compose({"MONITORING": "grafana", "GRAFANA_PORT": "13000"})
    grafana = compose["services"]["grafana"]
    assert set(MONITORED) <= set(compose["services"])
    assert grafana["ports"] == ["127.0.0.1:13000:3000"]
    # Compose fills it from .env: the rendered file holds a reference, never the password.
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    (source,) = _config(compose, "grafana-datasources")["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["url"] == "http://prometheus:9090"
    board = json.loads(compose["configs"]["grafana-dashboard"]["content"].replace("$$", "$"))
    targets = [target for panel in board["panels"] for target in panel["targets"]]
    assert all(target["datasource"]["uid"] == DATASOURCE_UID for target in targets)
    expressions = queries(board)
    assert len(expressions) >= 10 and all("vllm:" in expr or "llmstack_" in expr for expr in expressions)
    titles = " ".join(panel["title"] for panel in board["panels"]).lower()
    for wanted in ("tokens per second", "first token", "output token", "kv cache", "waiting", "prefix-cache",
                   "active model"):  # fmt: skip
        assert wanted in titles, wanted
    assert board["annotations"]["list"][0]["name"] == "Model switches"


def test_monitoring_on_has_no_grafana():
    compose = _compose({"MONITORING": "on"})
    assert "grafana" not in compose["services"] and "grafana-dashboard" not in compose["configs"]

"""Bad input, class "monitoring settings" (MONITORING=on and its keys in .env): each case exits 2,
names the key, the value's line and how to fix it, and leaves `.env` and `compose/` byte-identical
(see bad_input_harness.py). GOOD_ENV has 4 lines: MONITORING=on is line 5, the case's line 6."""

from __future__ import annotations

import pytest

from tests.unit.bad_input_harness import Project

BAD = {
    "retention_negative": ("PROMETHEUS_RETENTION", "-1"),
    "retention_bare_number": ("PROMETHEUS_RETENTION", "15"),
    "retention_two_words": ("PROMETHEUS_RETENTION", "'15d --web.enable-admin-api'"),
    "retention_size_spaced": ("PROMETHEUS_RETENTION_SIZE", "'10 GB'"),
    "webhook_scheme": ("ALERT_WEBHOOK_URL", "ftp://alerts.example.com/hook"),
    "webhook_no_host": ("ALERT_WEBHOOK_URL", "https:///hook"),
    "webhook_newline": ("ALERT_WEBHOOK_URL", '"https://a.example.com/\\n  - name: evil"'),
    "kv_threshold_above_100": ("ALERT_KV_CACHE_PERCENT", "150"),
    "kv_threshold_zero": ("ALERT_KV_CACHE_PERCENT", "0"),
    "kv_threshold_nan": ("ALERT_KV_CACHE_PERCENT", "nan"),
    "ttft_negative": ("ALERT_TTFT_P95_MS", "-5"),
    "disk_free_100": ("ALERT_HF_CACHE_FREE_PERCENT", "100"),
    "down_after_word": ("ALERT_DOWN_AFTER", "soon"),
    "bind_address_name": ("MONITORING_BIND_ADDRESS", "localhost"),
    "port_zero": ("PROMETHEUS_PORT", "0"),
    "image_latest": ("PROMETHEUS_IMAGE", "prom/prometheus:latest"),
    "smarthost_no_port": ("ALERT_SMTP_SMARTHOST", "mail.example.com"),
    "mode_unknown": ("MONITORING", "prometheus"),
    "grafana_image_latest": ("GRAFANA_IMAGE", "grafana/grafana-oss:latest"),
    "grafana_port_high": ("GRAFANA_PORT", "70000"),
}


@pytest.mark.parametrize(("key", "value"), BAD.values(), ids=BAD.keys())
def test_a_bad_monitoring_value_is_refused_naming_key_and_line(project: Project, key, value):
    project.add_env(("" if key == "MONITORING" else "MONITORING=on\n") + f"{key}={value}\n")
    line = 5 if key == "MONITORING" else 6
    project.refused("render", "deepseek-1.5b", names=[key, f"{project.env_file} line {line}"])


def test_a_bad_value_from_the_environment_is_blamed_on_it(project: Project):
    project.refused("render", "deepseek-1.5b", names=["the environment variable PROMETHEUS_RETENTION"],
                    env={"MONITORING": "on", "PROMETHEUS_RETENTION": "-1"})  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "lines", "names"),
    [
        ("on", "ALERT_EMAIL_TO=ops@example.com\n", ["ALERT_EMAIL_FROM", "ALERT_SMTP_SMARTHOST"]),
        ("on", "PROMETHEUS_PORT=9093\n", ["PROMETHEUS_PORT and ALERTMANAGER_PORT are the same port"]),
        ("grafana", "GRAFANA_PORT=9090\n", ["PROMETHEUS_PORT and GRAFANA_PORT are the same port"]),
        ("on", "PROMETHEUS_SCRAPE_INTERVAL=10m\n", ["PROMETHEUS_SCRAPE_INTERVAL above 5m"]),
    ],
    ids=["email_incomplete", "same_ports", "grafana_same_port", "scrape_interval_too_long"],
)
def test_settings_that_do_not_go_together_are_refused(project: Project, mode, lines, names):
    project.add_env(f"MONITORING={mode}\n" + lines)
    project.refused("render", "deepseek-1.5b", names=names)


def test_bad_monitoring_settings_stop_up_before_docker(project: Project):
    project.add_env("MONITORING=on\nPROMETHEUS_RETENTION=-1\n")
    project.refused("up", "deepseek-1.5b", names=["PROMETHEUS_RETENTION"])

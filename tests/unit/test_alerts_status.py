"""`status`'s alerts: read from Alertmanager's API (a stand-in answer here; the real Alertmanager is
read in tests/integration/test_monitoring.py), oldest first, and None when it does not answer."""

from __future__ import annotations

import httpx

from controller.config.monitoring_settings import MonitoringSettings
from controller.runtime import alerts

ANSWER = [
    {"labels": {"alertname": "KvCacheFull", "severity": "warning", "instance": "vllm"},
     "annotations": {"summary": "full"}, "startsAt": "2026-12-03T10:05:00Z"},
    {"labels": {"alertname": "VllmDown", "severity": "critical"}, "annotations": {"summary": "down"},
     "startsAt": "2026-12-03T10:00:00Z"},
]  # fmt: skip


def test_firing_alerts_oldest_first_from_the_published_port(monkeypatch):
    asked = []

    def answer(url, params, timeout):
        asked.append((url, params))
        return httpx.Response(200, json=ANSWER, request=httpx.Request("GET", url))

    monkeypatch.setattr(alerts.httpx, "get", answer)
    found = alerts.firing_alerts(MonitoringSettings(MONITORING="on", ALERTMANAGER_PORT=19093))
    assert [a["name"] for a in found] == ["VllmDown", "KvCacheFull"]
    assert found[1] == {"name": "KvCacheFull", "severity": "warning", "instance": "vllm",
                        "since": "2026-12-03T10:05:00Z", "summary": "full"}  # fmt: skip
    assert asked == [("http://127.0.0.1:19093/api/v2/alerts", {"active": "true", "silenced": "false",
                                                                "inhibited": "false"})]  # fmt: skip


def test_no_answer_is_none_not_an_empty_list(monkeypatch):
    def refuse(url, params, timeout):
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(alerts.httpx, "get", refuse)
    assert alerts.firing_alerts(MonitoringSettings(MONITORING="on")) is None


def test_an_address_of_every_interface_is_reached_on_localhost():
    assert alerts.local_url(MonitoringSettings(MONITORING_BIND_ADDRESS="0.0.0.0"), 9090) == "http://127.0.0.1:9090"
    assert alerts.local_url(MonitoringSettings(MONITORING_BIND_ADDRESS="::1"), 9090) == "http://[::1]:9090"


def test_status_names_grafana_only_when_it_runs(monkeypatch):
    from controller.lifecycle import status

    monkeypatch.setattr(status, "firing_alerts", lambda settings: [])
    on = status._monitoring_status(MonitoringSettings(MONITORING="on"))["monitoring"]
    grafana = status._monitoring_status(MonitoringSettings(MONITORING="grafana", GRAFANA_PORT=13000))["monitoring"]
    assert "grafana" not in on and grafana["grafana"] == "http://127.0.0.1:13000"

"""The alerts that fire now, from the stack's Alertmanager (MONITORING=on), for `status`."""

from __future__ import annotations

import httpx

from controller.config.monitoring_settings import MonitoringSettings


def local_url(settings: MonitoringSettings, port: int) -> str:
    """Where this host reaches a published monitoring port."""
    address = settings.bind_address
    host = "127.0.0.1" if address in ("0.0.0.0", "::") else (f"[{address}]" if ":" in address else address)
    return f"http://{host}:{port}"


def firing_alerts(settings: MonitoringSettings, timeout_s: float = 5.0) -> list[dict] | None:
    """Active, not silenced alerts, oldest first; None when Alertmanager does not answer."""
    url = f"{local_url(settings, settings.alertmanager_port)}/api/v2/alerts"
    params = {"active": "true", "silenced": "false", "inhibited": "false"}
    try:
        answer = httpx.get(url, params=params, timeout=timeout_s)
        answer.raise_for_status()
        alerts = answer.json()
    except (httpx.HTTPError, ValueError):
        return None
    found = [
        {
            "name": alert["labels"].get("alertname", "?"),
            "severity": alert["labels"].get("severity", ""),
            "instance": alert["labels"].get("instance", ""),
            "since": alert.get("startsAt", ""),
            "summary": alert.get("annotations", {}).get("summary", ""),
        }
        for alert in alerts
    ]
    return sorted(found, key=lambda alert: alert["since"])

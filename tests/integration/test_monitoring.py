"""MONITORING=on on the real stack (issue 27): Prometheus, Alertmanager and the two exporters from
the locally built monitoring image (Debian's packages; users get the official images), scraping the
real vLLM and Open WebUI. An alert is proven by its arrival at a webhook receiver this test runs.

Times are short here (1 s scrapes, an alert after 3 s down, 1 s group wait) so that the test waits
seconds, not minutes; the defaults and the time from vLLM's death to the alert are measured by
benchmarks/bench_monitoring.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from controller.config.monitoring_settings import MonitoringSettings, load_monitoring_settings
from controller.deploy.alert_rules import alert_rules
from controller.errors import NotReady
from controller.phases import wait_for
from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration.webhook_receiver import WebhookReceiver
from tests.integration.webui_api import admin_session

# Series a rule reads: vLLM's (vllm:...), the exporters' (node_..., probe_...) and Prometheus' own `up`.
METRIC = re.compile(r"\b(vllm:[a-z_:]+|node_[a-z_]+|probe_[a-z_]+)")


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, docker_client, images, tiny_model, receiver) -> Iterator[tuple]:
    root = tmp_path_factory.mktemp("monitored")
    site = harness.new_test_site(root, images, "monitoring")
    host = harness.host_for_containers(docker_client)
    with site.site.env_file.open("a") as env:
        env.write(harness.monitoring_env(images, f"http://{host}:{receiver.port}/hook", scrape_interval="1s",
                                         down_after="3s", group_wait="1s"))  # fmt: skip
    settings = load_monitoring_settings(site.site.env_file)
    prometheus_port, alertmanager_port = settings.prometheus_port, settings.alertmanager_port
    try:
        up = site.controller("up", "tiny-a")
        assert up.returncode == 0, up.stderr
        yield site, f"http://127.0.0.1:{prometheus_port}", f"http://127.0.0.1:{alertmanager_port}"
    finally:
        harness.remove_project(docker_client, site.project)


def _query(prometheus: str, expr: str) -> list[dict]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _targets(prometheus: str) -> dict[str, list[str]]:
    active = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    health: dict[str, list[str]] = {}
    for target in active:
        health.setdefault(target["labels"]["job"], []).append(target["health"])
    return health


def test_prometheus_scrapes_every_target_and_the_rules_name_metrics_vllm_exports(monitored):
    site, prometheus, _ = monitored

    def all_up() -> dict:
        health = _targets(prometheus)
        if set(health) != {"vllm", "webui", "hf-cache", "prometheus", "alertmanager"} or any(
            state != ["up"] for state in health.values()
        ):
            raise NotReady(f"targets: {health}")
        return health

    wait_for("every target up", all_up, deadline_s=120)
    assert _query(prometheus, 'probe_success{job="webui"}')[0]["value"][1] == "1"
    assert _query(prometheus, 'node_filesystem_avail_bytes{job="hf-cache",mountpoint="/hf-cache"}')

    exported = set(httpx.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"])
    named = {name for rule in alert_rules(MonitoringSettings(), max_num_seqs=1) for name in METRIC.findall(rule.expr)}
    assert named and named <= exported, f"rules name series nobody exports: {sorted(named - exported)}"


def test_a_chat_raises_vllm_request_counter(monitored):
    site, prometheus, _ = monitored
    finished = 'sum(vllm:request_success_total{job="vllm"})'

    def count() -> float:
        result = _query(prometheus, finished)
        if not result:
            raise NotReady("vLLM's request counter is not scraped yet")
        return float(result[0]["value"][1])

    before = wait_for("request counter scraped", count, deadline_s=60)
    with WebUI(site.url) as webui:
        assert webui.chat(admin_session(site, webui).token, "tiny-a", "hello", max_tokens=2, as_ui=True)

    def raised() -> float:
        now = count()
        if now <= before:
            raise NotReady(f"still {now}")
        return now

    assert wait_for("request counter raised", raised, deadline_s=30) >= before + 1


def test_vllm_killed_fires_the_alert_at_the_webhook_and_it_resolves_when_back(monitored, docker_client, receiver):
    site, _, alertmanager = monitored
    labels = [f"{harness.PROJECT_LABEL}={site.project}", "com.docker.compose.service=vllm"]
    (vllm,) = docker_client.containers.list(filters={"label": labels})
    killed, since = time.monotonic(), datetime.now(UTC)
    vllm.kill()
    # `up` fired VllmDown too, while vLLM loaded its model for longer than the 3 s allowed: only an
    # alert that started after the kill counts.
    firing = receiver.next_about("VllmDown", "firing", deadline_s=120, since=since)
    assert firing, "no VllmDown alert reached the webhook within 120 s"
    harness.TIMINGS["monitoring: vLLM killed -> alert at the webhook (s, 1 s scrapes, 3 s for)"] = round(
        time.monotonic() - killed, 1
    )
    (alert,) = [a for a in firing["alerts"] if a["labels"]["alertname"] == "VllmDown"]
    assert "controller up" in alert["annotations"]["summary"] and alert["labels"]["severity"] == "critical"
    shown = site.controller("status", "--json")
    assert shown.returncode == 0, shown.stderr
    assert "VllmDown" in [a["name"] for a in json.loads(shown.stdout)["alerts"]]

    back = site.controller("up", "tiny-a")
    assert back.returncode == 0, back.stderr
    resolved = receiver.next_about("VllmDown", "resolved", deadline_s=120, since=since)
    assert resolved, "VllmDown was not resolved within 120 s"
    active = httpx.get(f"{alertmanager}/api/v2/alerts", params={"active": "true"}, timeout=10).json()
    assert "VllmDown" not in [a["labels"]["alertname"] for a in active]

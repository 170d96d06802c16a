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

from controller.config.monitoring_settings import MonitoringSettings, duration_seconds, load_monitoring_settings
from controller.deploy.alert_rules import alert_rules
from controller.deploy.dashboard import GRAFANA_VARIABLES, dashboard, queries
from controller.errors import NotReady
from controller.phases import wait_for
from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration.webhook_receiver import WebhookReceiver
from tests.integration.webui_api import admin_session

# Series a rule or the dashboard reads: vLLM's (vllm:...), the exporters' (node_..., probe_...), the
# controller's KV-cache file (llmstack_...) and Prometheus' own `up`.
METRIC = re.compile(r"\b(vllm:[a-z_:]+|node_[a-z_]+|probe_[a-z_]+|llmstack_[a-z_]+)")


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

    # The planned-work series exists only while a command runs (test_a_blue_green_switch_... sees it).
    named = {name for rule in alert_rules(MonitoringSettings(), max_num_seqs=1) for name in METRIC.findall(rule.expr)
             if name != "llmstack_planned_work_until_seconds"}  # fmt: skip
    assert named

    def all_up_and_every_named_series_scraped() -> None:
        health = _targets(prometheus)
        if set(health) != {"vllm", "webui", "hf-cache", "prometheus", "alertmanager"} or any(
            state != ["up"] for state in health.values()
        ):
            raise NotReady(f"targets: {health}")
        # up writes its KV-cache file last, so the textfile series may wait for node-exporter's next scrape.
        exported = set(httpx.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"])
        if not named <= exported:
            raise NotReady(f"rules name series nobody exports (yet): {sorted(named - exported)}")

    wait_for("every target up and every series the rules name scraped", all_up_and_every_named_series_scraped,
             deadline_s=120)  # fmt: skip
    assert _query(prometheus, 'probe_success{job="webui"}')[0]["value"][1] == "1"
    assert _query(prometheus, 'node_filesystem_avail_bytes{job="hf-cache",mountpoint="/hf-cache"}')

    # Prometheus read the rules as rendered: `$labels` went through Compose literally.
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule["annotations"]["summary"] for group in groups for rule in group["rules"]}
    rendered = {rule.name: rule.summary for rule in alert_rules(load_monitoring_settings(site.site.env_file),
                                                                 max_num_seqs=1)}  # fmt: skip
    for name, template in (("HfCacheDiskFull", "{{ $value"), ("KvPlanMismatch", "{{ $labels.model }}")):
        assert loaded[name] == rendered[name] and template in loaded[name]


def test_the_kv_cache_check_of_up_reaches_prometheus(monitored):
    site, prometheus, _ = monitored
    journal = json.loads((site.site.state_dir / "journal.json").read_text())
    check = journal["active"]["kv_tokens"]
    assert check and check["logged"] > 0, journal["active"]

    def both() -> dict:
        found = {s["metric"]["source"]: int(s["value"][1]) for s in _query(prometheus, "llmstack_kv_cache_tokens")}
        if len(found) < 2:
            raise NotReady(f"KV-cache series so far: {found}")
        return found

    found = wait_for("the KV-cache figures scraped", both, deadline_s=60)
    assert found == {"plan": check["planned"], "vllm": check["logged"]}


def test_every_dashboard_query_runs_on_the_real_prometheus_and_names_exported_series(monitored):
    site, prometheus, _ = monitored
    with WebUI(site.url) as webui:  # a chat, so that the histograms and counters have samples
        assert webui.chat(admin_session(site, webui).token, "tiny-a", "hi", max_tokens=2, as_ui=True)
    exported = set(httpx.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"])
    for expr in queries(dashboard()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        _query(prometheus, expr)  # asserts that Prometheus parsed and ran it
        names = set(METRIC.findall(expr))
        assert names and names <= exported, f"{expr}: names series nobody exports: {sorted(names - exported)}"


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


def _prometheus_time(prometheus: str) -> float:
    return float(_query(prometheus, "time()")[1])  # a scalar: [evaluation time, "value"]


def _vllm_targets(prometheus: str) -> list[tuple[str, str]]:
    active = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    return sorted((t["labels"]["instance"], t["health"]) for t in active if t["labels"]["job"] == "vllm")


def _only_the_new_slot(prometheus: str) -> None:
    if _vllm_targets(prometheus) != [("vllm-b", "up")]:
        raise NotReady(f"vLLM targets: {_vllm_targets(prometheus)}")


def test_a_blue_green_switch_is_scraped_on_both_slots_and_fires_no_alert(monitored):
    """Last: it leaves tiny-b serving on the second slot."""
    site, prometheus, _ = monitored
    started = _prometheus_time(prometheus)
    switching = harness.controller_process(site.root, "switch", "tiny-b", "--strategy", "blue-green")
    try:

        def both_slots_up() -> None:
            if switching.poll() is not None:
                raise AssertionError(f"the switch ended before both slots were scraped: {switching.stderr.read()}")
            if _vllm_targets(prometheus) != [("vllm", "up"), ("vllm-b", "up")]:
                raise NotReady(f"vLLM targets: {_vllm_targets(prometheus)}")
            # The switch told Prometheus that it restarts services on purpose, until a deadline ahead.
            planned = _query(prometheus, "llmstack_planned_work_until_seconds > time()")
            if [s["metric"].get("operation") for s in planned] != ["switch"]:
                raise NotReady(f"planned work seen: {planned}")

        wait_for("both slots scraped", both_slots_up, deadline_s=600, interval_s=0.5)
    finally:
        _out, err = switching.communicate(timeout=900)
    assert switching.returncode == 0, err
    assert not (site.site.metrics_dir / "planned_work.prom").exists()
    ended = _prometheus_time(prometheus)
    settings = load_monitoring_settings(site.site.env_file)
    settle = 2 * duration_seconds(settings.down_after)

    def evaluated_after_the_cut_over() -> None:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        last = min(datetime.fromisoformat(g["lastEvaluation"].replace("Z", "+00:00")).timestamp() for g in groups)
        if last < ended + settle:
            raise NotReady("the rules were not evaluated long enough after the cut-over yet")

    wait_for("rules evaluated after the cut-over", evaluated_after_the_cut_over, deadline_s=120)
    window = int(_prometheus_time(prometheus) - started) + 1
    fired = _query(prometheus, f'max_over_time(ALERTS{{alertstate="firing"}}[{window}s])')
    assert not fired, f"alerts fired during the planned cut-over: {[a['metric'] for a in fired]}"
    # The old slot's container is gone, so its target is too.
    wait_for("the old slot's target gone", lambda: _only_the_new_slot(prometheus), deadline_s=60)

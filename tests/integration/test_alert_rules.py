"""The rendered monitoring configuration, checked by the tools of the real programs (from the
monitoring test image, Debian's packages): `promtool check config` and `check rules`, `amtool
check-config`, and `promtool test rules` with input series that make each alert fire, and series
close to them that must not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.config.monitoring_settings import MonitoringSettings
from controller.deploy.alert_rules import alert_rules
from controller.deploy.monitoring import build_monitoring

SEQS = 4
COMMON = {"severity": "critical", "stack": "llmstack"}
WARNING = {"severity": "warning", "stack": "llmstack"}


def _histogram(name: str, buckets: dict[str, int]) -> list[dict]:
    """A histogram whose observations per minute fall in the given buckets (le -> count per minute)."""
    series, total = [], 0
    for le, per_minute in buckets.items():
        total += per_minute
        series.append({"series": f'{name}_bucket{{le="{le}"}}', "values": f"0+{total}x20"})
    return series


def _case(series: list[dict], alert: str, fires: list[dict] | None, at: str = "10m") -> dict:
    expected = [] if fires is None else fires
    return {"interval": "1m", "input_series": series,
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}]}  # fmt: skip


def _summary(name: str) -> str:
    return next(rule.summary for rule in alert_rules(MonitoringSettings(), max_num_seqs=SEQS) if rule.name == name)


def _fired(name: str, labels: dict, **values: str) -> list[dict]:
    summary = _summary(name)
    for template, value in values.items():
        summary = summary.replace(template, value)
    return [{"exp_labels": labels, "exp_annotations": {"summary": summary}}]


VALUE_0 = '{{ $value | printf "%.0f" }}'
VALUE_1 = '{{ $value | printf "%.1f" }}'
INSTANCE = "{{ $labels.instance }}"
MODEL = "{{ $labels.model }}"


def _kv(planned: int | None, logged: int | None) -> list[dict]:
    """The controller's KV-cache textfile: the plan's and vLLM's figures for one model."""
    sources = {"plan": planned, "vllm": logged}
    return [{"series": f'llmstack_kv_cache_tokens{{model="m",source="{source}"}}', "values": f"{tokens}x20"}
            for source, tokens in sources.items() if tokens is not None]  # fmt: skip


def _planned_until(unix_s: int) -> dict:
    return {"series": 'llmstack_planned_work_until_seconds{operation="switch"}', "values": f"{unix_s}x20"}


def _tests() -> list[dict]:
    disk = {"job": "hf-cache", "mountpoint": "/hf-cache", "instance": "node-exporter:9100"}
    disk_labels = ",".join(f'{k}="{v}"' for k, v in disk.items())
    return [
        _case([{"series": 'up{job="vllm",instance="vllm"}', "values": "0x20"}], "VllmDown",
              _fired("VllmDown", COMMON)),
        _case([], "VllmDown", _fired("VllmDown", COMMON)),  # no vLLM target at all
        # a blue-green switch: one slot down, the other serving
        _case([{"series": 'up{job="vllm",instance="vllm"}', "values": "0x20"},
               {"series": 'up{job="vllm",instance="vllm-b"}', "values": "1x20"}], "VllmDown", None),
        _case([{"series": 'up{job="vllm",instance="vllm"}', "values": "1x1 0x20"}], "VllmDown", None, at="2m"),
        # planned work (`up`, `switch`, `upgrade`) until 1200 s: evaluated at 600 s, no alert; once
        # its deadline (300 s) has passed, the alert fires as before
        _case([{"series": 'up{job="vllm",instance="vllm"}', "values": "0x20"}, _planned_until(1200)], "VllmDown",
              None),
        _case([{"series": 'up{job="vllm",instance="vllm"}', "values": "0x20"}, _planned_until(300)], "VllmDown",
              _fired("VllmDown", COMMON)),
        _case([{"series": 'probe_success{job="webui",instance="http://webui:8080/health"}', "values": "0x20"},
               _planned_until(1200)], "OpenWebUIDown", None),
        _case([{"series": 'probe_success{job="webui",instance="http://webui:8080/health"}', "values": "0x20"}],
              "OpenWebUIDown", _fired("OpenWebUIDown", COMMON)),
        _case([{"series": 'probe_success{job="webui",instance="http://webui:8080/health"}', "values": "1x20"}],
              "OpenWebUIDown", None),
        _case([{"series": 'vllm:kv_cache_usage_perc{instance="vllm"}', "values": "0.95x20"}], "KvCacheFull",
              _fired("KvCacheFull", {"instance": "vllm", **WARNING}, **{INSTANCE: "vllm", VALUE_0: "95"})),
        _case([{"series": 'vllm:kv_cache_usage_perc{instance="vllm"}', "values": "0.5x20"}], "KvCacheFull", None),
        # 4 minutes above is not 5
        _case([{"series": 'vllm:kv_cache_usage_perc{instance="vllm"}', "values": "0.5x5 0.95x4"}], "KvCacheFull",
              None, at="9m"),
        _case(_histogram("vllm:request_queue_time_seconds", {"10": 0, "100": 60, "+Inf": 0}), "RequestsQueued",
              _fired("RequestsQueued", WARNING, **{VALUE_1: "95.5"})),
        _case(_histogram("vllm:request_queue_time_seconds", {"10": 60, "100": 0, "+Inf": 0}), "RequestsQueued", None),
        _case(_histogram("vllm:time_to_first_token_seconds", {"1": 0, "10": 60, "+Inf": 0}), "TimeToFirstTokenSlow",
              _fired("TimeToFirstTokenSlow", WARNING, **{VALUE_0: "9550"})),
        _case(_histogram("vllm:time_to_first_token_seconds", {"1": 60, "10": 0, "+Inf": 0}), "TimeToFirstTokenSlow",
              None),
        _case([{"series": "vllm:num_preemptions_total", "values": "0x6 5x14"}], "VllmPreempting",
              _fired("VllmPreempting", WARNING), at="8m"),
        _case([{"series": "vllm:num_preemptions_total", "values": "5x20"}], "VllmPreempting", None),
        _case([{"series": f"node_filesystem_avail_bytes{{{disk_labels}}}", "values": "5x20"},
               {"series": f"node_filesystem_size_bytes{{{disk_labels}}}", "values": "100x20"}], "HfCacheDiskFull",
              _fired("HfCacheDiskFull", {**disk, **WARNING}, **{VALUE_0: "5"})),
        _case([{"series": f"node_filesystem_avail_bytes{{{disk_labels}}}", "values": "50x20"},
               {"series": f"node_filesystem_size_bytes{{{disk_labels}}}", "values": "100x20"}], "HfCacheDiskFull",
              None),
        _case(_kv(1100, 1000), "KvPlanMismatch",
              _fired("KvPlanMismatch", {"model": "m", **WARNING}, **{MODEL: "m", VALUE_0: "10"})),
        _case(_kv(900, 1000), "KvPlanMismatch",
              _fired("KvPlanMismatch", {"model": "m", **WARNING}, **{MODEL: "m", VALUE_0: "10"})),
        _case(_kv(1030, 1000), "KvPlanMismatch", None),  # within the 5% that `up` accepts
        _case(_kv(1100, None), "KvPlanMismatch", None),  # vLLM logged no figure: nothing to compare
    ]  # fmt: skip


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> Path:
    spec = build_monitoring(MonitoringSettings(MONITORING="on", ALERT_WEBHOOK_URL="https://hooks.example.com/x"),
                            vllm_slots=("vllm", "vllm-b"), vllm_port=8000, max_num_seqs=SEQS,
                            webui_health_url="http://webui:8080/health")  # fmt: skip
    folder = tmp_path_factory.mktemp("monitoring")
    files = {"prometheus.yml": spec.prometheus_config, "rules.yml": spec.rules,
             "alertmanager.yml": spec.alertmanager_config, "blackbox.yml": spec.blackbox_config}  # fmt: skip
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "rules_test.yml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": _tests()}, sort_keys=False)
    )
    folder.chmod(0o755)
    return folder


def _run(docker_client, image: str, configs: Path, *command: str) -> str:
    """The command in the monitoring image with the configs at /etc/llmstack; its output (a
    non-zero exit raises docker's ContainerError, holding the tool's own message)."""
    mounts = {str(configs): {"bind": "/etc/llmstack", "mode": "ro"}}
    output = docker_client.containers.run(image, list(command), volumes=mounts, working_dir="/etc/llmstack",
                                          remove=True, stdout=True, stderr=True)  # fmt: skip
    return output.decode()


def test_promtool_and_amtool_accept_the_rendered_configs(docker_client, images, configs):
    image = images["monitoring"]
    assert "SUCCESS" in _run(docker_client, image, configs, "promtool", "check", "config", "prometheus.yml")
    assert "SUCCESS" in _run(docker_client, image, configs, "promtool", "check", "rules", "rules.yml")
    assert "SUCCESS" in _run(docker_client, image, configs, "amtool", "check-config", "alertmanager.yml")
    _run(docker_client, image, configs, "prometheus-blackbox-exporter", "--config.check", "--config.file=blackbox.yml")


def test_each_alert_fires_on_its_condition_and_not_near_it(docker_client, images, configs):
    output = _run(docker_client, images["monitoring"], configs, "promtool", "test", "rules", "rules_test.yml")
    assert "SUCCESS" in output, output

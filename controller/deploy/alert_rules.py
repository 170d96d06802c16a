"""The alert rules written for this stack, as Prometheus reads them (one rule group), from the
monitoring settings' thresholds. Pure data: controller.deploy.monitoring puts them in the stack,
tests/integration/test_alert_rules.py checks them with `promtool check rules` and unit-tests each
alert firing and not firing with `promtool test rules`.

Metric names are vLLM 0.32's (v1/metrics/loggers.py; prometheus_client adds `_total` to counters),
checked against a real /metrics scrape by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.config.monitoring_settings import MonitoringSettings
from controller.deploy.controller_metrics import KV_METRIC, LOGGED, PLANNED, PLANNED_WORK_METRIC
from controller.planner.kv_check import KV_CHECK_TOLERANCE

GROUP = "llmstack"
# Scrape jobs, named once (controller.deploy.monitoring renders them).
VLLM_JOB = "vllm"
WEBUI_JOB = "webui"
HF_CACHE_JOB = "hf-cache"
# Where node-exporter sees the HF cache folder (mounted read-only).
HF_CACHE_MOUNT = "/hf-cache"
# How long a resource condition must hold before its alert fires: long enough to ride out a burst.
SUSTAINED = "5m"


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str
    wait: str  # Prometheus' `for`
    severity: str
    summary: str  # what is wrong and what to do; may use Prometheus' {{ $value }}

    def as_rule(self) -> dict:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.wait,
            "labels": {"severity": self.severity, "stack": GROUP},
            "annotations": {"summary": self.summary},
        }


def _p95(histogram: str) -> str:
    return f"histogram_quantile(0.95, sum by (le) (rate({histogram}_bucket[{SUSTAINED}])))"


# Not while the controller restarts services on purpose (controller_metrics: a deadline it writes).
UNLESS_PLANNED = f"unless on() (max({PLANNED_WORK_METRIC}) > time())"


def _kv_difference_percent() -> str:
    # The textfile's two series differ only in `source`; a model whose start-up logged no figure has none.
    logged = f'{KV_METRIC}{{source="{LOGGED}"}}'
    return f'abs({KV_METRIC}{{source="{PLANNED}"}} - ignoring(source) {logged}) * 100 / ignoring(source) {logged}'


def alert_rules(settings: MonitoringSettings, *, max_num_seqs: int) -> list[AlertRule]:
    down = settings.down_after
    tolerance = f"{100 * KV_CHECK_TOLERANCE:g}"
    return [
        AlertRule(
            "VllmDown", f'absent(up{{job="{VLLM_JOB}"}} == 1) {UNLESS_PLANNED}', down, "critical",
            f"No vLLM instance has answered /metrics for {down}: no model is served. "
            "Run `controller status` and `controller logs vllm`; `controller up` starts it again.",
        ),
        AlertRule(
            "OpenWebUIDown", f'absent(probe_success{{job="{WEBUI_JOB}"}} == 1) {UNLESS_PLANNED}', down, "critical",
            f"Open WebUI has not answered /health for {down}: nobody can sign in or chat. "
            "Run `controller status` and `controller logs webui`; `controller up` starts it again.",
        ),
        AlertRule(
            "KvCacheFull", f"max by (instance) (vllm:kv_cache_usage_perc) * 100 > {settings.kv_cache_percent:g}",
            SUSTAINED, "warning",
            f"vLLM's KV cache on {{{{ $labels.instance }}}} is {{{{ $value | printf \"%.0f\" }}}}% full "
            f"(above {settings.kv_cache_percent:g}% for {SUSTAINED}); the plan allows {max_num_seqs} sequences "
            "at once. New requests wait; run `controller plan` for a shorter context or a smaller model.",
        ),
        AlertRule(
            "RequestsQueued", f"{_p95('vllm:request_queue_time_seconds')} > {settings.queue_seconds:g}",
            SUSTAINED, "warning",
            f"Requests waited {{{{ $value | printf \"%.1f\" }}}} s (p95) in vLLM's queue, above "
            f"{settings.queue_seconds:g} s for {SUSTAINED}: more chats than the GPU serves at once.",
        ),
        AlertRule(
            "TimeToFirstTokenSlow", f"{_p95('vllm:time_to_first_token_seconds')} * 1000 > {settings.ttft_p95_ms:g}",
            SUSTAINED, "warning",
            f"The first token took {{{{ $value | printf \"%.0f\" }}}} ms (p95), above the SLO of "
            f"{settings.ttft_p95_ms:g} ms for {SUSTAINED}; compare with `controller bench --slo-ttft-ms`.",
        ),
        AlertRule(
            "VllmPreempting", "sum(increase(vllm:num_preemptions_total[5m])) > 0", "0s", "warning",
            "vLLM preempted requests in the last 5 minutes: the KV cache ran out and work was redone. "
            "Lower the context or the concurrency (`controller plan`).",
        ),
        AlertRule(
            "HfCacheDiskFull",
            f'node_filesystem_avail_bytes{{job="{HF_CACHE_JOB}",mountpoint="{HF_CACHE_MOUNT}"}} * 100 / '
            f'node_filesystem_size_bytes{{job="{HF_CACHE_JOB}",mountpoint="{HF_CACHE_MOUNT}"}} '
            f"< {settings.hf_cache_free_percent:g}",
            SUSTAINED, "warning",
            f"The disk that holds the model weights (HF_CACHE_DIR) has {{{{ $value | printf \"%.0f\" }}}}% free, "
            f"below {settings.hf_cache_free_percent:g}%: the next model download may fail. Remove unused "
            "models (`hf cache delete`) or grow the disk.",
        ),
        AlertRule(
            "KvPlanMismatch", f"{_kv_difference_percent()} > {tolerance}", "0s", "warning",
            "The plan for {{ $labels.model }} is {{ $value | printf \"%.0f\" }}% off the KV cache vLLM logged at "
            f"start-up (more than {tolerance}%), so its count of full-length chats at once is wrong. "
            "`controller plan --explain` shows each term; on a shared GPU, other processes' memory comes out of "
            "the same budget.",
        ),
    ]  # fmt: skip


def rules_document(settings: MonitoringSettings, *, max_num_seqs: int) -> dict:
    return {
        "groups": [
            {"name": GROUP, "rules": [rule.as_rule() for rule in alert_rules(settings, max_num_seqs=max_num_seqs)]}
        ]
    }

"""The Grafana dashboard of MONITORING=grafana, and the provisioning files that load it: written
here from vLLM 0.32's metric names (v1/metrics/loggers.py; prometheus_client adds `_total` to
counters) and the controller's own KV-cache figures. Pure data.

tests/integration/test_monitoring.py runs every query of the dashboard against the real stack's
Prometheus (with Grafana's interval variables filled in, as Grafana does) and checks that each names
a series the running vLLM or the exporters export.
"""

from __future__ import annotations

import json

from controller.deploy.controller_metrics import KV_METRIC

DATASOURCE_UID = "llmstack-prometheus"
DASHBOARD_UID = "llmstack-vllm"
DASHBOARDS_DIR = "/etc/grafana/dashboards"
# Grafana's own variables, and what it puts in their place for a query (tests do the same).
RATE_INTERVAL = "$__rate_interval"
GRAFANA_VARIABLES = {RATE_INTERVAL: "1m"}

_DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}


def _rate(counter: str, by: str = "instance") -> str:
    return f"sum by ({by}) (rate({counter}[{RATE_INTERVAL}]))"


def _quantiles(histogram: str) -> list[tuple[str, str]]:
    return [
        (f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[{RATE_INTERVAL}])))", f"p{round(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ]


# (title, unit, [(query, legend)]): the panels, two to a row.
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Tokens per second", "short", [
        (_rate("vllm:generation_tokens_total"), "{{instance}} generated"),
        (_rate("vllm:prompt_tokens_total"), "{{instance}} prompt"),
    ]),
    ("Requests finished per second", "reqps", [
        (_rate("vllm:request_success_total", "instance, finished_reason"), "{{instance}} {{finished_reason}}"),
    ]),
    ("Time to first token", "s", _quantiles("vllm:time_to_first_token_seconds")),
    ("Time per output token", "s", _quantiles("vllm:inter_token_latency_seconds")),
    ("KV cache in use", "percentunit", [("max by (instance) (vllm:kv_cache_usage_perc)", "{{instance}}")]),
    ("Requests running and waiting", "short", [
        ("sum by (instance) (vllm:num_requests_running)", "{{instance}} running"),
        ("sum by (instance) (vllm:num_requests_waiting)", "{{instance}} waiting"),
    ]),
    ("Prefix-cache hit rate", "percentunit", [
        (f"{_rate('vllm:prefix_cache_hits_total')} / {_rate('vllm:prefix_cache_queries_total')}", "{{instance}}"),
    ]),
    ("Preemptions per second", "short", [(_rate("vllm:num_preemptions_total"), "{{instance}}")]),
    ("Active model", "short", [("count by (instance, model_name) (vllm:num_requests_running)", "{{model_name}} "
                                "on {{instance}}")]),
    ("KV cache tokens: plan and vLLM", "short", [(f"max by (model, source) ({KV_METRIC})", "{{model}} {{source}}")]),
]  # fmt: skip

# A switch, as annotations: a model name that serves now and did not a minute ago.
SWITCH_ANNOTATION = (
    "count by (model_name) (vllm:num_requests_running)"
    " unless count by (model_name) (vllm:num_requests_running offset 1m)"
)


def _panel(number: int, title: str, unit: str, queries: list[tuple[str, str]]) -> dict:
    return {
        "id": number + 1,
        "type": "timeseries",
        "title": title,
        "datasource": _DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (number % 2), "y": 8 * (number // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + index), "datasource": _DATASOURCE, "expr": expr, "legendFormat": legend}
            for index, (expr, legend) in enumerate(queries)
        ],
    }


def dashboard() -> dict:
    return {
        "uid": DASHBOARD_UID,
        "title": "LLM stack: vLLM",
        "tags": ["llmstack", "vllm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {
            "list": [
                {
                    "name": "Model switches",
                    "datasource": _DATASOURCE,
                    "enable": True,
                    "iconColor": "blue",
                    "expr": SWITCH_ANNOTATION,
                    "step": "1m",
                    "titleFormat": "Model switch",
                    "textFormat": "{{model_name}} serves",
                }
            ]
        },
        "panels": [_panel(number, *panel) for number, panel in enumerate(PANELS)],
    }


def queries(board: dict) -> list[str]:
    """Every PromQL expression of the dashboard: its panels' targets and its annotations."""
    found = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    return found + [annotation["expr"] for annotation in board["annotations"]["list"]]


def dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def datasource_provisioning(prometheus_url: str) -> dict:
    return {
        "apiVersion": 1,
        "datasources": [{"name": "Prometheus", "type": "prometheus", "uid": DATASOURCE_UID, "access": "proxy",
                         "url": prometheus_url, "isDefault": True, "editable": False}],
    }  # fmt: skip


def dashboard_provisioning() -> dict:
    return {
        "apiVersion": 1,
        "providers": [{"name": "llmstack", "type": "file", "disableDeletion": True, "allowUiUpdates": False,
                       "options": {"path": DASHBOARDS_DIR}}],
    }  # fmt: skip

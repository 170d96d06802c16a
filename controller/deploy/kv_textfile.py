"""The KV-cache check of `up` and `switch` (controller.planner.kv_check) as metrics for Prometheus:
a file in node-exporter's textfile format that the controller writes after each start-up, and that
the `KvPlanMismatch` alert reads. Pure: the text only; the lifecycle writes it."""

from __future__ import annotations

METRIC = "llmstack_kv_cache_tokens"
FILE_NAME = "kv_cache.prom"
# The `source` label: what the controller's plan said, and what vLLM logged at start-up.
PLANNED = "plan"
LOGGED = "vllm"


def _label(value: str) -> str:
    # The exposition format's escapes inside a quoted label value.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def kv_textfile(model: str, check: dict) -> str:
    """`check` is kv_check's result: {"planned": tokens, "logged": tokens, ...}."""
    lines = [
        f"# HELP {METRIC} KV-cache capacity in tokens: the controller's plan, and what vLLM logged at start-up.",
        f"# TYPE {METRIC} gauge",
    ]
    for source, key in ((PLANNED, "planned"), (LOGGED, "logged")):
        lines.append(f'{METRIC}{{model="{_label(model)}",source="{source}"}} {int(check[key])}')
    return "\n".join(lines) + "\n"

"""What the controller tells Prometheus itself (MONITORING=on), as files in node-exporter's textfile
format in the site's metrics folder. Pure: the names and the text; the lifecycle writes the files.

- The KV-cache check of `up` and `switch` (controller.planner.kv_check), written after each
  start-up; the `KvPlanMismatch` alert reads it.
- Planned work: while `up`, `switch` or `upgrade` restarts services on purpose, the time until which
  the down alerts hold off. A deadline, not a flag, so that a controller killed half-way cannot
  silence them for good.
"""

from __future__ import annotations

KV_METRIC = "llmstack_kv_cache_tokens"
KV_FILE = "kv_cache.prom"
# The `source` label: what the controller's plan said, and what vLLM logged at start-up.
PLANNED = "plan"
LOGGED = "vllm"

PLANNED_WORK_METRIC = "llmstack_planned_work_until_seconds"
PLANNED_WORK_FILE = "planned_work.prom"


def _label(value: str) -> str:
    # The exposition format's escapes inside a quoted label value.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _gauge(metric: str, help_text: str, samples: list[tuple[dict[str, str], int]]) -> str:
    lines = [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
    for labels, value in samples:
        text = ",".join(f'{key}="{_label(label)}"' for key, label in labels.items())
        # Whole numbers, written out: `:g` would round a Unix time to six digits.
        lines.append(f"{metric}{{{text}}} {int(value)}" if text else f"{metric} {int(value)}")
    return "\n".join(lines) + "\n"


def kv_textfile(model: str, check: dict) -> str:
    """`check` is kv_check's result: {"planned": tokens, "logged": tokens, ...}."""
    figures = ((PLANNED, check["planned"]), (LOGGED, check["logged"]))
    samples = [({"model": model, "source": source}, int(tokens)) for source, tokens in figures]
    return _gauge(KV_METRIC, "KV-cache capacity in tokens: the controller's plan, and what vLLM logged at start-up.",
                  samples)  # fmt: skip


def planned_work_textfile(operation: str, until_unix_s: float) -> str:
    return _gauge(PLANNED_WORK_METRIC, "Until when (Unix time) the controller restarts services on purpose.",
                  [({"operation": operation}, round(until_unix_s))])  # fmt: skip

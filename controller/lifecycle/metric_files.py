"""The files the controller writes for Prometheus (MONITORING=on) in the site's metrics folder,
which node-exporter reads (controller.deploy.controller_metrics has their format):

- planned work: while `up`, `switch` or `upgrade` restarts services on purpose, until when; the
  down alerts hold off meanwhile (controller.deploy.alert_rules). The file goes when the work ends,
  however it ends; a controller killed half-way leaves a deadline that passes.
- the KV-cache check of the last start-up, which the KvPlanMismatch alert reads. Best effort: a
  deployment that works never fails for it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from controller.config.monitoring_settings import MonitoringSettings
from controller.config.site import SiteConfig
from controller.deploy.controller_metrics import KV_FILE, PLANNED_WORK_FILE, kv_textfile, planned_work_textfile
from controller.errors import WriteFailed
from controller.files import write_atomic
from controller.phases import (
    COMPOSE_UP,
    DRAIN,
    ENGINE_READY,
    MIGRATIONS,
    MODEL_LISTED,
    VLLM_STARTED,
    WEBUI_HEALTH,
    WEBUI_START,
    WEIGHTS_LOAD,
    Deadlines,
)

# The phases in which a service may be down on purpose: the work's window is their deadlines together.
RESTART_PHASES = (COMPOSE_UP, VLLM_STARTED, WEIGHTS_LOAD, ENGINE_READY, MODEL_LISTED, WEBUI_START, WEBUI_HEALTH,
                  MIGRATIONS, DRAIN)  # fmt: skip


@contextlib.contextmanager
def planned_work(site: SiteConfig, monitoring: MonitoringSettings, operation: str,
                 deadlines: Deadlines) -> Iterator[None]:  # fmt: skip
    if not monitoring.enabled:
        yield
        return
    path = site.metrics_dir / PLANNED_WORK_FILE
    until = time.time() + sum(deadlines[phase] for phase in RESTART_PHASES)
    write_atomic(path, planned_work_textfile(operation, until))
    try:
        yield
    finally:
        # A file that cannot be removed must not hide how the work ended: its deadline passes.
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def publish_kv_check(site: SiteConfig, monitoring: MonitoringSettings, model: str, check: dict | None,
                     warn: Callable[[str], None]) -> None:  # fmt: skip
    """The KV-cache check for Prometheus; none (vLLM logged no figure) removes the last model's."""
    if not monitoring.enabled:
        return
    path = site.metrics_dir / KV_FILE
    try:
        if check:
            write_atomic(path, kv_textfile(model, check))
        else:
            path.unlink(missing_ok=True)
    except (OSError, WriteFailed) as exc:
        warn(f"could not update {path} for Prometheus ({exc}); the KvPlanMismatch alert reads an old figure")

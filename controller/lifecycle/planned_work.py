"""Planned work (MONITORING=on): while `up`, `switch` or `upgrade` restarts services on purpose, a
file in the site's metrics folder tells Prometheus until when, and the down alerts hold off
(controller.deploy.alert_rules). The file goes when the work ends, however it ends; a controller
killed half-way leaves a deadline that passes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from controller.config.monitoring_settings import MonitoringSettings
from controller.config.site import SiteConfig
from controller.deploy.controller_metrics import PLANNED_WORK_FILE, planned_work_textfile
from controller.files import write_atomic
from controller.phases import (
    COMPOSE_UP,
    ENGINE_READY,
    MODEL_LISTED,
    VLLM_STARTED,
    WEBUI_HEALTH,
    WEIGHTS_LOAD,
    Deadlines,
)

# The phases in which a service is down on purpose: the work's window is their deadlines together.
RESTART_PHASES = (COMPOSE_UP, VLLM_STARTED, WEIGHTS_LOAD, ENGINE_READY, MODEL_LISTED, WEBUI_HEALTH)


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

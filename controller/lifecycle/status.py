"""`controller status`: the services, the active model, vLLM's load and the journal's unfinished
change. Reads only; with Docker down the journal still tells what was running."""

from __future__ import annotations

import os

from controller.config.backups import backup_dir, newest_backup
from controller.config.monitoring_settings import MonitoringSettings
from controller.config.settings import LoadedSettings, read_settings
from controller.errors import DockerUnavailable
from controller.journal import Pending
from controller.lifecycle.front_door import PLAIN_HTTP_WARNING, front_door_report
from controller.lifecycle.stack import Stack
from controller.runtime.alerts import firing_alerts, local_url


def stack_status(stack: Stack) -> dict:
    loaded = read_settings(stack.site)
    settings, monitoring = loaded.settings, loaded.monitoring
    journal = stack.store.load()
    target = stack.target(settings)
    try:
        services = target.services()
        active = target.running_profile()
        metrics = target.metrics() if services["vllm"]["state"] == "running" else {}
    except DockerUnavailable as exc:  # the journal still tells what was running and what is unfinished
        unknown = {"state": "unknown", "health": None, "uptime_s": None, "image": None, "error": exc.message}
        services, active, metrics = {name: dict(unknown) for name in ("vllm", "webui")}, None, {}
    deployment = journal.active
    served = deployment.served_model_name if deployment and deployment.profile == active else None
    return {
        "project": settings.compose_project_name,
        "offline": settings.offline,
        "model": active,
        "served_model_name": served,
        "url": loaded.public_url,
        "services": services,
        "metrics": metrics,
        "capacity": deployment.capacity if deployment and served else None,
        "kv_tokens": deployment.kv_tokens if deployment and served else None,
        "pending": _pending_status(journal.pending),
        "history": [vars(event) for event in journal.history[-10:]],
        "last_backup": _last_backup(stack),
        **_monitoring_status(monitoring),
        **_front_door_status(stack, loaded),
        "sign_in": _sign_in_status(loaded),
    }


def _sign_in_status(loaded: LoadedSettings) -> dict:
    """How people sign in, as .env says (`doctor` checks that the directory answers)."""
    directory = loaded.directory
    ldap = f"{directory.ldap_host}:{directory.ldap_server_port}" if directory.ldap == "on" else None
    return {"ldap": ldap, "oidc": directory.oidc_provider_url if directory.oidc == "on" else None,
            "local_form": directory.local_signin == "on",
            "new_directory_users": directory.new_user_role if directory.enabled else None}  # fmt: skip


def _front_door_status(stack: Stack, loaded: LoadedSettings) -> dict:
    report, warnings = front_door_report(stack.site, loaded, export=False)
    return {"tls": report, "warnings": warnings if report else [PLAIN_HTTP_WARNING]}


def _monitoring_status(monitoring: MonitoringSettings) -> dict:
    """Where Prometheus and Alertmanager answer, and the alerts firing now (None: no answer)."""
    if not monitoring.enabled:
        return {"monitoring": None, "alerts": []}
    urls = {"prometheus": local_url(monitoring, monitoring.prometheus_port),
            "alertmanager": local_url(monitoring, monitoring.alertmanager_port)}  # fmt: skip
    if monitoring.grafana:
        urls["grafana"] = local_url(monitoring, monitoring.grafana_port)
    return {"monitoring": urls, "alerts": firing_alerts(monitoring)}


def _last_backup(stack: Stack) -> dict | None:
    newest = newest_backup(backup_dir(stack.site.root))
    return {"path": str(newest[0]), "age_s": round(newest[1])} if newest else None


def _pending_status(pending: Pending | None) -> dict | None:
    if pending is None:
        return None
    alive = _process_alive(pending.pid)
    return {
        "action": pending.action, "target": pending.target, "started": pending.started, "pid": pending.pid,
        "in_progress": alive,
        "resolve": "in progress" if alive else "the next `controller up` or `controller switch` rolls it back",
    }  # fmt: skip


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True

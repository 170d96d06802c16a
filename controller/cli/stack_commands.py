"""The stack's commands: render, up, switch, down, status, history, logs. Each parses, calls one
function of controller.lifecycle, and hands the result to controller.cli.output."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.console import err, print_history, print_status, print_summary
from controller.cli.context import (
    ForceOption,
    JsonOption,
    LockTimeoutOption,
    ModelArg,
    Strategy,
    TimeoutOption,
    context,
    make_stack,
    run_on,
)
from controller.cli.output import emit
from controller.errors import InputError

if TYPE_CHECKING:
    from controller.lifecycle.stack import Stack


class RenderTarget(StrEnum):
    compose = "compose"
    k8s = "k8s"


def render(
    ctx: typer.Context,
    model: ModelArg,
    target: Annotated[
        RenderTarget, typer.Option("--target", help="compose: this box; k8s: a kustomize directory for a cluster.")
    ] = RenderTarget.compose,
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory for --target k8s (default: PROJECT_DIR/deploy/k8s).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write compose/docker-compose.yml for MODEL, or with --target k8s Kubernetes manifests
    (generates missing secrets into .env once)."""
    if target is RenderTarget.k8s:
        from controller.cli.console import ConsoleReporter
        from controller.lifecycle.render_k8s import render_k8s, summary_lines

        c = context(ctx)
        result = render_k8s(c.site, c.catalog(), model, out, on_wait=ConsoleReporter(quiet=True).waiting_for_lock)
        emit(result, as_json=as_json,
             text=lambda r: [err.print(line, markup=False, highlight=False) for line in summary_lines(r)])  # fmt: skip
        return
    if out is not None:
        raise InputError("--out is only for --target k8s", hint="the compose file is always compose/docker-compose.yml")
    emit(make_stack(ctx, quiet=True).render(model), as_json=as_json, text=_print_rendered)


def _print_rendered(result: dict) -> None:
    state = "written" if result["changed"] else "unchanged"
    served = result["served_model_name"]
    err.print(f"{result['compose_file']} {state} for [bold]{result['model']}[/] (served as {served})")
    if result["generated_secrets"]:
        err.print(f"generated {', '.join(result['generated_secrets'])} into {result['env_file']} (mode 0600)")


def with_front_door(stack: Stack, result: dict) -> dict:
    """The front door's report (TLS=...) beside a started stack's summary; TLS=internal's root
    certificate is copied out for browsers."""
    from controller.config.settings import read_settings
    from controller.lifecycle.front_door import front_door_report

    report, warnings = front_door_report(stack.site, read_settings(stack.site), export=True)
    for warning in warnings:
        stack.reporter.warn(warning)
    return {**result, "tls": report}


def up(
    ctx: typer.Context,
    model: ModelArg,
    timeout: TimeoutOption = None,
    lock_timeout: LockTimeoutOption = 600.0,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Start the stack serving MODEL, wait until a chat works, and seed the Open WebUI admin.

    Safe to run again: on a healthy stack serving MODEL it only verifies and returns. To change \
the model of a running stack use `controller switch`, which rolls back on failure.
    """
    stack = make_stack(ctx, load_timeout_s=timeout, lock_timeout_s=lock_timeout, force=force)
    emit(run_on(stack, lambda: with_front_door(stack, stack.up(model))), as_json=as_json,
         text=lambda r: print_summary(r, "up"))  # fmt: skip


def switch(
    ctx: typer.Context,
    model: ModelArg,
    strategy: Annotated[
        Strategy | None,
        typer.Option(
            "--strategy",
            help="blue-green: start MODEL beside the running one, move Open WebUI over, drain, stop the old one "
            "(no outage); recreate: replace vLLM (an outage of one model load); auto (default, or SWITCH_STRATEGY "
            "in .env): blue-green when the planner says both fit.",
        ),
    ] = None,
    timeout: TimeoutOption = None,
    lock_timeout: LockTimeoutOption = 600.0,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Change the served model; Open WebUI, its users and chats stay. Rolls back if MODEL fails."""
    from controller.lifecycle.switch_command import switch as run_switch

    stack = make_stack(ctx, load_timeout_s=timeout, lock_timeout_s=lock_timeout, force=force)
    result = run_on(stack, lambda: run_switch(stack, model, strategy.value if strategy else None))
    emit(result, as_json=as_json, text=lambda r: print_summary(r, "switched"))


def down(
    ctx: typer.Context,
    volumes: Annotated[
        bool, typer.Option("--volumes", help="Also delete Open WebUI's data volume (users, chats).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before deleting volumes.")] = False,
    lock_timeout: LockTimeoutOption = 600.0,
    as_json: JsonOption = False,
) -> None:
    """Stop and remove the containers. Data volumes stay unless --volumes (asks first)."""
    if volumes and not yes:
        if not sys.stdin.isatty():
            raise InputError("--volumes deletes every user and chat; add --yes to confirm in a script")
        typer.confirm("Delete Open WebUI's data volume with every user and chat? The HF cache stays.", abort=True)
    stack = make_stack(ctx, lock_timeout_s=lock_timeout)
    emit(run_on(stack, lambda: stack.down(volumes=volumes)), as_json=as_json, text=_print_down)


def _print_down(result: dict) -> None:
    kept = "deleted" if result["volumes_removed"] else "kept (users, chats)"
    err.print(f"[green]down:[/] project {result['project']} removed; data volume {kept}")


def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show each service's state, health and uptime, the active model, and vLLM's load."""
    from controller.lifecycle.status import stack_status

    emit(stack_status(make_stack(ctx, quiet=True)), as_json=as_json, text=print_status)


def history(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show recent up, switch and down runs with their outcomes."""
    from controller.journal import JournalStore

    events = [vars(e) for e in JournalStore(context(ctx).site.state_dir).load().history]
    emit(events, as_json=as_json, text=lambda e: print_history(e) if e else err.print("no runs recorded yet"))


# What MONITORING=on adds (templates/docker-compose.yml.j2).
MONITORING_SERVICES = ("prometheus", "alertmanager", "blackbox", "node-exporter")
GRAFANA = "grafana"
LOG_SERVICES = ("vllm", "webui", "caddy", *MONITORING_SERVICES, GRAFANA)


def logs(
    ctx: typer.Context,
    service: Annotated[
        str | None,
        typer.Argument(
            help="vllm or webui (default: both); with MONITORING=on also "
            + ", ".join(MONITORING_SERVICES)
            + f"; with MONITORING=grafana also {GRAFANA}."
        ),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
) -> None:
    """Print the services' logs.

    Where each monitoring signal comes from: prometheus scrapes vLLM's /metrics on every slot and the
    exporters, and evaluates the alert rules; alertmanager sends the alerts (webhook, e-mail);
    blackbox probes Open WebUI's /health; node-exporter reads the HF cache's disk and the files the
    controller writes (the KV-cache check, planned work); grafana shows the dashboard. More in
    README.md, `Monitoring and alerts`.
    """
    if service not in (None, *LOG_SERVICES):
        raise InputError(f"unknown service '{service}'", hint="use one of " + ", ".join(LOG_SERVICES))
    make_stack(ctx, quiet=True).logs(service, follow=follow)


def add_commands(app: typer.Typer) -> None:
    for command in (render, up, switch, down, status, history, logs):
        app.command(command.__name__)(command)

"""`controller doctor [MODEL] [--json]`: which model to check, and the checks printed for a person or
as JSON. Reads only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.console import out
from controller.cli.context import JsonOption, context
from controller.cli.output import emit

if TYPE_CHECKING:
    from controller.config.catalog import Catalog
    from controller.config.site import SiteConfig

# The model `make up` starts when none is named.
DEFAULT_MODEL = "deepseek-1.5b"
STATUS_STYLE = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def default_model(site: SiteConfig) -> tuple[str, str]:
    """The running model, else the last one started, else the default; and which of these it is."""
    from controller.errors import JournalError
    from controller.journal import JournalStore

    try:
        journal = JournalStore(site.state_dir).load()
    except JournalError:
        return DEFAULT_MODEL, "the default (the journal cannot be read)"
    if journal.active is not None:
        return journal.active.profile, "the running model"
    started = [e.profile for e in journal.history if e.outcome == "ok" and e.action in ("up", "switch")]
    if started:
        return started[-1], "the last model started"
    return DEFAULT_MODEL, "the default"


def run_doctor(site: SiteConfig, catalog: Catalog, model: str | None, *, as_json: bool) -> bool:
    """Diagnose and print; True when nothing fails."""
    from controller.doctor.checks import as_dict, diagnose, failed
    from controller.doctor.facts import gather

    name, source = (model, "named") if model else default_model(site)
    profile = catalog.get(name)  # an unknown model is bad input (exit 2) before anything is read
    facts = gather(site, profile)
    checks = diagnose(profile, facts, catalog_profiles=catalog.profiles(), offline=facts.env.offline)
    emit(checks, as_json=as_json, json_of=lambda c: as_dict(profile, c, source),
         text=lambda c: print_checks(profile.name, profile.accelerator, source, c))  # fmt: skip
    return not failed(checks)


def print_checks(name: str, accelerator: str, source: str, checks: list) -> None:
    from rich.markup import escape

    out.print(f"[bold]controller doctor[/] for [bold]{escape(name)}[/] ({accelerator} profile; {escape(source)})")
    width = max(len(c.name) for c in checks)
    for check in checks:
        out.print(f"  {STATUS_STYLE[check.status]}  {escape(check.name):<{width}}  {escape(check.finding)}",
                  highlight=False)  # fmt: skip
        if check.fix and check.status != "ok":
            out.print(f"  {'':4}  {'':<{width}}  [cyan]fix:[/] {escape(check.fix)}", highlight=False)
    counts = {status: sum(c.status == status for c in checks) for status in STATUS_STYLE}
    verdict = (
        f"[bold red]`controller up {escape(name)}` would stop here[/]"
        if counts["fail"]
        else f"[green]nothing stops `controller up {escape(name)}`[/]"
    )
    out.print(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail: {verdict}", highlight=False)


def doctor(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Argument(
            help="Profile to check (default: the running model, else the last started, else deepseek-1.5b).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check what would stop `up MODEL` on this machine: GPU and driver, Docker and the NVIDIA runtime,
    Compose, images, disk, the Web UI port, .env. Each check says ok, warn or fail, with a fix.
    Writes nothing. Exit 0 when nothing fails, 1 otherwise."""
    c = context(ctx)
    if not run_doctor(c.site, c.catalog(), model, as_json=as_json):
        raise typer.Exit(1)


def add_commands(app: typer.Typer) -> None:
    app.command("doctor")(doctor)

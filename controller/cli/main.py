"""The `controller` command line: the app, its global options, and the only place where errors
become messages and exit codes (0 ok, 1 runtime failure, 2 bad input). The commands live in one
module per group and are handed the app (`add_commands`), so only this module knows it."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from controller.cli import backup, bench, bundle, doctor, plan, stack_commands
from controller.cli.console import err
from controller.cli.context import Context, resolve_catalog, warn_unknown_env_keys
from controller.errors import ControllerError

# Start time: `--help`, `models` and `plan` must start in 0.25 s (benchmarks/bench_startup.py), so
# the controller's modules are imported inside the commands that use them: the stack, gpu and state
# modules load the Docker SDK, HTTP clients, locks and templates, and the settings and a user's
# catalog are checked with pydantic, which `--help`, `models` and `plan` do not need (the built-in
# profiles are taken as they are). tests/unit/test_startup_imports.py checks.
# rich too (about 20 ms) is imported on the first print, which `--json` output never makes.

app = typer.Typer(
    name="controller",
    help="Run a private LLM chat service: vLLM behind Open WebUI, on one GPU box, with Docker Compose.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Click's plain help and usage errors: typer's rich help imports rich's markdown, traceback and
    # syntax modules (130 ms, half of `--help`'s start-up).
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_debug = False


@app.callback()
def main_options(
    ctx: typer.Context,
    project_dir: Annotated[
        Path, typer.Option("--project-dir", envvar="CONTROLLER_HOME", help="Checkout holding .env and compose/.")
    ] = Path("."),
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="Settings file [default: PROJECT_DIR/.env].")
    ] = None,
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", envvar="CONTROLLER_CATALOG", help="User catalog YAML that adds or overrides models."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    from controller.config.site import SiteConfig

    global _debug
    _debug = debug
    root = project_dir.resolve()
    site = SiteConfig(root=root, env_file=(env_file or root / ".env").resolve())
    warn_unknown_env_keys(site)
    ctx.obj = Context(site=site, catalog_path=resolve_catalog(catalog, site))


for group in (bundle, plan, stack_commands, bench, doctor, backup):
    group.add_commands(app)


def main() -> None:
    """Entry point. Typer handles usage errors (exit 2); ControllerError becomes message + exit code."""
    try:
        app()
    except ControllerError as exc:
        from rich.markup import escape

        if _debug:
            traceback.print_exc()
        err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
        for line in exc.details:
            err.print(f"  {line}", highlight=False, markup=False)
        if exc.hint:
            err.print(f"[yellow]hint:[/] {escape(exc.hint)}", highlight=False)
        sys.exit(exc.exit_code)
    except Exception:
        if _debug or os.environ.get("CONTROLLER_DEBUG"):
            raise
        err.print("[bold red]internal error[/] (run again with --debug for the traceback)")
        err.print(f"  {traceback.format_exc().strip().splitlines()[-1]}", markup=False)
        sys.exit(1)

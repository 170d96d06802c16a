"""The `controller` command line. Thin: parses, calls one function, prints. The only place where
errors become messages and exit codes (0 ok, 1 runtime failure, 2 bad input)."""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from controller import catalog as catalog_mod
from controller.errors import ControllerError
from controller.plan import GB, GIB, weight_bytes
from controller.settings import SiteConfig, merged_values

# Piped output (no terminal) gets wide tables instead of truncated columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
_debug = False

app = typer.Typer(
    name="controller",
    help="Run a private LLM chat service: vLLM behind Open WebUI, on one GPU box, with Docker Compose.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass(frozen=True)
class Context:
    site: SiteConfig
    catalog_path: Path | None

    def catalog(self) -> catalog_mod.Catalog:
        return catalog_mod.load_catalog(self.catalog_path)


def _ctx(ctx: typer.Context) -> Context:
    return ctx.obj


def _resolve_catalog(option: Path | None, site: SiteConfig) -> Path | None:
    if option is not None:
        return option
    configured = merged_values(site.env_file).get("CONTROLLER_CATALOG")
    if not configured:
        return None
    path = Path(configured).expanduser()
    return path if path.is_absolute() else site.root / path


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
    global _debug
    _debug = debug
    root = project_dir.resolve()
    site = SiteConfig(root=root, env_file=(env_file or root / ".env").resolve())
    ctx.obj = Context(site=site, catalog_path=_resolve_catalog(catalog, site))


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


@app.command()
def models(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the model profiles (built-in and from your catalog)."""
    rows = []
    for profile in _ctx(ctx).catalog().profiles():
        weights = weight_bytes(profile)
        rows.append(
            {
                "name": profile.name,
                "model": profile.model,
                "served_model_name": profile.served_model_name,
                "dtype": profile.dtype,
                "quantization": profile.quantization,
                "max_model_len": profile.max_model_len,
                "accelerator": profile.accelerator,
                "gated": profile.gated,
                "weights_gb": round(weights / GB, 2),
                "weights_gib": round(weights / GIB, 2),
                "source": profile.source,
            }
        )
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Model profiles")
    for column in ("name", "model", "quantization", "dtype", "context", "weights", "accelerator"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["model"],
            row["quantization"] or "-",
            row["dtype"],
            str(row["max_model_len"]),
            f"{row['weights_gb']:.1f} GB",
            row["accelerator"],
        )
    out.print(table)


ModelArg = Annotated[str, typer.Argument(help="Profile name (see `controller models`).", show_default=False)]


@app.command()
def render(ctx: typer.Context, model: ModelArg, as_json: JsonOption = False) -> None:
    """Write compose/docker-compose.yml for MODEL (generates missing secrets into .env once)."""
    from controller import stack

    result = stack.render_project(_ctx(ctx).site, _ctx(ctx).catalog(), model)
    if as_json:
        _print_json(result)
    else:
        state = "written" if result["changed"] else "unchanged"
        err.print(f"{result['compose_file']} {state} for [bold]{model}[/] (served as {result['served_model_name']})")
        if result["generated_secrets"]:
            err.print(f"generated {', '.join(result['generated_secrets'])} into {result['env_file']} (mode 0600)")


def main() -> None:
    """Entry point. Typer handles usage errors (exit 2); ControllerError becomes message + exit code."""
    try:
        app()
    except ControllerError as exc:
        if _debug:
            traceback.print_exc()
        err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        for line in exc.details:
            err.print(f"  {line}", highlight=False, markup=False)
        if exc.hint:
            err.print(f"[yellow]hint:[/] {exc.hint}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception:
        if _debug or os.environ.get("CONTROLLER_DEBUG"):
            raise
        err.print("[bold red]internal error[/] (run again with --debug for the traceback)")
        err.print(f"  {traceback.format_exc().strip().splitlines()[-1]}", markup=False)
        sys.exit(1)

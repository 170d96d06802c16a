"""The `controller` command line. Thin: parses, calls one function, prints. The only place where
errors become messages and exit codes (0 ok, 1 runtime failure, 2 bad input)."""

from __future__ import annotations

import math
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.console import (
    ConsoleReporter,
    err,
    print_history,
    print_json,
    print_models,
    print_status,
    print_summary,
)
from controller.errors import ControllerError, InputError

if TYPE_CHECKING:
    from controller.config.catalog import Catalog
    from controller.config.settings import SiteConfig
    from controller.lifecycle.stack import Stack

# Start time: `--help`, `models` and `plan` must start in 0.25 s (benchmarks/bench_startup.py), so
# the controller's modules are imported inside the commands that use them: the stack, gpu and state
# modules load the Docker SDK, HTTP clients, locks and templates, and the catalog and settings
# build pydantic models, which `--help` does not need. tests/unit/test_startup_imports.py checks.
# rich too (about 20 ms) is imported on the first print, which `--json` output never makes.


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

    def catalog(self) -> Catalog:
        from controller.config.catalog import load_catalog

        return load_catalog(self.catalog_path)


def _ctx(ctx: typer.Context) -> Context:
    return ctx.obj


def _resolve_catalog(option: Path | None, site: SiteConfig) -> Path | None:
    from controller.config.settings import merged_values

    if option is not None:
        return option
    configured = merged_values(site.env_file).get("CONTROLLER_CATALOG")
    if not configured:
        return None
    from controller.errors import CatalogError
    from controller.files import expand_home

    path = expand_home(Path(configured), CatalogError, "CONTROLLER_CATALOG")
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
    from controller.config.settings import SiteConfig

    global _debug
    _debug = debug
    root = project_dir.resolve()
    site = SiteConfig(root=root, env_file=(env_file or root / ".env").resolve())
    ctx.obj = Context(site=site, catalog_path=_resolve_catalog(catalog, site))


from controller.cli.bundle import app as bundle_app  # noqa: E402 (light: typer only)

app.add_typer(bundle_app, name="bundle")

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


@app.command()
def models(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the model profiles (built-in and from your catalog)."""
    from controller.planner.engine import GIB
    from controller.planner.model_memory import GB, weight_bytes

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
        print_json(rows)
        return
    print_models(rows)


ModelArg = Annotated[str, typer.Argument(help="Profile name (see `controller models`).", show_default=False)]


def _finite(value: float | None) -> float | None:
    # click's range check lets nan through (every comparison with nan is false).
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter("must be a finite number")
    return value


# A deadline shorter than a model load can only cause an outage (switch would recreate vLLM, give
# up at once and roll back); longer than a day is a typo.
MIN_LOAD_TIMEOUT_S = 30
MAX_TIMEOUT_S = 86400
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=MIN_LOAD_TIMEOUT_S,
        max=MAX_TIMEOUT_S,
        callback=_finite,
        help="Seconds to wait for vLLM to download and load the model "
        "(default: DEADLINE_WEIGHTS_LOAD_S in .env, else 1800). Other phases: DEADLINE_<PHASE>_S in .env.",
    ),
]
LockTimeoutOption = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        min=0,
        max=MAX_TIMEOUT_S,
        callback=_finite,
        help="Seconds to wait for another controller run to finish (0: do not wait).",
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Start even when the memory plan says it does not fit.")]


def _stack(
    ctx: typer.Context,
    *,
    quiet: bool = False,
    load_timeout_s: float | None = None,
    lock_timeout_s: float = 600.0,
    force: bool = False,
) -> Stack:
    from controller.config.settings import merged_values
    from controller.lifecycle.stack import Options, Stack
    from controller.phases import WEIGHTS_LOAD, Deadlines

    c = _ctx(ctx)
    values = merged_values(c.site.env_file)
    origin = f"{c.site.env_file} or the environment"
    # Deadlines: the phase table's defaults, then DEADLINE_<PHASE>_S from .env, then --timeout.
    deadlines = Deadlines().from_env(values, origin)
    deadlines = deadlines.overridden({WEIGHTS_LOAD.name: load_timeout_s}, lambda phase: "--timeout")
    options = Options(deadlines=deadlines, lock_timeout_s=lock_timeout_s, force=force,
                      **_switch_settings(values, origin))  # fmt: skip
    return Stack(c.site, c.catalog, ConsoleReporter(quiet=quiet), options)


def _switch_settings(values: Mapping[str, str], origin: str) -> dict:
    """SWITCH_STRATEGY (auto, blue-green, recreate) and SWITCH_RESERVE_GIB from .env, checked."""
    from controller.lifecycle.pair_fit import STRATEGIES

    strategy = values.get("SWITCH_STRATEGY") or "auto"
    if strategy not in STRATEGIES:
        raise InputError(f"SWITCH_STRATEGY in {origin}: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    reserve = values.get("SWITCH_RESERVE_GIB") or "2"
    try:
        reserve_gib = float(reserve)
    except ValueError:
        reserve_gib = math.nan
    if not (math.isfinite(reserve_gib) and 0 <= reserve_gib <= 100_000):
        raise InputError(f"SWITCH_RESERVE_GIB in {origin}: {reserve!r} is not a number of GiB from 0 to 100000")
    return {"switch_strategy": strategy, "reserve_gib": reserve_gib}


def _run(stack: Stack, action):
    try:
        return action()
    finally:
        stack.reporter.close()


class RenderTarget(StrEnum):
    compose = "compose"
    k8s = "k8s"


@app.command()
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
        from controller.lifecycle.render_k8s import render_k8s, summary_lines

        result = render_k8s(
            _ctx(ctx).site, _ctx(ctx).catalog(), model, out, on_wait=ConsoleReporter(quiet=True).waiting_for_lock
        )
        if as_json:
            print_json(result)
            return
        for line in summary_lines(result):
            err.print(line, markup=False, highlight=False)
        return
    if out is not None:
        raise InputError("--out is only for --target k8s", hint="the compose file is always compose/docker-compose.yml")
    stack = _stack(ctx, quiet=True)
    result = stack.render(model)
    if as_json:
        print_json(result)
        return
    state = "written" if result["changed"] else "unchanged"
    err.print(f"{result['compose_file']} {state} for [bold]{model}[/] (served as {result['served_model_name']})")
    if result["generated_secrets"]:
        err.print(f"generated {', '.join(result['generated_secrets'])} into {result['env_file']} (mode 0600)")


@app.command("up")
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
    stack = _stack(ctx, load_timeout_s=timeout, lock_timeout_s=lock_timeout, force=force)
    result = _run(stack, lambda: stack.up(model))
    print_json(result) if as_json else print_summary(result, "up")


class Strategy(StrEnum):
    auto = "auto"
    blue_green = "blue-green"
    recreate = "recreate"


@app.command("switch")
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
    stack = _stack(ctx, load_timeout_s=timeout, lock_timeout_s=lock_timeout, force=force)
    result = _run(stack, lambda: stack.switch(model, strategy.value if strategy else None))
    print_json(result) if as_json else print_summary(result, "switched")


@app.command()
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
    stack = _stack(ctx, lock_timeout_s=lock_timeout)
    result = _run(stack, lambda: stack.down(volumes=volumes))
    if as_json:
        print_json(result)
    else:
        kept = "deleted" if volumes else "kept (users, chats)"
        err.print(f"[green]down:[/] project {result['project']} removed; data volume {kept}")


@app.command()
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show each service's state, health and uptime, the active model, and vLLM's load."""
    result = _stack(ctx, quiet=True).status()
    if as_json:
        print_json(result)
        return
    print_status(result)


@app.command()
def history(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show recent up, switch and down runs with their outcomes."""
    from controller.journal import JournalStore

    events = [vars(e) for e in JournalStore(_ctx(ctx).site.state_dir).load().history]
    if as_json:
        print_json(events)
    else:
        print_history(events) if events else err.print("no runs recorded yet")


@app.command()
def logs(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(help="vllm or webui (default: both).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
) -> None:
    """Print the services' logs."""
    if service not in (None, "vllm", "webui"):
        raise InputError(f"unknown service '{service}'", hint="use vllm or webui")
    _stack(ctx, quiet=True).logs(service, follow=follow)


@app.command("plan")
def plan_command(
    ctx: typer.Context,
    model: ModelArg,
    gpu_memory: Annotated[
        str | None, typer.Option("--gpu-memory", help="GPU memory, e.g. 12GiB [default: detected, or GPU_MEMORY_GIB].")
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option("--max-model-len", min=1, max=10_000_000, help="Context to plan for.")
    ] = None,
    utilization: Annotated[
        float | None,
        typer.Option("--gpu-memory-utilization", min=0.01, max=1.0, callback=_finite, help="Fraction vLLM may use."),
    ] = None,
    vllm_version: Annotated[
        str | None,
        typer.Option("--vllm-version", help="Plan for this vLLM version, e.g. 0.10 [default: the image's, 0.32]."),
    ] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show each term of the KV budget and its source.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Tell whether MODEL fits the GPU, and how many full-length chats it serves at once."""
    from controller.cli.plan import run_plan

    c = _ctx(ctx)
    fits = run_plan(c.site, c.catalog(), model, gpu_memory=gpu_memory, max_model_len=max_model_len,
                    utilization=utilization, vllm_version=vllm_version, explain=explain, as_json=as_json)  # fmt: skip
    if not fits:
        raise typer.Exit(1)


@app.command()
def bench(
    ctx: typer.Context,
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Profiles to measure in turn (default: the running one).", show_default=False),
    ] = None,
    levels: Annotated[str, typer.Option("--levels", help="Concurrency levels, comma-separated.")] = "1,4,16,64",
    input_len: Annotated[int, typer.Option("--input-len", help="Prompt tokens per request.")] = 512,
    output_len: Annotated[int, typer.Option("--output-len", help="Answer tokens per request.")] = 256,
    prompts: Annotated[
        int | None, typer.Option("--prompts", help="Requests per level (default: 4 per concurrent stream, at least 8).")
    ] = None,
    slo_ttft_ms: Annotated[
        float, typer.Option("--slo-ttft-ms", help="p99 time-to-first-token target for the concurrency row.")
    ] = 2000.0,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--compare",
            help="Print two saved runs side by side (paths or names in .controller/bench).",
            metavar="A B",
            show_default=False,
        ),
    ] = None,
    lock_timeout: LockTimeoutOption = 600.0,
    as_json: JsonOption = False,
) -> None:
    """Measure the running model, or each MODEL in turn, with vLLM's own benchmark: speed, latency,
    concurrency under an SLO, load time and memory. Switches to each MODEL and back to the running one
    at the end (also after a failure or Ctrl-C). Saves the run and a picture in .controller/bench/."""
    from controller.bench.results import bench_settings, parse_levels

    if compare is not None:
        if models:
            raise InputError("--compare prints two saved runs; it measures nothing, so name no MODEL")
        from controller.cli.bench import print_comparison

        print_comparison(_ctx(ctx).site, compare, as_json=as_json)
        return
    settings = bench_settings(levels=parse_levels(levels), input_len=input_len, output_len=output_len,
                              prompts=prompts, slo_ttft_ms=slo_ttft_ms)  # fmt: skip
    stack = _stack(ctx, lock_timeout_s=lock_timeout)
    run = _run(stack, lambda: stack.bench(list(models or []), settings))
    if as_json:
        print_json(run.as_dict())
        return
    from controller.cli.console import print_bench

    print_bench(run)


@app.command()
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
    from controller.cli.doctor import run_doctor

    if not run_doctor(_ctx(ctx).site, _ctx(ctx).catalog(), model, as_json=as_json):
        raise typer.Exit(1)


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

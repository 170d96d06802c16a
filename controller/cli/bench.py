"""`controller bench`: measure the running model or each named one (controller.bench.run), and
`--compare A B`: two saved runs found by path or by name in .controller/bench/, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.context import JsonOption, LockTimeoutOption, context, make_stack, run_on
from controller.cli.output import emit
from controller.errors import InputError

if TYPE_CHECKING:
    from controller.bench.results import BenchRun
    from controller.config.site import SiteConfig

MAX_RUN_BYTES = 16 * 1024 * 1024


def saved_run(site: SiteConfig, name: str) -> BenchRun:
    """A saved bench run: a path, or a name in .controller/bench/ (with or without .json)."""
    from controller.bench.results import BenchRun
    from controller.files import read_text_file

    directory = site.state_dir / "bench"
    candidates = [Path(name), directory / name, directory / f"{name}.json"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        saved = sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []
        raise InputError(
            f"--compare: no saved bench run '{name}'",
            hint=f"saved runs in {directory}: {', '.join(saved[-5:])}" if saved else "run `controller bench` first",
        )
    try:
        data = json.loads(read_text_file(path, InputError, what="bench run", max_bytes=MAX_RUN_BYTES))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    run = BenchRun.from_dict(data, str(path))
    run.json_path = str(path)
    return run


def print_comparison(site: SiteConfig, names: tuple[str, str], *, as_json: bool) -> None:
    from controller.bench.tables import compare_rows

    def text(runs: tuple[BenchRun, BenchRun]) -> None:
        from controller.cli.bench_view import print_bench_compare

        print_bench_compare(*compare_rows(*runs))

    a, b = (saved_run(site, name) for name in names)
    emit((a, b), as_json=as_json, json_of=lambda runs: {"a": runs[0].as_dict(), "b": runs[1].as_dict()}, text=text)


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
    from controller.bench.settings import bench_settings, parse_levels

    if compare is not None:
        if models:
            raise InputError("--compare prints two saved runs; it measures nothing, so name no MODEL")
        print_comparison(context(ctx).site, compare, as_json=as_json)
        return
    settings = bench_settings(levels=parse_levels(levels), input_len=input_len, output_len=output_len,
                              prompts=prompts, slo_ttft_ms=slo_ttft_ms)  # fmt: skip
    from controller.bench.run import bench as run_bench
    from controller.cli.bench_view import print_bench

    stack = make_stack(ctx, lock_timeout_s=lock_timeout)
    run = run_on(stack, lambda: run_bench(stack, list(models or []), settings))
    emit(run, as_json=as_json, json_of=lambda r: r.as_dict(), text=print_bench)


def add_commands(app: typer.Typer) -> None:
    app.command("bench")(bench)

"""`controller bundle create|load`: carry images, weights and the catalog to a box without internet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller.cli.context import JsonOption, context
from controller.cli.operator import operator_ui
from controller.cli.output import emit

NOTHING_LOADED = "nothing was loaded"

group = typer.Typer(
    help="Air-gapped sites: carry images, model weights and the catalog to a box without internet.",
    no_args_is_help=True,
)


@group.command("create")
def create(
    ctx: typer.Context,
    models: Annotated[
        list[str], typer.Argument(help="Profiles to carry (see `controller models`).", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle to write (must not exist).", show_default=False)],
    directory: Annotated[
        bool,
        typer.Option(
            "--directory",
            help="Write a directory of members instead of one tar file (media with "
            "file-size limits; needs no temporary copy of the images).",
        ),  # fmt: skip
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a bundle of MODELS' images, weights and the catalog (on a connected machine).

    Holds the images the profiles need (docker save), their snapshots from the Hugging Face cache (only the
    revision in use), the user catalog, and a manifest with every member's size and sha256. Says how large
    the bundle will be before writing."""
    from controller.bundle.create import create_bundle

    c = context(ctx)
    result = create_bundle(c.site, c.catalog(), c.catalog_path, models, out.absolute(), directory=directory,
                           ui=operator_ui(quiet=as_json))  # fmt: skip
    emit(result, as_json=as_json, text=_print_created)


def _print_created(result: dict) -> None:
    from controller.cli.console import err

    seconds = sum(result["timings"].values())
    err.print(
        f"[green]bundle written:[/] {result['bundle']} ({result['bytes'] / 1e9:.2f} GB, {result['members']} members, "
        f"{seconds:.0f} s); on the offline box: controller bundle load {Path(result['bundle']).name}",
        highlight=False,
    )


@group.command("load")
def load(
    ctx: typer.Context,
    bundle: Annotated[
        Path, typer.Argument(help="A bundle file or directory from `bundle create`.", show_default=False)
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before setting OFFLINE=true in .env.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Verify a bundle, then load it and set OFFLINE=true (on the offline box).

    Verifies the manifest, every member's sha256 and the free disk first; then docker loads the images, puts
    the snapshots into HF_CACHE_DIR and the catalog next to .env, and sets OFFLINE=true (asks first). Nothing
    is loaded when a check fails; what is already here is skipped, so a second load changes nothing."""
    from controller.bundle.load import load_bundle

    result = load_bundle(
        context(ctx).site, bundle.absolute(), ui=operator_ui(quiet=as_json, yes=yes, nothing_done="nothing was loaded")
    )
    emit(result, as_json=as_json, text=_print_loaded)


def _print_loaded(result: dict) -> None:
    from controller.cli.console import err

    if not result["changed"]:
        err.print("[green]bundle already loaded:[/] nothing changed", highlight=False)
        return
    present = result["already_present"]
    err.print(
        f"[green]bundle loaded:[/] images {', '.join(result['images_loaded']) or '-'} "
        f"({present['images']} already here), {result['model_files_written']} model files "
        f"({present['model_files']} already here)"
        + (f", catalog {result['catalog_written']}" if result["catalog_written"] else "")
        + (f"; set {', '.join(result['env_written'])} in .env" if result["env_written"] else ""),
        highlight=False,
    )
    err.print(f"next: controller up {result['profiles'][0]}", highlight=False, markup=False)


def add_commands(app: typer.Typer) -> None:
    app.add_typer(group, name="bundle")

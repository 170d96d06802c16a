"""What every command module shares: the per-invocation context (site, catalog), the options that
several commands take, and building a Stack from .env. Knows no command and not the app."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from controller.errors import InputError

if TYPE_CHECKING:
    from controller.config.catalog import Catalog
    from controller.config.site import SiteConfig
    from controller.lifecycle.stack import Stack

T = TypeVar("T")


class Strategy(StrEnum):
    """How vLLM is replaced (`switch`, and `upgrade` of the vLLM image)."""

    auto = "auto"
    blue_green = "blue-green"
    recreate = "recreate"


@dataclass(frozen=True)
class Context:
    site: SiteConfig
    catalog_path: Path | None

    def catalog(self) -> Catalog:
        from controller.config.catalog import load_catalog

        return load_catalog(self.catalog_path)


def context(ctx: typer.Context) -> Context:
    return ctx.obj


def resolve_catalog(option: Path | None, site: SiteConfig) -> Path | None:
    """--catalog, else CONTROLLER_CATALOG from .env (relative to the project directory)."""
    from controller.config.env_keys import CONTROLLER_CATALOG
    from controller.config.env_values import merged_values

    if option is not None:
        return option
    configured = merged_values(site.env_file).get(CONTROLLER_CATALOG)
    if not configured:
        return None
    from controller.errors import CatalogError
    from controller.files import expand_home

    path = expand_home(Path(configured), CatalogError, "CONTROLLER_CATALOG")
    return path if path.is_absolute() else site.root / path


def warn_unknown_env_keys(site: SiteConfig) -> None:
    """Every command reads .env: a misspelled key stops it (SettingsError), an unknown one is a warning."""
    from controller.config.env_values import env_key_warnings

    warnings = env_key_warnings(site.env_file)
    if warnings:
        from rich.markup import escape

        from controller.cli.console import ConsoleReporter

        reporter = ConsoleReporter()
        for message in warnings:
            reporter.warn(escape(message))


def finite(value: float | None) -> float | None:
    # click's range check lets nan through (every comparison with nan is false).
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter("must be a finite number")
    return value


# A deadline shorter than a model load can only cause an outage (switch would recreate vLLM, give
# up at once and roll back); longer than a day is a typo.
MIN_LOAD_TIMEOUT_S = 30
MAX_TIMEOUT_S = 86400

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
ModelArg = Annotated[str, typer.Argument(help="Profile name (see `controller models`).", show_default=False)]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=MIN_LOAD_TIMEOUT_S,
        max=MAX_TIMEOUT_S,
        callback=finite,
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
        callback=finite,
        help="Seconds to wait for another controller run to finish (0: do not wait).",
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Start even when the memory plan says it does not fit.")]


def make_stack(ctx: typer.Context, *, quiet: bool = False, load_timeout_s: float | None = None,
               lock_timeout_s: float = 600.0, force: bool = False) -> Stack:  # fmt: skip
    from controller.cli.console import ConsoleReporter
    from controller.config.env_values import merged_values
    from controller.lifecycle.prepare import Options
    from controller.lifecycle.stack import Stack
    from controller.phases import WEIGHTS_LOAD, Deadlines

    c = context(ctx)
    values = merged_values(c.site.env_file)
    origin = f"{c.site.env_file} or the environment"
    # Deadlines: the phase table's defaults, then DEADLINE_<PHASE>_S from .env, then --timeout.
    deadlines = Deadlines().from_env(values, origin)
    deadlines = deadlines.overridden({WEIGHTS_LOAD.name: load_timeout_s}, lambda phase: "--timeout")
    options = Options(deadlines=deadlines, lock_timeout_s=lock_timeout_s, force=force,
                      **switch_settings(values, origin))  # fmt: skip
    stack = Stack(c.site, c.catalog, ConsoleReporter(quiet=quiet), options)
    stack.pending_steps["upgrade"] = _roll_back_upgrade
    return stack


def _roll_back_upgrade(stack: Stack, pending, ctx) -> None:
    """A controller killed mid-upgrade: its data and .env steps (imported only when one is found)."""
    from controller.backup.upgrade_recovery import roll_back_interrupted

    roll_back_interrupted(stack, pending, ctx)


def switch_settings(values: Mapping[str, str], origin: str) -> dict:
    """SWITCH_STRATEGY (auto, blue-green, recreate) and SWITCH_RESERVE_GIB from .env, checked."""
    from controller.config.env_keys import SWITCH_RESERVE_GIB, SWITCH_STRATEGY
    from controller.lifecycle.pair_fit import STRATEGIES

    strategy = values.get(SWITCH_STRATEGY) or "auto"
    if strategy not in STRATEGIES:
        raise InputError(f"{SWITCH_STRATEGY} in {origin}: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    reserve = values.get(SWITCH_RESERVE_GIB) or "2"
    try:
        reserve_gib = float(reserve)
    except ValueError:
        reserve_gib = math.nan
    if not (math.isfinite(reserve_gib) and 0 <= reserve_gib <= 100_000):
        raise InputError(f"{SWITCH_RESERVE_GIB} in {origin}: {reserve!r} is not a number of GiB from 0 to 100000")
    return {"switch_strategy": strategy, "reserve_gib": reserve_gib}


def run_on(stack: Stack, action: Callable[[], T]) -> T:
    """Run a command on the stack, and end its live progress display however it ends."""
    try:
        return action()
    finally:
        stack.reporter.close()

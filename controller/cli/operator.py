"""How the long file commands (bundle, backup, restore) talk to a person on the terminal: the
controller.operator_ui.OperatorUI they share, with rich progress bars and typer's confirmation."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from controller.errors import InputError


def operator_ui(*, quiet: bool, yes: bool = False, nothing_done: str = "nothing was changed"):
    """Messages and progress bars on stderr (none with --json), and the one question: answered by
    --yes, asked on a terminal, refused in a script without --yes."""
    from controller.cli.console import err
    from controller.operator_ui import OperatorUI

    if quiet:
        return OperatorUI(confirm=lambda question: yes)

    @contextmanager
    def progress(description: str, total: int) -> Iterator:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeElapsedColumn()] if total else [SpinnerColumn(),
                   TextColumn("{task.description}"), TimeElapsedColumn()]  # fmt: skip
        with Progress(*columns, console=err.get(), transient=False) as bar:
            task = bar.add_task(description, total=total or None)
            yield lambda n: bar.advance(task, n)

    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise InputError(f"{question} Add --yes to confirm in a script; {nothing_done}")
        return typer.confirm(question)

    return OperatorUI(say=lambda text: err.print(text, markup=False, highlight=False), progress=progress,
                    confirm=confirm)  # fmt: skip

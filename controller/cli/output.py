"""The one place a command's result becomes output: JSON on stdout for scripts (`--json`), or
text for a person. Commands build a result and hand it here with their text renderer."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from controller.cli.console import print_json

R = TypeVar("R")


def emit(result: R, *, as_json: bool, text: Callable[[R], None], json_of: Callable[[R], object] | None = None) -> None:
    """Print `result`: as JSON (`json_of(result)` when the result is not plain data), else `text(result)`."""
    if as_json:
        print_json(json_of(result) if json_of else result)
    else:
        text(result)

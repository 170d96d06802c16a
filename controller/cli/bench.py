"""`controller bench --compare A B` (declared in controller.cli.main): two saved runs found by path or
by name in .controller/bench/, printed side by side or as JSON. Reads only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli.console import print_json
from controller.errors import InputError

if TYPE_CHECKING:
    from controller.bench.results import BenchRun
    from controller.config.settings import SiteConfig

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
    from controller.bench.results import compare_rows

    a, b = (saved_run(site, name) for name in names)
    if as_json:
        print_json({"a": a.as_dict(), "b": b.as_dict()})
        return
    from controller.cli.console import print_bench_compare

    print_bench_compare(*compare_rows(a, b))

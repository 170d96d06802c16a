"""What `controller bench` shows a person: the model-selection table, and two runs side by side."""

from __future__ import annotations

from controller.cli.console import err, make_table, out


def print_bench(run) -> None:
    """The model-selection table of a `controller bench` run (controller.bench.results.BenchRun)."""
    from controller.bench.tables import settings_text, table_rows

    table_ = make_table("", *[m.model for m in run.models], title="controller bench", title_justify="left")
    for label, cells in table_rows(run.models, run.settings):
        table_.add_row(label, *cells)
    out.print(table_)
    out.print(f"settings: {settings_text(run.settings)}", highlight=False, markup=False)
    if any(m.hardware and not m.hardware.get("gpus") for m in run.models):
        out.print("[yellow]note:[/] measured on a CPU, not a GPU", highlight=False)
    if run.json_path:
        err.print(f"saved:   {run.json_path}", highlight=False, markup=False)
    if run.report_path:
        err.print(f"picture: {run.report_path}", highlight=False, markup=False)


def print_bench_compare(headers: list[str], rows: list[tuple[str, list[str]]], notes: list[str]) -> None:
    table_ = make_table("", *headers, title="controller bench --compare", title_justify="left")
    for label, cells in rows:
        table_.add_row(label, *cells)
    out.print(table_)
    for note in notes:
        out.print(note, highlight=False, markup=False)

"""The picture of a `controller bench` run: one self-contained HTML file (inline SVG, no script,
no network) with output throughput and p99 TTFT against concurrency, one line per model, and the
table below them. Geometry is computed here; the template (templates/bench_report.html.j2, shipped
as controller.templates) only places it, with Jinja's HTML autoescaping on."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from controller.bench.results import BenchRun
from controller.bench.tables import hardware_text, settings_text, table_rows

TEMPLATE = "bench_report.html.j2"
WIDTH, HEIGHT = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 20, 50
# Colour-blind-safe (Okabe-Ito), one per model in order.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


@dataclass
class Series:
    name: str
    colour: str
    points: list[tuple[float, float, str]] = field(default_factory=list)  # x, y, label

    @property
    def path(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in self.points)


@dataclass
class Chart:
    title: str
    y_label: str
    series: list[Series]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    slo: tuple[float, str] | None = None
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    right_edge: int = WIDTH - RIGHT
    bottom_edge: int = HEIGHT - BOTTOM


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^n at or above value (the top of a y axis)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= value)


def tick_text(value: float) -> str:
    """12,500 rather than 1.25e+04; 0.25 rather than 0.250."""
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:.3g}"


def _x_scale(levels: list[int]):
    low, high = math.log2(min(levels)), math.log2(max(levels))
    span = (high - low) or 1.0

    def x(level: int) -> float:
        if high == low:
            return (LEFT + WIDTH - RIGHT) / 2
        return LEFT + (math.log2(level) - low) / span * (WIDTH - LEFT - RIGHT)

    return x


def chart(title: str, y_label: str, unit: str, run: BenchRun, value, slo: float | None = None) -> Chart:
    """value(level_result) -> the figure to plot; concurrency on a log2 axis."""
    levels = sorted({r.level for m in run.models for r in m.levels}) or [1]
    x = _x_scale(levels)
    figures = [value(r) for m in run.models for r in m.levels]
    top = nice_ceiling(max([*figures, slo or 0, 0]) * 1.05)

    def y(v: float) -> float:
        return TOP + (1 - v / top) * (HEIGHT - TOP - BOTTOM)

    series = []
    for i, model in enumerate(run.models):
        s = Series(model.model, COLOURS[i % len(COLOURS)])
        for r in sorted(model.levels, key=lambda r: r.level):
            s.points.append((x(r.level), y(value(r)), f"{model.model}, concurrency {r.level}: {value(r):,.1f} {unit}"))
        series.append(s)
    y_ticks = [(y(top * k / 4), tick_text(top * k / 4)) for k in range(5)]
    x_ticks = [(x(level), str(level)) for level in levels]
    return Chart(title, y_label, series, x_ticks, y_ticks,
                 slo=(y(slo), f"SLO {tick_text(slo)} {unit}") if slo is not None else None)  # fmt: skip


def report_context(run: BenchRun) -> dict:
    slo = run.settings.slo_ttft_ms
    charts = [
        chart("Output throughput", "output tokens/s", "tok/s", run, lambda r: r.output_throughput),
        chart("Time to first token, p99", "p99 TTFT (ms)", "ms", run, lambda r: r.ttft_p99_ms, slo=slo),
    ]
    hardware = sorted({hardware_text(m.hardware) for m in run.models if m.hardware})
    on_cpu = any(m.hardware and not m.hardware.get("gpus") for m in run.models)
    return {
        "run": run,
        "charts": charts,
        "headers": [m.model for m in run.models],
        "rows": table_rows(run.models, run.settings),
        "settings": settings_text(run.settings),
        "hardware": hardware,
        "on_cpu": on_cpu,
        "colours": {m.model: COLOURS[i % len(COLOURS)] for i, m in enumerate(run.models)},
    }


def render_report(run: BenchRun) -> str:
    import jinja2

    from controller.deploy.compose_file import load_template

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load_template),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE).render(**report_context(run))

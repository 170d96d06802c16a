"""`controller bench`'s figures: vLLM's saved JSON result read into per-level figures, the
highest concurrency that meets a TTFT SLO, one model's measurement, and a whole run as saved in
.controller/bench/. Pure: controller.bench.run measures, controller.bench.tables and
controller.bench.report show it."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ValidationError

from controller.bench.settings import BenchSettings
from controller.errors import InputError, RuntimeFailure

# The format version of a saved run (.controller/bench/*.json).
RESULT_VERSION = 1
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

"""`controller bench`'s settings (levels, lengths, prompts, the TTFT SLO), checked as input, and
the argument list of vLLM's own benchmark (`vllm bench serve`) for one level. Pure."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controller.errors import InputError
from controller.runtime.bench_exec import result_filename

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
# Percentiles and metrics asked of vLLM; the parser reads exactly these keys back.
PERCENTILES = (50, 99)
PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2el")


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

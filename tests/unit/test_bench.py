"""`controller bench`, the pure part: settings, vLLM's argument list, its saved result, the SLO
concurrency, the table and the comparison of two saved runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.bench.results import (
    BenchRun,
    LevelResult,
    ModelBench,
    max_concurrency_under_slo,
    parse_result,
    parse_result_text,
    single_stream_tok_s,
)
from controller.bench.settings import BenchSettings, bench_argv, bench_settings, check_fits, parse_levels
from controller.bench.tables import compare_rows, hardware_text, table_rows
from controller.errors import InputError, RuntimeFailure
from tests.unit.fakes import vllm_result

DATA = Path(__file__).parent / "data"


def test_a_saved_vllm_result_becomes_one_level():
    # Every key as vLLM 0.32's `bench serve --save-result` writes it (vllm/benchmarks/serve.py:
    # main_async's setup keys, `benchmark`'s result dict, process_one_metric's p{N}_{metric}_ms).
    text = (DATA / "vllm-bench-serve-result.json").read_text()
    result = parse_result_text(text, 4)
    assert result == LevelResult(
        level=4, num_prompts=16, completed=16, failed=0, duration_s=9.412, request_throughput=1.6999,
        output_throughput=27.199, total_token_throughput=81.597, ttft_p50_ms=176.5, ttft_p99_ms=241.9,
        tpot_p50_ms=140.8, tpot_p99_ms=149.6, itl_p50_ms=139.9, itl_p99_ms=171.4, e2el_p50_ms=2340.0,
        e2el_p99_ms=2398.8,
    )  # fmt: skip
    assert result.ok


def test_a_result_of_another_shape_names_what_is_missing():
    data = vllm_result(4)
    del data["p99_ttft_ms"]
    with pytest.raises(RuntimeFailure, match="lacks p99_ttft_ms"):
        parse_result(data, 4)
    with pytest.raises(RuntimeFailure, match="concurrency 8, expected 4"):
        parse_result(vllm_result(8), 4)
    with pytest.raises(RuntimeFailure, match="not a number"):
        parse_result({**vllm_result(4), "output_throughput": "fast"}, 4)
    with pytest.raises(RuntimeFailure, match="not JSON"):
        parse_result_text("Traceback (most recent call last)", 4)


def _levels(*ttft_p99: float, failed_at: int | None = None) -> list[LevelResult]:
    levels = [1, 4, 16, 64][: len(ttft_p99)]
    return [parse_result(vllm_result(lv, 64, ttft_p99_ms=t, failed=1 if lv == failed_at else 0), lv)
            for lv, t in zip(levels, ttft_p99, strict=True)]  # fmt: skip


def test_slo_concurrency_is_the_highest_level_that_and_every_lower_level_meets():
    assert max_concurrency_under_slo(_levels(100, 500, 1900, 4000), 2000) == 16
    assert max_concurrency_under_slo(_levels(100, 500, 1900, 1999), 2000) == 64
    assert max_concurrency_under_slo(_levels(100, 500, 1900, 2000), 2000) == 64  # "stays under": at most
    # A noisy level above a miss does not count: the concurrency must hold all the way up.
    assert max_concurrency_under_slo(_levels(100, 2500, 1900, 1000), 2000) == 1
    assert max_concurrency_under_slo(_levels(2100, 500), 2000) is None
    # A level with a failed request does not meet the SLO, however fast its first tokens were.
    assert max_concurrency_under_slo(_levels(100, 500, 900, failed_at=16), 2000) == 4


def test_single_stream_speed_is_level_one_output_throughput():
    assert single_stream_tok_s(_levels(100, 500)) == 20.0
    assert single_stream_tok_s(_levels(100, 500)[1:]) is None


def test_the_argument_list_carries_the_settings_and_never_the_api_key():
    settings = BenchSettings(levels=(1, 4), input_len=32, output_len=16)
    argv = bench_argv(settings, 4, served_model_name="tiny-a", tokenizer="/models/tiny-a", result_dir="/tmp/r")

    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert (value("--host"), value("--port"), value("--model"), value("--tokenizer")) == (
        "127.0.0.1", "8000", "tiny-a", "/models/tiny-a")  # fmt: skip
    assert value("--dataset-name") == "random"
    assert (value("--random-input-len"), value("--random-output-len"), value("--max-concurrency")) == ("32", "16", "4")
    assert value("--num-prompts") == "16"  # 4 per stream
    assert value("--metric-percentiles") == "50,99" and "ttft" in value("--percentile-metrics")
    assert "--save-result" in argv and value("--result-filename") == "concurrency-4.json"
    assert not any("key" in a.lower() or "authorization" in a.lower() or a == "--header" for a in argv)


def test_the_launcher_takes_the_key_from_the_container_environment():
    from controller.runtime.bench_exec import LAUNCHER

    assert 'os.environ.get("VLLM_API_KEY"' in LAUNCHER and "OPENAI_API_KEY" in LAUNCHER
    assert "add_cli_args" in LAUNCHER and "vllm.benchmarks.serve" in LAUNCHER
    compile(LAUNCHER, "launcher", "exec")


@pytest.mark.parametrize(
    ("values", "option"),
    [
        ({"levels": (0, 4)}, "--levels"),
        ({"levels": (1, 5000)}, "--levels"),
        ({"slo_ttft_ms": -1.0}, "--slo-ttft-ms"),
        ({"slo_ttft_ms": float("nan")}, "--slo-ttft-ms"),
        ({"input_len": 0}, "--input-len"),
        ({"output_len": -5}, "--output-len"),
        ({"prompts": 0}, "--prompts"),
        ({"prompts": 8, "levels": (1, 16)}, "--prompts"),
    ],
)
def test_bad_settings_name_their_option(values, option):
    with pytest.raises(InputError) as caught:
        bench_settings(**values)
    assert option in caught.value.message and caught.value.exit_code == 2


def test_levels_are_parsed_sorted_and_deduplicated():
    assert bench_settings(levels=parse_levels("16, 1,4,4")).levels == (1, 4, 16)
    for text in ("", "1,,4", "one", "1.5", "4;8"):
        with pytest.raises(InputError, match="--levels"):
            parse_levels(text)


def test_a_prompt_and_its_answer_must_fit_the_context():
    check_fits(BenchSettings(input_len=200, output_len=56), "tiny-b", 256)
    with pytest.raises(InputError, match="above the context of 'tiny-b' \\(256 tokens\\)"):
        check_fits(BenchSettings(input_len=200, output_len=57), "tiny-b", 256)


def _model(name: str, factor: float = 1.0, **fields) -> ModelBench:
    levels = [parse_result(vllm_result(lv, 16, ttft_p99_ms=300 * lv * factor), lv) for lv in (1, 4, 16)]
    return ModelBench(name, name, levels=levels, load_time_s=31.0, weights_planned_gib=0.001, kv_tokens=2048,
                      kv_tokens_planned=2048, max_model_len=512, image="img", vllm_version="0.32.0",
                      hardware={"cpu": "Fake CPU", "cpu_count": 2, "memory_gib": 24.0, "gpus": []},
                      **fields).finish(2000)  # fmt: skip


def test_the_table_has_a_figure_with_its_unit_in_every_cell():
    settings = BenchSettings(levels=(1, 4, 16))
    rows = dict(table_rows([_model("tiny-a"), _model("tiny-b", 2.0)], settings))
    assert rows["speed: single-stream output"] == ["20.0 tok/s", "20.0 tok/s"]
    assert rows["concurrency: max with p99 TTFT <= 2000 ms"] == ["4", "1"]
    assert rows["c=16 TTFT p50 / p99"] == ["2,400 / 4,800 ms", "4,800 / 9,600 ms"]
    assert rows["c=4 output throughput"] == ["80.0 tok/s", "80.0 tok/s"]
    assert rows["start time: load (start to healthy)"] == ["31.0 s", "31.0 s"]
    assert rows["KV cache (vLLM / planned)"] == ["2,048 / 2,048 tokens"] * 2
    assert rows["memory: weights (vLLM / planned)"] == ["- / 0.00 GiB"] * 2
    assert rows["hardware"] == ["CPU: Fake CPU, 2 cores, 24 GiB RAM (no GPU)"] * 2
    assert all(cell not in ("", None) for cells in rows.values() for cell in cells)


def test_hardware_names_the_gpu_its_memory_and_driver():
    gpu = {"name": "NVIDIA GeForce RTX 3060", "memory_mib": 12288, "driver": "550.54.14"}
    assert hardware_text({"gpus": [gpu]}) == "GPU: NVIDIA GeForce RTX 3060, 12.0 GiB, driver 550.54.14"
    assert hardware_text({"gpus": [gpu, gpu]}).startswith("GPU: 2 x NVIDIA GeForce RTX 3060")


def _run(models: list[ModelBench], **settings) -> BenchRun:
    run = BenchRun("2026-11-25T10:00:00+00:00", "2026-11-25T10:05:00+00:00", BenchSettings(**settings), models,
                   original_model="tiny-a")  # fmt: skip
    return BenchRun.from_dict(json.loads(json.dumps(run.as_dict())), "test")  # through JSON, as saved


def test_compare_puts_two_saved_runs_side_by_side():
    a = _run([_model("tiny-a"), _model("tiny-b")], levels=(1, 4, 16))
    b = _run([_model("tiny-a", 0.5)], levels=(1, 4, 16), slo_ttft_ms=1000)
    headers, rows, notes = compare_rows(a, b)
    assert headers == ["tiny-a (A)", "tiny-a (B)", "tiny-b (A)", "tiny-b (B)"]
    table = dict(rows)
    assert table["c=16 TTFT p50 / p99"] == ["2,400 / 4,800 ms", "1,200 / 2,400 ms", "2,400 / 4,800 ms", "-"]
    assert table["concurrency: max with p99 TTFT <= 2000 ms"] == ["4", "-", "4", "-"]
    assert table["concurrency: max with p99 TTFT <= 1000 ms"] == ["-", "4", "-", "-"]
    assert any("different settings" in note for note in notes)


def test_a_file_that_is_not_a_saved_run_is_refused():
    with pytest.raises(InputError, match="not a saved `controller bench` run"):
        BenchRun.from_dict({"kind": "something"}, "x.json")
    with pytest.raises(InputError, match="damaged"):
        BenchRun.from_dict({"kind": "controller-bench", "version": 1, "started": "s"}, "x.json")


def test_the_weights_vllm_logged_are_read_from_its_start_up_log():
    from controller.runtime.vllm_log import weights_gib

    # vLLM 0.32 v1/worker/gpu_model_runner.py: "Model loading took %s GiB memory and %.6f seconds".
    log = "INFO 11-25 10:00:01 [gpu_model_runner.py:5150] Model loading took 5.6234 GiB memory and 12.5 seconds\n"
    assert weights_gib(log) == pytest.approx(5.6234)
    assert weights_gib("INFO Loading model weights took 3.3 GB") == pytest.approx(3.3e9 / 1024**3)
    assert weights_gib("INFO CPU KV cache size: 32,768 tokens") is None

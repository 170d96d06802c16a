"""`controller bench` on the real stack: vLLM's own benchmark inside the vLLM container for two
models in turn, a figure in every cell of the table, the saved run and its picture, the original
model serving again afterwards, and after a Ctrl-C in the middle of a multi-model run.

Small on purpose (the tiny CPU models, levels 1 and 2, 32 tokens in and 16 out, 4 prompts per
level): about a minute per model on a 2-core CPU, most of it the switch and importing vLLM. Both tests run
on the suite's shared stack (conftest.py `shared_site`), which serves tiny-a when each starts.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import docker
import pytest

from controller.bench.results import BenchRun
from controller.bench.tables import table_rows
from controller.errors import NotReady
from controller.phases import wait_for
from tests.integration import harness
from tests.integration.webui_api import assert_serving

pytestmark = [pytest.mark.integration, pytest.mark.stack]

SMALL = ["--levels", "1,2", "--input-len", "32", "--output-len", "16", "--prompts", "4"]
# For the interrupt: a benchmark that cannot end on its own while the test waits for it (20,000
# prompts of 64 tokens, hours on a CPU), so the Ctrl-C always lands in the middle of it, on any
# machine. The test sends it as soon as the benchmark process is seen.
ENDLESS = ["--levels", "1", "--input-len", "32", "--output-len", "64", "--prompts", "20000"]


def _up(site) -> None:
    result = site.controller("up", "tiny-a")
    assert result.returncode == 0, result.stderr


def test_bench_two_models_fills_the_table_saves_the_run_and_switches_back(shared_site):
    _up(shared_site)
    started = time.monotonic()
    result = shared_site.controller("bench", "tiny-a", "tiny-b", *SMALL, "--json", timeout=1800)
    harness.TIMINGS["bench: tiny-a + tiny-b, levels 1,2"] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    run = BenchRun.from_dict(data, "stdout")
    assert [m.model for m in run.models] == ["tiny-a", "tiny-b"] and run.original_model == "tiny-a"

    for model in run.models:
        assert [r.level for r in model.levels] == [1, 2]
        for level in model.levels:
            assert (level.completed, level.failed) == (4, 0), level
            assert level.output_throughput > 0 and level.ttft_p99_ms > 0 and level.tpot_p50_ms > 0
        assert model.single_stream_tok_s and model.single_stream_tok_s > 0
        assert model.load_time_s and model.load_time_s > 0
        assert model.kv_tokens and model.kv_tokens_planned
        assert model.vllm_version == "0.32.0" and model.image.startswith("controller-test/vllm-cpu")
        assert model.hardware.get("cpu_count") and not model.hardware.get("gpus")
        harness.TIMINGS[f"bench: {model.model} vLLM bench serve (both levels)"] = model.seconds

    # A figure in every cell (the vLLM weights figure is absent on CPU: the planned one is shown).
    for label, cells in table_rows(run.models, run.settings):
        for cell in cells:
            assert re.search(r"\d", cell), f"row {label!r} has a cell without a figure: {cell!r}"

    saved, picture = Path(data["json_path"]), Path(data["report_path"])
    assert saved.parent == shared_site.site.state_dir / "bench" and saved.is_file() and picture.is_file()
    assert json.loads(saved.read_text())["models"][1]["model"] == "tiny-b"
    html = picture.read_text()
    assert html.count("<svg") == 2 and "tiny-a" in html and "tiny-b" in html

    # The API key went nowhere: not into the arguments, the saved run or the output.
    key = shared_site.settings().vllm_api_key.get_secret_value()
    assert key not in result.stdout + result.stderr + saved.read_text() + html

    status = json.loads(shared_site.controller("status", "--json").stdout)
    assert status["model"] == "tiny-a"
    assert_serving(shared_site, "tiny-a")

    # --compare reads the saved run back (the terminal table itself: tests/unit/test_bench_sequence.py).
    compared = shared_site.controller("bench", "--compare", saved.stem, str(saved))
    assert compared.returncode == 0, compared.stderr
    assert "tiny-b (A)" in compared.stdout and "tiny-b (B)" in compared.stdout and "tok/s" in compared.stdout


def _lock_owner(site) -> str:
    owner = site.site.state_dir / "controller.lock.owner"
    try:
        text = owner.read_text()
    except FileNotFoundError:  # between two locked steps (the switch, then the bench) it is gone
        text = ""
    if "bench tiny-b" not in text:
        raise NotReady("the bench is not measuring tiny-b yet")
    return text


def _processes(container) -> list:
    try:
        return harness.container_processes(container).get("Processes") or []
    except docker.errors.APIError:  # listed, then stopped: the old instance of a blue-green switch
        return []


def _benchmark_processes(docker_client, site) -> list:
    found = [
        process
        for container in docker_client.containers.list(filters={"label": f"{harness.PROJECT_LABEL}={site.project}"})
        for process in _processes(container)
        if "vllm.benchmarks.serve" in " ".join(map(str, process))
    ]
    if not found:
        raise NotReady("no benchmark process in the vLLM container yet")
    return found


def test_interrupting_a_multi_model_bench_restores_the_original_model(shared_site, docker_client):
    _up(shared_site)
    saved_before = sorted((shared_site.site.state_dir / "bench").glob("*.json"))
    bench = harness.controller_process(shared_site.root, "bench", "tiny-b", "tiny-a", *ENDLESS)
    try:
        # The lock is held while a model is measured: tiny-b serves and its benchmark runs.
        wait_for("bench measures tiny-b", lambda: _lock_owner(shared_site), deadline_s=600, interval_s=0.2)
        wait_for("vLLM's benchmark running in the container", lambda: _benchmark_processes(docker_client, shared_site),
                 deadline_s=300, interval_s=0.2)  # fmt: skip
        bench.send_signal(signal.SIGINT)
        out, err = bench.communicate(timeout=900)
    except BaseException:  # the benchmark cannot end by itself: never leave it running for hours
        bench.kill()
        bench.communicate()
        raise
    assert bench.returncode == 1, err
    assert "interrupted" in err and "'tiny-a' is serving again" in err, err
    status = json.loads(shared_site.controller("status", "--json").stdout)
    assert status["model"] == "tiny-a" and status["pending"] is None
    assert_serving(shared_site, "tiny-a")
    # An interrupted run saves nothing.
    assert sorted((shared_site.site.state_dir / "bench").glob("*.json")) == saved_before
    # No benchmark left running against the restored model.
    with pytest.raises(NotReady):
        _benchmark_processes(docker_client, shared_site)

"""`controller bench`, the sequence, against the in-memory target (tests/unit/fakes.py): which
models it measures, that it switches back to the model that served before (after success, a
failure and Ctrl-C), that bad input switches nothing, and what it saves."""

from __future__ import annotations

import json

import pytest

from controller.bench import run as bench_run
from controller.bench.report import render_report
from controller.bench.run import bench
from controller.bench.settings import BenchSettings
from controller.errors import CatalogError, InputError, PreflightError, RuntimeFailure, SwitchFailed
from controller.journal import JournalStore
from tests.unit.fake_stack import make_stack
from tests.unit.fakes import FakeTarget

SMALL = BenchSettings(levels=(1, 2), input_len=32, output_len=16, prompts=4)


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget(broken={"tiny-broken"}, kv_cache_tokens=32768)


@pytest.fixture
def stack(site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    target.calls.clear()
    return stack


def _switches(target: FakeTarget) -> list[str]:
    return [c for c in target.calls if c.startswith(("recreate", "bench tiny", "wait vllm"))]


def test_bench_without_models_measures_the_running_one_and_switches_nothing(stack, target, site):
    # The fake target waits in no phase; the journal's `up` gets the phases a real one times.
    phases = {"compose up": 3.0, "vllm started": 1.0, "weights load": 20.0, "engine ready": 2.5, "admin": 4.0}
    JournalStore(site.state_dir).update(lambda journal: journal.history[-1].phases.update(phases))
    run = bench(stack, [], SMALL)
    assert _switches(target) == ["bench tiny-a 1,2"]
    [model] = run.models
    assert model.model == "tiny-a" and [r.level for r in model.levels] == [1, 2]
    assert model.single_stream_tok_s == 20.0 and model.max_concurrency_under_slo == 2
    # Load time from the journal's `up`: container start to healthy; KV from its check.
    assert model.load_time_s == 23.5 and model.load_time_source.startswith("the journal: `up`")
    assert model.kv_tokens == 32768 and model.kv_tokens_planned is not None
    assert model.image and model.vllm_version == "0.32.0" and model.hardware["cpu"] == "Fake CPU"
    assert model.switch is None


def test_bench_of_two_models_switches_to_each_and_back(stack, target, site):
    run = bench(stack, ["tiny-b", "tiny-a"], SMALL)
    assert _switches(target) == [
        "recreate tiny-b", "wait vllm tiny-b", "bench tiny-b 1,2",
        "recreate tiny-a", "wait vllm tiny-a", "bench tiny-a 1,2",
    ]  # fmt: skip
    assert [m.model for m in run.models] == ["tiny-b", "tiny-a"]
    assert run.models[0].load_time_s == 1.0 and run.models[0].switch["previous"] == "tiny-a"
    assert target.running == "tiny-a" and JournalStore(site.state_dir).load().active.profile == "tiny-a"


def test_bench_of_another_model_switches_back_at_the_end(stack, target, site):
    bench(stack, ["tiny-b"], SMALL)
    assert _switches(target)[-3:] == ["bench tiny-b 1,2", "recreate tiny-a", "wait vllm tiny-a"]
    assert target.running == "tiny-a"


def test_a_failed_benchmark_switches_back_and_reports_the_failure(stack, target, site):
    target.bench_broken = {"tiny-b"}
    with pytest.raises(RuntimeFailure, match="benchmark failed for tiny-b"):
        bench(stack, ["tiny-b"], SMALL)
    assert _switches(target)[-2:] == ["recreate tiny-a", "wait vllm tiny-a"]
    assert target.running == "tiny-a"
    assert not (site.state_dir / "bench").exists()  # nothing saved from a failed run


def test_ctrl_c_during_the_second_model_switches_back_to_the_original(stack, target, site):
    target.bench_interrupt = {"tiny-b"}
    with pytest.raises(RuntimeFailure, match="interrupted; 'tiny-a' is serving again"):
        bench(stack, ["tiny-a", "tiny-b"], SMALL)
    assert target.calls[-2:] == ["webui default tiny-a legacy", "chat tiny-a as ui"]
    assert target.running == "tiny-a" and target.serving == "tiny-a"
    assert JournalStore(site.state_dir).load().active.profile == "tiny-a"


def test_ctrl_c_while_switching_to_a_model_rolls_back_and_stays_on_the_original(stack, target, site):
    target.interrupt_on = {"tiny-b"}
    with pytest.raises(SwitchFailed, match="interrupted"):
        bench(stack, ["tiny-b"], SMALL)
    assert target.running == "tiny-a" and not any(c.startswith("bench ") for c in target.calls)


def test_a_model_that_does_not_start_is_rolled_back_and_the_run_ends(stack, target, site):
    with pytest.raises(SwitchFailed, match="rolled back"):
        bench(stack, ["tiny-broken", "tiny-b"], SMALL)
    assert target.running == "tiny-a" and not any(c.startswith("bench ") for c in target.calls)


def test_a_failed_switch_back_says_so_and_keeps_the_cause(stack, target, site, monkeypatch):
    target.bench_broken = {"tiny-b"}
    original = bench_run.switch

    def switch(stack, model, strategy=None):
        if model == "tiny-a":
            raise SwitchFailed("tiny-a did not start")
        return original(stack, model, strategy)

    monkeypatch.setattr(bench_run, "switch", switch)
    with pytest.raises(SwitchFailed, match="switching back to 'tiny-a' after the failed benchmark failed") as caught:
        bench(stack, ["tiny-b"], SMALL)
    assert isinstance(caught.value.__cause__, RuntimeFailure)


@pytest.mark.parametrize(
    ("models", "settings", "error", "text"),
    [
        (["nope"], SMALL, CatalogError, "nope"),
        (["tiny-b", "nope"], SMALL, CatalogError, "nope"),
        (["tiny-b"], BenchSettings(levels=(1,), input_len=2000, output_len=100), InputError, "context of 'tiny-b'"),
    ],
)
def test_bad_input_switches_nothing(stack, target, site, models, settings, error, text):
    with pytest.raises(error, match=text) as caught:
        bench(stack, models, settings)
    assert caught.value.exit_code == 2
    assert target.calls == [] and target.running == "tiny-a"


def test_no_running_stack_is_bad_input(site, target):
    stack = make_stack(site, target)
    with pytest.raises(PreflightError, match="no running stack to benchmark") as caught:
        bench(stack, ["tiny-a"], SMALL)
    assert caught.value.exit_code == 2 and not any(c.startswith(("bench", "recreate")) for c in target.calls)


def test_every_run_is_saved_with_its_picture(stack, target, site):
    run = bench(stack, ["tiny-b"], SMALL)
    saved = json.loads((site.state_dir / "bench").joinpath(run.json_path.rsplit("/", 1)[1]).read_text())
    assert saved["kind"] == "controller-bench" and saved["settings"]["levels"] == [1, 2]
    assert saved["models"][0]["levels"][1]["ttft_p99_ms"] == 200.0
    assert saved["original_model"] == "tiny-a" and saved["report_path"] == run.report_path
    html = open(run.report_path, encoding="utf-8").read()
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") == 2 and "<polyline" in html
    assert "tiny-b" in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # Two runs in the same second get two files.
    again = bench(stack, ["tiny-b"], SMALL)
    assert again.json_path != run.json_path


def test_the_report_escapes_names_and_shows_the_slo_line(stack, target):
    run = bench(stack, [], SMALL)
    run.models[0].model = "<b>evil</b>"
    html = render_report(run)
    assert "<b>evil</b>" not in html and "&lt;b&gt;evil&lt;/b&gt;" in html
    assert 'class="slo"' in html and "SLO 2,000 ms" in html
    assert "from a CPU" in html


# ----- the command line -----------------------------------------------------------------------


BAD = {
    "level_zero": (["bench", "--levels", "0,4"], "--levels"),
    "level_word": (["bench", "--levels", "one"], "--levels"),
    "slo_negative": (["bench", "--slo-ttft-ms", "-1"], "--slo-ttft-ms"),
    "slo_nan": (["bench", "--slo-ttft-ms", "nan"], "--slo-ttft-ms"),
    "input_len_zero": (["bench", "--input-len", "0"], "--input-len"),
    "prompts_below_level": (["bench", "--levels", "1,16", "--prompts", "4"], "--prompts"),
    "unknown_model": (["bench", "nope"], "nope"),
    "compare_missing": (["bench", "--compare", "a", "b"], "a"),
    "compare_with_model": (["bench", "deepseek-1.5b", "--compare", "a", "b"], "--compare"),
}


@pytest.mark.parametrize(("args", "named"), BAD.values(), ids=BAD.keys())
def test_cli_bad_bench_input_exits_2_before_anything(project, args, named):
    project.refused(*args, names=[named])


def test_cli_no_running_stack_exits_2(project, monkeypatch):
    from controller.lifecycle.stack import Stack

    monkeypatch.setattr(Stack, "target", lambda self, settings: FakeTarget())
    result = project.refused("bench", names=["no running stack"])
    assert "controller up" in result.stderr


def test_cli_prints_the_table_and_the_paths_and_compares_two_runs(project, monkeypatch, site, target):
    stack = make_stack(site, target)
    stack.up("tiny-a")
    original = bench_run.bench
    monkeypatch.setattr(bench_run, "bench", lambda _stack, models, settings: original(stack, models, SMALL))
    first = project.run("bench")
    assert first.code == 0, first.stderr
    assert "speed: single-stream output" in first.stdout and "20.0 tok/s" in first.stdout
    assert "saved:" in first.stderr and "picture:" in first.stderr
    runs = sorted((site.state_dir / "bench").glob("*.json"))
    as_json = project.run("bench", "--json")
    data = json.loads(as_json.stdout)
    assert data["models"][0]["levels"][0]["level"] == 1
    runs = sorted((site.state_dir / "bench").glob("*.json"))
    compared = project.run("bench", "--compare", str(runs[0]), str(runs[-1]))
    assert compared.code == 0, compared.stderr
    assert "tiny-a (A)" in compared.stdout and "tiny-a (B)" in compared.stdout

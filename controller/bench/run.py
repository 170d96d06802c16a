"""`controller bench`: the sequence. Measure the running model, or each named model in turn
(switching to it with the normal `switch`), with vLLM's own benchmark inside the vLLM container;
save the run and its picture; and switch back to the model that served before, also after a
failure or Ctrl-C.

The figures, the argument list and the table are controller.bench.results (pure); the picture is
controller.bench.report; Docker is reached only through the target.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from controller.bench.results import BenchRun, ModelBench, parse_result_text
from controller.bench.settings import BenchSettings, bench_argv, check_fits
from controller.config.local_model import local_weights_bytes
from controller.config.profile import Profile
from controller.config.settings import read_settings
from controller.errors import ControllerError, PreflightError, RuntimeFailure, SwitchFailed
from controller.files import write_atomic
from controller.journal import Journal, now_iso
from controller.lifecycle.stack import Stack
from controller.lifecycle.switch_command import switch
from controller.phases import BENCHMARK, ENGINE_READY, VLLM_STARTED, WEIGHTS_LOAD
from controller.planner.engine import GIB
from controller.planner.model_memory import weight_bytes
from controller.runtime.bench_exec import RESULT_DIR
from controller.runtime.target import Target

# What "load time" means in the table: container start to /health 200, as `up` and `switch` time it.
LOAD_PHASES = (VLLM_STARTED.name, WEIGHTS_LOAD.name, ENGINE_READY.name)


def bench(stack: Stack, models: list[str], settings: BenchSettings) -> BenchRun:
    # Every check on the input comes first: a bad model or setting switches nothing.
    profiles = [stack.catalog.get(name) for name in dict.fromkeys(models)]
    for profile in profiles:
        check_fits(settings, profile.name, profile.max_model_len)
    target = stack.target(read_settings(stack.site).settings)
    original = target.running_profile()
    if original is None:
        raise PreflightError(
            "no running stack to benchmark",
            hint="start one with `controller up MODEL`, then run `controller bench`",
        )
    if not profiles:
        profiles = [_running_profile(stack, original)]
        check_fits(settings, original, profiles[0].max_model_len)

    started, run_id = now_iso(), uuid.uuid4().hex[:12]
    measured: list[ModelBench] = []
    try:
        for profile in profiles:
            switched = None
            if target.running_profile() != profile.name:
                switched = switch(stack, profile.name)
            measured.append(_bench_one(stack, profile, settings, target, switched, f"{RESULT_DIR}/{run_id}"))
        # Saved before switching back: a failed switch-back does not lose the figures.
        run = BenchRun(started, now_iso(), settings, measured, original_model=original)
        _save(stack, run)
    except BaseException as failure:
        _switch_back(stack, target, original, failure)
        if isinstance(failure, KeyboardInterrupt):
            raise RuntimeFailure(f"the benchmark was interrupted; '{original}' is serving again") from None
        raise
    _switch_back(stack, target, original, None)
    return run


def _running_profile(stack: Stack, name: str) -> Profile:
    try:
        return stack.catalog.get(name)
    except ControllerError:
        raise PreflightError(
            f"the running model '{name}' is not in the catalog, so it cannot be benchmarked",
            hint="name a model from `controller models`: `controller bench MODEL`",
        ) from None


def _bench_one(stack: Stack, profile: Profile, settings: BenchSettings, target: Target, switched: dict | None,
               result_dir: str) -> ModelBench:  # fmt: skip
    runner = stack.runner().child(f"{profile.name}: ")
    # Held while measuring: no other controller run may switch the model under the benchmark.
    with stack.locked(f"bench {profile.name}"):
        running = target.running_profile()
        if running != profile.name:
            raise RuntimeFailure(
                f"'{running or 'nothing'}' serves instead of '{profile.name}': another controller run changed "
                "the model during the benchmark"
            )
        facts = target.bench_facts()
        runs = [
            bench_argv(settings, level, served_model_name=profile.served_model_name,
                       tokenizer=profile.container_model, result_dir=f"{result_dir}/{profile.name}")
            for level in settings.levels
        ]  # fmt: skip
        start = time.monotonic()
        texts = runner.run(
            BENCHMARK,
            lambda: target.bench_serve(runs, result_dir=f"{result_dir}/{profile.name}",
                                       timeout_s=runner.deadlines[BENCHMARK]),
        )  # fmt: skip
        seconds = round(time.monotonic() - start, 2)
        journal = stack.store.load()
    levels = [parse_result_text(text, level) for text, level in zip(texts, settings.levels, strict=True)]
    load_time, load_source = _load_time(profile.name, switched, journal)
    kv = journal.active.kv_tokens if journal.active and journal.active.profile == profile.name else None
    weights_planned = local_weights_bytes(profile) or weight_bytes(profile)
    result = ModelBench(
        model=profile.name,
        served_model_name=profile.served_model_name,
        levels=levels,
        load_time_s=load_time,
        load_time_source=load_source,
        weights_gib=facts.get("weights_gib"),
        weights_planned_gib=round(weights_planned / GIB, 3),
        kv_tokens=(kv or {}).get("logged") or facts.get("kv_cache_tokens"),
        kv_tokens_planned=(kv or {}).get("planned"),
        max_model_len=profile.max_model_len,
        image=facts.get("image"),
        vllm_version=facts.get("vllm_version"),
        hardware=facts.get("hardware") or {},
        bench_argv=runs,
        switch=_switch_summary(switched),
        seconds=seconds,
    )
    return result.finish(settings.slo_ttft_ms)


def _save(stack: Stack, run: BenchRun) -> None:
    """`.controller/bench/<timestamp>.json` and the picture next to it, as `.html`."""
    from controller.bench.report import render_report

    directory = stack.site.state_dir / "bench"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path, n = directory / f"{stamp}.json", 1
    while path.exists() or path.with_suffix(".html").exists():
        n += 1
        path = directory / f"{stamp}-{n}.json"
    run.json_path, run.report_path = str(path), str(path.with_suffix(".html"))
    write_atomic(Path(run.report_path), render_report(run))
    write_atomic(path, json.dumps(run.as_dict(), indent=2, sort_keys=True) + "\n")


def _switch_back(stack: Stack, target: Target, original: str, failure: BaseException | None) -> None:
    if target.running_profile() == original:
        return
    why = "after the benchmark" if failure is None else "after the interrupted benchmark" \
        if isinstance(failure, KeyboardInterrupt) else "after the failed benchmark"  # fmt: skip
    stack.reporter.warn(f"switching back to '{original}' {why}")
    try:
        switch(stack, original)
    except ControllerError as exc:
        raise SwitchFailed(
            f"switching back to '{original}' {why} failed: {exc.message}",
            hint=exc.hint or f"run `controller switch {original}`",
            details=list(exc.details),
        ) from failure


def _load_time(name: str, switched: dict | None, journal: Journal) -> tuple[float | None, str | None]:
    """Container start to healthy: from this run's switch, else from the journal's last start."""
    load = ((switched or {}).get("vllm") or {}).get("load_time_s")
    if load is not None:
        return load, "this run's switch (vLLM container start to /health 200)"
    for event in reversed(journal.history):
        if event.profile == name and event.outcome == "ok" and event.action in ("up", "switch"):
            phases = [event.phases[p] for p in LOAD_PHASES if p in event.phases]
            if phases:
                return round(sum(phases), 2), f"the journal: `{event.action}` finished {event.finished}"
    return None, None


def _switch_summary(switched: dict | None) -> dict | None:
    if not switched:
        return None
    keep = ("previous", "strategy", "total_s", "downtime_s", "noop")
    return {key: switched[key] for key in keep if key in switched}

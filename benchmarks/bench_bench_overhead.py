"""Benchmark: `controller bench` against running vLLM's `vllm bench serve` by hand with the same
arguments, against the same server, alternating, 3 rounds (issue 15, "Measure").

Starts tiny-a on the real CPU stack. Each round runs both, in alternating order:
  - controller: `controller bench --json` with the settings below (one process in the vLLM
    container runs every level; the figures are read back from vLLM's saved results);
  - by hand: for each level, `docker exec -e OPENAI_API_KEY <vllm container> python3 -c <vllm bench
    serve> ARGS` with the very argument list the controller saved, one process per level as an
    operator would type it (the `vllm` console script is broken in the CPU build, so the same two
    functions `vllm bench serve` calls are called directly), then `docker exec cat` of its result.
It prints, per level, the ratio of output-token throughput (by hand / controller; goal 0.95-1.05)
and the controller's own time: its wall time minus the sum of vLLM's benchmark durations, beside
the same for the hand runs.

    .venv/bin/python benchmarks/bench_bench_overhead.py [--rounds 3] [--levels 1,4] [--input-len 128]
        [--output-len 256] [--prompts 64]

The figures are CPU figures of a random-weight tiny model: they say whether the controller adds
anything to vLLM's own benchmark, not how fast any real model is.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.bench.results import parse_result_text  # noqa: E402
from controller.bench.settings import bench_argv, bench_settings, parse_levels
from controller.config.catalog import load_catalog  # noqa: E402
from controller.config.settings import load_settings
from controller.config.site import SiteConfig  # noqa: E402
from tests.integration import harness  # noqa: E402

# `vllm bench serve ARGS`, as in vllm/entrypoints/cli/benchmark/serve.py.
BY_HAND = """
import sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.benchmarks.serve import add_cli_args, main
parser = FlexibleArgumentParser(prog="vllm bench serve")
add_cli_args(parser)
main(parser.parse_args(sys.argv[1:]))
"""


def hand_argv(argv: list[str], result_dir: str) -> list[str]:
    """The controller's argument list with the results written elsewhere."""
    argv = list(argv)
    argv[argv.index("--result-dir") + 1] = result_dir
    return argv


def run_by_hand(container: str, runs: list[list[str]], api_key: str, round_no: int) -> tuple[float, dict[int, dict]]:
    """Each level as its own `vllm bench serve` process; returns (wall seconds, level -> result)."""
    env = {**os.environ, "OPENAI_API_KEY": api_key}  # `-e OPENAI_API_KEY` passes it without a command line
    result_dir = f"/tmp/hand-bench/round-{round_no}"
    started = time.monotonic()
    results = {}
    for argv in runs:
        level = int(argv[argv.index("--max-concurrency") + 1])
        args = hand_argv(argv, result_dir)
        done = subprocess.run(
            ["docker", "exec", "-e", "OPENAI_API_KEY", container, "python3", "-c", BY_HAND, *args],
            env=env, capture_output=True, text=True, timeout=3600, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            tail = done.stdout[-2000:] + done.stderr[-2000:]
            raise SystemExit(f"by hand, level {level}: exit {done.returncode}\n{tail}")
        text = subprocess.run(
            ["docker", "exec", container, "cat", f"{result_dir}/{args[args.index('--result-filename') + 1]}"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        results[level] = parse_result_text(text, level)
    return time.monotonic() - started, results


def run_controller(root: Path, settings: list[str]) -> tuple[float, dict]:
    started = time.monotonic()
    done = harness.controller(root, "bench", *settings, "--json", timeout=3600)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"controller bench failed:\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="1,4")
    parser.add_argument("--input-len", default="128")
    parser.add_argument("--output-len", default="256")
    # Runs of about 1 s (16 prompts of 64 tokens) gave ratios of 0.38-2.15: noise on 2 shared cores.
    parser.add_argument("--prompts", default="64")
    args = parser.parse_args()
    settings = ["--levels", args.levels, "--input-len", args.input_len, "--output-len", args.output_len,
                "--prompts", args.prompts]  # fmt: skip
    client = docker.from_env()
    images = harness.images_and_tiny_model()
    ratios: dict[int, list[float]] = {}
    throughputs: dict[tuple[str, int], list[float]] = {}  # (who, level) -> output tok/s per round
    overheads, hand_overheads = [], []
    with harness.scratch_site(client, images) as (root, project, _port):
        up = harness.controller(root, "up", "tiny-a")
        if up.returncode != 0:
            raise SystemExit(up.stderr)
        api_key = load_settings(SiteConfig(root=root, env_file=root / ".env")).vllm_api_key.get_secret_value()
        # The argument list `controller bench` builds; checked against the one it saves each round.
        profile = load_catalog(harness.TEST_CATALOG).get("tiny-a")
        bench = bench_settings(levels=parse_levels(args.levels), input_len=int(args.input_len),
                               output_len=int(args.output_len), prompts=int(args.prompts))  # fmt: skip
        runs = [bench_argv(bench, level, served_model_name=profile.served_model_name,
                           tokenizer=profile.container_model, result_dir="/tmp/hand-bench")
                for level in bench.levels]  # fmt: skip
        [container] = client.containers.list(
            filters={"label": [f"{harness.PROJECT_LABEL}={project}", "io.llmstack.profile=tiny-a"]}
        )
        for round_no in range(1, args.rounds + 1):
            order = ["controller", "hand"] if round_no % 2 else ["hand", "controller"]
            figures: dict[str, dict[int, float]] = {}
            for who in order:
                if who == "controller":
                    seconds, data = run_controller(root, settings)
                    model = data["models"][0]
                    saved = [hand_argv(argv, "-") for argv in model["bench_argv"]]
                    assert saved == [hand_argv(argv, "-") for argv in runs], "the hand run's arguments differ"
                    figures["controller"] = {lv["level"]: lv["output_throughput"] for lv in model["levels"]}
                    vllm_s = sum(lv["duration_s"] for lv in model["levels"])
                    overheads.append(seconds - vllm_s)
                    print(f"round {round_no} controller: {seconds:.1f} s wall, {vllm_s:.1f} s in vLLM's "
                          f"benchmark, {seconds - vllm_s:.1f} s other", flush=True)  # fmt: skip
                else:
                    seconds, results = run_by_hand(container.id, runs, api_key, round_no)
                    figures["hand"] = {lv: r.output_throughput for lv, r in results.items()}
                    vllm_s = sum(r.duration_s for r in results.values())
                    hand_overheads.append(seconds - vllm_s)
                    print(f"round {round_no} by hand:    {seconds:.1f} s wall, {vllm_s:.1f} s in vLLM's "
                          f"benchmark, {seconds - vllm_s:.1f} s other", flush=True)  # fmt: skip
            for level, controller_tok_s in figures["controller"].items():
                for who in ("hand", "controller"):
                    throughputs.setdefault((who, level), []).append(figures[who][level])
                ratio = figures["hand"][level] / controller_tok_s
                ratios.setdefault(level, []).append(ratio)
                print(f"round {round_no} c={level}: output tok/s by hand {figures['hand'][level]:.1f}, "
                      f"controller {controller_tok_s:.1f}, ratio {ratio:.3f}", flush=True)  # fmt: skip
    print("\nsummary (CPU figures of a random-weight tiny model)")
    for level, values in sorted(ratios.items()):
        print(f"  c={level}: output-throughput ratio by hand / controller: median {statistics.median(values):.3f}, "
              f"range {min(values):.3f}-{max(values):.3f} (goal 0.95-1.05)")  # fmt: skip
        for who in ("hand", "controller"):  # each side's own spread between rounds: the box's noise
            tok_s = throughputs[(who, level)]
            print(f"        {who:>10}: median {statistics.median(tok_s):.1f} output tok/s, "
                  f"range {min(tok_s):.1f}-{max(tok_s):.1f}")  # fmt: skip
    print(f"  time outside vLLM's benchmark, median: controller {statistics.median(overheads):.1f} s per run "
          f"(includes its start, facts, one vLLM import, reading results), by hand "
          f"{statistics.median(hand_overheads):.1f} s (one vLLM import per level)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

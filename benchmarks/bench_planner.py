"""Benchmark: the memory planner against real vLLM start-up logs.

For every row of tests/unit/data/vllm-startup-logs.csv (public logs with their sources; a copy of
the team's shared/planner/ file) prints the planned KV capacity in tokens next to what vLLM logged,
the error, and the median and worst absolute error. Planner inputs per row: the profile in
tests/catalog/planner.yaml, the card's nvidia-smi memory, the vLLM version (engine from the version
and the card), utilization, max_model_len and the batch vLLM profiled.

    .venv/bin/python benchmarks/bench_planner.py [--json]

Exit status 1 when any row is off by 5% or more.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.planner_rows import rows  # noqa: E402

LIMIT = 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()
    table = rows()
    errors = [abs(r.error) for r in table]
    summary = {"median_abs_error": statistics.median(errors), "worst_abs_error": max(errors), "rows": len(table)}
    if args.json:
        print(json.dumps({"rows": [{**vars(r), "error": r.error} for r in table], **summary}, indent=2))
    else:
        head = f"{'row':4} {'vLLM':7} {'GPU':17} {'profile':15} {'len':>6} {'batch':>6} {'planned':>8} {'logged':>8} "
        print(head + f"{'error':>7}  logged from")
        for r in table:
            print(
                f"{r.id:4} {r.version:7} {r.gpu:17} {r.profile:15} {r.max_model_len:>6} {r.max_num_batched_tokens:>6} "
                f"{r.planned_tokens:>8} {r.logged_tokens:>8} {100 * r.error:>+6.2f}%  {r.logged_from}"
            )
        print(
            f"median |error| {100 * summary['median_abs_error']:.2f}%, "
            f"worst {100 * summary['worst_abs_error']:.2f}% over {len(table)} logs"
        )
    return 1 if summary["worst_abs_error"] >= LIMIT else 0


if __name__ == "__main__":
    sys.exit(main())

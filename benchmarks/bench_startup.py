"""Benchmark: how long the quick commands take to start, as a whole process with a fresh interpreter.

Runs `controller --help`, `controller models`, `controller models --json` and `controller plan` N
times each (plus `python -c pass` as the peer baseline: what any Python command costs) and prints
min / median / max wall time per command and whether the median is within the budget (0.25 s).
The time is taken with time.perf_counter() around subprocess.run, output discarded; each run is a
new process, so imports are paid every time, as when an operator types the command.

    .venv/bin/python benchmarks/bench_startup.py [--runs 7] [--json] [--controller PATH]

The same figure by hand, for one command:

    /usr/bin/time -f %e .venv/bin/controller models --json > /dev/null

The commands run in an empty temporary project directory (no .env, built-in catalog only), with
CONTROLLER_* settings removed from the environment. Exit status 1 when a median is over budget.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 0.25
DEFAULT_RUNS = 7

# (label, arguments after `controller --project-dir DIR`, exit codes that count as a normal run).
# `plan llama3-8b` on 12 GiB says "does not fit" and exits 1 by design.
COMMANDS: list[tuple[str, list[str], set[int]]] = [
    ("controller --help", ["--help"], {0}),
    ("controller models", ["models"], {0}),
    ("controller models --json", ["models", "--json"], {0}),
    ("controller plan llama3-8b --gpu-memory 12GiB", ["plan", "llama3-8b", "--gpu-memory", "12GiB"], {0, 1}),
    ("controller plan llama3-8b-gptq --gpu-memory 12GiB", ["plan", "llama3-8b-gptq", "--gpu-memory", "12GiB"], {0}),
]


def controller_argv(explicit: str | None) -> list[str]:
    """The installed `controller` script next to this interpreter, else `python -m controller`."""
    if explicit:
        return [explicit]
    script = Path(sys.executable).with_name("controller")
    if script.exists():
        return [str(script)]
    found = shutil.which("controller")
    return [found] if found else [sys.executable, "-m", "controller"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}


def time_runs(argv: list[str], runs: int, cwd: Path, ok_codes: set[int]) -> dict:
    env = clean_env()
    times = []
    codes = set()
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        times.append(time.perf_counter() - start)
        codes.add(done.returncode)
        if done.returncode not in ok_codes:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr.decode(errors='replace')}")
    median = statistics.median(times)
    return {
        "runs": runs,
        "min_s": round(min(times), 4),
        "median_s": round(median, 4),
        "max_s": round(max(times), 4),
        "exit_codes": sorted(codes),
        "within_budget": median <= BUDGET_S,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="whole-process runs per command")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--controller", help="path of the controller executable [default: next to this python]")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    base = controller_argv(args.controller)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        project = Path(tmp)
        # Warm the file-system cache once, so the first timed run is not an outlier.
        subprocess.run([*base, "--project-dir", str(project), "--help"], env=clean_env(), capture_output=True)
        results["python -c pass (baseline)"] = time_runs([sys.executable, "-c", "pass"], args.runs, project, {0})
        for label, rest, ok_codes in COMMANDS:
            results[label] = time_runs([*base, "--project-dir", str(project), *rest], args.runs, project, ok_codes)

    over = [label for label, r in results.items() if not r["within_budget"]]
    if args.json:
        report = {"budget_s": BUDGET_S, "controller": base, "python": sys.executable, "commands": results}
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print(f"{'command':<52} {'min':>7} {'median':>7} {'max':>7}  <= {BUDGET_S} s   (N={args.runs})")
        for label, r in results.items():
            verdict = "yes" if r["within_budget"] else "NO"
            print(f"{label:<52} {r['min_s']:7.3f} {r['median_s']:7.3f} {r['max_s']:7.3f}  {verdict}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())

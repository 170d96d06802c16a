"""Benchmark: how long the quick commands take to start, as a whole process with a fresh interpreter.

Runs `controller --help`, `controller models`, `controller models --json` and `controller plan` N
times each (plus `python -c pass` as the peer baseline: what any Python command costs) and prints
min / median / max wall time per command and whether the median is within the budget (0.25 s).
The time is taken with time.perf_counter() around subprocess.run, output discarded; each run is a
new process, so imports are paid every time, as when an operator types the command. The commands
take turns (one run of each per round), so a burst of other load on the machine hits all of them
alike; the CPU time the process used (user + system, from getrusage) is printed too, as it barely
moves with other load. The verdict is on the median wall time.

    .venv/bin/python benchmarks/bench_startup.py [--runs 7] [--json] [--controller PATH | --wheel]

--wheel measures the package as users install it (pipx, or pip and a wheel): it builds the wheel of
this checkout and installs it with its dependencies into a new venv (about a minute, from the
package index), then times that venv's `controller` and its python for the baseline. The default,
the checkout's editable install, pays for the editable-install finder and a venv with the test tools
on top (about 15% more instructions for `models`).

The same figure by hand, for one command:

    /usr/bin/time -f %e .venv/bin/controller models --json > /dev/null

The commands run in an empty temporary project directory (no .env, built-in catalog only), with
CONTROLLER_* settings removed from the environment. Exit status 1 when a median is over budget.

Bytecode: an installed package has its .pyc files (pip compiles them), and a checkout writes them on
the first run. Where PYTHONDONTWRITEBYTECODE is set, every run would compile the controller's own
modules from source again (10-20 ms here), so by default the runs cache bytecode in a temporary
PYTHONPYCACHEPREFIX (nothing is written into the checkout; an untimed first run fills it).
--no-bytecode-cache keeps the caller's setting instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def install_wheel(work: Path) -> Path:
    """The `controller` script of a new venv holding this checkout's wheel (what `pipx install` makes)."""
    repo = Path(__file__).resolve().parents[1]
    wheels, venv = work / "dist", work / "venv"
    for argv in (
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(repo)],
        [sys.executable, "-m", "venv", str(venv)],
    ):
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    (wheel,) = wheels.glob("*.whl")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], check=True)
    return venv / "bin" / "controller"


def clean_env(pycache: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(argv: list[str], cwd: Path, env: dict[str, str], ok_codes: set[int]) -> tuple[float, float, int]:
    """Wall and CPU seconds of one whole-process run, and its exit code."""
    cpu = _children_cpu_s()
    start = time.perf_counter()
    done = subprocess.run(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wall = time.perf_counter() - start
    if done.returncode not in ok_codes:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr.decode(errors='replace')}")
    return wall, _children_cpu_s() - cpu, done.returncode


def summary(walls: list[float], cpus: list[float], codes: set[int]) -> dict:
    median = statistics.median(walls)
    return {
        "runs": len(walls),
        "min_s": round(min(walls), 4),
        "median_s": round(median, 4),
        "max_s": round(max(walls), 4),
        "cpu_median_s": round(statistics.median(cpus), 4),
        "exit_codes": sorted(codes),
        "within_budget": median <= BUDGET_S,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="whole-process runs per command")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--controller", help="path of the controller executable [default: next to this python]")
    parser.add_argument("--wheel", action="store_true", help="time this checkout's wheel in a new venv (as users)")
    parser.add_argument(
        "--no-bytecode-cache", action="store_true", help="keep PYTHONDONTWRITEBYTECODE as it is (compile every run)"
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.wheel and args.controller:
        parser.error("--wheel and --controller exclude each other")

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        base = [str(install_wheel(Path(tmp)))] if args.wheel else controller_argv(args.controller)
        python = str(Path(base[0]).with_name("python")) if args.wheel else sys.executable
        project = Path(tmp) / "project"
        project.mkdir()
        env = clean_env(None if args.no_bytecode_cache else Path(tmp) / "pycache")
        runs = [("python -c pass (baseline)", [python, "-c", "pass"], {0})] + [
            (label, [*base, "--project-dir", str(project), *rest], ok_codes) for label, rest, ok_codes in COMMANDS
        ]
        # One untimed run of each warms the file-system cache (and fills the bytecode cache).
        for _, argv, _ in runs:
            subprocess.run(argv, cwd=project, env=env, stdin=subprocess.DEVNULL, capture_output=True)
        measured: dict[str, tuple[list[float], list[float], set[int]]] = {
            label: ([], [], set()) for label, _, _ in runs
        }
        for _ in range(args.runs):
            for label, argv, ok_codes in runs:
                wall, cpu, code = run_once(argv, project, env, ok_codes)
                measured[label][0].append(wall)
                measured[label][1].append(cpu)
                measured[label][2].add(code)
    results = {label: summary(*values) for label, values in measured.items()}

    over = [label for label, r in results.items() if not r["within_budget"]]
    if args.json:
        report = {
            "budget_s": BUDGET_S,
            "controller": base,
            "python": python,
            "installed": "wheel in a new venv" if args.wheel else "as found",
            "bytecode_cached": not args.no_bytecode_cache,
            "commands": results,
        }
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        cached = "as the environment says" if args.no_bytecode_cache else "cached in a temporary PYTHONPYCACHEPREFIX"
        print(f"controller: {' '.join(base)}; bytecode: {cached}")
        print(
            f"{'command':<52} {'min':>7} {'median':>7} {'max':>7} {'cpu':>7}  median <= {BUDGET_S} s  (N={args.runs})"
        )
        for label, r in results.items():
            verdict = "yes" if r["within_budget"] else "NO"
            figures = f"{r['min_s']:7.3f} {r['median_s']:7.3f} {r['max_s']:7.3f} {r['cpu_median_s']:7.3f}"
            print(f"{label:<52} {figures}  {verdict}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())

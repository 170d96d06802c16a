"""Benchmark: `controller up` against `docker compose up -d --wait` on the same rendered project.

Each round starts from nothing (containers and volumes removed) and runs both, in alternating
order, on the real tiny CPU stack. Prints each time and the ratio controller / compose.
The controller's time includes its admin verification (sign-in) and the model check in Open WebUI.

    .venv/bin/python benchmarks/bench_up.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.runtime.docker import ComposeProject  # noqa: E402
from tests.integration import harness  # noqa: E402


def _time_compose(project: ComposeProject) -> float:
    start = time.monotonic()
    project.run("up", "--detach", "--wait", "--wait-timeout", "600", timeout=700)
    return time.monotonic() - start


def _time_controller(root: Path) -> float:
    start = time.monotonic()
    result = harness.controller(root, "up", "tiny-a")
    if result.returncode != 0:
        raise SystemExit(f"controller up failed:\n{result.stderr}")
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = docker.from_env()
    images = harness.images_and_tiny_model()
    ratios = []
    with harness.scratch_site(client, images) as (root, name, _port):
        rendered = harness.controller(root, "render", "tiny-a")
        if rendered.returncode != 0:
            raise SystemExit(rendered.stderr)
        project = ComposeProject(name, root / "compose" / "docker-compose.yml", root / ".env")
        for round_no in range(args.rounds):
            times = {}
            order = ["compose", "controller"] if round_no % 2 == 0 else ["controller", "compose"]
            for which in order:
                harness.remove_project(client, name)
                times[which] = _time_compose(project) if which == "compose" else _time_controller(root)
            ratio = times["controller"] / times["compose"]
            ratios.append(ratio)
            print(
                f"round {round_no + 1}: compose up --wait {times['compose']:.1f} s, "
                f"controller up {times['controller']:.1f} s, ratio {ratio:.3f}",
                flush=True,
            )
    print(f"median ratio controller/compose over {len(ratios)} rounds: {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

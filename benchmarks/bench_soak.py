"""Soak benchmark: N switches between tiny-a and tiny-b on the real CPU stack, with an independent
chat prober running throughout (tests/integration/soak.py; the CI test runs the same code with 1).

Reports failed chats and cut streams, the project's containers, volumes and networks and the
engine's images before and after, the journal's size, the controller's own peak memory and the
Docker engine's (dockerd) memory. Goal: counts unchanged and 0 chats lost.

It holds the Docker engine for N x 40-70 s: on a shared engine run it under its lock.

    .venv/bin/python benchmarks/bench_soak.py [--switches 50] [--out .artifacts/bench_soak.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.config.settings import load_settings
from controller.config.site import SiteConfig  # noqa: E402
from tests.integration import harness  # noqa: E402
from tests.integration.soak import Soak, changed_counts  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--switches", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(".artifacts/bench_soak.json"))
    args = parser.parse_args()
    with harness.serving_scratch_site("tiny-a") as (root, project, port), tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(SiteConfig(root=root, env_file=root / ".env"))
        soak = Soak(root, project, f"http://127.0.0.1:{port}", settings.webui_admin_email,
                    settings.webui_admin_password.get_secret_value(), docker.from_env())  # fmt: skip
        report = soak.run(args.switches, Path(tmp) / "probe.json", progress=lambda line: print(line, flush=True))
    report["goal_met"] = report["failed_chats"] == 0 and report["truncated_streams"] == 0 and not changed_counts(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    before, after = report["before"], report["after"]
    print("| | before | after |\n|---|---|---|")
    for key in ("containers", "volumes", "networks", "images", "journal_bytes", "dockerd_rss_mib"):
        print(f"| {key} | {before[key]} | {after[key]} |")
    print(f"\n{report['switches']} switches (median {report['switch_s_median']} s, max {report['switch_s_max']} s); "
          f"{report['chats']} chats, {report['failed_chats']} failed; {report['streams']} streams, "
          f"{report['truncated_streams']} cut; longest gap between replies {report['longest_gap_s']} s; "
          f"controller peak RSS {report['controller_peak_rss_mib']} MiB")  # fmt: skip
    if report["errors"]:
        print(f"errors: {report['errors']}")
    print(f"goal (0 chats lost, counts unchanged): {'met' if report['goal_met'] else 'NOT met'}; saved {args.out}")
    return 0 if report["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())

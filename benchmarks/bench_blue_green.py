"""Benchmark: blue-green against recreate, in one run, seen by an independent prober.

Starts tiny-a on the real CPU stack and an independent prober (its own process and Open WebUI
session: chats without pause to the default model, and a streaming response always open). Then
N switches tiny-a <-> tiny-b with --strategy blue-green, then N with --strategy recreate. For each
strategy it reports failed chats, truncated streams, the longest gap between successful replies,
p50/p99 chat latency during the switches and the switch's total time.

    .venv/bin/python benchmarks/bench_blue_green.py [--switches 10] [--out .artifacts/bench_blue_green.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.config.settings import load_settings
from controller.config.site import SiteConfig  # noqa: E402
from tests.integration import harness  # noqa: E402
from tests.integration.probe_report import ProberProcess, summarise  # noqa: E402


def _switches(root: Path, strategy: str, count: int, current: str) -> tuple[list[dict], str]:
    windows = []
    for i in range(count):
        target = "tiny-b" if current == "tiny-a" else "tiny-a"
        start = time.time()
        result = harness.controller(root, "switch", target, "--strategy", strategy, "--json")
        end = time.time()
        if result.returncode != 0:
            raise SystemExit(f"{strategy} switch {i + 1} failed:\n{result.stderr}")
        data = json.loads(result.stdout)
        windows.append({"start": start, "end": end, "old": current, "new": target, "total_s": round(end - start, 1),
                        "downtime_s": data.get("downtime_s")})  # fmt: skip
        print(f"{strategy} {i + 1}/{count} {current} -> {target}: {end - start:.1f} s", flush=True)
        current = target
    return windows, current


def _report(strategy: str, windows: list[dict], data: dict) -> dict:
    seen = [summarise(data, w["start"], w["end"]) for w in windows]
    latencies = sorted(
        c["latency_s"] for w in windows for c in data["chats"] if c["ok"] and w["start"] <= c["start"] <= w["end"]
    )
    return {
        "strategy": strategy,
        "switches": len(windows),
        "chats": sum(s["chats"] for s in seen),
        "failed": sum(s["failed"] for s in seen),
        "streams": sum(s["streams"] for s in seen),
        "truncated": sum(s["truncated"] for s in seen),
        "streams_across_cut_over": sum(s["streams_across_cut_over"] for s in seen),
        "longest_gap_s": max(s["longest_gap_s"] for s in seen),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3) if latencies else None,
        "switch_total_s_median": round(statistics.median(w["total_s"] for w in windows), 1),
        "switch_total_s_max": max(w["total_s"] for w in windows),
        "errors": sorted({e for s in seen for e in s["errors"] + s["stream_errors"]})[:5],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(".artifacts/bench_blue_green.json"))
    args = parser.parse_args()
    with harness.serving_scratch_site("tiny-a") as (root, _name, port), tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(SiteConfig(root=root, env_file=root / ".env"))
        password = settings.webui_admin_password.get_secret_value()
        url, out = f"http://127.0.0.1:{port}", Path(tmp) / "probe.json"
        prober = ProberProcess.start(url, settings.webui_admin_email, password, out)
        try:
            blue_green, current = _switches(root, "blue-green", args.switches, "tiny-a")
            recreate, _ = _switches(root, "recreate", args.switches, current)
        finally:
            data = prober.finish()
    rows = [_report("blue-green", blue_green, data), _report("recreate", recreate, data)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print("| strategy | switches | chats | failed | streams | truncated | across cut-over | longest gap | p50 | p99 | "
          "switch time (median / max) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {r['switches']} | {r['chats']} | {r['failed']} | {r['streams']} | {r['truncated']} "
              f"| {r['streams_across_cut_over']} | {r['longest_gap_s']:.1f} s | {r['p50_s']} s | {r['p99_s']} s | "
              f"{r['switch_total_s_median']:.1f} s / {r['switch_total_s_max']:.1f} s |")  # fmt: skip
        if r["errors"]:
            print(f"  {r['strategy']} errors: {r['errors']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Start the independent prober (tests/integration/prober.py) as its own process, and summarise
what it saw during a window: failed chats, truncated streams, longest gap, latency percentiles."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.integration.harness import REPO


@dataclass
class ProberProcess:
    process: subprocess.Popen
    out: Path

    @classmethod
    def start(cls, url: str, email: str, password: str, out: Path) -> ProberProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.prober", url, email, str(out)],
            cwd=REPO, env={**os.environ, "PROBER_PASSWORD": password}, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = process.stdout.readline()  # signed in: from here on it probes
        if line.strip() != "probing":
            process.kill()
            raise RuntimeError(f"the prober did not start: {line!r}")
        return cls(process, out)

    def finish(self) -> dict:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=300)
        return json.loads(self.out.read_text(encoding="utf-8"))


def summarise(data: dict, start: float, end: float) -> dict:
    """What the prober saw for requests started in [start, end]. A stream "across the cut-over"
    read the old model and ended after a chat read the new one, at any cut-over in the window."""
    chats = [c for c in data["chats"] if start <= c["start"] <= end]
    streams = [s for s in data["streams"] if s["end"] >= start and s["start"] <= end]
    ok_times = sorted(c["start"] + c["latency_s"] for c in data["chats"] if c["ok"])
    window = [t for t in ok_times if start <= t <= end]
    edges = [start, *window, end]
    latencies = sorted(c["latency_s"] for c in chats if c["ok"])
    return {
        "chats": len(chats),
        "failed": sum(not c["ok"] for c in chats),
        "errors": sorted({c["error"] for c in chats if c["error"]})[:5],
        "streams": len(streams),
        "truncated": sum(not s["ok"] for s in streams),
        "stream_errors": sorted({str(s["error"]) for s in streams if not s["ok"]})[:5],
        "streams_across_cut_over": _across(streams, chats),
        "longest_gap_s": round(max(b - a for a, b in zip(edges, edges[1:], strict=False)), 2),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3) if latencies else None,
    }


def _across(streams: list[dict], chats: list[dict]) -> int:
    """Streams that read the old default before a cut-over and were still open after a chat read
    the new one: they were served by the old instance while the new one took new chats."""
    chosen = sorted((c["chosen"], c["model"]) for c in chats if c["model"])
    cut_overs = [(old, at) for (_, old), (at, new) in zip(chosen, chosen[1:], strict=False) if old != new]
    return sum(s["model"] == old and s["chosen"] < at < s["end"] for old, at in cut_overs for s in streams)

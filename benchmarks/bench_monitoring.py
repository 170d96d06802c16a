"""Monitoring benchmark (issue 27): the time from vLLM's death to the VllmDown alert at a webhook
receiver, and the CPU and memory that MONITORING=on adds to the stack.

One CPU stack serving tiny-a with MONITORING=on (the monitoring test image, Debian's Prometheus,
Alertmanager and exporters); then N times: `docker kill` vLLM, wait for the alert at the receiver
(this process, on the host), `controller up` and wait for the resolved notification. The alert
cannot arrive before ALERT_DOWN_AFTER; the rest is the scrape interval, the rule evaluation and
Alertmanager's group wait. Then `docker stats` of every container of the stack, sampled while
idle: the four monitoring services against vLLM and Open WebUI.

    .venv/bin/python benchmarks/bench_monitoring.py [--runs 5] [--scrape-interval 15s]
        [--down-after 2m] [--group-wait 30s] [--out .artifacts/bench_monitoring.json]

The defaults are the product's defaults (a run takes about 3 minutes); the README quotes both
them and a faster setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.cli.stack_commands import MONITORING_SERVICES as MONITORING  # noqa: E402
from tests.integration import harness  # noqa: E402
from tests.integration.webhook_receiver import WebhookReceiver  # noqa: E402

SAMPLES = 10


def _cpu_percent(stats: dict) -> float:
    cpu, pre = stats["cpu_stats"], stats["precpu_stats"]
    delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cores = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or [1])
    return 100.0 * delta / system * cores if system > 0 else 0.0


def _memory_mib(stats: dict) -> float:
    memory = stats["memory_stats"]
    cache = memory.get("stats", {}).get("inactive_file", memory.get("stats", {}).get("cache", 0))
    return (memory.get("usage", 0) - cache) / 2**20


def resource_use(client: docker.DockerClient, project: str) -> dict[str, dict[str, float]]:
    """Median CPU % (of one core) and memory (MiB) per service over SAMPLES `docker stats` reads."""
    containers = client.containers.list(filters={"label": f"{harness.PROJECT_LABEL}={project}"})
    samples: dict[str, list[tuple[float, float]]] = {}
    for _ in range(SAMPLES):
        for container in containers:
            stats = container.stats(stream=False)  # one read takes about 1-2 s: the engine samples twice
            service = container.labels["com.docker.compose.service"]
            samples.setdefault(service, []).append((_cpu_percent(stats), _memory_mib(stats)))
    return {service: {"cpu_percent": round(statistics.median(s[0] for s in values), 2),
                      "memory_mib": round(statistics.median(s[1] for s in values), 1)}
            for service, values in samples.items()}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scrape-interval", default="15s")
    parser.add_argument("--down-after", default="2m")
    parser.add_argument("--group-wait", default="30s")
    parser.add_argument("--out", type=Path, default=Path(".artifacts/bench_monitoring.json"))
    args = parser.parse_args()
    client = docker.from_env()
    images = harness.images_and_tiny_model()
    receiver = WebhookReceiver()
    host = harness.host_for_containers(client)
    delays: list[float] = []
    with harness.scratch_site(client, images) as (root, project, _port):
        with (root / ".env").open("a") as env:
            env.write(harness.monitoring_env(images, f"http://{host}:{receiver.port}/hook",
                                             scrape_interval=args.scrape_interval, down_after=args.down_after,
                                             group_wait=args.group_wait))  # fmt: skip
        up = harness.controller(root, "up", "tiny-a")
        if up.returncode != 0:
            raise SystemExit(up.stderr)
        use = resource_use(client, project)
        labels = [f"{harness.PROJECT_LABEL}={project}", "com.docker.compose.service=vllm"]
        for run in range(1, args.runs + 1):
            (vllm,) = client.containers.list(filters={"label": labels})
            killed = time.monotonic()
            vllm.kill()
            if not receiver.next_about("VllmDown", "firing", deadline_s=900):
                raise SystemExit(f"run {run}: no VllmDown alert within 900 s")
            delays.append(round(time.monotonic() - killed, 1))
            back = harness.controller(root, "up", "tiny-a")
            if back.returncode != 0 or not receiver.next_about("VllmDown", "resolved", deadline_s=900):
                raise SystemExit(f"run {run}: the stack did not come back, or the alert did not resolve")
            print(f"run {run}: alert at the webhook {delays[-1]} s after the kill", flush=True)
    receiver.close()
    added = {k: round(sum(use[s][k] for s in MONITORING if s in use), 2) for k in ("cpu_percent", "memory_mib")}
    stack = {
        k: round(sum(v[k] for s, v in use.items() if s not in MONITORING), 2) for k in ("cpu_percent", "memory_mib")
    }
    report = {"settings": {"scrape_interval": args.scrape_interval, "down_after": args.down_after,
                           "group_wait": args.group_wait},
              "kill_to_alert_s": delays, "kill_to_alert_median_s": statistics.median(delays),
              "per_service": use, "monitoring_adds": added, "stack_without_monitoring": stack}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(
        f"vLLM killed -> VllmDown at the webhook: median {report['kill_to_alert_median_s']} s over {len(delays)} "
        f"runs {delays} (scrape {args.scrape_interval}, for {args.down_after}, group wait {args.group_wait})"
    )
    print(
        f"idle, median of {SAMPLES} reads: monitoring adds {added['cpu_percent']}% of a core and "
        f"{added['memory_mib']} MiB; vLLM and Open WebUI use {stack['cpu_percent']}% and {stack['memory_mib']} MiB"
    )
    for service, value in sorted(use.items()):
        print(f"  {service}: {value['cpu_percent']}% CPU, {value['memory_mib']} MiB")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

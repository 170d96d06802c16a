"""HTTPS front door benchmark (issue 26): the time to first token of a streamed chat through Caddy
on HTTPS (TLS=internal, the certificate verified against the root `up` copied out) against the same
chat straight to Open WebUI's loopback port, alternating, so that both see the same machine.

One CPU stack serving tiny-a with TLS=internal (Caddy from the locally built front-door image);
each side keeps one connection open, as a browser does, and sets TCP_NODELAY as browsers do (without
it, the client's request split in two packets meets the server's delayed ACK and costs the direct
path about 30 ms that the proxy's pooled connection does not pay: a client artefact, not the proxy).

    .venv/bin/python benchmarks/bench_front_door.py [--runs 30] [--out .artifacts/bench_front_door.json]
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import statistics
import sys
import time
from pathlib import Path

import docker
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.config.site import SiteConfig  # noqa: E402
from controller.runtime.webui_client import WebUI  # noqa: E402
from tests.integration import harness  # noqa: E402
from tests.integration.webui_api import admin_session  # noqa: E402

BODY = {"model": "tiny-a", "stream": True, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}


def http_client(verify: ssl.SSLContext | bool) -> httpx.Client:
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    return httpx.Client(transport=httpx.HTTPTransport(verify=verify, socket_options=nodelay), timeout=120)


def time_to_first_token(session: httpx.Client, url: str, token: str) -> float:
    started = time.perf_counter()
    with session.stream("POST", f"{url}/api/chat/completions", json=BODY,
                        headers={"Authorization": f"Bearer {token}"}) as answer:  # fmt: skip
        answer.raise_for_status()
        for line in answer.iter_lines():
            if line.startswith("data: {"):
                return time.perf_counter() - started
    raise SystemExit(f"{url}: the answer had no token")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(".artifacts/bench_front_door.json"))
    args = parser.parse_args()
    client = docker.from_env()
    images = harness.images_and_tiny_model()
    samples: dict[str, list[float]] = {"https via Caddy": [], "http to Open WebUI": []}
    with harness.scratch_site(client, images) as (root, project, port):
        https_port, http_port = harness.free_port(), harness.free_port()
        with (root / ".env").open("a") as env:
            env.write(f"TLS=internal\nTLS_HOST=localhost\nHTTPS_PORT={https_port}\nHTTP_PORT={http_port}\n"
                      f"CADDY_IMAGE={images['front-door']}\n")  # fmt: skip
        up = harness.controller(root, "up", "tiny-a", "--json")
        if up.returncode != 0:
            raise SystemExit(up.stderr)
        result = json.loads(up.stdout)
        site = harness.TestSite(SiteConfig(root, root / ".env"), project, port)
        with WebUI(site.url) as webui:
            token = admin_session(site, webui).token
        trust = ssl.create_default_context(cafile=result["tls"]["root_ca"])
        targets = {
            "https via Caddy": (result["url"], http_client(trust)),
            "http to Open WebUI": (site.url, http_client(True)),
        }
        for url, session in targets.values():  # warm-up: the first chat loads what Open WebUI loads lazily
            time_to_first_token(session, url, token)
        for run in range(args.runs):
            # Each goes first every other run: the chat before leaves Open WebUI some work to finish.
            order = list(targets.items()) if run % 2 == 0 else list(reversed(targets.items()))
            for name, (url, session) in order:
                samples[name].append(time_to_first_token(session, url, token))
            print(f"run {run + 1}: " + ", ".join(f"{n} {s[-1] * 1000:.1f} ms" for n, s in samples.items()), flush=True)
    medians = {name: round(statistics.median(values) * 1000, 1) for name, values in samples.items()}
    added = round(medians["https via Caddy"] - medians["http to Open WebUI"], 1)
    report = {"runs": args.runs, "median_ttft_ms": medians, "added_by_the_proxy_ms": added,
              "samples_ms": {n: [round(v * 1000, 1) for v in s] for n, s in samples.items()}}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"time to first token, median of {args.runs}: " + ", ".join(f"{n} {m} ms" for n, m in medians.items())
          + f"; the proxy adds {added} ms")  # fmt: skip
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the chat downtime of `controller switch` against the new model's own load time.

Starts tiny-a on the real CPU stack, then switches tiny-a <-> tiny-b several times. For each
switch it prints the downtime the controller measured (from recreating vLLM until a chat through
Open WebUI works with the new model) and vLLM's load time (container start to /health 200).
An independent prober also chats through Open WebUI throughout and reports the longest gap it saw.

    .venv/bin/python benchmarks/bench_switch.py [--switches 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.config.settings import load_settings
from controller.config.site import SiteConfig  # noqa: E402
from controller.runtime.webui_client import WebUI  # noqa: E402
from tests.integration import harness  # noqa: E402


class ChatProber(threading.Thread):
    """Chats through Open WebUI with the old or the new model; records the longest gap with neither."""

    def __init__(self, url: str, email: str, password: str, models: list[str]):
        super().__init__(daemon=True)
        self.url, self.email, self.password, self.models = url, email, password, models
        self.stop = threading.Event()
        self.outage_start: float | None = None
        self.longest = 0.0

    def _any_model_answers(self, webui: WebUI, token: str) -> bool:
        for model in self.models:
            try:
                webui.chat(token, model, "hi", max_tokens=1)
                return True
            except Exception:  # this model is down; the chat path is up if any model answers
                continue
        return False

    def run(self) -> None:
        with WebUI(self.url, timeout=10) as webui:
            session = webui.signin(self.email, self.password)
            # After the switch returns, keep probing until the open outage (if any) closes.
            give_up = None
            while not (self.stop.is_set() and self.outage_start is None):
                if self.stop.is_set():
                    give_up = give_up or time.monotonic() + 60
                    if time.monotonic() > give_up:
                        self.longest = float("inf")
                        return
                if self._any_model_answers(webui, session.token):
                    if self.outage_start is not None:
                        self.longest = max(self.longest, time.monotonic() - self.outage_start)
                        self.outage_start = None
                elif self.outage_start is None:
                    self.outage_start = time.monotonic()
                self.stop.wait(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--switches", type=int, default=4)
    args = parser.parse_args()
    client = docker.from_env()
    images = harness.images_and_tiny_model()
    rows = []
    with harness.scratch_site(client, images) as (root, _name, port):
        up = harness.controller(root, "up", "tiny-a")
        if up.returncode != 0:
            raise SystemExit(up.stderr)
        settings = load_settings(SiteConfig(root=root, env_file=root / ".env"))
        current = "tiny-a"
        for i in range(args.switches):
            target = "tiny-b" if current == "tiny-a" else "tiny-a"
            prober = ChatProber(
                f"http://127.0.0.1:{port}", settings.webui_admin_email,
                settings.webui_admin_password.get_secret_value(), models=[current, target],
            )  # fmt: skip
            prober.start()
            result = harness.controller(root, "switch", target, "--json")
            prober.stop.set()
            prober.join()
            if result.returncode != 0:
                raise SystemExit(result.stderr)
            data = json.loads(result.stdout)
            load, downtime = data["vllm"]["load_time_s"], data["downtime_s"]
            rows.append((downtime, load))
            print(
                f"switch {i + 1} {current} -> {target}: downtime {downtime:.1f} s, load time {load:.1f} s, "
                f"downtime - load {downtime - load:+.1f} s; an independent chat prober saw no answer for "
                f"{prober.longest:.1f} s",
                flush=True,
            )
            current = target
    worst = max(d - lo for d, lo in rows)
    print(f"worst downtime - load time over {len(rows)} switches: {worst:+.1f} s (target <= +3 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

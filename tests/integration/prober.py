"""An independent chat prober: its own process and its own Open WebUI session. One thread sends
chats without pause to the model a new chat would use (Open WebUI's default, read before every
chat); another keeps a streaming response open at all times. Both record every outcome.

    python -m tests.integration.prober URL EMAIL OUT.json   (password in PROBER_PASSWORD; stop with SIGTERM)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import httpx

STREAM_TOKENS = 96


class Prober:
    def __init__(self, url: str, email: str, password: str):
        self.http = httpx.Client(base_url=url, timeout=120)
        body = self.http.post("/api/v1/auths/signin", json={"email": email, "password": password}).json()
        self.headers = {"Authorization": f"Bearer {body['token']}"}
        self.stop = threading.Event()
        self.chats: list[dict] = []  # {start, latency_s, ok, model, error}
        self.streams: list[dict] = []  # {start, end, ok, chunks, model, error}

    def default_model(self) -> str:
        config = self.http.get("/api/config", headers=self.headers).json()
        return (config.get("default_models") or "").split(",")[0]

    def _request(self, stream: bool, model: str) -> httpx.Request:
        body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": stream,
                "max_tokens": STREAM_TOKENS if stream else 2}  # fmt: skip
        return self.http.build_request("POST", "/api/chat/completions", headers=self.headers, json=body)

    def chat_loop(self) -> None:
        while not self.stop.is_set():
            start, model, error = time.time(), "", None
            try:
                model = self.default_model()
                response = self.http.send(self._request(False, model))
                choices = response.json().get("choices") if response.status_code == 200 else None
                error = None if choices else f"{response.status_code}: {response.text[:200]}"
            except (httpx.HTTPError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.chats.append({"start": start, "latency_s": time.time() - start, "ok": error is None,
                               "model": model, "error": error})  # fmt: skip

    def stream_loop(self) -> None:
        while not self.stop.is_set():
            start, model, chunks, done, error = time.time(), "", 0, False, None
            try:
                model = self.default_model()
                with self.http.stream("POST", "/api/chat/completions", headers=self.headers,
                                      json=json.loads(self._request(True, model).content)) as response:  # fmt: skip
                    if response.status_code != 200:
                        error = f"{response.status_code}: {response.read()[:200]!r}"
                    for line in response.iter_lines() if error is None else []:
                        if line.strip() == "data: [DONE]":
                            done = True
                        elif line.startswith("data: "):
                            chunks += 1
                            if '"error"' in line:
                                error = line[:200]
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            ok = done and error is None
            self.streams.append({"start": start, "end": time.time(), "ok": ok, "chunks": chunks, "model": model,
                                 "error": error if not ok else None})  # fmt: skip


def main() -> int:
    url, email, out = sys.argv[1:4]
    prober = Prober(url, email, os.environ["PROBER_PASSWORD"])
    signal.signal(signal.SIGTERM, lambda *_: prober.stop.set())
    threads = [threading.Thread(target=prober.chat_loop), threading.Thread(target=prober.stream_loop)]
    for thread in threads:
        thread.start()
    print("probing", flush=True)
    while not prober.stop.wait(0.5):
        pass
    for thread in threads:
        thread.join(timeout=180)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"chats": prober.chats, "streams": prober.streams}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())

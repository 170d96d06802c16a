"""An independent chat prober: its own process and its own Open WebUI session. One thread sends
chats without pause to the model a new chat would use (Open WebUI's default, read before every
chat); two more keep streaming responses open at all times, half a stream apart. All record every
outcome.

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

# Long enough (about 4 s on the tiny CPU models) that a stream is almost surely open on the old model
# when the default moves: at 96 tokens (1.5 s) a blue-green switch once saw none across the cut-over.
STREAM_TOKENS = 256


class Prober:
    def __init__(self, url: str, email: str, password: str):
        self.http = httpx.Client(base_url=url, timeout=120)
        body = self.http.post("/api/v1/auths/signin", json={"email": email, "password": password}).json()
        self.headers = {"Authorization": f"Bearer {body['token']}"}
        self.stop = threading.Event()
        # "chosen": when the model was read from Open WebUI's default, so the cut-over lies between
        # the last chat that read the old model and the first that read the new one.
        self.chats: list[dict] = []  # {start, chosen, latency_s, ok, model, error}
        self.streams: list[dict] = []  # {start, chosen, end, ok, chunks, model, error}

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
            chosen = start
            try:
                model = self.default_model()
                chosen = time.time()
                response = self.http.send(self._request(False, model))
                choices = response.json().get("choices") if response.status_code == 200 else None
                error = None if choices else f"{response.status_code}: {response.text[:200]}"
            except (httpx.HTTPError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.chats.append({"start": start, "chosen": chosen, "latency_s": time.time() - start, "ok": error is None,
                               "model": model, "error": error})  # fmt: skip

    def stream_loop(self, halfway: threading.Event | None = None) -> None:
        """Streams back to back; sets `halfway` (if given) once its first stream is half done (or
        over), so a second loop started on it keeps a stream open while this one is between two."""
        halfway = halfway or threading.Event()
        while not self.stop.is_set():
            start, model, chunks, done, error = time.time(), "", 0, False, None
            chosen = start
            try:
                model = self.default_model()
                chosen = time.time()
                with self.http.stream("POST", "/api/chat/completions", headers=self.headers,
                                      json=json.loads(self._request(True, model).content)) as response:  # fmt: skip
                    if response.status_code != 200:
                        error = f"{response.status_code}: {response.read()[:200]!r}"
                    for line in response.iter_lines() if error is None else []:
                        if line.strip() == "data: [DONE]":
                            done = True
                        elif line.startswith("data: "):
                            chunks += 1
                            if chunks >= STREAM_TOKENS // 2:
                                halfway.set()
                            if '"error"' in line:
                                error = line[:200]
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            halfway.set()
            ok = done and error is None
            self.streams.append({"start": start, "chosen": chosen, "end": time.time(), "ok": ok, "chunks": chunks,
                                 "model": model, "error": error if not ok else None})  # fmt: skip


def main() -> int:
    url, email, out = sys.argv[1:4]
    prober = Prober(url, email, os.environ["PROBER_PASSWORD"])
    signal.signal(signal.SIGTERM, lambda *_: prober.stop.set())
    first_halfway = threading.Event()
    threads = [
        threading.Thread(target=prober.chat_loop),
        threading.Thread(target=prober.stream_loop, args=[first_halfway]),
    ]
    for thread in threads:
        thread.start()
    # Two stream loops half a stream apart: a stream is open on the old model at a cut-over even when
    # one ends just then (the old instance speeds up once the new one has loaded, the moment the
    # cut-over follows; one loop once saw no stream across either of two cut-overs).
    first_halfway.wait(timeout=120)
    threads.append(threading.Thread(target=prober.stream_loop))
    threads[-1].start()
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

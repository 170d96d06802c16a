"""A webhook receiver for Alertmanager's notifications, run by a test or benchmark on the host
(containers reach it through the default bridge's gateway address)."""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _started(alert: dict) -> datetime:
    # RFC 3339 with nanoseconds and "Z": Python 3.11's fromisoformat reads it (to microseconds).
    return datetime.fromisoformat(alert["startsAt"])


class WebhookReceiver:
    """Alertmanager's webhook target: an HTTP server on the host that queues each notification."""

    def __init__(self) -> None:
        self.notifications: queue.Queue[dict] = queue.Queue()
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_about(self, alert: str, status: str, deadline_s: float, since: datetime | None = None) -> dict | None:
        """The first notification of `alert` with `status` (firing or resolved) within the deadline,
        or None; other notifications are skipped, and so are alerts that started before `since`."""
        end = time.monotonic() + deadline_s
        while (left := end - time.monotonic()) > 0:
            try:
                note = self.notifications.get(timeout=left)
            except queue.Empty:
                break
            if note["status"] == status and any(
                a["labels"]["alertname"] == alert and (since is None or _started(a) >= since) for a in note["alerts"]
            ):
                return note
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""The test browser itself: Chromium keeps a request in flight while a Docker network is created
beside it (webui_page.chromium loads no_netlink.c). Without that, most fresh-machine runs failed one
browser test with ERR_NETWORK_CHANGED, at a different step each time."""

from __future__ import annotations

import ctypes
import http.server
import os
import subprocess
import sys
import threading
import uuid

import httpx
import pytest

from controller.errors import NotReady
from controller.phases import wait_for

from . import harness
from . import webui_page as ui

PROBE = """
import errno, socket
for name, args in (("route", (socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)),
                   ("usersock", (socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_USERSOCK)),
                   ("tcp", (socket.AF_INET, socket.SOCK_STREAM, 0))):
    try:
        socket.socket(*args).close()
        print(name, "opened")
    except OSError as error:
        print(name, errno.errorcode[error.errno])
"""


def _probe(preload: str | None) -> str:
    env = {**os.environ, "LD_PRELOAD": preload} if preload else {**os.environ}
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout


def test_the_library_refuses_the_route_netlink_socket_and_nothing_else():
    library = ui.no_netlink_library()
    ctypes.CDLL(str(library))  # a shared library the loader takes
    assert _probe(None).split("\n")[0] == "route opened"  # the machine has the socket to refuse
    assert _probe(str(library)).split() == ["route", "EAFNOSUPPORT", "usersock", "opened", "tcp", "opened"]


# The page POSTs over HTTP/2 through Caddy (as Open WebUI's sign-in does over HTTPS), and the server
# holds the answer until a Docker network has been created and removed. Chromium's own watch would
# drop the request at the first of those; reproduced outside the suite, it did so every time.
PAGE = b"""<html><body><button id=send>send</button><div id=out></div><script>
document.getElementById('send').onclick = async () => {
  try { const r = await fetch('/held', {method: 'POST', body: '{}'});
        document.getElementById('out').textContent = 'answered ' + r.status; }
  catch (err) { document.getElementById('out').textContent = 'failed ' + err; } };
</script></body></html>"""


class _HeldServer(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HeldHandler)
        self.arrived, self.release = threading.Event(), threading.Event()


class _HeldHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HeldServer

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(PAGE, "text/html")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.arrived.set()
        self.server.release.wait(timeout=120)
        self._answer(b"{}", "application/json")

    def log_message(self, *_args) -> None:
        pass


# Caddy on the host's network (as Chromium reaches it) without its redirect listener on port 80,
# which something else on the host may hold, and without HTTP/3: the request must go over HTTP/2.
CADDYFILE = """{
    admin off
    auto_https disable_redirects
    skip_install_trust
    servers {
        protocols h1 h2
    }
}
https://localhost:{$HTTPS_PORT} {
    tls internal
    reverse_proxy 127.0.0.1:{$HELD_PORT}
}
"""


@pytest.fixture
def held_https(docker_client, images):
    """https://localhost:<port>/ through the front-door image's Caddy (HTTP/2) to a _HeldServer."""
    server = _HeldServer()
    port = harness.free_port()
    name = f"{harness.TEST_PROJECT_PREFIX}held-{uuid.uuid4().hex[:8]}"  # removed with leftovers if a run dies
    caddy = None
    try:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        caddy = docker_client.containers.run(
            images["front-door"], name=name, labels={harness.PROJECT_LABEL: name}, network_mode="host", detach=True,
            entrypoint="sh", command=["-c", 'printf %s "$CADDYFILE" >/tmp/Caddyfile && exec caddy run '
                                            "--config /tmp/Caddyfile --adapter caddyfile"],
            environment={"CADDYFILE": CADDYFILE, "HTTPS_PORT": str(port), "HELD_PORT": str(server.server_port)},
        )  # fmt: skip
        url = f"https://localhost:{port}/"

        def serving() -> None:
            try:
                httpx.get(url, verify=False, timeout=5).raise_for_status()
            except httpx.HTTPError as error:
                logs = caddy.logs(tail=10).decode(errors="replace")
                raise NotReady(f"Caddy does not answer at {url} yet: {error}; its log ends:\n{logs}") from error

        wait_for("Caddy", serving, deadline_s=120)
        yield url, server
    finally:
        server.release.set()
        if caddy is not None:
            caddy.remove(force=True)
        server.shutdown()
        server.server_close()


def test_a_request_in_flight_survives_a_docker_network_created_beside_it(held_https, docker_client):
    url, server = held_https
    with ui.chromium() as browser:
        page = browser.new_page(ignore_https_errors=True)  # the certificate is not what this tests
        page.set_default_timeout(ui.UI_TIMEOUT_MS)
        page.goto(url)
        assert page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
        page.click("#send")
        assert server.arrived.wait(timeout=120), "the page's POST never reached the server"
        network = docker_client.networks.create(f"held-{uuid.uuid4().hex[:8]}")  # a new bridge on the host
        network.remove()
        server.release.set()
        out = page.locator("#out")
        out.filter(has_text="answered").or_(out.filter(has_text="failed")).wait_for()
        assert out.inner_text() == "answered 200"
        held_entries = f"performance.getEntriesByName('{url}held')"  # listed once its body has arrived
        page.wait_for_function(f"{held_entries}.length > 0")
        assert page.evaluate(f"{held_entries}[0].nextHopProtocol") == "h2"

"""The HTTPS front door (TLS=internal|files|acme): Caddy in front of Open WebUI, as one frozen
description for the Compose template, its Caddyfile rendered here as text. HTTP answers only with
a redirect to HTTPS; HSTS is on; responses stream through unbuffered (Caddy passes WebSockets on by
itself).

The binary is started by path with explicit arguments and data folders, so the official image and
the locally built test image (Debian's package) run alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.config.tls_settings import TlsSettings

CADDYFILE = "/etc/caddy/Caddyfile"
CERT_DIR = "/etc/caddy/certs"
# Caddy keeps its CA and certificates under $XDG_DATA_HOME/caddy.
DATA_DIR = "/data"
INTERNAL_ROOT_CA = f"{DATA_DIR}/caddy/pki/authorities/local/root.crt"
HTTPS_PORT = 443
HTTP_PORT = 80
HSTS = "max-age=31536000"


def caddyfile(tls: TlsSettings, upstream: str) -> str:
    certificate = {
        "internal": "tls internal",
        "files": f"tls {CERT_DIR}/cert.pem {CERT_DIR}/key.pem",
        "acme": f"tls {tls.acme_email}",
    }[tls.mode]
    return "\n".join([
        "{",
        "\tadmin off",
        "\t# The redirect is the http:// site below, to the public port.",
        "\tauto_https disable_redirects",
        "}",
        "",
        f"https://{tls.host} {{",
        f"\t{certificate}",
        f'\theader Strict-Transport-Security "{HSTS}"',
        f"\treverse_proxy {upstream} {{",
        "\t\t# Chat answers stream token by token.",
        "\t\tflush_interval -1",
        "\t}",
        "}",
        "",
        f"http://{tls.host} {{",
        # 308: like 301, and a POST stays a POST.
        f"\tredir {tls.public_url}{{uri}} 308",
        "}",
        "",
    ])  # fmt: skip


@dataclass(frozen=True)
class FrontDoorSpec:
    mode: str
    image: str
    caddyfile: str
    https_host_port: int
    http_host_port: int
    cert_file: str | None
    key_file: str | None
    caddyfile_path: str = CADDYFILE
    cert_dir: str = CERT_DIR
    data_dir: str = DATA_DIR
    https_port: int = HTTPS_PORT
    http_port: int = HTTP_PORT


def build_front_door(tls: TlsSettings, *, upstream: str) -> FrontDoorSpec | None:
    if not tls.enabled:
        return None
    return FrontDoorSpec(
        mode=tls.mode,
        image=tls.caddy_image,
        caddyfile=caddyfile(tls, upstream),
        https_host_port=tls.https_port,
        http_host_port=tls.http_port,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
    )

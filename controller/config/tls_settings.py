"""The front door's settings (TLS=internal|files|acme puts Caddy in front of Open WebUI on HTTPS):
the host name people type, the ports, the certificate's source. A group of its own like the
monitoring settings, checked strictly: each value ends up in the Caddyfile, which Caddy reads
literally. The certificate files themselves are checked in controller.config.certificates.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from controller.config.env_keys import TLS_KEYS
from controller.config.keyed_settings import KeyedSettings, keyed_values, validate_keyed
from controller.config.setting_types import ImageReference, Port

# A DNS name (RFC 1123, lower case) of at least one dot-free label.
DNS_NAME = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
EMAIL = r"^[^@\s\"'\\,<>{}]+@[^@\s\"'\\,<>{}]+\.[^@\s\"'\\,<>{}]+$"


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host(value: str) -> str:
    if is_ip(value):
        return str(ipaddress.ip_address(value))
    if len(value) > 253 or not re.fullmatch(DNS_NAME, value):
        raise ValueError(
            "is not a host name or IP address; write the name people type, in lower case, e.g. llm.example.lan"
        )
    return value


def _file(value: str) -> str:
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ValueError("is not an absolute path; write e.g. /etc/ssl/llm/cert.pem")
    if any(c in value for c in '\n\r"{}'):
        raise ValueError("holds a line break, a quote or a brace; move the file to a plainer path")
    return str(path)


Host = Annotated[str, AfterValidator(_host)]
CertPath = Annotated[str, AfterValidator(_file)]


class TlsSettings(KeyedSettings):
    # off: Open WebUI on plain HTTP (WEBUI_PORT). internal: Caddy's own CA, for a LAN. files: the
    # site's certificate and key. acme: a certificate from Let's Encrypt for a public DNS name.
    mode: Literal["off", "internal", "files", "acme"] = Field("off", alias="TLS")
    host: Host | None = Field(None, alias="TLS_HOST")
    https_port: Port = Field(443, alias="HTTPS_PORT")
    http_port: Port = Field(80, alias="HTTP_PORT")
    cert_file: CertPath | None = Field(None, alias="TLS_CERT_FILE")
    key_file: CertPath | None = Field(None, alias="TLS_KEY_FILE")
    acme_email: str | None = Field(None, alias="ACME_EMAIL", pattern=EMAIL)
    caddy_image: ImageReference = Field("caddy:2.8.4", alias="CADDY_IMAGE")

    @model_validator(mode="after")
    def _consistent(self) -> TlsSettings:
        if self.mode == "off":
            return self
        if not self.host:
            raise ValueError(f"TLS={self.mode} needs TLS_HOST, the name people type to reach the chat")
        if self.https_port == self.http_port:
            raise ValueError("HTTPS_PORT and HTTP_PORT are the same port; give each its own")
        if self.mode == "files" and not (self.cert_file and self.key_file):
            raise ValueError("TLS=files needs TLS_CERT_FILE and TLS_KEY_FILE (PEM files)")
        if self.mode == "acme":
            if not self.acme_email:
                raise ValueError("TLS=acme needs ACME_EMAIL, where the certificate authority writes about expiry")
            if is_ip(self.host):
                raise ValueError("TLS=acme needs a public DNS name in TLS_HOST, not an IP address")
        return self

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @property
    def public_url(self) -> str | None:
        if not self.enabled:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}" + ("" if self.https_port == 443 else f":{self.https_port}")


HINT = "see `HTTPS` in README.md"


def load_tls_settings(env_file: Path, environ: Mapping[str, str] | None = None) -> TlsSettings:
    values, sources = keyed_values(TLS_KEYS, env_file, environ)
    return validate_keyed(TlsSettings, values, sources, str(env_file), HINT)

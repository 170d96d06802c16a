"""What `up` and `status` say of the front door: its URL, for TLS=internal the root
certificate copied out for browsers, and the certificate served (subject, expiry, days left)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from controller.config.certificates import expiry_warning
from controller.config.settings import LoadedSettings
from controller.config.site import SiteConfig
from controller.runtime.docker import Engine
from controller.runtime.front_door import export_root_ca, served_certificate

PLAIN_HTTP_WARNING = (
    "TLS=off: Open WebUI is served on plain HTTP, so passwords cross the network in clear text; "
    "set TLS in .env (README.md, `HTTPS`)"
)


def root_ca_path(site: SiteConfig) -> Path:
    return site.state_dir / "tls" / "caddy-root.crt"


def front_door_report(site: SiteConfig, loaded: LoadedSettings, *, export: bool) -> tuple[dict | None, list[str]]:
    """The report (None with TLS=off) and its warnings. `export`: copy the internal root out (`up`)."""
    tls = loaded.tls
    if not tls.enabled:
        return None, []
    report: dict = {"mode": tls.mode, "url": tls.public_url, "root_ca": None, "certificate": None}
    warnings = []
    if tls.mode == "internal":
        path = root_ca_path(site)
        if export:
            export_root_ca(Engine(), loaded.settings.compose_project_name, path)
        report["root_ca"] = str(path) if path.exists() else None
    facts = served_certificate(tls.host, tls.https_port)
    now = datetime.now(UTC)
    if facts is not None:
        report["certificate"] = facts.as_dict(now)
        warning = expiry_warning(facts, now) if tls.mode != "internal" else None  # Caddy renews its own
        warnings += [warning] if warning else []
    return report, warnings

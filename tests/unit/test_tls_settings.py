"""The HTTPS front door's settings (TLS and its keys in .env) and the site's certificate files:
each bad value exits 2 naming the key or file and how to fix it, and leaves `.env` and `compose/`
byte-identical (bad_input_harness.py); a good one renders Caddy in front of Open WebUI."""

from __future__ import annotations

import pytest
import yaml

from controller.config.env_keys import TLS_KEYS
from controller.config.tls_settings import TlsSettings
from tests.unit.bad_input_harness import Project
from tests.unit.certs import make_certificate, make_key, write_pair

HOST = "llm.example.lan"


def test_the_settings_keys_are_the_ones_env_keys_lists():
    assert tuple(f.alias for f in TlsSettings.model_fields.values()) == TLS_KEYS


BAD = {
    "mode_unknown": ("TLS=on\n", ["TLS", "line 5"]),
    "no_host": ("TLS=internal\n", ["TLS_HOST"]),
    "host_upper_case": ("TLS=internal\nTLS_HOST=LLM.Example.lan\n", ["TLS_HOST", "line 6", "lower case"]),
    "host_with_brace": ("TLS=internal\nTLS_HOST='llm.example.lan {'\n", ["TLS_HOST"]),
    "same_ports": (f"TLS=internal\nTLS_HOST={HOST}\nHTTPS_PORT=80\n", ["HTTPS_PORT and HTTP_PORT"]),
    "files_without_key": (f"TLS=files\nTLS_HOST={HOST}\nTLS_CERT_FILE=/etc/ssl/c.pem\n", ["TLS_KEY_FILE"]),
    "relative_cert_path": (f"TLS=files\nTLS_HOST={HOST}\nTLS_CERT_FILE=c.pem\nTLS_KEY_FILE=/k.pem\n",
                           ["TLS_CERT_FILE", "absolute"]),
    "acme_without_email": (f"TLS=acme\nTLS_HOST={HOST}\n", ["ACME_EMAIL"]),
    "acme_on_an_ip": ("TLS=acme\nTLS_HOST=192.168.1.5\nACME_EMAIL=ops@example.com\n", ["IP address"]),
    "port_zero": (f"TLS=internal\nTLS_HOST={HOST}\nHTTPS_PORT=0\n", ["HTTPS_PORT"]),
    "caddy_latest": (f"TLS=internal\nTLS_HOST={HOST}\nCADDY_IMAGE=caddy:latest\n", ["CADDY_IMAGE"]),
}  # fmt: skip


@pytest.mark.parametrize(("lines", "names"), BAD.values(), ids=BAD.keys())
def test_a_bad_tls_setting_is_refused_naming_it(project: Project, lines, names):
    project.add_env(lines)
    project.refused("render", "deepseek-1.5b", names=names)


def _files_env(cert_file, key_file, host: str = HOST) -> str:
    return f"TLS=files\nTLS_HOST={host}\nTLS_CERT_FILE={cert_file}\nTLS_KEY_FILE={key_file}\n"


def test_a_certificate_and_a_key_that_do_not_match_are_refused(project: Project, tmp_path):
    cert_file, _ = write_pair(tmp_path, make_certificate(make_key(), [HOST]), make_key())
    (tmp_path / "other").mkdir()
    _, other_key = write_pair(tmp_path / "other", make_certificate(make_key(), [HOST]), make_key())
    project.add_env(_files_env(cert_file, other_key))
    project.refused("render", "deepseek-1.5b", names=[str(other_key), "do not form a pair"])


def test_an_expired_certificate_is_refused_with_its_date(project: Project, tmp_path):
    key = make_key()
    cert_file, key_file = write_pair(tmp_path, make_certificate(key, [HOST], days=10, started_days_ago=20), key)
    project.add_env(_files_env(cert_file, key_file))
    project.refused("render", "deepseek-1.5b", names=[str(cert_file), "expired on"])


def test_a_certificate_for_another_name_is_refused_naming_both(project: Project, tmp_path):
    key = make_key()
    cert_file, key_file = write_pair(tmp_path, make_certificate(key, ["other.example.lan"]), key)
    project.add_env(_files_env(cert_file, key_file))
    project.refused("render", "deepseek-1.5b", names=["other.example.lan", f"TLS_HOST={HOST}"])


def test_a_missing_certificate_file_is_named(project: Project, tmp_path):
    project.add_env(_files_env(tmp_path / "none.pem", tmp_path / "none.key"))
    project.refused("render", "deepseek-1.5b", names=["TLS_CERT_FILE", "file not found"])


def test_a_key_that_is_not_a_key_is_named(project: Project, tmp_path):
    key = make_key()
    cert_file, key_file = write_pair(tmp_path, make_certificate(key, [HOST]), key)
    key_file.write_text("not a key\n")
    project.add_env(_files_env(cert_file, key_file))
    project.refused("render", "deepseek-1.5b", names=["TLS_KEY_FILE", "private key"])


def _rendered(project: Project) -> dict:
    result = project.run("render", "deepseek-1.5b")
    assert result.code == 0, result.stderr
    return yaml.safe_load((project.root / "compose" / "docker-compose.yml").read_text())


def test_tls_internal_puts_caddy_in_front_and_keeps_open_webui_to_this_host(project: Project):
    project.add_env(f"TLS=internal\nTLS_HOST={HOST}\nHTTPS_PORT=8443\nHTTP_PORT=8080\n")
    compose = _rendered(project)
    caddy, webui = compose["services"]["caddy"], compose["services"]["webui"]
    assert caddy["ports"] == ["0.0.0.0:8443:443", "0.0.0.0:8080:80"]
    assert webui["ports"] == ["127.0.0.1:7860:8080"]
    assert webui["environment"]["WEBUI_URL"] == f"https://{HOST}:8443"
    assert webui["environment"]["WEBUI_SESSION_COOKIE_SECURE"] == "true"
    caddyfile = compose["configs"]["caddyfile"]["content"]
    assert f"https://{HOST} {{\n\ttls internal\n" in caddyfile
    assert f"redir https://{HOST}:8443{{uri}} 308" in caddyfile
    assert 'Strict-Transport-Security "max-age=31536000"' in caddyfile and "flush_interval -1" in caddyfile


def test_tls_files_mounts_the_pair_read_only(project: Project, tmp_path):
    key = make_key()
    cert_file, key_file = write_pair(tmp_path, make_certificate(key, ["*.example.lan"]), key)
    project.add_env(_files_env(cert_file, key_file))
    compose = _rendered(project)
    mounts = {m["target"]: m for m in compose["services"]["caddy"]["volumes"] if m["type"] == "bind"}
    assert mounts["/etc/caddy/certs/cert.pem"]["source"] == str(cert_file)
    assert mounts["/etc/caddy/certs/key.pem"]["source"] == str(key_file)
    assert all(m["read_only"] for m in mounts.values())
    assert f"redir https://{HOST}{{uri}} 308" in compose["configs"]["caddyfile"]["content"]


def test_tls_off_renders_no_front_door(project: Project):
    compose = _rendered(project)
    assert "caddy" not in compose["services"] and "WEBUI_URL" not in compose["services"]["webui"]["environment"]

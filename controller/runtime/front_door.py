"""The running front door (TLS=...): Caddy's internal root certificate copied out of its container,
for browsers to trust, and the certificate it serves, for `up` and `status` to show."""

from __future__ import annotations

import io
import socket
import ssl
import tarfile
from pathlib import Path

from cryptography import x509

from controller.config.certificates import CertificateFacts, certificate_facts
from controller.deploy.front_door import INTERNAL_ROOT_CA
from controller.errors import NotReady
from controller.files import write_atomic
from controller.phases import wait_for
from controller.runtime.docker import Engine

SERVICE = "caddy"
# Caddy makes its CA when it starts; this is how long it may take.
ROOT_CA_DEADLINE_S = 60


def export_root_ca(engine: Engine, project: str, dest: Path) -> Path:
    """Copy Caddy's root certificate (public; its key stays in the container's volume) to dest."""
    from docker.errors import NotFound

    def read() -> str:
        container = engine.container(project, SERVICE)
        if container is None:
            raise NotReady("no Caddy container yet")
        try:
            stream, _stat = container.get_archive(INTERNAL_ROOT_CA)
        except NotFound:
            raise NotReady(f"Caddy has not written {INTERNAL_ROOT_CA} yet") from None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.extractfile(archive.getmembers()[0])
            return member.read().decode("ascii")

    text = wait_for("caddy root certificate", read, deadline_s=ROOT_CA_DEADLINE_S,
                    hint="see `controller logs caddy`")  # fmt: skip
    write_atomic(dest, text)
    return dest


def served_certificate(host: str, port: int, timeout_s: float = 5.0) -> CertificateFacts | None:
    """The certificate Caddy serves for `host` on this machine's `port`; None when nothing answers.
    Read only to show it: whether a browser trusts it is the browser's check."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return certificate_facts(x509.load_der_x509_certificate(der)) if der else None

"""TLS=files: the site's certificate and key, checked before anything is written: both are PEM,
they form a pair, the certificate covers TLS_HOST and has not expired. What `status` shows of a
certificate (subject, expiry, days left) comes from here too."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from controller.errors import SettingsError
from controller.files import read_text_file

# Below this many days left, `up`, `status` and `doctor` warn.
EXPIRY_WARNING_DAYS = 30
HINT = "see `HTTPS` in README.md"


@dataclass(frozen=True)
class CertificateFacts:
    subject: str
    not_after: datetime
    names: tuple[str, ...]

    def days_left(self, now: datetime) -> int:
        return (self.not_after - now).days

    def as_dict(self, now: datetime) -> dict:
        return {"subject": self.subject, "not_after": self.not_after.isoformat(), "names": list(self.names),
                "days_left": self.days_left(now)}  # fmt: skip


def certificate_facts(certificate: x509.Certificate) -> CertificateFacts:
    try:
        alternative = certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = [*alternative.get_values_for_type(x509.DNSName),
                 *(str(ip) for ip in alternative.get_values_for_type(x509.IPAddress))]  # fmt: skip
    except x509.ExtensionNotFound:
        names = [attribute.value for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    # Caddy's own certificates have an empty subject and only alternative names.
    subject = certificate.subject.rfc4514_string() or ", ".join(names)
    return CertificateFacts(subject, certificate.not_valid_after_utc, tuple(names))


def covers(names: tuple[str, ...], host: str) -> bool:
    """Whether a certificate for `names` is valid for `host` (one wildcard label at the left, as browsers do)."""
    try:
        address = ipaddress.ip_address(host)
        return any(name == str(address) for name in names)
    except ValueError:
        pass
    for name in (n.lower() for n in names):
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def check_pair(cert_pem: str, key_pem: str, *, host: str, cert_origin: str, key_origin: str,
               now: datetime) -> CertificateFacts:  # fmt: skip
    """The facts of the first certificate of the chain; SettingsError when it is not usable for `host`."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        raise SettingsError(f"{cert_origin}: not a PEM certificate (-----BEGIN CERTIFICATE-----)", hint=HINT) from None
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise SettingsError(
            f"{key_origin}: not an unencrypted PEM private key",
            hint="Caddy reads the key without a passphrase: `openssl pkey -in key.pem -out plain.pem`",
        ) from None
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(serialization.Encoding.DER, public) != key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        raise SettingsError(f"{key_origin} is not the key of the certificate {cert_origin}: they do not form a pair",
                            hint="give the key the certificate was issued for")  # fmt: skip
    facts = certificate_facts(leaf)
    if not covers(facts.names, host):
        raise SettingsError(
            f"{cert_origin} is for {', '.join(facts.names) or 'no name'}, not for TLS_HOST={host}",
            hint="set TLS_HOST to a name the certificate covers, or give a certificate for that name",
        )
    if facts.not_after <= now:
        raise SettingsError(f"{cert_origin} expired on {facts.not_after:%Y-%m-%d}; browsers refuse it",
                            hint="renew it, then run the command again")  # fmt: skip
    return facts


def check_files(cert_file: str, key_file: str, host: str, now: datetime | None = None) -> CertificateFacts:
    cert = read_text_file(Path(cert_file), SettingsError, what="TLS_CERT_FILE")
    key = read_text_file(Path(key_file), SettingsError, what="TLS_KEY_FILE")
    return check_pair(cert, key, host=host, cert_origin=f"TLS_CERT_FILE {cert_file}",
                      key_origin=f"TLS_KEY_FILE {key_file}", now=now or datetime.now(UTC))  # fmt: skip


def expiry_warning(facts: CertificateFacts, now: datetime) -> str | None:
    days = facts.days_left(now)
    if days >= EXPIRY_WARNING_DAYS:
        return None
    return f"the HTTPS certificate ({facts.subject}) expires in {days} days, on {facts.not_after:%Y-%m-%d}; renew it"


def check_ca_file(path: str, key: str) -> None:
    """A CA bundle (LDAP_CA_CERT_FILE): readable, and PEM certificates only."""
    text = read_text_file(Path(path), SettingsError, what=key)
    try:
        x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        raise SettingsError(f"{key} {path}: not PEM certificates (-----BEGIN CERTIFICATE-----)",
                            hint="give the CA certificate that signed the server's, in PEM") from None  # fmt: skip

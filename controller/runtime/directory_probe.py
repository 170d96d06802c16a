"""Directory sign-in seen from this host, the way Open WebUI uses it: LDAP (connect, bind as the
search account, search the base with the filter, as ldap3 does in Open WebUI 0.12.4) and OIDC (the
provider's discovery document). Each probe says which step failed and why, for `doctor` and for
`up`, which refuses an LDAP server that does not answer rather than start a stack nobody can use."""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.config.directory_settings import DirectorySettings

TIMEOUT_S = 5
# OpenID Connect Discovery 1.0, section 3: what a provider's document must hold for Open WebUI's login.
REQUIRED_METADATA = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    finding: str  # what was found, or which step failed and why
    fix: str | None = None


def probe_ldap(directory: DirectorySettings, admin_email: str | None = None) -> ProbeResult:
    """Connect, bind and search as Open WebUI will; at least one entry must match the filter, and
    none that may sign in may carry the seeded admin's e-mail: Open WebUI finds a directory user's
    account by e-mail, so that person would sign in as the admin."""
    import ssl

    from ldap3 import NONE, SIMPLE, SUBTREE, Connection, Server, Tls
    from ldap3.core.exceptions import LDAPException

    where = f"ldap{'s' if directory.ldap_tls == 'ldaps' else ''}://{directory.ldap_host}:{directory.ldap_server_port}"
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=directory.ldap_ca_cert_file)
    server = Server(directory.ldap_host, port=directory.ldap_server_port, use_ssl=directory.ldap_tls == "ldaps",
                    tls=tls, get_info=NONE, connect_timeout=TIMEOUT_S)  # fmt: skip
    password = directory.ldap_bind_password.get_secret_value() if directory.ldap_bind_password else None
    connection = Connection(server, directory.ldap_bind_dn, password, receive_timeout=TIMEOUT_S,
                            authentication=SIMPLE if directory.ldap_bind_dn else "ANONYMOUS")  # fmt: skip
    try:
        connection.open()
    except LDAPException as exc:
        return ProbeResult(False, f"cannot reach the LDAP server {where}: {_reason(exc)}",
                           "check LDAP_SERVER_HOST, LDAP_SERVER_PORT and LDAP_TLS, and that this host and "
                           "Docker's networks may reach it")  # fmt: skip
    try:
        if not connection.bind():
            who, why = directory.ldap_bind_dn or "anonymous", connection.result.get("description")
            return ProbeResult(False, f"{where} refused the bind as {who}: {why}",
                               "check LDAP_APP_DN and LDAP_APP_PASSWORD (in single quotes if it holds $)")  # fmt: skip
        user_filter = f"({directory.ldap_username_attribute}=*)"
        search = f"(&{user_filter}{directory.ldap_search_filter or ''})"
        connection.search(directory.ldap_search_base, search, SUBTREE, size_limit=1,
                          attributes=[directory.ldap_username_attribute, directory.ldap_mail_attribute])  # fmt: skip
        outcome = connection.result.get("description")
        if outcome not in ("success", "sizeLimitExceeded"):
            return ProbeResult(False, f"searching {directory.ldap_search_base} on {where} failed: {outcome}",
                               "check LDAP_SEARCH_BASE, and that LDAP_APP_DN may read it")  # fmt: skip
        if not connection.entries:
            return ProbeResult(False, f"no entry under {directory.ldap_search_base} matches {search}: nobody could "
                               "sign in", "check LDAP_SEARCH_FILTERS and LDAP_ATTRIBUTE_FOR_USERNAME")  # fmt: skip
        if not connection.entries[0].entry_attributes_as_dict.get(directory.ldap_mail_attribute):
            return ProbeResult(False, f"{connection.entries[0].entry_dn} has no {directory.ldap_mail_attribute}: "
                               "Open WebUI refuses a user without an e-mail address",
                               "set LDAP_ATTRIBUTE_FOR_MAIL to the attribute that holds it")  # fmt: skip
        if admin_email and (takeover := _admin_takeover(connection, directory, admin_email)):
            return takeover
        return ProbeResult(True, f"{where}: bound as {directory.ldap_bind_dn or 'anonymous'}, and {search} finds "
                           f"users under {directory.ldap_search_base}")  # fmt: skip
    except LDAPException as exc:
        return ProbeResult(False, f"the LDAP server {where} failed: {_reason(exc)}", "see the directory's logs")
    finally:
        connection.unbind()


def _admin_takeover(connection, directory: DirectorySettings, admin_email: str) -> ProbeResult | None:
    from ldap3 import SUBTREE
    from ldap3.utils.conv import escape_filter_chars

    mail = f"({directory.ldap_mail_attribute}={escape_filter_chars(admin_email)})"
    connection.search(directory.ldap_search_base, f"(&{mail}{directory.ldap_search_filter or ''})", SUBTREE,
                      size_limit=1, attributes=[])  # fmt: skip
    if not connection.entries:
        return None
    return ProbeResult(False, f"{connection.entries[0].entry_dn} may sign in and has the admin's e-mail "
                       f"{admin_email}: Open WebUI would sign that person in as the admin",
                       "give the seeded admin (WEBUI_ADMIN_EMAIL) an address outside the directory")  # fmt: skip


def _reason(exc: Exception) -> str:
    """ldap3 sometimes wraps the socket's message in the text of a tuple of tuples: unwrap it."""
    text = str(exc)
    quoted = re.findall(r"'([^']+)'", text) if text.startswith("(") else []
    return (quoted[0] if quoted else text) or type(exc).__name__


def probe_oidc(directory: DirectorySettings) -> ProbeResult:
    """The discovery document answers, is JSON, holds what a login needs, and names itself."""
    import httpx

    url = directory.oidc_provider_url
    try:
        response = httpx.get(url, timeout=TIMEOUT_S, follow_redirects=False)
        document = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return ProbeResult(False, f"the OIDC provider did not answer {url}: {exc}",
                           "check OPENID_PROVIDER_URL, and that this host trusts the provider's CA")  # fmt: skip
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return ProbeResult(False, f"{url} answered {response.status_code} without a discovery document (JSON)",
                           "set OPENID_PROVIDER_URL to the provider's .well-known/openid-configuration")  # fmt: skip
    missing = [key for key in REQUIRED_METADATA if not isinstance(document.get(key), str) or not document[key]]
    if missing:
        return ProbeResult(False, f"{url} lacks {', '.join(missing)}", "is it an OpenID Connect provider?")
    issuer = url.removesuffix("/.well-known/openid-configuration")
    if document["issuer"].rstrip("/") != issuer.rstrip("/"):
        return ProbeResult(False, f"{url} names the issuer {document['issuer']}, not {issuer}: the provider's tokens "
                           "would not validate", "use the discovery URL of the issuer itself")  # fmt: skip
    scopes = set(document.get("scopes_supported") or directory.oidc_scopes.split())
    unsupported = [scope for scope in directory.oidc_scopes.split() if scope not in scopes]
    if unsupported:
        return ProbeResult(False, f"the provider does not offer the scopes {', '.join(unsupported)}",
                           "remove them from OAUTH_SCOPES")  # fmt: skip
    return ProbeResult(True, f"{document['issuer']}: discovery document with a login endpoint and keys")

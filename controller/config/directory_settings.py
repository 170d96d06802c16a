"""Directory sign-in settings (issue 26): LDAP/Active Directory and OIDC, through Open WebUI's own
support for both. A group of its own like the TLS settings, checked strictly at the edge: the LDAP
values reach Open WebUI through its admin API (controller.lifecycle.webui_setup), the OIDC ones
through its environment, and a filter or DN that Open WebUI would splice into a search must be
whole before it gets there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, model_validator

from controller.config.env_keys import DIRECTORY_KEYS
from controller.config.keyed_settings import KeyedSettings, keyed_values, validate_keyed
from controller.config.setting_types import Port
from controller.config.tls_settings import CertPath, Host

# An LDAP attribute description (RFC 4512 `descr`): what Open WebUI reads the user name and mail from.
ATTRIBUTE = r"^[A-Za-z][A-Za-z0-9-]{0,63}$"
# Scopes as OAuth writes them: words separated by single spaces.
SCOPES = r"^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Where Open WebUI finds the directory's CA certificate inside its container (compose mounts it).
LDAP_CA_IN_CONTAINER = "/etc/llm-stack/ldap-ca.pem"


def _dn(value: str) -> str:
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

    if CONTROL.search(value):
        raise ValueError("holds a line break or another control character")
    try:
        parse_dn(value)
    except (LDAPInvalidDnError, IndexError, ValueError) as exc:
        raise ValueError(f"is not a distinguished name ({exc}); write e.g. ou=people,dc=example,dc=org") from None
    return value


def filter_parts(value: str) -> list[str]:
    """The whole filters that `value` is made of, in order: `(a=1)(b=2)` is two. Open WebUI splices
    the setting into `(&(uid=<user>)<setting>)`, so a parenthesis too many closes that `&` early and
    opens a filter of its own (`)(|(uid=*)` would let anyone in): each part must open and close."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(value):
        if char == "(" and depth == 0:
            if value[start:index].strip():
                raise ValueError(f"has text outside parentheses: {value[start:index].strip()!r}")
            start = index
        if char in "()":
            depth += 1 if char == "(" else -1
            if depth < 0:
                raise ValueError(f"closes a parenthesis it never opened (character {index + 1})")
            if depth == 0:
                parts.append(value[start : index + 1])
                start = index + 1
    if depth:
        raise ValueError("opens a parenthesis it never closes")
    if value[start:].strip():
        raise ValueError(f"has text outside parentheses: {value[start:].strip()!r}")
    return parts


def _search_filter(value: str) -> str:
    from ldap3.operation.search import parse_filter

    if CONTROL.search(value):
        raise ValueError("holds a line break or another control character")
    hint = "write one whole LDAP filter, e.g. (memberOf=cn=chat-users,ou=groups,dc=example,dc=org)"
    try:
        parts = filter_parts(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; {hint}") from None
    for part in parts:
        try:
            parse_filter(part, None, auto_escape=False, auto_encode=False, validator=None, check_names=False)
        except Exception:  # ldap3's parser raises its own error, or worse, on a malformed filter
            raise ValueError(f"{part!r} is not a valid LDAP filter; {hint}") from None
    return value


def _provider_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number from 0 to 65535)
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    if parts.scheme not in ("https", "http") or not parts.hostname or CONTROL.search(value) or " " in value:
        raise ValueError("is not an http(s) URL; write the provider's discovery URL, "
                         "e.g. https://sso.example.org/realms/lan/.well-known/openid-configuration")  # fmt: skip
    if not parts.path.endswith("/.well-known/openid-configuration"):
        raise ValueError("does not end in /.well-known/openid-configuration, the provider's discovery document")
    return value


def _secret_line(value: SecretStr) -> SecretStr:
    if "\n" in value.get_secret_value() or "\r" in value.get_secret_value():
        raise ValueError("holds a line break; a client secret is one line")
    return value


DistinguishedName = Annotated[str, AfterValidator(_dn)]
SearchFilter = Annotated[str, AfterValidator(_search_filter)]
ProviderUrl = Annotated[str, AfterValidator(_provider_url)]


class DirectorySettings(KeyedSettings):
    # Unset: the controller leaves Open WebUI's sign-in settings as they are (an Admin Panel choice
    # stays); `off` turns LDAP sign-in off.
    ldap: Literal["off", "on"] | None = Field(None, alias="LDAP")
    ldap_host: Host | None = Field(None, alias="LDAP_SERVER_HOST")
    ldap_port: Port | None = Field(None, alias="LDAP_SERVER_PORT")
    # ldaps: TLS from the first byte (port 636). Open WebUI 0.12.4 has no StartTLS.
    ldap_tls: Literal["off", "ldaps"] = Field("off", alias="LDAP_TLS")
    ldap_ca_cert_file: CertPath | None = Field(None, alias="LDAP_CA_CERT_FILE")
    ldap_bind_dn: DistinguishedName | None = Field(None, alias="LDAP_APP_DN")
    ldap_bind_password: SecretStr | None = Field(None, alias="LDAP_APP_PASSWORD")
    ldap_search_base: DistinguishedName | None = Field(None, alias="LDAP_SEARCH_BASE")
    ldap_search_filter: SearchFilter | None = Field(None, alias="LDAP_SEARCH_FILTERS")
    ldap_username_attribute: str = Field("uid", alias="LDAP_ATTRIBUTE_FOR_USERNAME", pattern=ATTRIBUTE)
    ldap_mail_attribute: str = Field("mail", alias="LDAP_ATTRIBUTE_FOR_MAIL", pattern=ATTRIBUTE)
    oidc: Literal["off", "on"] = Field("off", alias="OIDC")
    oidc_provider_url: ProviderUrl | None = Field(None, alias="OPENID_PROVIDER_URL")
    oidc_client_id: str | None = Field(None, alias="OAUTH_CLIENT_ID", pattern=r"^[\x21-\x7e]{1,255}$")
    oidc_client_secret: Annotated[SecretStr, AfterValidator(_secret_line)] | None = Field(
        None, alias="OAUTH_CLIENT_SECRET"
    )
    oidc_scopes: str = Field("openid email profile", alias="OAUTH_SCOPES", pattern=SCOPES)
    oidc_provider_name: str = Field("SSO", alias="OAUTH_PROVIDER_NAME", pattern=r"^[^\x00-\x1f\x7f\"'$`\\]{1,40}$")
    # What people who sign in through the directory for the first time become: `user` can chat at
    # once; `pending` waits for an admin to approve them. Unset: `user` with LDAP alone (its filter
    # decides who gets in), `pending` with OIDC (anyone with an account at the provider gets in).
    user_role: Literal["user", "pending"] | None = Field(None, alias="DIRECTORY_USER_ROLE")
    # Open WebUI's e-mail/password form; the seeded admin is a local account and needs it in a browser.
    local_signin: Literal["on", "off"] = Field("on", alias="LOCAL_SIGNIN")

    @model_validator(mode="after")
    def _consistent(self) -> DirectorySettings:
        if self.ldap == "on":
            needed = {"LDAP_SERVER_HOST": self.ldap_host, "LDAP_SEARCH_BASE": self.ldap_search_base}
            missing = [alias for alias, value in needed.items() if not value]
            if missing:
                raise ValueError(f"LDAP=on needs {' and '.join(missing)}")
            if bool(self.ldap_bind_dn) != bool(self.ldap_bind_password and self.ldap_bind_password.get_secret_value()):
                raise ValueError("LDAP_APP_DN and LDAP_APP_PASSWORD go together: set both (the search account) "
                                 "or neither (anonymous search)")  # fmt: skip
            if self.ldap_ca_cert_file and self.ldap_tls == "off":
                raise ValueError("LDAP_CA_CERT_FILE is set but LDAP_TLS=off; set LDAP_TLS=ldaps to use it")
        if self.oidc == "on":
            needed = {"OPENID_PROVIDER_URL": self.oidc_provider_url, "OAUTH_CLIENT_ID": self.oidc_client_id,
                      "OAUTH_CLIENT_SECRET": self.oidc_client_secret}  # fmt: skip
            missing = [alias for alias, value in needed.items() if not value]
            if missing:
                raise ValueError(f"OIDC=on needs {', '.join(missing)}")
            if "openid" not in self.oidc_scopes.split():
                raise ValueError("OAUTH_SCOPES must include openid")
        if self.local_signin == "off" and not self.enabled:
            raise ValueError("LOCAL_SIGNIN=off with neither LDAP=on nor OIDC=on would leave no way to sign in")
        return self

    @property
    def enabled(self) -> bool:
        return self.ldap == "on" or self.oidc == "on"

    @property
    def ldap_server_port(self) -> int:
        return self.ldap_port or (636 if self.ldap_tls == "ldaps" else 389)

    @property
    def new_user_role(self) -> str:
        return self.user_role or ("pending" if self.oidc == "on" else "user")

    def admin_changes(self) -> dict:
        """Open WebUI's admin settings that directory sign-in decides: none while it was never set,
        and the e-mail form back on with LDAP=off (LOCAL_SIGNIN=off must not outlive the directory)."""
        changes = {"DEFAULT_USER_ROLE": self.new_user_role} if self.enabled else {}
        if self.enabled or self.ldap == "off":
            changes["ENABLE_LOGIN_FORM"] = self.local_signin == "on"
        return changes

    def ldap_server_config(self) -> dict:
        """Open WebUI 0.12.4's LDAP server form (POST /api/v1/auths/admin/config/ldap/server)."""
        password = self.ldap_bind_password.get_secret_value() if self.ldap_bind_password else ""
        return {
            "label": "Directory",
            "host": self.ldap_host,
            "port": self.ldap_server_port,
            "attribute_for_mail": self.ldap_mail_attribute,
            "attribute_for_username": self.ldap_username_attribute,
            "app_dn": self.ldap_bind_dn or "",
            "app_dn_password": password,
            "search_base": self.ldap_search_base,
            "search_filters": self.ldap_search_filter or "",
            "use_tls": self.ldap_tls == "ldaps",
            "certificate_path": LDAP_CA_IN_CONTAINER if self.ldap_ca_cert_file else None,
            "validate_cert": True,
        }


HINT = "see `Directory sign-in` in README.md"


def load_directory_settings(env_file: Path, environ: Mapping[str, str] | None = None) -> DirectorySettings:
    values, sources = keyed_values(DIRECTORY_KEYS, env_file, environ)
    return validate_keyed(DirectorySettings, values, sources, str(env_file), HINT)

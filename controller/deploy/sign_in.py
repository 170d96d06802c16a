"""What Open WebUI's environment says about sign-in, for Compose and Kubernetes alike (pure).

OIDC goes through the environment: Open WebUI 0.12.4 keeps `oauth.*` settings out of its database
unless told otherwise (ENABLE_OAUTH_PERSISTENT_CONFIG), so each start reads them afresh. LDAP does
not: the controller sets it through the admin API (controller.lifecycle.webui_setup), which keeps
the bind password out of every rendered file and container environment.
"""

from __future__ import annotations

from controller.config.directory_settings import DirectorySettings

# Open WebUI's callback for its `oidc` provider, to register at the identity provider.
OIDC_CALLBACK_PATH = "/oauth/oidc/login/callback"
OIDC_SECRET_KEY = "OAUTH_CLIENT_SECRET"


def oidc_environment(directory: DirectorySettings | None, public_url: str | None) -> dict[str, str]:
    """Open WebUI's OIDC variables, without the client secret (the caller references it from .env
    or a Kubernetes Secret); empty when OIDC is off. Without a public URL, Open WebUI derives the
    callback from the request."""
    if directory is None or directory.oidc != "on":
        return {}
    env = {
        "OPENID_PROVIDER_URL": directory.oidc_provider_url,
        "OAUTH_CLIENT_ID": directory.oidc_client_id,
        "OAUTH_SCOPES": directory.oidc_scopes,
        "OAUTH_PROVIDER_NAME": directory.oidc_provider_name,
        # A person's first OIDC sign-in makes their account (with DIRECTORY_USER_ROLE). Accounts are
        # never merged by e-mail: a provider that lets users set their address could take the admin's.
        "ENABLE_OAUTH_SIGNUP": "true",
        "OAUTH_MERGE_ACCOUNTS_BY_EMAIL": "false",
    }
    if public_url:
        env["OPENID_REDIRECT_URI"] = f"{public_url.rstrip('/')}{OIDC_CALLBACK_PATH}"
    return env


def ldap_environment(directory: DirectorySettings) -> dict[str, str]:
    """Open WebUI's LDAP variables, without the bind password, for a cluster:
    there Open WebUI reads them at its first start (later changes go through its Admin Panel)."""
    server = directory.ldap_server_config()
    env = {
        "ENABLE_LDAP": "true",
        "LDAP_SERVER_LABEL": server["label"],
        "LDAP_SERVER_HOST": server["host"],
        "LDAP_SERVER_PORT": str(server["port"]),
        "LDAP_USE_TLS": str(server["use_tls"]).lower(),
        "LDAP_SEARCH_BASE": server["search_base"],
        "LDAP_SEARCH_FILTERS": server["search_filters"],
        "LDAP_ATTRIBUTE_FOR_USERNAME": server["attribute_for_username"],
        "LDAP_ATTRIBUTE_FOR_MAIL": server["attribute_for_mail"],
        "LDAP_APP_DN": server["app_dn"],
    }
    if server["certificate_path"]:
        env["LDAP_CA_CERT_FILE"] = server["certificate_path"]
    return env


def sign_in_choices_environment(directory: DirectorySettings) -> dict[str, str]:
    """DEFAULT_USER_ROLE and ENABLE_LOGIN_FORM as environment variables (a cluster's first start)."""
    return {key: str(value).lower() if isinstance(value, bool) else value
            for key, value in directory.admin_changes().items()}  # fmt: skip

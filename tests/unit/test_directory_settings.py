"""Directory sign-in's settings (LDAP and OIDC keys in .env): each bad value exits 2 naming the key
and how to fix it, leaving `.env` and `compose/` byte-identical (bad_input_harness.py); a good one
renders OIDC into Open WebUI's environment, with the client secret referenced, never written, and
the LDAP bind password nowhere in the compose file."""

from __future__ import annotations

import pytest
import yaml

from controller.config.directory_settings import DirectorySettings, filter_parts
from controller.config.env_keys import DIRECTORY_KEYS
from tests.unit.bad_input_harness import Project
from tests.unit.certs import make_certificate, make_key, write_pair

LDAP = "LDAP=on\nLDAP_SERVER_HOST=dc1.example.lan\nLDAP_SEARCH_BASE=ou=people,dc=example,dc=lan\n"
SEARCH = "LDAP_APP_DN=cn=reader,ou=services,dc=example,dc=lan\n"
DISCOVERY = "https://sso.example.lan/realms/lan/.well-known/openid-configuration"
OIDC = f"OIDC=on\nOPENID_PROVIDER_URL={DISCOVERY}\nOAUTH_CLIENT_ID=llm-chat\nOAUTH_CLIENT_SECRET='s3cr$t-client'\n"


def test_the_settings_keys_are_the_ones_env_keys_lists():
    assert tuple(f.alias for f in DirectorySettings.model_fields.values()) == DIRECTORY_KEYS


BAD = {
    "ldap_unknown_mode": ("LDAP=yes\n", ["LDAP", "line 5"]),
    "ldap_without_host": ("LDAP=on\nLDAP_SEARCH_BASE=dc=example,dc=lan\n", ["LDAP_SERVER_HOST"]),
    "ldap_starttls": (LDAP + "LDAP_TLS=starttls\n", ["LDAP_TLS"]),
    "bind_dn_without_password": (LDAP + SEARCH, ["LDAP_APP_DN and LDAP_APP_PASSWORD go together"]),
    "bad_search_base": (LDAP.replace("ou=people,dc=example,dc=lan", "ou=people,,dc=lan"),
                        ["LDAP_SEARCH_BASE", "distinguished name"]),
    "filter_closes_the_and": (LDAP + "LDAP_SEARCH_FILTERS=')(|(uid=*)'\n",
                              ["LDAP_SEARCH_FILTERS", "closes a parenthesis it never opened"]),
    "filter_opens_a_second_filter": (LDAP + "LDAP_SEARCH_FILTERS='(ou=x))(|(uid=*)'\n",
                                     ["LDAP_SEARCH_FILTERS", "closes a parenthesis"]),
    "filter_unclosed": (LDAP + "LDAP_SEARCH_FILTERS='(memberOf=cn=chat'\n", ["LDAP_SEARCH_FILTERS", "never closes"]),
    "filter_bare": (LDAP + "LDAP_SEARCH_FILTERS=memberOf=cn=chat\n", ["LDAP_SEARCH_FILTERS", "outside parentheses"]),
    "filter_with_a_line_break": (LDAP + 'LDAP_SEARCH_FILTERS="(ou=a)\\n(uid=*)"\n',
                                 ["LDAP_SEARCH_FILTERS", "line break"]),
    "attribute_with_a_space": (LDAP + "LDAP_ATTRIBUTE_FOR_USERNAME='uid x'\n", ["LDAP_ATTRIBUTE_FOR_USERNAME"]),
    "port_zero": (LDAP + "LDAP_SERVER_PORT=0\n", ["LDAP_SERVER_PORT"]),
    "password_with_a_dollar_unquoted": (LDAP + SEARCH + "LDAP_APP_PASSWORD=pa$word\n",
                                        ["LDAP_APP_PASSWORD", "'$' outside single quotes"]),
    "ca_with_ldap_tls_off": (LDAP + "LDAP_CA_CERT_FILE=/etc/ssl/ca.pem\n", ["LDAP_TLS=ldaps"]),
    "oidc_without_secret": (f"OIDC=on\nOPENID_PROVIDER_URL={DISCOVERY}\nOAUTH_CLIENT_ID=x\n", ["OAUTH_CLIENT_SECRET"]),
    "oidc_not_discovery": (OIDC.replace(DISCOVERY, "https://sso.example.lan/realms/lan"),
                           ["OPENID_PROVIDER_URL", "/.well-known/openid-configuration"]),
    "oidc_ftp": (OIDC.replace("https://", "ftp://"), ["OPENID_PROVIDER_URL", "http(s) URL"]),
    "oidc_port_not_a_number": (OIDC.replace("sso.example.lan/", "sso.example.lan:abc/"),
                               ["OPENID_PROVIDER_URL", "port"]),
    "scopes_without_openid": (OIDC + "OAUTH_SCOPES='email profile'\n", ["OAUTH_SCOPES must include openid"]),
    "client_secret_with_a_line_break": (OIDC.replace("'s3cr$t-client'", '"two\\nlines"'),
                                        ["OAUTH_CLIENT_SECRET", "line break"]),
    "role_admin": (LDAP + "DIRECTORY_USER_ROLE=admin\n", ["DIRECTORY_USER_ROLE"]),
    "no_way_to_sign_in": ("LOCAL_SIGNIN=off\n", ["LOCAL_SIGNIN=off"]),
}  # fmt: skip


@pytest.mark.parametrize(("lines", "names"), BAD.values(), ids=BAD.keys())
def test_a_bad_directory_setting_is_refused_naming_it(project: Project, lines, names):
    project.add_env(lines)
    result = project.refused("render", "deepseek-1.5b", names=names)
    assert "s3cr$t-client" not in result.flat and "pa$word" not in result.flat


def test_a_bad_ldap_ca_file_is_named(project: Project, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    project.add_env(LDAP + f"LDAP_TLS=ldaps\nLDAP_CA_CERT_FILE={ca}\n")
    project.refused("render", "deepseek-1.5b", names=["LDAP_CA_CERT_FILE", str(ca), "PEM"])


def test_the_filter_is_split_into_whole_filters():
    assert filter_parts("(a=1)(b=(c\\29))") == ["(a=1)", "(b=(c\\29))"]
    assert filter_parts(" (&(a=1)(|(b=2)(c=3))) ") == ["(&(a=1)(|(b=2)(c=3)))"]


def _rendered(project: Project) -> tuple[dict, str]:
    result = project.run("render", "deepseek-1.5b")
    assert result.code == 0, result.stderr
    text = (project.root / "compose" / "docker-compose.yml").read_text()
    return yaml.safe_load(text), text


def test_oidc_renders_open_webuis_variables_and_references_the_secret(project: Project):
    project.add_env(OIDC + "TLS=internal\nTLS_HOST=llm.example.lan\n")
    compose, text = _rendered(project)
    env = compose["services"]["webui"]["environment"]
    assert env["OPENID_PROVIDER_URL"] == DISCOVERY and env["OAUTH_CLIENT_ID"] == "llm-chat"
    assert env["OAUTH_SCOPES"] == "openid email profile" and env["ENABLE_OAUTH_SIGNUP"] == "true"
    assert env["OPENID_REDIRECT_URI"] == "https://llm.example.lan/oauth/oidc/login/callback"
    assert env["OAUTH_MERGE_ACCOUNTS_BY_EMAIL"] == "false"
    assert env["OAUTH_CLIENT_SECRET"] == "${OAUTH_CLIENT_SECRET:?set OAUTH_CLIENT_SECRET in .env}"
    assert "s3cr" not in text


def test_oidc_without_tls_leaves_the_callback_to_open_webui(project: Project):
    project.add_env(OIDC)
    compose, _ = _rendered(project)
    # 127.0.0.1 would send every other browser to itself; Open WebUI derives it from each request.
    assert "OPENID_REDIRECT_URI" not in compose["services"]["webui"]["environment"]


def test_ldap_puts_no_password_in_the_compose_file_and_mounts_the_ca(project: Project, tmp_path):
    ca, _ = write_pair(tmp_path, make_certificate(make_key(), ["ca.example.lan"]), make_key())
    password = 'b1nd-pa$$ "word"'
    project.add_env(LDAP + SEARCH + f"LDAP_APP_PASSWORD='{password}'\nLDAP_TLS=ldaps\nLDAP_CA_CERT_FILE={ca}\n")
    compose, text = _rendered(project)
    webui = compose["services"]["webui"]
    assert "b1nd" not in text and not any(key.startswith(("LDAP", "OAUTH")) for key in webui["environment"])
    (mount,) = [m for m in webui["volumes"] if isinstance(m, dict)]
    assert mount == {"type": "bind", "source": str(ca), "target": "/etc/llm-stack/ldap-ca.pem", "read_only": True}


def test_the_ldap_form_holds_the_password_literally():
    settings = DirectorySettings.model_validate(
        {
            "LDAP": "on",
            "LDAP_SERVER_HOST": "10.0.0.5",
            "LDAP_SEARCH_BASE": "dc=example,dc=lan",
            "LDAP_TLS": "ldaps",
            "LDAP_APP_DN": "cn=r,dc=example,dc=lan",
            "LDAP_APP_PASSWORD": "a$b'c\"d\ne",
        }  # fmt: skip
    )
    form = settings.ldap_server_config()
    assert form["app_dn_password"] == "a$b'c\"d\ne" and form["port"] == 636 and form["use_tls"] is True
    assert "a$b" not in repr(settings)
    assert settings.admin_changes() == {"DEFAULT_USER_ROLE": "user", "ENABLE_LOGIN_FORM": True}
    assert DirectorySettings().admin_changes() == {}
    # LDAP=off puts the e-mail form back, whatever LOCAL_SIGNIN=off left in Open WebUI.
    assert DirectorySettings.model_validate({"LDAP": "off"}).admin_changes() == {"ENABLE_LOGIN_FORM": True}


def test_oidc_makes_new_people_pending_unless_told_otherwise():
    """Anyone with an account at the provider gets through OIDC; an LDAP filter decides who gets in."""
    oidc = {"OIDC": "on", "OPENID_PROVIDER_URL": DISCOVERY, "OAUTH_CLIENT_ID": "c", "OAUTH_CLIENT_SECRET": "s"}
    assert DirectorySettings.model_validate(oidc).new_user_role == "pending"
    assert DirectorySettings.model_validate({**oidc, "DIRECTORY_USER_ROLE": "user"}).new_user_role == "user"
    ldap = {"LDAP": "on", "LDAP_SERVER_HOST": "dc1.example.lan", "LDAP_SEARCH_BASE": "dc=example,dc=lan"}
    assert DirectorySettings.model_validate(ldap).new_user_role == "user"
    assert DirectorySettings.model_validate({**ldap, **oidc}).new_user_role == "pending"


def test_a_bind_password_reads_literally_from_env_with_a_dollar_quotes_or_a_line_break(tmp_path):
    from controller.config.directory_settings import load_directory_settings

    env = tmp_path / ".env"
    env.write_text(LDAP + SEARCH + 'LDAP_APP_PASSWORD="first line\\nsecond \\"quoted\\" line"\n', encoding="utf-8")
    assert load_directory_settings(env, {}).ldap_bind_password.get_secret_value() == 'first line\nsecond "quoted" line'
    env.write_text(LDAP + SEARCH + "LDAP_APP_PASSWORD='pa$HOME \"x\" ${USER}'\n", encoding="utf-8")
    assert load_directory_settings(env, {}).ldap_bind_password.get_secret_value() == 'pa$HOME "x" ${USER}'


def test_up_hands_the_directory_settings_to_open_webui_only_when_they_are_set():
    from controller.lifecycle.webui_setup import WebUISetup
    from controller.runtime.webui_client import Session

    class Recorder:
        calls: list = []

        def set_sign_in(self, token, ldap_on, ldap_server, admin_changes):
            self.calls.append((ldap_on, ldap_server.get("app_dn_password"), admin_changes))
            return ["the LDAP server settings"]

    warned: list[str] = []
    on = DirectorySettings.model_validate({"LDAP": "on", "LDAP_SERVER_HOST": "dc1.example.lan",
                                           "LDAP_SEARCH_BASE": "dc=example,dc=lan"})  # fmt: skip
    for directory in (on, DirectorySettings(), DirectorySettings.model_validate({"LDAP": "off"})):
        setup = WebUISetup(Recorder(), None, ".env", warned.append, directory=directory)
        setup.session = Session("token", "admin")
        setup._apply_sign_in()
    assert Recorder.calls == [
        (True, "", {"DEFAULT_USER_ROLE": "user", "ENABLE_LOGIN_FORM": True}),
        (None, None, {}),  # unset: Open WebUI's own choice stays (the client writes nothing)
        (False, None, {"ENABLE_LOGIN_FORM": True}),
    ]
    assert warned and "the LDAP server settings" in warned[0] and "as .env says" in warned[0]


def test_status_says_how_people_sign_in():
    from controller.cli.console import _sign_in_row
    from controller.config.settings import LoadedSettings
    from controller.lifecycle.status import _sign_in_status
    from tests.unit._support import fixed_settings

    directory = DirectorySettings.model_validate(
        {
            "LDAP": "on",
            "LDAP_SERVER_HOST": "dc1.example.lan",
            "LDAP_SEARCH_BASE": "dc=example,dc=lan",
            "LDAP_TLS": "ldaps",
            "DIRECTORY_USER_ROLE": "pending",
        }  # fmt: skip
    )
    shown = _sign_in_status(LoadedSettings(fixed_settings(), {}, directory=directory))
    assert shown == {"ldap": "dc1.example.lan:636", "oidc": None, "local_form": True, "new_directory_users": "pending"}
    rows = []
    _sign_in_row(type("Table", (), {"add_row": lambda self, *cells: rows.append(cells)})(), shown)
    assert rows == [("sign-in", "LDAP dc1.example.lan:636; local form on; new users: pending")]
    assert _sign_in_status(LoadedSettings(fixed_settings(), {}))["ldap"] is None

from __future__ import annotations

import stat

import pytest

from controller.config.envfile import read_env_entries, read_env_file, write_env_values
from controller.config.settings import Settings, load_settings, read_settings, store_generated_secrets
from controller.config.site import SiteConfig
from controller.errors import SettingsError

GENERATED = ("WEBUI_ADMIN_PASSWORD", "WEBUI_SECRET_KEY", "VLLM_API_KEY")
STRONG = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """The developer's own shell must not leak settings into these tests."""
    for field in Settings.model_fields.values():
        monkeypatch.delenv(field.alias, raising=False)


def _site(tmp_path) -> SiteConfig:
    return SiteConfig(root=tmp_path, env_file=tmp_path / ".env")


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _error_text(error: SettingsError) -> str:
    return "\n".join([error.message, error.hint or "", *error.details])


def test_first_load_creates_env_0600_with_generated_secrets(tmp_path):
    settings = load_settings(_site(tmp_path))
    env = tmp_path / ".env"
    assert _mode(env) == 0o600
    stored = read_env_file(env)
    assert set(GENERATED) <= set(stored)
    assert len(stored["WEBUI_ADMIN_PASSWORD"]) >= 20
    assert len(stored["WEBUI_SECRET_KEY"]) >= 32 and len(stored["VLLM_API_KEY"]) >= 32
    assert settings.webui_admin_password.get_secret_value() == stored["WEBUI_ADMIN_PASSWORD"]
    assert settings.webui_secret_key.get_secret_value() == stored["WEBUI_SECRET_KEY"]
    assert settings.vllm_api_key.get_secret_value() == stored["VLLM_API_KEY"]


def test_second_load_keeps_the_same_values_and_bytes(tmp_path):
    first = load_settings(_site(tmp_path))
    before = (tmp_path / ".env").read_bytes()
    second = load_settings(_site(tmp_path))
    assert (tmp_path / ".env").read_bytes() == before
    for key in ("webui_admin_password", "webui_secret_key", "vllm_api_key"):
        assert getattr(first, key).get_secret_value() == getattr(second, key).get_secret_value()


def test_existing_values_and_comments_are_never_overwritten(tmp_path):
    original = f"# site notes: keep me\nWEBUI_PORT=8081\nWEBUI_ADMIN_PASSWORD='{STRONG}'\n# trailing comment\n"
    (tmp_path / ".env").write_text(original, encoding="utf-8")
    settings = load_settings(_site(tmp_path))
    text = (tmp_path / ".env").read_text(encoding="utf-8")
    assert text.startswith(original)
    assert settings.webui_port == 8081
    assert settings.webui_admin_password.get_secret_value() == STRONG
    stored = read_env_file(tmp_path / ".env")
    assert stored["WEBUI_ADMIN_PASSWORD"] == STRONG
    assert stored["VLLM_API_KEY"] and stored["WEBUI_SECRET_KEY"]  # only the missing ones were added


def test_hand_made_env_is_tightened_to_0600(tmp_path):
    env = tmp_path / ".env"
    env.write_text(f"WEBUI_ADMIN_PASSWORD='{STRONG}'\n", encoding="utf-8")
    env.chmod(0o644)
    load_settings(_site(tmp_path))
    assert _mode(env) == 0o600


def test_process_environment_wins_and_is_not_written_to_env(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("WEBUI_PORT=8081\n", encoding="utf-8")
    monkeypatch.setenv("WEBUI_PORT", "9090")
    monkeypatch.setenv("VLLM_API_KEY", "key-from-the-environment-123")
    settings = load_settings(_site(tmp_path))
    assert settings.webui_port == 9090
    assert settings.vllm_api_key.get_secret_value() == "key-from-the-environment-123"
    text = (tmp_path / ".env").read_text(encoding="utf-8")
    assert "key-from-the-environment-123" not in text and "VLLM_API_KEY" not in text
    assert "9090" not in text and read_env_file(tmp_path / ".env")["WEBUI_PORT"] == "8081"


WEAK = ["short-pw", "admin123", "changeme123", "password123", "changeme1234", "ChangeMe1234", "openwebui123"]


@pytest.mark.parametrize("password", WEAK)
def test_weak_password_in_env_is_refused_and_env_is_left_byte_identical(tmp_path, password):
    env = tmp_path / ".env"
    env.write_text(f"# mine\nWEBUI_ADMIN_PASSWORD='{password}'\nWEBUI_PORT=8081\n", encoding="utf-8")
    env.chmod(0o644)
    before = env.read_bytes()
    with pytest.raises(SettingsError) as info:
        load_settings(_site(tmp_path))
    assert info.value.exit_code == 2
    assert env.read_bytes() == before and _mode(env) == 0o644  # nothing touched, not even the mode
    text = _error_text(info.value)
    assert "WEBUI_ADMIN_PASSWORD" in text
    assert password not in text


@pytest.mark.parametrize("password", ["changeme1234", "password123456", "openwebui123456", "admin@example.com1"])
def test_guessable_password_of_full_length_fails_the_named_strength_rule(tmp_path, password):
    (tmp_path / ".env").write_text(f"WEBUI_ADMIN_PASSWORD='{password}'\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="rule 'strength': zxcvbn rates it [0-2] of 4") as info:
        load_settings(_site(tmp_path))
    assert ".env line 1" in info.value.message and password not in _error_text(info.value)


def test_short_password_fails_the_named_length_rule(tmp_path):
    (tmp_path / ".env").write_text("WEBUI_ADMIN_PASSWORD='x7#Qp!2'\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="rule 'length'"):
        load_settings(_site(tmp_path))


@pytest.mark.parametrize("password", ["admin123", "short-pw"])
def test_weak_password_from_environment_creates_no_env_file(tmp_path, monkeypatch, password):
    monkeypatch.setenv("WEBUI_ADMIN_PASSWORD", password)
    with pytest.raises(SettingsError) as info:
        load_settings(_site(tmp_path))
    assert not (tmp_path / ".env").exists()
    assert password not in _error_text(info.value)


@pytest.mark.parametrize(
    "image",
    ["vllm/vllm-openai:latest", "vllm/vllm-openai", "vllm/vllm-openai:nightly", "registry.local:5000/vllm/vllm-openai"],
)
def test_unpinned_vllm_image_is_refused(tmp_path, image):
    (tmp_path / ".env").write_text(f"VLLM_IMAGE={image}\n", encoding="utf-8")
    before = (tmp_path / ".env").read_bytes()
    with pytest.raises(SettingsError) as info:
        load_settings(_site(tmp_path))
    assert "VLLM_IMAGE" in info.value.message and info.value.exit_code == 2
    assert (tmp_path / ".env").read_bytes() == before


@pytest.mark.parametrize(
    "image",
    ["vllm/vllm-openai:v0.32.0", "registry.local:5000/vllm/vllm-openai:v0.32.0", "vllm/vllm-openai@sha256:" + "a" * 64],
)
def test_pinned_vllm_image_is_accepted(tmp_path, image):
    (tmp_path / ".env").write_text(f"VLLM_IMAGE={image}\n", encoding="utf-8")
    assert load_settings(_site(tmp_path)).vllm_image == image


def test_non_numeric_webui_port_is_refused_naming_the_key(tmp_path):
    (tmp_path / ".env").write_text("WEBUI_PORT=abc\n", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(_site(tmp_path))
    assert "WEBUI_PORT" in info.value.message and info.value.exit_code == 2
    assert not read_env_file(tmp_path / ".env").get("VLLM_API_KEY")  # no secret generated either


def test_error_with_secrets_in_env_does_not_reveal_them(tmp_path):
    load_settings(_site(tmp_path))
    stored = read_env_file(tmp_path / ".env")
    with open(tmp_path / ".env", "a", encoding="utf-8") as env:
        env.write("WEBUI_PORT=70000\nGPU_DEVICES=some\n")
    with pytest.raises(SettingsError) as info:
        load_settings(_site(tmp_path))
    text = _error_text(info.value)
    assert "WEBUI_PORT" in text and "GPU_DEVICES" in text
    assert not any(stored[key] in text for key in GENERATED)


def test_two_generated_passwords_differ(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = load_settings(_site(tmp_path / "a")).webui_admin_password.get_secret_value()
    second = load_settings(_site(tmp_path / "b")).webui_admin_password.get_secret_value()
    assert first != second


def test_generate_false_writes_nothing(tmp_path):
    settings = load_settings(_site(tmp_path), generate=False)
    assert not (tmp_path / ".env").exists()
    assert len(settings.webui_admin_password.get_secret_value()) >= 20


def test_write_env_values_keeps_present_keys_unless_told_to_overwrite(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# note\nVLLM_API_KEY='old-key-value'\n", encoding="utf-8")
    assert write_env_values(env, {"VLLM_API_KEY": "new", "HF_TOKEN": "hf_x"}, overwrite=False) == ["HF_TOKEN"]
    assert read_env_file(env) == {"VLLM_API_KEY": "old-key-value", "HF_TOKEN": "hf_x"}
    assert write_env_values(env, {"VLLM_API_KEY": "new"}, overwrite=True) == ["VLLM_API_KEY"]
    assert read_env_file(env)["VLLM_API_KEY"] == "new" and env.read_text().startswith("# note\n")


# ----- the pure loader and the separate write (stack.py stores secrets after preflight) -----------


def test_read_settings_generates_secrets_in_memory_and_writes_nothing(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# mine\nWEBUI_PORT=8081\n", encoding="utf-8")
    env.chmod(0o644)
    before = env.read_bytes()
    loaded = read_settings(_site(tmp_path), environ={})
    assert env.read_bytes() == before and _mode(env) == 0o644
    assert sorted(loaded.pending_secrets) == sorted(GENERATED)
    assert loaded.settings.vllm_api_key.get_secret_value() == loaded.pending_secrets["VLLM_API_KEY"]
    assert not (tmp_path / "compose").exists()


def test_read_settings_on_a_first_run_creates_no_file(tmp_path):
    loaded = read_settings(_site(tmp_path), environ={})
    assert not (tmp_path / ".env").exists() and set(loaded.pending_secrets) == set(GENERATED)


def test_store_generated_secrets_writes_exactly_the_values_in_memory(tmp_path):
    loaded = read_settings(_site(tmp_path), environ={})
    assert store_generated_secrets(_site(tmp_path), loaded) == list(loaded.pending_secrets)
    assert _mode(tmp_path / ".env") == 0o600
    assert read_env_file(tmp_path / ".env") == loaded.pending_secrets
    again = read_settings(_site(tmp_path), environ={})
    assert again.pending_secrets == {} and store_generated_secrets(_site(tmp_path), again) == []


def test_store_generated_secrets_never_overwrites_a_value_set_meanwhile(tmp_path):
    loaded = read_settings(_site(tmp_path), environ={})
    (tmp_path / ".env").write_text("VLLM_API_KEY='set-by-hand-in-between-0001'\n", encoding="utf-8")
    written = store_generated_secrets(_site(tmp_path), loaded)
    assert "VLLM_API_KEY" not in written
    assert read_env_file(tmp_path / ".env")["VLLM_API_KEY"] == "set-by-hand-in-between-0001"


# ----- reading .env literally, with lines -------------------------------------------------------


def test_env_values_are_read_literally_without_interpolation(tmp_path):
    (tmp_path / ".env").write_text(
        "VLLM_API_KEY='vllm-key-000000000000001'\nWEBUI_ADMIN_NAME='${VLLM_API_KEY}'\nA=\"Ops $team\"\nB=x${A}\n",
        encoding="utf-8",
    )
    values = read_env_file(tmp_path / ".env")
    assert values["WEBUI_ADMIN_NAME"] == "${VLLM_API_KEY}"
    assert values["A"] == "Ops $team" and values["B"] == "x${A}"
    settings = load_settings(_site(tmp_path), generate=False)
    assert settings.webui_admin_name == "${VLLM_API_KEY}"


def test_env_entries_carry_their_line_numbers(tmp_path):
    (tmp_path / ".env").write_text("# c\n\nA=1\n\n\nexport B='x'\nC='multi\nline'\nD=4\n", encoding="utf-8")
    entries = read_env_entries(tmp_path / ".env")
    assert {k: e.line for k, e in entries.items()} == {"A": 3, "B": 6, "C": 7, "D": 9}
    assert entries["B"].single_quoted and not entries["A"].single_quoted


def test_unparsable_line_is_an_error_naming_file_and_line_without_its_text(tmp_path):
    (tmp_path / ".env").write_text("A=1\nVLLM_API_KEY secret-value-xyz\n", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        read_env_file(tmp_path / ".env")
    assert f"{tmp_path / '.env'} line 2" in info.value.message
    assert "secret-value-xyz" not in _error_text(info.value)


def test_dollar_in_a_compose_read_secret_needs_single_quotes(tmp_path):
    (tmp_path / ".env").write_text('WEBUI_ADMIN_PASSWORD="quiet-otter-$lantern-4817"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="line 1: WEBUI_ADMIN_PASSWORD holds a '\\$' outside single quotes"):
        load_settings(_site(tmp_path))
    (tmp_path / ".env").write_text("WEBUI_ADMIN_PASSWORD='quiet-otter-$lantern-4817'\n", encoding="utf-8")
    assert load_settings(_site(tmp_path), generate=False).webui_admin_password.get_secret_value().count("$") == 1


def test_bad_value_from_the_environment_names_the_variable(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("WEBUI_PORT=8081\n", encoding="utf-8")
    monkeypatch.setenv("WEBUI_PORT", "0")
    with pytest.raises(SettingsError) as info:
        load_settings(_site(tmp_path))
    assert info.value.message.startswith("the environment variable WEBUI_PORT: WEBUI_PORT='0'")


@pytest.mark.parametrize(("address", "url"), [("127.0.0.1", "http://127.0.0.1:7860"), ("::1", "http://[::1]:7860")])
def test_bind_address_is_an_ip_and_gives_a_usable_url(tmp_path, address, url):
    (tmp_path / ".env").write_text(f"WEBUI_BIND_ADDRESS={address}\n", encoding="utf-8")
    assert load_settings(_site(tmp_path), generate=False).webui_url == url


# ----- every key the controller reads, in one place ---------------------------------------------


def test_known_keys_hold_every_key_each_reader_reads():
    from controller.config import env_keys
    from controller.config.env_values import KNOWN_KEYS
    from controller.config.settings import GENERATED_SECRETS
    from controller.deploy.k8s_settings import KEYS, K8sSettings
    from controller.phases import PHASES

    # The settings' keys are named twice (the model's aliases, and env_keys for the commands that
    # never load the model): the two lists must be one.
    assert tuple(f.alias for f in Settings.model_fields.values()) == env_keys.SETTINGS_KEYS
    user_set = {"HF_TOKEN", "GRAFANA_ADMIN_PASSWORD", "LDAP_APP_PASSWORD", "OAUTH_CLIENT_SECRET"}
    assert set(GENERATED_SECRETS) | user_set == env_keys.SECRET_KEYS
    assert {f.alias for f in Settings.model_fields.values()} <= KNOWN_KEYS
    assert {f.alias for f in K8sSettings.model_fields.values()} == set(env_keys.K8S_KEYS) == set(KEYS)
    assert {phase.env_key for phase in PHASES} <= KNOWN_KEYS
    assert {"CONTROLLER_CATALOG", "SWITCH_STRATEGY", "SWITCH_RESERVE_GIB", "GPU_MEMORY_GIB", "HF_TOKEN"} <= KNOWN_KEYS


def test_env_example_holds_only_known_keys():
    from pathlib import Path

    from controller.config.env_values import KNOWN_KEYS

    example = Path(__file__).resolve().parents[2] / ".env.example"
    keys = {line.lstrip("# ").split("=", 1)[0] for line in example.read_text().splitlines() if "=" in line}
    written = {k for k in keys if k.isupper() and " " not in k}
    assert written and written <= KNOWN_KEYS, written - KNOWN_KEYS


def test_misspelled_key_in_env_is_an_error_naming_file_line_and_known_key(tmp_path):
    (tmp_path / ".env").write_text("WEBUI_PORT=8081\nOFFLNE=true\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        read_settings(_site(tmp_path))
    text = _error_text(caught.value)
    assert f"{tmp_path / '.env'} line 2" in text and "OFFLNE: did you mean OFFLINE?" in text


def test_unknown_keys_are_collected_as_warnings_not_errors(tmp_path):
    from controller.config.env_values import env_key_warnings

    (tmp_path / ".env").write_text("SITE_OWNER=ops\nHF_HOME=/x\nVLLM_API_BASE=http://x\n", encoding="utf-8")
    read_settings(_site(tmp_path))  # no error
    warnings = env_key_warnings(tmp_path / ".env")
    assert [w.split(": ", 1)[1].split(" ", 1)[0] for w in warnings] == ["SITE_OWNER", "HF_HOME", "VLLM_API_BASE"]
    assert all(str(tmp_path / ".env") in w for w in warnings)


# ----- staged writes: validate every line before writing any ------------------------------------


def test_a_value_with_a_single_quote_is_stored_double_quoted_and_read_back_literally(tmp_path):
    env = tmp_path / ".env"
    write_env_values(env, {"CONTROLLER_CATALOG": "/srv/it's/catalog.yaml"}, overwrite=True)
    assert read_env_file(env) == {"CONTROLLER_CATALOG": "/srv/it's/catalog.yaml"}


@pytest.mark.parametrize("value", ['/srv/it\'s "x"/c.yaml', "/srv/it's/$HOME", "a'b\nc", "it's\\"])
def test_an_unstorable_value_is_refused_before_the_file_is_touched(tmp_path, value):
    from controller.config.envfile import stage_env_values

    env = tmp_path / ".env"
    env.write_text("WEBUI_PORT=8081\n", encoding="utf-8")
    before = env.read_bytes()
    with pytest.raises(SettingsError, match="CONTROLLER_CATALOG"):
        stage_env_values(env, {"OFFLINE": "true", "CONTROLLER_CATALOG": value}, overwrite=True)
    with pytest.raises(SettingsError, match="CONTROLLER_CATALOG"):
        write_env_values(env, {"OFFLINE": "true", "CONTROLLER_CATALOG": value}, overwrite=True)
    assert env.read_bytes() == before


def test_read_settings_stages_the_secrets_write_and_refuses_an_unwritable_env_before_anything(tmp_path):
    env_dir = tmp_path / "env-is-a-file"
    env_dir.write_text("not a directory")
    site = SiteConfig(root=tmp_path, env_file=env_dir / ".env")
    with pytest.raises(SettingsError, match="env-is-a-file"):
        read_settings(site)


def test_grafana_gets_its_admin_password_generated_only_when_it_is_on(tmp_path):
    env = tmp_path / ".env"
    env.write_text("MONITORING=on\n", encoding="utf-8")
    assert "GRAFANA_ADMIN_PASSWORD" not in read_settings(_site(tmp_path), environ={}).pending_secrets
    env.write_text("MONITORING=grafana\n", encoding="utf-8")
    load_settings(_site(tmp_path))
    stored = read_env_file(env)
    assert len(stored["GRAFANA_ADMIN_PASSWORD"]) >= 32 and _mode(env) == 0o600
    # Kept: the next command generates nothing.
    again = read_settings(_site(tmp_path), environ={})
    assert not again.pending_secrets and again.monitoring.grafana


def test_a_short_grafana_password_is_refused_without_showing_it(tmp_path):
    (tmp_path / ".env").write_text("MONITORING=grafana\nGRAFANA_ADMIN_PASSWORD=hunter2\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        read_settings(_site(tmp_path), environ={})
    text = _error_text(caught.value)
    assert "GRAFANA_ADMIN_PASSWORD=(hidden)" in text and "hunter2" not in text

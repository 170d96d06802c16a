"""Site settings: defaults < `.env` < process environment. Missing secrets are generated once.

Reading is pure: `read_settings` validates everything and generates missing secrets in memory
only; `store_generated_secrets` is the one write, done by the caller once every check passed.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from controller.config.directory_settings import DirectorySettings, load_directory_settings
from controller.config.env_keys import SECRET_KEYS
from controller.config.env_values import collect_values
from controller.config.envfile import stage_env_values, write_env_values
from controller.config.monitoring_settings import MonitoringSettings, load_monitoring_settings
from controller.config.setting_types import ImageReference, Key, Port, Text
from controller.config.site import SiteConfig
from controller.config.tls_settings import TlsSettings, load_tls_settings
from controller.config.values import control_characters, host_directory, ip_address, parse_memory_gib
from controller.errors import SettingsError

MIN_ADMIN_PASSWORD_LENGTH = 12
# zxcvbn scores 0-4; 3 is "safely unguessable: moderate protection from an offline slow-hash attack".
MIN_ADMIN_PASSWORD_SCORE = 3
GENERATED_PASSWORD_LENGTH = 24
# Words a guesser tries first for this stack; zxcvbn treats them as known.
PASSWORD_CONTEXT_WORDS = ["openwebui", "open-webui", "webui", "llmstack", "vllm", "admin", "changeme", "demo"]


def _secret() -> str:
    return secrets.token_urlsafe(32)


def _admin_password() -> str:
    # URL-safe alphabet: no quoting problems in .env, shells or JSON.
    return secrets.token_urlsafe(GENERATED_PASSWORD_LENGTH)[:GENERATED_PASSWORD_LENGTH]


# Keys whose missing values are generated once and written back to .env.
GENERATED_SECRETS = {
    "WEBUI_ADMIN_PASSWORD": _admin_password,
    "WEBUI_SECRET_KEY": _secret,
    "VLLM_API_KEY": _secret,
}
# Generated like those, only where MONITORING=grafana (the monitoring settings' key).
GRAFANA_ADMIN_PASSWORD = "GRAFANA_ADMIN_PASSWORD"


class Settings(BaseModel):
    # Built on first use: `models` and `plan` never validate settings, and start faster without it.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)

    webui_port: Port = Field(7860, alias="WEBUI_PORT")
    webui_bind_address: Annotated[str, AfterValidator(ip_address)] = Field("0.0.0.0", alias="WEBUI_BIND_ADDRESS")
    webui_admin_email: Text = Field(
        "admin@example.com",
        alias="WEBUI_ADMIN_EMAIL",
        max_length=254,
        pattern=r"^[^@\s\"'\\]+@[^@\s\"'\\]+\.[^@\s\"'\\]+$",
    )
    webui_admin_name: Text = Field("Admin", alias="WEBUI_ADMIN_NAME", min_length=1, max_length=100)
    webui_admin_password: SecretStr = Field(alias="WEBUI_ADMIN_PASSWORD")
    webui_secret_key: Key = Field(alias="WEBUI_SECRET_KEY")
    vllm_api_key: Key = Field(alias="VLLM_API_KEY")
    hf_token: SecretStr | None = Field(None, alias="HF_TOKEN")
    hf_cache_dir: Annotated[Path, AfterValidator(host_directory)] = Field(
        Path("~/.cache/huggingface"), alias="HF_CACHE_DIR"
    )
    vllm_image: ImageReference = Field("vllm/vllm-openai:v0.32.0", alias="VLLM_IMAGE")
    # Profiles with accelerator: cpu need vLLM's CPU build; the default image is CUDA-only.
    vllm_cpu_image: ImageReference = Field(
        "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.32.0", alias="VLLM_CPU_IMAGE"
    )
    webui_image: ImageReference = Field("ghcr.io/open-webui/open-webui:v0.12.4", alias="WEBUI_IMAGE")
    gpu_devices: str = Field("all", alias="GPU_DEVICES", pattern=r"^(all|[1-9][0-9]*|device=[0-9]+(,[0-9]+)*)$")
    gpu_memory_gib: float | None = Field(None, alias="GPU_MEMORY_GIB", allow_inf_nan=False)
    compose_project_name: str = Field(
        "llmstack", alias="COMPOSE_PROJECT_NAME", max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$"
    )
    vllm_host_port: Port | None = Field(None, alias="VLLM_HOST_PORT")
    # An air-gapped site (`controller bundle load` sets it): nothing is pulled or downloaded, and
    # vLLM sits only on an internal network.
    offline: bool = Field(False, alias="OFFLINE")

    @field_validator("webui_admin_password")
    @classmethod
    def _strong_password(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        plain = value.get_secret_value()
        if control_characters(plain):
            raise ValueError("rule 'printable': contains a control character or line break")
        if len(plain) < MIN_ADMIN_PASSWORD_LENGTH:
            raise ValueError(
                f"rule 'length': is shorter than {MIN_ADMIN_PASSWORD_LENGTH} characters; "
                "delete the line to have a strong one generated"
            )
        known = [str(info.data.get(k, "")) for k in ("webui_admin_email", "webui_admin_name")]
        from zxcvbn import zxcvbn  # 20-30 ms to import; only a password check needs it

        verdict = zxcvbn(plain, user_inputs=[w for w in known if w] + PASSWORD_CONTEXT_WORDS)
        if verdict["score"] < MIN_ADMIN_PASSWORD_SCORE:
            why = verdict["feedback"].get("warning") or "it is a known or easily guessed pattern"
            raise ValueError(
                f"rule 'strength': zxcvbn rates it {verdict['score']} of 4, at least {MIN_ADMIN_PASSWORD_SCORE} "
                f"is needed ({why.rstrip('.')}); delete the line to have a strong one generated"
            )
        return value

    @field_validator("hf_token")
    @classmethod
    def _token_text(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[\x21-\x7e]+", value.get_secret_value()):
            raise ValueError("may hold only printable ASCII characters without spaces")
        return value

    @field_validator("hf_token", "vllm_host_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("gpu_memory_gib", mode="before")
    @classmethod
    def _memory(cls, value: object) -> object:
        return None if value in (None, "") else parse_memory_gib(value)

    @property
    def hf_cache_path(self) -> Path:
        return self.hf_cache_dir.expanduser()

    @property
    def webui_url(self) -> str:
        if self.webui_bind_address in ("0.0.0.0", "::"):
            return f"http://localhost:{self.webui_port}"
        host = self.webui_bind_address
        return f"http://{f'[{host}]' if ':' in host else host}:{self.webui_port}"


def parse_settings(values: dict[str, str], origin: str, sources: dict[str, str] | None = None) -> Settings:
    """Validate; a problem names its source (`.env line N` or the environment variable), never a secret."""
    sources = sources or {}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "?"
            alias = Settings.model_fields[key].alias if key in Settings.model_fields else key
            shown = "(hidden)" if alias in SECRET_KEYS else ascii(values.get(alias, ""))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                msg = "is missing; run any controller command to generate it, or set it"
            elif err["type"] == "string_pattern_mismatch":
                msg = f"has an invalid format ({msg})"
            problems.append(f"{sources.get(alias, origin)}: {alias}={shown}: {msg}")
        raise SettingsError(problems[0], details=problems[1:]) from None


# ----- loading and storing ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedSettings:
    """Valid settings, and the secrets generated for them in memory that .env does not hold yet."""

    settings: Settings
    pending_secrets: dict[str, str]
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    directory: DirectorySettings = field(default_factory=DirectorySettings)

    @property
    def public_url(self) -> str:
        """Where people open the chat: through the HTTPS front door when there is one."""
        return self.tls.public_url or self.settings.webui_url


def read_settings(site: SiteConfig, environ: dict[str, str] | None = None) -> LoadedSettings:
    """Read and validate the settings; generate missing secrets in memory. Writes nothing."""
    collected = collect_values(site.env_file, environ)
    missing = {key: make() for key, make in GENERATED_SECRETS.items() if not collected.values.get(key)}
    settings = parse_settings({**collected.values, **missing}, str(site.env_file), collected.sources)
    monitoring = load_monitoring_settings(site.env_file, environ)
    tls = load_tls_settings(site.env_file, environ)
    if tls.mode == "files":
        from controller.config.certificates import check_files

        check_files(tls.cert_file, tls.key_file, tls.host)
    directory = load_directory_settings(site.env_file, environ)
    if directory.ldap == "on" and directory.ldap_ca_cert_file:
        from controller.config.certificates import check_ca_file

        check_ca_file(directory.ldap_ca_cert_file, "LDAP_CA_CERT_FILE")
    if tls.enabled:
        # Open WebUI's own port then serves only this host (the controller's checks); people come
        # through the front door.
        settings = settings.model_copy(update={"webui_bind_address": "127.0.0.1"})
    if monitoring.grafana and not monitoring.grafana_admin_password:
        missing[GRAFANA_ADMIN_PASSWORD] = _secret()
    if missing:
        # Staged now, written by store_generated_secrets: a .env that cannot take them stops here,
        # before anything (the lock, the rendered files) is written.
        stage_env_values(site.env_file, missing, overwrite=False)
    return LoadedSettings(settings, missing, monitoring, tls, directory)


def store_generated_secrets(site: SiteConfig, loaded: LoadedSettings) -> list[str]:
    """Write the secrets `read_settings` generated into .env (mode 0600); never overwrites a value.

    Returns the names written. Call it only after every check before launch passed.
    """
    if not loaded.pending_secrets:
        return []
    return write_env_values(site.env_file, loaded.pending_secrets, overwrite=False)


def load_settings(site: SiteConfig, *, generate: bool = True) -> Settings:
    """Read and validate settings (a bad value leaves .env untouched); then, if asked, store each
    missing secret once in .env."""
    loaded = read_settings(site)
    if generate:
        if loaded.pending_secrets:
            store_generated_secrets(site, loaded)
        elif site.env_file.exists():
            # Rewriting tightens a hand-made .env that others could read.
            write_env_values(site.env_file, {}, overwrite=False)
    return loaded.settings

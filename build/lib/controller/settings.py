"""Site settings: defaults < `.env` < process environment. Missing secrets are generated once."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Annotated

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from controller.errors import SettingsError
from controller.files import write_atomic

MIN_ADMIN_PASSWORD_LENGTH = 12
GENERATED_PASSWORD_LENGTH = 24
# Passwords seen in blog posts and quick-start guides; a stack exposed on a LAN must not use them.
KNOWN_WEAK_PASSWORDS = frozenset(
    {
        "admin",
        "admin123",
        "admin1234",
        "admin12345",
        "adminadmin",
        "administrator",
        "password",
        "password1",
        "password123",
        "passw0rd",
        "changeme",
        "changeme123",
        "changeme1234",
        "openwebui",
        "open-webui",
        "openwebui123",
        "letmein",
        "welcome123",
        "123456789012",
        "qwertyuiop12",
        "supersecret",
        "secret123",
        "your-password-here",
        "your_password_here",
        "yourpassword",
        "demo",
        "demo1234",
        "demopassword",
        "admin@123",
        "admin_password",
        "adminpassword",
        "myadminpassword",
    }
)
UNPINNED_TAGS = {"latest", "main", "dev", "nightly"}


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
SECRET_KEYS = frozenset(GENERATED_SECRETS) | {"HF_TOKEN"}

Port = Annotated[int, Field(ge=1, le=65535)]
_MEMORY_UNITS = {"gib": 1.0, "g": 1.0, "": 1.0, "gb": 1000**3 / 1024**3, "mib": 1 / 1024, "mb": 1000**2 / 1024**3}


def parse_memory_gib(text: str | float) -> float:
    """'12GiB', '16GB', '24g' or '12' (GiB) -> GiB. Raises ValueError on anything else."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _MEMORY_UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"'{text}' is not a memory size; write it like 12GiB, 16GB or 24")
    return float(match.group(1)) * _MEMORY_UNITS[unit]


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    webui_port: Port = Field(7860, alias="WEBUI_PORT")
    webui_bind_address: str = Field("0.0.0.0", alias="WEBUI_BIND_ADDRESS")
    webui_admin_email: str = Field(
        "admin@example.com", alias="WEBUI_ADMIN_EMAIL", pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    )
    webui_admin_name: str = Field("Admin", alias="WEBUI_ADMIN_NAME", min_length=1)
    webui_admin_password: SecretStr = Field(alias="WEBUI_ADMIN_PASSWORD")
    webui_secret_key: SecretStr = Field(alias="WEBUI_SECRET_KEY")
    vllm_api_key: SecretStr = Field(alias="VLLM_API_KEY")
    hf_token: SecretStr | None = Field(None, alias="HF_TOKEN")
    hf_cache_dir: Path = Field(Path("~/.cache/huggingface"), alias="HF_CACHE_DIR")
    vllm_image: str = Field("vllm/vllm-openai:v0.32.0", alias="VLLM_IMAGE")
    # Profiles with accelerator: cpu need vLLM's CPU build; the default image is CUDA-only.
    vllm_cpu_image: str = Field("public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.32.0", alias="VLLM_CPU_IMAGE")
    webui_image: str = Field("ghcr.io/open-webui/open-webui:v0.12.4", alias="WEBUI_IMAGE")
    gpu_devices: str = Field("all", alias="GPU_DEVICES", pattern=r"^(all|[1-9][0-9]*|device=[0-9]+(,[0-9]+)*)$")
    gpu_memory_gib: float | None = Field(None, alias="GPU_MEMORY_GIB")
    compose_project_name: str = Field("llmstack", alias="COMPOSE_PROJECT_NAME", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    vllm_host_port: Port | None = Field(None, alias="VLLM_HOST_PORT")
    controller_catalog: Path | None = Field(None, alias="CONTROLLER_CATALOG")

    @field_validator("webui_admin_password")
    @classmethod
    def _strong_password(cls, value: SecretStr) -> SecretStr:
        plain = value.get_secret_value()
        if len(plain) < MIN_ADMIN_PASSWORD_LENGTH:
            raise ValueError(
                f"is shorter than {MIN_ADMIN_PASSWORD_LENGTH} characters; "
                "delete the line to have a strong one generated"
            )
        if plain.lower() in KNOWN_WEAK_PASSWORDS:
            raise ValueError("is a known default or demo password; delete the line to have one generated")
        return value

    @field_validator("vllm_image", "vllm_cpu_image", "webui_image")
    @classmethod
    def _pinned(cls, value: str) -> str:
        last = value.rsplit("/", 1)[-1]
        if "@sha256:" in value:
            return value
        if ":" not in last or last.rsplit(":", 1)[1] in UNPINNED_TAGS:
            raise ValueError(f"'{value}' is not pinned; use a release tag such as :v0.12.4 or a digest")
        return value

    @field_validator("hf_token", "vllm_host_port", "controller_catalog", mode="before")
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
        host = "localhost" if self.webui_bind_address in ("0.0.0.0", "::") else self.webui_bind_address
        return f"http://{host}:{self.webui_port}"


class SiteConfig(BaseModel):
    """Where the site's files are: the checkout root, its .env, and the rendered compose dir."""

    model_config = ConfigDict(frozen=True)

    root: Path
    env_file: Path

    @property
    def compose_dir(self) -> Path:
        return self.root / "compose"

    @property
    def compose_file(self) -> Path:
        return self.compose_dir / "docker-compose.yml"

    @property
    def state_dir(self) -> Path:
        return self.root / ".controller"


def read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _env_line(key: str, value: str) -> str:
    # Values are written single-quoted so that '$' and '#' in a secret stay literal for
    # both python-dotenv and docker compose.
    if "'" in value or "\n" in value:
        raise SettingsError(f"cannot store {key}: the value contains a quote or newline")
    return f"{key}='{value}'"


def write_env_values(path: Path, values: dict[str, str], *, overwrite: bool) -> list[str]:
    """Set keys in the env file atomically with mode 0600; returns the keys actually written.

    Existing lines and comments are kept. With overwrite=False a key already present keeps its value.
    """
    existing_text = path.read_text(encoding="utf-8") if path.exists() else ""
    current = read_env_file(path)
    lines = existing_text.splitlines()
    written = []
    for key, value in values.items():
        if current.get(key) and not overwrite:
            continue
        pattern = re.compile(rf"^\s*(export\s+)?{re.escape(key)}\s*=")
        replaced = False
        for i, line in enumerate(lines):
            if pattern.match(line):
                lines[i] = _env_line(key, value)
                replaced = True
        if not replaced:
            lines.append(_env_line(key, value))
        written.append(key)
    if written or path.exists():
        # Rewriting also tightens a hand-made .env that others could read.
        write_atomic(path, "\n".join(lines) + "\n" if lines else "", mode=0o600)
    return written


def gpu_memory_setting(env_file: Path) -> float | None:
    """GPU_MEMORY_GIB without the secrets (for `plan`, which must not generate any)."""
    value = merged_values(env_file).get("GPU_MEMORY_GIB")
    if not value:
        return None
    try:
        return parse_memory_gib(value)
    except ValueError as exc:
        raise SettingsError(f"{env_file}: GPU_MEMORY_GIB={value!r}: {exc}") from None


def merged_values(env_file: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    values = read_env_file(env_file)
    for field in Settings.model_fields.values():
        if field.alias in environ:
            values[field.alias] = environ[field.alias]
    return values


def parse_settings(values: dict[str, str], origin: str) -> Settings:
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "?"
            alias = Settings.model_fields[key].alias if key in Settings.model_fields else key
            shown = "(hidden)" if alias in SECRET_KEYS else repr(values.get(alias, ""))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                msg = "is missing; run any controller command to generate it, or set it"
            elif err["type"] == "string_pattern_mismatch":
                msg = f"has an invalid format ({msg})"
            problems.append(f"{alias}={shown}: {msg}")
        raise SettingsError(f"{origin}: {problems[0]}", details=problems[1:]) from None


def load_settings(site: SiteConfig, *, generate: bool = True) -> Settings:
    """Read and validate settings; then, if asked, store each missing secret once in .env.

    Validation runs first so that a bad value leaves .env untouched.
    """
    values = merged_values(site.env_file)
    missing = {key: make() for key, make in GENERATED_SECRETS.items() if not values.get(key)}
    settings = parse_settings({**values, **missing}, str(site.env_file))
    if generate:
        write_env_values(site.env_file, missing, overwrite=False)
    return settings

"""Site settings: defaults < `.env` < process environment. Missing secrets are generated once.

Reading is pure: `read_settings` validates everything and generates missing secrets in memory
only; `store_generated_secrets` is the one write, done by the caller once every check passed.
"""

from __future__ import annotations

import io
import ipaddress
import math
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from dotenv import dotenv_values
from dotenv.parser import parse_stream
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

from controller.errors import SettingsError
from controller.files import read_text_file, system_dir_problem, write_atomic

MIN_ADMIN_PASSWORD_LENGTH = 12
# zxcvbn scores 0-4; 3 is "safely unguessable: moderate protection from an offline slow-hash attack".
MIN_ADMIN_PASSWORD_SCORE = 3
GENERATED_PASSWORD_LENGTH = 24
MIN_KEY_LENGTH = 16
# Words a guesser tries first for this stack; zxcvbn treats them as known.
PASSWORD_CONTEXT_WORDS = ["openwebui", "open-webui", "webui", "llmstack", "vllm", "admin", "changeme", "demo"]
UNPINNED_TAGS = {"latest", "main", "dev", "nightly"}

# The image reference grammar of distribution/reference (the OCI distribution spec's names).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII)
MAX_IMAGE_NAME_LENGTH = 255


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
# Docker Compose reads these from .env itself (the rendered file says ${VAR}); it expands `$` in
# unquoted and double-quoted values, so they must be single-quoted when they hold one.
COMPOSE_READS = SECRET_KEYS

_MEMORY_UNITS = {"gib": 1.0, "g": 1.0, "": 1.0, "gb": 1000**3 / 1024**3, "mib": 1 / 1024, "mb": 1000**2 / 1024**3}


def parse_memory_gib(text: str | float) -> float:
    """'12GiB', '16GB', '24g' or '12' (GiB) -> GiB. Raises ValueError on anything else."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _MEMORY_UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"'{text}' is not a memory size; write it like 12GiB, 16GB or 24")
    value = float(match.group(1)) * _MEMORY_UNITS[unit]
    if not math.isfinite(value) or value > 1024 * 1024:
        raise ValueError(f"'{text}' is not a plausible memory size")
    return value


def control_characters(text: str) -> list[str]:
    """Characters that have no business in a name or path: control, format, private-use, line breaks."""
    return [ch for ch in text if unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")]


def _printable(value: str) -> str:
    bad = control_characters(value)
    if bad:
        raise ValueError(f"contains a control character or line break ({ascii(bad[0])}); remove it")
    return value


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        raise ValueError("is not an IP address; use e.g. 0.0.0.0 (every interface) or 127.0.0.1") from None


def _image_reference(value: str) -> str:
    match = IMAGE_REFERENCE.fullmatch(value)
    first, _, rest = match.group("name").partition("/") if match else ("", "", "")
    # Like Docker's normalisation: the first part is a registry only when it looks like a host.
    registry = rest and ("." in first or ":" in first or first == "localhost")
    if not registry and match and not re.fullmatch(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", match.group("name")):
        match = None
    if not match or len(match.group("name")) > MAX_IMAGE_NAME_LENGTH:
        raise ValueError(
            "is not an image reference (registry/name:tag or name@sha256:digest, lowercase name, no spaces)"
        )
    if not match.group("digest") and (match.group("tag") is None or match.group("tag") in UNPINNED_TAGS):
        raise ValueError(f"'{value}' is not pinned; use a release tag such as :v0.12.4 or a digest")
    return value


def _host_directory(value: Path) -> Path:
    _printable(str(value))
    path = value.expanduser()
    if not path.is_absolute():
        raise ValueError(f"'{value}' is relative; write an absolute path (or one starting with ~/)")
    problem = system_dir_problem(path)
    if problem:
        raise ValueError(problem)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    return value


def _key_text(value: SecretStr) -> SecretStr:
    plain = value.get_secret_value()
    if len(plain) < MIN_KEY_LENGTH:
        raise ValueError(f"is shorter than {MIN_KEY_LENGTH} characters; delete the line to have a strong one generated")
    if not re.fullmatch(r"[\x21-\x7e]+", plain):
        raise ValueError("may hold only printable ASCII characters without spaces")
    return value


Port = Annotated[int, Field(ge=1, le=65535)]
Text = Annotated[str, AfterValidator(_printable)]
ImageReference = Annotated[str, AfterValidator(_image_reference)]
Key = Annotated[SecretStr, AfterValidator(_key_text)]


class Settings(BaseModel):
    # Built on first use: `models` and `plan` never validate settings, and start faster without it.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)

    webui_port: Port = Field(7860, alias="WEBUI_PORT")
    webui_bind_address: Annotated[str, AfterValidator(_ip_address)] = Field("0.0.0.0", alias="WEBUI_BIND_ADDRESS")
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
    hf_cache_dir: Annotated[Path, AfterValidator(_host_directory)] = Field(
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
    controller_catalog: Annotated[Path, AfterValidator(lambda p: Path(_printable(str(p))))] | None = Field(
        None, alias="CONTROLLER_CATALOG"
    )

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
        if self.webui_bind_address in ("0.0.0.0", "::"):
            return f"http://localhost:{self.webui_port}"
        host = self.webui_bind_address
        return f"http://{f'[{host}]' if ':' in host else host}:{self.webui_port}"


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


# ----- reading .env ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvEntry:
    value: str
    line: int
    single_quoted: bool


def _read_env_text(path: Path) -> str | None:
    if not path.exists() and not path.is_symlink():
        return None
    return read_text_file(path, SettingsError, what="settings file")


def read_env_entries(path: Path) -> dict[str, EnvEntry]:
    """Every `KEY=value` of an env file with its line, read literally (no `${...}` expansion).

    A missing file is empty; an unreadable one, a line that does not parse, or a key set twice
    is a SettingsError naming the file and line.
    """
    text = _read_env_text(path)
    if text is None:
        return {}
    entries: dict[str, EnvEntry] = {}
    for binding in parse_stream(io.StringIO(text)):
        raw = binding.original.string
        # A binding's text starts with the blank lines before it; its own line comes after them.
        line = binding.original.line + raw[: len(raw) - len(raw.lstrip())].count("\n")
        if binding.error:
            raise SettingsError(
                f"settings file {path} line {line}: cannot parse this line",
                hint="write KEY=value, one per line; quote a value with spaces or # in single quotes",
            )
        if binding.key is None or binding.value is None:
            continue
        if binding.key in entries:
            raise SettingsError(
                f"settings file {path} line {line}: {binding.key} is already set on line {entries[binding.key].line}",
                hint="keep one of the two lines",
            )
        quoted = re.match(rf"\s*(?:export\s+)?{re.escape(binding.key)}\s*=\s*'", raw.lstrip()) is not None
        entries[binding.key] = EnvEntry(binding.value, line, quoted)
    # python-dotenv's own reading, without interpolation, must agree with what was checked above.
    literal = {k: v for k, v in dotenv_values(stream=io.StringIO(text), interpolate=False).items() if v is not None}
    return {key: EnvEntry(literal[key], e.line, e.single_quoted) for key, e in entries.items() if key in literal}


def read_env_file(path: Path) -> dict[str, str]:
    """The env file's values, literally (`$` and `${...}` stay as written)."""
    return {key: entry.value for key, entry in read_env_entries(path).items()}


@dataclass(frozen=True)
class SettingValues:
    """Raw setting values and where each one came from, for messages that name the source."""

    values: dict[str, str]
    sources: dict[str, str] = field(default_factory=dict)


def collect_values(env_file: Path, environ: dict[str, str] | None = None) -> SettingValues:
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key, entry in read_env_entries(env_file).items():
        values[key] = entry.value
        sources[key] = f"{env_file} line {entry.line}"
        if key in COMPOSE_READS and "$" in entry.value and not entry.single_quoted:
            raise SettingsError(
                f"settings file {env_file} line {entry.line}: {key} holds a '$' outside single quotes",
                hint=f"write it as {key}='...': Docker Compose would expand the '$' and use another value",
            )
    for model_field in Settings.model_fields.values():
        if model_field.alias in environ:
            values[model_field.alias] = environ[model_field.alias]
            sources[model_field.alias] = f"the environment variable {model_field.alias}"
    return SettingValues(values, sources)


def merged_values(env_file: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    return collect_values(env_file, environ).values


def gpu_memory_setting(env_file: Path) -> float | None:
    """GPU_MEMORY_GIB without the secrets (for `plan`, which must not generate any)."""
    collected = collect_values(env_file)
    value = collected.values.get("GPU_MEMORY_GIB")
    if not value:
        return None
    try:
        return parse_memory_gib(value)
    except ValueError as exc:
        source = collected.sources.get("GPU_MEMORY_GIB", str(env_file))
        raise SettingsError(f"{source}: GPU_MEMORY_GIB={value!r}: {exc}") from None


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

    @property
    def pending_names(self) -> list[str]:
        return sorted(self.pending_secrets)


def read_settings(site: SiteConfig, environ: dict[str, str] | None = None) -> LoadedSettings:
    """Read and validate the settings; generate missing secrets in memory. Writes nothing."""
    collected = collect_values(site.env_file, environ)
    missing = {key: make() for key, make in GENERATED_SECRETS.items() if not collected.values.get(key)}
    settings = parse_settings({**collected.values, **missing}, str(site.env_file), collected.sources)
    return LoadedSettings(settings, missing)


def store_generated_secrets(site: SiteConfig, loaded: LoadedSettings) -> list[str]:
    """Write the secrets `read_settings` generated into .env (mode 0600); never overwrites a value.

    Returns the names written. Call it only after every check before launch passed.
    """
    if not loaded.pending_secrets:
        return []
    return write_env_values(site.env_file, loaded.pending_secrets, overwrite=False)


def load_settings(site: SiteConfig, *, generate: bool = True) -> Settings:
    """Read and validate settings; then, if asked, store each missing secret once in .env.

    Validation runs first so that a bad value leaves .env untouched.
    """
    loaded = read_settings(site)
    if generate:
        if loaded.pending_secrets:
            store_generated_secrets(site, loaded)
        elif site.env_file.exists():
            # Rewriting tightens a hand-made .env that others could read.
            write_env_values(site.env_file, {}, overwrite=False)
    return loaded.settings


# ----- writing .env ----------------------------------------------------------------------------


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
    existing_text = _read_env_text(path) or ""
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

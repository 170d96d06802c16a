"""The raw values of `.env` and the environment, and where each came from: what every command
reads (its catalog, unknown keys, GPU_MEMORY_GIB) before, or without, validating the settings
model (controller.config.settings), which only commands that run the stack need."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from controller.config.env_keys import OTHER_KEYS, SECRET_KEYS, SETTINGS_KEYS, unknown_keys
from controller.config.envfile import read_env_entries
from controller.config.values import parse_memory_gib
from controller.errors import SettingsError

# Every key the controller reads from .env: the settings' own, and those read elsewhere (env_keys).
KNOWN_KEYS = frozenset(SETTINGS_KEYS) | OTHER_KEYS
# Docker Compose reads these from .env itself (the rendered file says ${VAR}); it expands `$` in
# unquoted and double-quoted values, so they must be single-quoted when they hold one.
COMPOSE_READS = SECRET_KEYS


@dataclass(frozen=True)
class SettingValues:
    """Raw setting values and where each one came from, for messages that name the source."""

    values: dict[str, str]
    sources: dict[str, str] = field(default_factory=dict)
    # Warnings: keys of the file that the controller does not read (env_keys.unknown_keys).
    unknown: tuple[str, ...] = ()


def collect_values(env_file: Path, environ: dict[str, str] | None = None) -> SettingValues:
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    entries = read_env_entries(env_file)
    unknown = unknown_keys(env_file, entries, KNOWN_KEYS)
    for key, entry in entries.items():
        values[key] = entry.value
        sources[key] = f"{env_file} line {entry.line}"
        if key in COMPOSE_READS and "$" in entry.value and not entry.single_quoted:
            raise SettingsError(
                f"settings file {env_file} line {entry.line}: {key} holds a '$' outside single quotes",
                hint=f"write it as {key}='...': Docker Compose would expand the '$' and use another value",
            )
    for key in SETTINGS_KEYS:
        if key in environ:
            values[key] = environ[key]
            sources[key] = f"the environment variable {key}"
    return SettingValues(values, sources, unknown)


def env_key_warnings(env_file: Path) -> tuple[str, ...]:
    """One warning per key of the file the controller does not read; a near miss raises SettingsError."""
    return collect_values(env_file, {}).unknown


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

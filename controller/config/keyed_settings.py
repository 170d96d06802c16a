"""Settings groups kept apart from the main settings model (Kubernetes, monitoring): their raw
values from `.env` with the environment over them, and their validation, with every error naming
the key, the value and where it was set. Compose-only users never see these fail."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from controller.config.env_keys import SECRET_KEYS
from controller.errors import SettingsError

M = TypeVar("M", bound=BaseModel)


class KeyedSettings(BaseModel):
    """A settings group read by key from `.env` (monitoring, TLS): an empty value is an unset one."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: object) -> object:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value != ""}
        return data


def keyed_values(
    keys: Collection[str], env_file: Path, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """The raw values of `keys` and where each came from: `.env`, then the environment over it."""
    from controller.config.env_values import collect_values

    environ = os.environ if environ is None else environ
    # collect_values overlays only the main settings' keys from the environment; these are overlaid here.
    collected = collect_values(env_file, {})
    values = {k: v for k, v in collected.values.items() if k in keys}
    sources = {k: collected.sources.get(k, str(env_file)) for k in values}
    for key in keys:
        if key in environ:
            values[key], sources[key] = environ[key], f"the environment variable {key}"
    return values, sources


def validate_keyed(model: type[M], values: Mapping[str, str], sources: Mapping[str, str], origin: str,
                   hint: str) -> M:  # fmt: skip
    """`model` from the raw values; a SettingsError names each bad key, its value and its source."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            alias = field if field in values else getattr(model.model_fields.get(field), "alias", None)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "string_pattern_mismatch":
                msg = f"has an invalid format ({msg})"
            shown = "(hidden)" if alias in SECRET_KEYS else ascii(values.get(alias, ""))
            where = f"{sources.get(alias, origin)}: {alias}={shown}" if alias else origin
            problems.append(f"{where}: {msg}")
        raise SettingsError(problems[0], details=problems[1:], hint=hint) from None

"""The catalog: the built-in profiles, a user's catalog file merged over them, and one Profile per
name (a user's entries validated, the built-in snapshot taken as `make catalog-snapshot` checked
it). Raises CatalogError naming the file, the profile and the field."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

from controller.config.profile import BUILTIN_CATALOG_NAME, Profile
from controller.config.profile_fields import PROFILE_NAME_PATTERN
from controller.errors import CatalogError
from controller.files import expand_home, read_text_file


class Catalog:
    def __init__(self, profiles: dict[str, Profile]):
        self._profiles = dict(sorted(profiles.items()))

    def names(self) -> list[str]:
        return list(self._profiles)

    def profiles(self) -> list[Profile]:
        return list(self._profiles.values())

    def get(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            raise CatalogError(
                f"unknown model '{name}'",
                hint=f"valid models: {', '.join(self.names())} (add one with a user catalog: --catalog FILE)",
            ) from None


def _read_yaml(text: str, origin: str) -> dict[str, dict[str, Any]]:
    from controller.yaml_in import load_yaml

    return _profiles_of(load_yaml(text, f"catalog {origin}", CatalogError), origin)


def _profiles_of(data: Any, origin: str) -> dict[str, dict[str, Any]]:
    data = {} if data is None else data
    if not isinstance(data, dict) or set(data) - {"profiles"} or not isinstance(data.get("profiles") or {}, dict):
        raise CatalogError(
            f"catalog {origin}: expected a mapping with one key 'profiles: {{name: {{...}}}}'",
        )
    profiles = data.get("profiles") or {}
    for name, fields in profiles.items():
        if not isinstance(name, str) or not re.fullmatch(PROFILE_NAME_PATTERN, name):
            raise CatalogError(
                f"catalog {origin}: profile name {ascii(name)}: use lowercase letters, digits, '.', '_' and '-', "
                "starting with a letter or digit"
            )
        if not isinstance(fields, dict):
            raise CatalogError(f"catalog {origin}: profile '{name}': expected a mapping of fields")
    return profiles


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A user profile that names a built-in changes only the fields it sets."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _resolve_local_model(fields: dict[str, Any], catalog_dir: Path) -> dict[str, Any]:
    """Relative local directories (the model's, the adapters') are relative to the catalog file."""

    def resolved(reference: Any) -> Any:
        if isinstance(reference, str) and reference.startswith(("./", "../")):
            return str((catalog_dir / reference).resolve())
        return reference

    fields = {**fields, "model": resolved(fields.get("model"))} if "model" in fields else dict(fields)
    adapters = fields.get("lora_adapters")
    if isinstance(adapters, dict):
        fields["lora_adapters"] = {name: resolved(ref) for name, ref in adapters.items()}
    return fields


def build_profile(name: str, fields: dict[str, Any], origin: str) -> Profile:
    """One validated profile; any problem is a CatalogError naming origin, profile and field."""
    # Here, not at the top: pydantic is for catalogs the user wrote, and `models` and `plan` with the
    # built-in profiles alone start without it (tests/unit/test_startup_imports.py).
    from pydantic import ValidationError

    from controller.config.profile_schema import validate_profile

    try:
        return validate_profile({**fields, "name": name, "source": origin})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "consistency":
                # Checks across fields name the field they blame in their context.
                field, msg = err["ctx"]["field"], err["ctx"]["message"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling; see the built-in catalog for valid fields)"
            problems.append(f"field '{field}': {msg}")
        raise CatalogError(
            f"catalog {origin}: profile '{name}': {problems[0]}",
            details=problems[1:],
        ) from None


# The built-in catalog is written, with its comments, in builtin_models.yaml; the package reads its
# JSON snapshot, so that a command with no user catalog does not import PyYAML (start-up time).
# `make catalog-snapshot` writes it; tests/unit/test_catalog_snapshot.py fails when it is stale.
BUILTIN_SOURCE = "builtin_models.yaml"
BUILTIN_SNAPSHOT = "builtin_models.json"


def builtin_profiles_raw() -> dict[str, dict[str, Any]]:
    import json

    text = resources.files("controller").joinpath(BUILTIN_SNAPSHOT).read_text(encoding="utf-8")
    return _profiles_of(json.loads(text), BUILTIN_CATALOG_NAME)


def _builtin_profiles(raw: dict[str, dict[str, Any]]) -> dict[str, Profile]:
    try:
        return {name: Profile.from_snapshot(name, fields) for name, fields in raw.items()}
    except (TypeError, KeyError) as exc:  # a field missing or unknown: the file was changed after install
        raise CatalogError(
            f"the package's built-in catalog ({BUILTIN_SNAPSHOT}) is damaged: {exc}",
            hint="reinstall the controller (pipx reinstall llm-stack-controller)",
        ) from None


def snapshot_of_builtin_source() -> str:
    """The JSON snapshot that builtin_models.yaml gives (what `make catalog-snapshot` writes)."""
    import json

    from controller.yaml_in import load_yaml

    text = resources.files("controller").joinpath(BUILTIN_SOURCE).read_text(encoding="utf-8")
    data = load_yaml(text, f"catalog {BUILTIN_CATALOG_NAME}", CatalogError)
    # The package takes the snapshot's profiles without validating them (Profile.from_snapshot):
    # only a catalog that validates becomes the snapshot.
    for name, fields in _profiles_of(data, BUILTIN_SOURCE).items():
        build_profile(name, fields, BUILTIN_SOURCE)
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def load_catalog(user_catalog: Path | None = None) -> Catalog:
    """Built-in profiles, then the user's catalog over them. Raises CatalogError on any problem."""
    if user_catalog is None:
        return load_catalog_text(None, BUILTIN_CATALOG_NAME, Path("."))
    path = expand_home(Path(user_catalog), CatalogError, "catalog")
    if not path.exists():
        raise CatalogError(
            f"catalog {path}: file not found",
            hint="set --catalog or CONTROLLER_CATALOG to an existing YAML file",
        )
    return load_catalog_text(read_text_file(path, CatalogError, what="catalog"), str(path), path.parent)


def load_catalog_text(text: str | None, origin: str, directory: Path) -> Catalog:
    """Built-in profiles, then a user catalog's text (None: none) over them, its relative local paths
    relative to `directory`: what load_catalog does once the file is read. Raises CatalogError naming
    `origin`, the profile and the field."""
    raw = builtin_profiles_raw()
    profiles = _builtin_profiles(raw)
    if text is not None:
        for name, fields in _read_yaml(text, origin).items():
            fields = _resolve_local_model(fields, directory)
            profiles[name] = build_profile(name, _merge(raw[name], fields) if name in raw else fields, origin)
    return Catalog(profiles)

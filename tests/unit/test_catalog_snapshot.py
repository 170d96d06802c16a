"""The built-in catalog: its JSON snapshot (what the package reads) says what its YAML says."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from controller.config.catalog import BUILTIN_SNAPSHOT, load_catalog, snapshot_of_builtin_source

REPO = Path(__file__).resolve().parents[2]


def test_the_snapshot_is_the_yaml_as_it_is_now():
    snapshot = (REPO / "controller" / BUILTIN_SNAPSHOT).read_text(encoding="utf-8")
    assert snapshot == snapshot_of_builtin_source(), (
        "controller/builtin_models.json is stale: run `make catalog-snapshot` after editing builtin_models.yaml"
    )


def test_the_catalog_read_from_the_snapshot_has_the_yaml_profiles():
    import yaml

    source = yaml.safe_load((REPO / "controller" / "builtin_models.yaml").read_text(encoding="utf-8"))
    assert sorted(p.name for p in load_catalog().profiles()) == sorted(source["profiles"])


def test_each_builtin_profile_is_what_validation_makes_of_it():
    """The package takes the snapshot's profiles without validating them at each start
    (Profile.from_snapshot): each must pass validation and come out of it with the same values and types."""
    from controller.config.catalog import build_profile, builtin_profiles_raw
    from controller.config.profile import BUILTIN_CATALOG_NAME, Profile

    raw = builtin_profiles_raw()
    assert raw
    for name, fields in raw.items():
        taken, validated = Profile.from_snapshot(name, fields), build_profile(name, fields, BUILTIN_CATALOG_NAME)
        # repr: 8 and 8.0 are equal but print differently in `--json`.
        assert repr(dataclasses.asdict(taken)) == repr(dataclasses.asdict(validated)), name
        assert taken == validated


def test_a_value_validation_would_change_is_caught():
    """The check above can fail: an int where the schema says float comes out of validation as a float."""
    from controller.config.catalog import build_profile, builtin_profiles_raw
    from controller.config.profile import BUILTIN_CATALOG_NAME, Profile

    name, fields = next(iter(builtin_profiles_raw().items()))
    fields = {**fields, "architecture": {**fields["architecture"], "params_billion": 8}}
    taken, validated = Profile.from_snapshot(name, fields), build_profile(name, fields, BUILTIN_CATALOG_NAME)
    assert repr(dataclasses.asdict(taken)) != repr(dataclasses.asdict(validated))


def test_a_damaged_snapshot_is_a_catalog_error_not_a_traceback(monkeypatch):
    from controller.config import catalog
    from controller.errors import CatalogError

    raw = catalog.builtin_profiles_raw()
    name = next(iter(raw))
    raw[name] = {**raw[name], "spelling_mistake": 1}
    monkeypatch.setattr(catalog, "builtin_profiles_raw", lambda: raw)
    with pytest.raises(CatalogError, match=r"built-in catalog \(builtin_models.json\) is damaged"):
        catalog.load_catalog()


def test_only_a_catalog_that_validates_becomes_the_snapshot(monkeypatch, tmp_path):
    from controller.config import catalog
    from controller.errors import CatalogError

    source = (REPO / "controller" / "builtin_models.yaml").read_text(encoding="utf-8")
    (tmp_path / "builtin_models.yaml").write_text(source.replace("max_model_len: 8192", "max_model_len: 0", 1))
    monkeypatch.setattr(catalog.resources, "files", lambda package: tmp_path)
    with pytest.raises(CatalogError, match="max_model_len"):
        catalog.snapshot_of_builtin_source()

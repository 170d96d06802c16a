"""The built-in catalog: its JSON snapshot (what the package reads) says what its YAML says."""

from __future__ import annotations

from pathlib import Path

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

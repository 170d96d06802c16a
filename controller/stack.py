"""Sequences every side effect: render, up, down, switch and rollback, status."""

from __future__ import annotations

from controller.catalog import Catalog, check_local_model
from controller.render import render_compose, write_atomic
from controller.settings import SiteConfig, load_settings


def render_project(site: SiteConfig, catalog: Catalog, model: str) -> dict:
    profile = catalog.get(model)
    check_local_model(profile)
    before = set(_env_keys(site))
    settings = load_settings(site)
    text = render_compose(profile, settings)
    changed = write_atomic(site.compose_file, text)
    return {
        "model": profile.name,
        "served_model_name": profile.served_model_name,
        "compose_file": str(site.compose_file),
        "env_file": str(site.env_file),
        "changed": changed,
        "generated_secrets": sorted(set(_env_keys(site)) - before),
    }


def _env_keys(site: SiteConfig) -> list[str]:
    from controller.settings import read_env_file

    return list(read_env_file(site.env_file))

"""A real `Stack` driven against the in-memory target (fakes.FakeTarget), over a catalog of three tiny
CPU profiles, and its journal read back. The `site` and `target` fixtures are in conftest.py."""

from __future__ import annotations

from controller.config.catalog import load_catalog
from controller.config.site import SiteConfig
from controller.journal import Journal, JournalStore
from controller.lifecycle.prepare import Options
from controller.lifecycle.stack import Stack
from tests.unit._support import CPU_PROFILE, write_catalog
from tests.unit.fakes import FakeTarget

# FakeTarget(broken={"tiny-broken"}) makes the last one fail to start.
PROFILE_NAMES = ("tiny-a", "tiny-b", "tiny-broken")


def make_stack(site: SiteConfig, target: FakeTarget, strategy: str = "recreate") -> Stack:
    """A Stack on `site` whose every target is `target`, with short lock and drain waits."""
    profiles = {name: {**CPU_PROFILE, "served_model_name": name} for name in PROFILE_NAMES}
    catalog = load_catalog(write_catalog(site.root / "catalog.yaml", profiles))
    options = Options(lock_timeout_s=5, switch_strategy=strategy, drain_quiet_s=0)
    return Stack(site, catalog, options=options, target_factory=lambda _site, _settings: target)


def read_journal(site: SiteConfig) -> Journal:
    """The journal of `site` as it is on disk now."""
    return JournalStore(site.state_dir).load()

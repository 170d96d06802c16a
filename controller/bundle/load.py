"""`controller bundle load`: a bundle (controller.bundle.format) onto this machine: `docker load`
of its images, its models into the HF cache, its catalog beside .env, and OFFLINE=true.

Check, stage, commit. Every member's sha256, the format version, the bundle's catalog (as --catalog
checks it), every destination in the HF cache and the free disk are checked before anything is
written; the models and the catalog are then staged beside their places, the images loaded, and
only then is everything moved into place, each step with its undo (controller.bundle.cache_install):
a failure at any point leaves the HF cache, .env and the catalog as they were. What is already on
the machine is skipped (a second load of the same bundle changes nothing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from controller.bundle.cache_install import CachePlan, Staging, Undo, commit, plan_cache
from controller.bundle.format import (
    IMAGES_MEMBER,
    BundleReader,
    ImageEntry,
    Manifest,
    parse_manifest,
    read_chunks,
    verify_bundle,
)
from controller.bundle.reader import open_bundle
from controller.config.catalog import load_catalog_text
from controller.config.settings import Settings, read_settings
from controller.config.site import SiteConfig
from controller.errors import CatalogError, InputError, RuntimeFailure
from controller.files import MAX_INPUT_BYTES, decode_utf8
from controller.operator_ui import OperatorUI, human_size
from controller.runtime.docker import Engine
from controller.runtime.host import free_disk_bytes, require_room

LOADED_CATALOG_NAME = "catalog.yaml"


@dataclass
class LoadPlan:
    images: list[ImageEntry]  # not on this engine yet (or their tag points elsewhere)
    cache: CachePlan  # the models' files the HF cache lacks, and the refs to set
    catalog_target: Path | None  # written when its content differs (it is absent then)
    env_changes: dict[str, str]
    present: dict[str, int]

    @property
    def nothing_to_do(self) -> bool:
        return not (self.images or self.cache.writes or self.cache.refs or self.catalog_target or self.env_changes)


def check_catalog(reader: BundleReader, manifest: Manifest, site: SiteConfig) -> bytes | None:
    """The bundle's catalog, checked as --catalog checks a file (at the place it is loaded to), and
    each profile the bundle carries a model for found in it, serving that model. CatalogError naming
    the member, the profile and the field."""
    if not manifest.catalog:
        return None
    member = manifest.member(manifest.catalog)
    origin = f"member {manifest.catalog} of bundle {reader.origin}"
    if member.size > MAX_INPUT_BYTES:
        raise CatalogError(f"catalog {origin}: larger than {MAX_INPUT_BYTES // 1024} KiB; this is not a catalog")
    with reader.open(member.path) as stream:
        data = stream.read()
    catalog = load_catalog_text(decode_utf8(data, f"catalog {origin}", CatalogError), origin, site.env_file.parent)
    carried = {name: model.model for model in manifest.models for name in model.profiles}
    for name in manifest.profiles:
        carried.setdefault(name, "")
    for name, model in carried.items():
        if name not in catalog.names():
            raise CatalogError(
                f"catalog {origin}: profile '{name}', which the bundle carries, is in neither it nor the built-in "
                "profiles",
                hint="create the bundle again with the catalog that defines the profile (--catalog)",
            )
        if model and catalog.get(name).model != model:
            raise CatalogError(
                f"catalog {origin}: profile '{name}': field 'model': {catalog.get(name).model}, but the bundle "
                f"carries {model} for it",
                hint="create the bundle again with the catalog that defines the profile (--catalog)",
            )
    return data


def plan_load(manifest: Manifest, catalog: bytes | None, site: SiteConfig, settings: Settings,
              engine: Engine | None) -> LoadPlan:  # fmt: skip
    """What of the bundle this machine lacks; refuses (InputError) what loading would overwrite."""
    from docker.errors import ImageNotFound

    from controller.config.env_values import merged_values
    from controller.config.envfile import stage_env_values

    images = []
    for entry in manifest.images:
        assert engine is not None  # load_bundle connects whenever the bundle holds images
        try:
            if engine.client.images.get(entry.reference).id == entry.id:
                continue
        except ImageNotFound:
            pass
        images.append(entry)
    cache = plan_cache(manifest, settings.hf_cache_path)
    catalog_target = None
    env_changes: dict[str, str] = {}
    values = merged_values(site.env_file)
    if catalog is not None:
        target = site.env_file.parent / LOADED_CATALOG_NAME
        if os.path.lexists(target) and (not target.is_file() or target.read_bytes() != catalog):
            raise InputError(
                f"{target} exists and differs from the bundle's catalog; loading would overwrite it",
                hint=f"move {target} away (and merge it into the loaded one afterwards), then load again",
            )
        if not target.exists():
            catalog_target = target
        if values.get("CONTROLLER_CATALOG") not in (str(target), LOADED_CATALOG_NAME, f"./{LOADED_CATALOG_NAME}"):
            env_changes["CONTROLLER_CATALOG"] = str(target)
    if not settings.offline:
        env_changes["OFFLINE"] = "true"
    # Staged and checked now (a project path .env cannot hold stops here), written after the load.
    stage_env_values(site.env_file, env_changes, overwrite=True)
    present = {
        "images": len(manifest.images) - len(images),
        "model_files": len(cache.placements) - len(cache.writes),
    }
    return LoadPlan(images, cache, catalog_target, env_changes, present)


def _check_disk(plan: LoadPlan, manifest: Manifest, settings: Settings, engine: Engine | None) -> list[str]:
    """Raise InputError when a disk lacks room for what will be loaded onto it; say what was checked."""
    needs: dict[int, tuple[Path, int, list[str]]] = {}

    def need(path: Path, amount: int, what: str) -> None:
        where, _free = free_disk_bytes(path)
        device = where.stat().st_dev
        prior = needs.get(device, (where, 0, []))
        needs[device] = (prior[0], prior[1] + amount, [*prior[2], what])

    checked = []
    if plan.images and engine is not None:
        root = Path(engine.info().get("DockerRootDir") or "/var/lib/docker")
        if root.exists():
            need(root, manifest.member(IMAGES_MEMBER).size, f"images in {root}")
        else:
            checked.append(f"docker data root {root} is not on this host: its free space was not checked")
    model_bytes = plan.cache.copy_bytes
    if model_bytes:
        need(settings.hf_cache_path, model_bytes, f"models in {settings.hf_cache_path}")
    for where, amount, what in needs.values():
        free = shutil.disk_usage(where).free
        require_room(
            where, amount, free=free, doing=f"loading {' and '.join(what)}",
            hint="free some space (docker image prune, old models in the HF cache) and load again; nothing was loaded",
        )  # fmt: skip
        checked.append(f"free disk: {human_size(free)} at {where} for {human_size(amount)} ({' and '.join(what)})")
    return checked


def _load_images(reader: BundleReader, manifest: Manifest, plan: LoadPlan, engine: Engine, ui: OperatorUI) -> None:
    import docker.errors

    member = manifest.member(IMAGES_MEMBER)
    with ui.progress(f"docker load {IMAGES_MEMBER}", member.size) as advance, reader.open(IMAGES_MEMBER) as stream:
        try:
            engine.client.images.load(read_chunks(stream, advance))
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"docker load of {IMAGES_MEMBER} failed: {exc}") from None
    for entry in plan.images:
        try:
            loaded = engine.client.images.get(entry.reference).id
        except docker.errors.ImageNotFound:
            loaded = None
        if loaded != entry.id:
            raise RuntimeFailure(f"after docker load, {entry.reference} is {loaded or 'absent'}, not {entry.id}")


def _stage(reader: BundleReader, plan: LoadPlan, catalog: bytes | None, cache: Path, ui: OperatorUI,
           exit_stack: contextlib.ExitStack) -> tuple[Staging | None, Path | None]:  # fmt: skip
    """The new model files and the catalog, copied beside their places (checked while copied)."""
    staging = None
    copies = [p for p in plan.cache.placements if p.copy]
    if copies:
        staging = Staging(cache)
        exit_stack.callback(staging.discard)
        with ui.progress("models, staged beside the HF cache", plan.cache.copy_bytes) as advance:
            for placement in copies:
                staging.add(reader, placement, advance)
    staged_catalog = None
    if plan.catalog_target and catalog is not None:
        fd, name = tempfile.mkstemp(prefix=f".{plan.catalog_target.name}.", dir=plan.catalog_target.parent)
        staged_catalog = Path(name)
        exit_stack.callback(staged_catalog.unlink, missing_ok=True)
        with os.fdopen(fd, "wb") as sink:
            sink.write(catalog)
        staged_catalog.chmod(0o644)
    return staging, staged_catalog


def _commit(plan: LoadPlan, staging: Staging | None, staged_catalog: Path | None, site: SiteConfig) -> list[str]:
    """Everything into place, the .env last; any failure takes back every step before it."""
    from controller.config.envfile import write_env_values

    undo = Undo()
    try:
        commit(plan.cache, staging, undo)
        if plan.catalog_target and staged_catalog is not None:
            os.replace(staged_catalog, plan.catalog_target)
            undo.add(plan.catalog_target.unlink)
        return write_env_values(site.env_file, plan.env_changes, overwrite=True) if plan.env_changes else []
    except BaseException:
        undo.run()
        raise


def load_bundle(site: SiteConfig, path: Path, *, ui: OperatorUI, lock_timeout_s: float = 600.0) -> dict:
    from controller.journal import JournalStore

    settings = read_settings(site).settings  # a bad .env stops here, before the bundle is read
    reader = open_bundle(path)
    try:
        manifest = parse_manifest(reader.read_manifest(), reader.origin)
        with ui.progress(f"verify {len(manifest.members)} members (sha256)", manifest.total_bytes) as advance:
            manifest = ui.timed("verify", lambda: verify_bundle(reader, advance))
        catalog = check_catalog(reader, manifest, site)
        verified = [
            f"{len(manifest.members)} members, {human_size(manifest.total_bytes)}: sizes and sha256 match the manifest "
            f"(format {manifest.format_version}, controller {manifest.controller_version})"
        ]
        engine = Engine() if manifest.images else None  # a models-only bundle needs no Docker
        with (
            JournalStore(site.state_dir).locked("bundle load", timeout=lock_timeout_s),
            contextlib.ExitStack() as staged,
        ):
            plan = plan_load(manifest, catalog, site, settings, engine)
            verified += _check_disk(plan, manifest, settings, engine)
            for line in verified:
                ui.say(f"verified: {line}")
            if plan.env_changes:
                changes = ", ".join(f"{k}={v}" for k, v in plan.env_changes.items())
                if not ui.confirm(f"Load the bundle and set {changes} in {site.env_file}?"):
                    raise InputError(
                        f"not confirmed: nothing was loaded and {site.env_file} is unchanged",
                        hint="answer yes, or pass --yes",
                    )
            staging, staged_catalog = ui.timed(
                "models", lambda: _stage(reader, plan, catalog, settings.hf_cache_path, ui, staged)
            )
            if plan.images and engine is not None:
                ui.timed("docker load", lambda: _load_images(reader, manifest, plan, engine, ui))
            env_written = _commit(plan, staging, staged_catalog, site)
    finally:
        reader.close()
    return {
        "bundle": str(path),
        "verified": verified,
        "profiles": manifest.profiles,
        "images_loaded": [i.reference for i in plan.images],
        "model_files_written": len(plan.cache.writes),
        "already_present": plan.present,
        "catalog_written": str(plan.catalog_target) if plan.catalog_target else None,
        "env_written": env_written,
        "changed": not plan.nothing_to_do,
        "timings": ui.timings,
    }

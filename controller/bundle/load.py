"""`controller bundle load`: a bundle (controller.bundle.format) onto this machine: `docker load`
of its images, its models into the HF cache, its catalog beside .env, and OFFLINE=true.

Every member's sha256, the format version and the free disk are verified before anything is
loaded, and what is already on the machine is skipped (a second load of the same bundle changes
nothing).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from controller.bundle.disk_space import require_room
from controller.bundle.format import (
    IMAGES_MEMBER,
    Advance,
    BundleReader,
    ImageEntry,
    Manifest,
    Member,
    ModelEntry,
    ModelFile,
    parse_manifest,
    read_chunks,
    sha256_of,
    verify_bundle,
)
from controller.bundle.reader import open_bundle
from controller.bundle.ui import BundleUI, human_size
from controller.config.settings import Settings, SiteConfig, read_settings
from controller.errors import InputError, RuntimeFailure
from controller.runtime import hf_cache
from controller.runtime.docker import Engine
from controller.runtime.host import free_disk_bytes

LOADED_CATALOG_NAME = "catalog.yaml"


@dataclass
class LoadPlan:
    images: list[ImageEntry]  # not on this engine yet (or their tag points elsewhere)
    model_files: list[tuple[ModelEntry, ModelFile]]  # not in the HF cache yet
    refs: list[ModelEntry]  # whose refs/main must point at the bundle's revision
    catalog_target: Path | None  # written when its content differs (it is absent then)
    env_changes: dict[str, str]
    present: dict[str, int]

    @property
    def nothing_to_do(self) -> bool:
        return not (self.images or self.model_files or self.refs or self.catalog_target or self.env_changes)


def _cached_path(cache: Path, model: ModelEntry, item: ModelFile) -> Path:
    repo = hf_cache.repo_dir(cache, model.model)
    return repo / "blobs" / item.blob if item.blob else repo / "snapshots" / model.revision / item.path


def _file_matches(path: Path, member: Member) -> bool:
    if not path.is_file() or path.stat().st_size != member.size:
        return False
    with path.open("rb") as stream:
        return sha256_of(stream)[0] == member.sha256


def plan_load(manifest: Manifest, reader: BundleReader, site: SiteConfig, settings: Settings,
              engine: Engine | None) -> LoadPlan:  # fmt: skip
    """What of the bundle this machine lacks; refuses (InputError) what loading would overwrite."""
    from docker.errors import ImageNotFound

    from controller.config.envfile import stage_env_values
    from controller.config.settings import merged_values

    images = []
    for entry in manifest.images:
        assert engine is not None  # load_bundle connects whenever the bundle holds images
        try:
            if engine.client.images.get(entry.reference).id == entry.id:
                continue
        except ImageNotFound:
            pass
        images.append(entry)
    cache = settings.hf_cache_path
    files, refs = [], []
    for model in manifest.models:
        for item in model.files:
            link = hf_cache.repo_dir(cache, model.model) / "snapshots" / model.revision / item.path
            if not (_file_matches(_cached_path(cache, model, item), manifest.member(item.member)) and link.exists()):
                files.append((model, item))
        if hf_cache.revision(cache, model.model) != model.revision:
            refs.append(model)
    catalog_target = None
    env_changes: dict[str, str] = {}
    values = merged_values(site.env_file)
    if manifest.catalog:
        target = site.env_file.parent / LOADED_CATALOG_NAME
        with reader.open(manifest.catalog) as stream:
            wanted = stream.read()
        if target.exists() and target.read_bytes() != wanted:
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
        "model_files": sum(len(m.files) for m in manifest.models) - len(files),
    }
    return LoadPlan(images, files, refs, catalog_target, env_changes, present)


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
    model_bytes = sum(manifest.member(item.member).size for _, item in plan.model_files)
    if model_bytes:
        need(settings.hf_cache_path, model_bytes, f"models in {settings.hf_cache_path}")
    for where, amount, what in needs.values():
        free = shutil.disk_usage(where).free
        require_room(
            where, free, amount, doing=f"loading {' and '.join(what)}",
            hint="free some space (docker image prune, old models in the HF cache) and load again; nothing was loaded",
        )  # fmt: skip
        checked.append(f"free disk: {human_size(free)} at {where} for {human_size(amount)} ({' and '.join(what)})")
    return checked


def _load_images(reader: BundleReader, manifest: Manifest, plan: LoadPlan, engine: Engine, ui: BundleUI) -> None:
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


def _copy_member(reader: BundleReader, member: Member, target: Path, advance: Advance | None) -> None:
    """Copy one member to target (via a temporary file beside it), checking its sha256 again."""
    import hashlib

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as sink, reader.open(member.path) as stream:
            for chunk in read_chunks(stream, advance):
                digest.update(chunk)
                sink.write(chunk)
        if digest.hexdigest() != member.sha256:
            raise RuntimeFailure(f"bundle member {member.path} changed while it was loaded")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_models(reader: BundleReader, manifest: Manifest, plan: LoadPlan, cache: Path, ui: BundleUI) -> None:
    total = sum(manifest.member(item.member).size for _, item in plan.model_files)
    with ui.progress("models into the HF cache", total) as advance:
        for model, item in plan.model_files:
            target = _cached_path(cache, model, item)
            member = manifest.member(item.member)
            if not _file_matches(target, member):
                _copy_member(reader, member, target, advance)
            if item.blob:  # the hub layout: snapshots/REV/FILE -> ../../blobs/BLOB
                link = hf_cache.repo_dir(cache, model.model) / "snapshots" / model.revision / item.path
                link.parent.mkdir(parents=True, exist_ok=True)
                link.unlink(missing_ok=True)
                link.symlink_to(os.path.relpath(target, link.parent))
    for model in plan.refs:
        ref = hf_cache.repo_dir(cache, model.model) / "refs" / hf_cache.DEFAULT_REF
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(model.revision, encoding="utf-8")


def load_bundle(site: SiteConfig, path: Path, *, ui: BundleUI, lock_timeout_s: float = 600.0) -> dict:
    from controller.config.envfile import write_env_values
    from controller.journal import JournalStore

    settings = read_settings(site).settings  # a bad .env stops here, before the bundle is read
    reader = open_bundle(path)
    try:
        manifest = parse_manifest(reader.read_manifest(), reader.origin)
        with ui.progress(f"verify {len(manifest.members)} members (sha256)", manifest.total_bytes) as advance:
            manifest = ui.timed("verify", lambda: verify_bundle(reader, advance))
        verified = [
            f"{len(manifest.members)} members, {human_size(manifest.total_bytes)}: sizes and sha256 match the manifest "
            f"(format {manifest.format_version}, controller {manifest.controller_version})"
        ]
        engine = Engine() if manifest.images else None  # a models-only bundle needs no Docker
        with JournalStore(site.state_dir).locked("bundle load", timeout=lock_timeout_s):
            plan = plan_load(manifest, reader, site, settings, engine)
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
            if plan.images and engine is not None:
                ui.timed("docker load", lambda: _load_images(reader, manifest, plan, engine, ui))
            if plan.model_files or plan.refs:
                ui.timed("models", lambda: _load_models(reader, manifest, plan, settings.hf_cache_path, ui))
            if plan.catalog_target and manifest.catalog:
                _copy_member(reader, manifest.member(manifest.catalog), plan.catalog_target, None)
            env_written = write_env_values(site.env_file, plan.env_changes, overwrite=True) if plan.env_changes else []
    finally:
        reader.close()
    return {
        "bundle": str(path),
        "verified": verified,
        "profiles": manifest.profiles,
        "images_loaded": [i.reference for i in plan.images],
        "model_files_written": len(plan.model_files),
        "already_present": plan.present,
        "catalog_written": str(plan.catalog_target) if plan.catalog_target else None,
        "env_written": env_written,
        "changed": not plan.nothing_to_do,
        "timings": ui.timings,
    }

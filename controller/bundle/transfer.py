"""`controller bundle create` and `bundle load`: the sequencing around the bundle format
(controller.bundle.format), with the side effects: `docker save`, `docker load`, the HF cache and .env.

Both check everything they can before writing anything: create refuses a missing image or an
uncached model before `docker save`; load verifies every member's sha256, the format version and
the free disk before loading anything, and skips what is already on the machine (a second load of
the same bundle changes nothing).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from controller import __version__
from controller.bundle.format import (
    CATALOG_MEMBER,
    FORMAT_VERSION,
    IMAGES_MEMBER,
    Advance,
    BundleReader,
    ImageEntry,
    Manifest,
    Member,
    ModelEntry,
    ModelFile,
    model_member,
    open_bundle,
    parse_manifest,
    read_chunks,
    sha256_of,
    verify_bundle,
    writer_for,
)
from controller.config.catalog import Catalog
from controller.config.profile import Profile
from controller.config.settings import Settings, SiteConfig, read_settings
from controller.errors import InputError, RuntimeFailure
from controller.runtime import hf_cache
from controller.runtime.docker import Engine, run_command

LOADED_CATALOG_NAME = "catalog.yaml"
# Free space kept beyond what a bundle needs: a full disk breaks Docker and the journal alike.
DISK_MARGIN = 1.05
SAVE_TIMEOUT_S = 3 * 3600


@dataclass
class BundleUI:
    """How the commands talk to the operator; the defaults stay silent and answer no."""

    say: Callable[[str], None] = lambda text: None
    progress: Callable[[str, int], AbstractContextManager[Advance | None]] = lambda description, total: nullcontext()
    confirm: Callable[[str], bool] = lambda question: False
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, action: Callable[[], object]) -> object:
        start = time.monotonic()
        result = action()
        self.timings[name] = round(time.monotonic() - start, 2)
        return result


def _size(n: int) -> str:
    if n >= 1e8:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _free_bytes(path: Path) -> tuple[Path, int]:
    existing = next(p for p in [path, *path.parents] if p.exists())
    return existing, shutil.disk_usage(existing).free


# ----- create ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatePlan:
    profiles: list[Profile]
    images: list[ImageEntry]
    images_bytes: int  # at most: layers shared between the images are saved once
    snapshots: list[tuple[hf_cache.Snapshot, list[str]]]
    catalog_file: Path | None

    @property
    def models_bytes(self) -> int:
        return sum(snapshot.size for snapshot, _ in self.snapshots)


def _bundle_images(profiles: list[Profile], settings: Settings) -> list[str]:
    vllm = [settings.vllm_cpu_image if p.accelerator == "cpu" else settings.vllm_image for p in profiles]
    return list(dict.fromkeys([*vllm, settings.webui_image]))


def plan_create(settings: Settings, catalog: Catalog, catalog_file: Path | None, names: list[str],
                engine_factory: Callable[[], Engine] = Engine) -> CreatePlan:  # fmt: skip
    """Check every input and find every member; raise InputError before anything is written. The
    profiles and the cache are checked before the Docker engine is reached."""
    from docker.errors import ImageNotFound

    profiles = [catalog.get(name) for name in dict.fromkeys(names)]
    for profile in profiles:
        if profile.local_path is not None:
            raise InputError(
                f"profile '{profile.name}' serves the local directory {profile.local_path}; bundles carry models "
                "from the Hugging Face cache",
                hint="copy that directory to the offline box yourself, or use a profile with a Hugging Face id",
            )
    snapshots: dict[str, tuple[hf_cache.Snapshot, list[str]]] = {}
    for profile in profiles:
        if profile.model in snapshots:
            snapshots[profile.model][1].append(profile.name)
            continue
        snapshot = hf_cache.find_snapshot(settings.hf_cache_path, profile.model)
        if snapshot is None:
            raise InputError(
                f"model {profile.model} (profile '{profile.name}') is not in the Hugging Face cache "
                f"{settings.hf_cache_path} (no refs/main with a snapshot holding config.json)",
                hint=f"download it first: `controller up {profile.name}` (or `huggingface-cli download "
                f"{profile.model}`); a gated model needs HF_TOKEN and its licence accepted",
            )
        snapshots[profile.model] = (snapshot, [profile.name])
    images, images_bytes = [], 0
    engine = engine_factory()
    for reference in _bundle_images(profiles, settings):
        try:
            image = engine.client.images.get(reference)
        except ImageNotFound:
            raise InputError(
                f"image {reference} is not on this machine",
                hint="pull or build it first (docker pull), or set VLLM_IMAGE / VLLM_CPU_IMAGE / WEBUI_IMAGE in .env",
            ) from None
        images.append(ImageEntry(reference=reference, id=image.id))
        images_bytes += int(image.attrs.get("Size") or 0)
    return CreatePlan(profiles, images, images_bytes, list(snapshots.values()), catalog_file)


def create_bundle(site: SiteConfig, catalog: Catalog, catalog_file: Path | None, names: list[str], out: Path, *,
                  directory: bool, ui: BundleUI) -> dict:  # fmt: skip
    if out.exists() or out.with_name(out.name + ".partial").exists():
        raise InputError(f"{out} already exists", hint="choose another -o path, or delete it first")
    if not out.parent.is_dir():
        raise InputError(f"-o {out}: the directory {out.parent} does not exist")
    settings = read_settings(site).settings
    plan = plan_create(settings, catalog, catalog_file, names)
    catalog_bytes = catalog_file.stat().st_size if catalog_file else 0
    estimate = plan.images_bytes + plan.models_bytes + catalog_bytes
    # A single file holds the saved images twice while it is written (the save, then its copy).
    need = estimate + (0 if directory else plan.images_bytes)
    where, free = _free_bytes(out.parent)
    if free < need * DISK_MARGIN:
        raise InputError(
            f"{where} has {_size(free)} free; writing this bundle needs about {_size(need)}",
            hint="write it to a larger disk with -o, or use --directory (no temporary copy of the images)",
        )
    ui.say(
        f"bundle of {', '.join(p.name for p in plan.profiles)}: at most {_size(estimate)} "
        f"(images {_size(plan.images_bytes)}, models {_size(plan.models_bytes)}) to {out}"
    )
    members: list[Member] = []
    models: list[ModelEntry] = []
    with writer_for(out, directory=directory) as writer:
        staging = out if directory else Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            saved = staging / IMAGES_MEMBER
            references = [image.reference for image in plan.images]
            with ui.progress(f"docker save {' '.join(references)}", 0):
                ui.timed("docker save", lambda: run_command(["docker", "save", "-o", str(saved), *references],
                                                             timeout=SAVE_TIMEOUT_S))  # fmt: skip
            with ui.progress(f"checksum {IMAGES_MEMBER}", saved.stat().st_size) as advance:
                members.append(ui.timed("images member", lambda: writer.add(IMAGES_MEMBER, saved, advance)))
        finally:
            if not directory:
                shutil.rmtree(staging, ignore_errors=True)
        with ui.progress("models", plan.models_bytes) as advance:
            for snapshot, profile_names in plan.snapshots:
                files = []
                for item in snapshot.files:
                    member = model_member(snapshot.model_id, snapshot.revision, item.path)
                    members.append(writer.add(member, item.source, advance))
                    files.append(ModelFile(path=item.path, member=member, blob=item.blob))
                models.append(ModelEntry(model=snapshot.model_id, revision=snapshot.revision,
                                         profiles=profile_names, files=files))  # fmt: skip
        if catalog_file:
            members.append(writer.add(CATALOG_MEMBER, catalog_file))
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            controller_version=__version__,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            profiles=[p.name for p in plan.profiles],
            images=plan.images,
            models=models,
            catalog=CATALOG_MEMBER if catalog_file else None,
            members=members,
        )
        writer.finish(manifest)
    return {
        "bundle": str(out),
        "format": "directory" if directory else "file",
        "bytes": manifest.total_bytes,
        "profiles": manifest.profiles,
        "images": [image.model_dump() for image in manifest.images],
        "models": [{"model": m.model, "revision": m.revision, "files": len(m.files)} for m in manifest.models],
        "catalog": catalog_file is not None,
        "members": len(members),
        "timings": ui.timings,
    }


# ----- load --------------------------------------------------------------------------------------


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
    present = {
        "images": len(manifest.images) - len(images),
        "model_files": sum(len(m.files) for m in manifest.models) - len(files),
    }
    return LoadPlan(images, files, refs, catalog_target, env_changes, present)


def _check_disk(plan: LoadPlan, manifest: Manifest, settings: Settings, engine: Engine | None) -> list[str]:
    """Raise InputError when a disk lacks room for what will be loaded onto it; say what was checked."""
    needs: dict[int, tuple[Path, int, list[str]]] = {}

    def need(path: Path, amount: int, what: str) -> None:
        where, _free = _free_bytes(path)
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
        if free < amount * DISK_MARGIN:
            raise InputError(
                f"{where} has {_size(free)} free; loading {' and '.join(what)} needs about {_size(amount)}",
                hint="free some space (docker image prune, old models in the HF cache) and load again; "
                "nothing was loaded",
            )
        checked.append(f"free disk: {_size(free)} at {where} for {_size(amount)} ({' and '.join(what)})")
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
            f"{len(manifest.members)} members, {_size(manifest.total_bytes)}: sizes and sha256 match the manifest "
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

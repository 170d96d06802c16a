"""`controller bundle create`: the images and the cached models of some profiles, and the user
catalog, written as one bundle (controller.bundle.format) with `docker save` for the images.

Every input is checked before anything is written: a local-directory profile, an uncached model,
a missing image, too little disk or an existing output is refused first.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from controller import __version__
from controller.bundle.format import (
    BLOB_NAME,
    CATALOG_MEMBER,
    FORMAT_VERSION,
    IMAGES_MEMBER,
    ImageEntry,
    Manifest,
    Member,
    ModelEntry,
    ModelFile,
    model_member,
)
from controller.bundle.writer import writer_for
from controller.config.catalog import Catalog
from controller.config.profile import Profile
from controller.config.settings import Settings, read_settings
from controller.config.site import SiteConfig
from controller.errors import InputError
from controller.operator_ui import OperatorUI, human_size
from controller.runtime import hf_cache
from controller.runtime.docker import Engine, run_command
from controller.runtime.host import free_disk_bytes, require_room

SAVE_TIMEOUT_S = 3 * 3600


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


def _bundle_images(profiles: list[Profile], settings: Settings, monitoring: tuple[str, ...]) -> list[str]:
    vllm = [settings.vllm_cpu_image if p.accelerator == "cpu" else settings.vllm_image for p in profiles]
    return list(dict.fromkeys([*vllm, settings.webui_image, *monitoring]))


def plan_create(settings: Settings, catalog: Catalog, catalog_file: Path | None, names: list[str],
                engine_factory: Callable[[], Engine] = Engine, *,
                monitoring_images: tuple[str, ...] = ()) -> CreatePlan:  # fmt: skip
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
    for reference in _bundle_images(profiles, settings, monitoring_images):
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


def _blob(item: hf_cache.SnapshotFile, member: Member) -> str | None:
    """The blob name the bundle carries: a hash name only (any other is loaded as a plain file), and a
    sha256 name only for the content of that sha256 (a damaged cache is refused, not carried)."""
    if item.blob is None or not BLOB_NAME.fullmatch(item.blob):
        return None
    if len(item.blob) == 64 and item.blob != member.sha256:
        raise InputError(
            f"{item.source}: this HF cache blob's content does not match its name (sha256 {member.sha256[:16]}...)",
            hint="delete the model from the HF cache and download it again",
        )
    return item.blob


def create_bundle(site: SiteConfig, catalog: Catalog, catalog_file: Path | None, names: list[str], out: Path, *,
                  directory: bool, ui: OperatorUI) -> dict:  # fmt: skip
    if out.exists() or out.with_name(out.name + ".partial").exists():
        raise InputError(f"{out} already exists", hint="choose another -o path, or delete it first")
    if not out.parent.is_dir():
        raise InputError(f"-o {out}: the directory {out.parent} does not exist")
    loaded = read_settings(site)
    # MONITORING=on: its images go too, so that the offline box runs the same stack.
    plan = plan_create(loaded.settings, catalog, catalog_file, names, monitoring_images=loaded.monitoring.images)
    catalog_bytes = catalog_file.stat().st_size if catalog_file else 0
    estimate = plan.images_bytes + plan.models_bytes + catalog_bytes
    # A single file holds the saved images twice while it is written (the save, then its copy).
    need = estimate + (0 if directory else plan.images_bytes)
    where, free = free_disk_bytes(out.parent)
    require_room(
        where, need, free=free, doing="writing this bundle",
        hint="write it to a larger disk with -o, or use --directory (no temporary copy of the images)",
    )  # fmt: skip
    ui.say(
        f"bundle of {', '.join(p.name for p in plan.profiles)}: at most {human_size(estimate)} "
        f"(images {human_size(plan.images_bytes)}, models {human_size(plan.models_bytes)}) to {out}"
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
                    files.append(ModelFile(path=item.path, member=member, blob=_blob(item, members[-1])))
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

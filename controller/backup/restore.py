"""`controller restore FILE`: check the whole file, refuse a schema the image cannot read, take a
safety backup, put the data back, and prove it (the admin signs in, the counts match the manifest,
a browser-shaped chat answers). A restore that fails puts the safety backup back."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from controller.backup.archive import read_manifest, unpack_folder, verify_and_extract
from controller.backup.create import create_backup
from controller.backup.manifest import WEBUI_DATA, Manifest
from controller.config.backups import backup_dir, backup_name
from controller.config.settings import read_settings
from controller.errors import ControllerError, InputError, RestoreFailed
from controller.lifecycle.stack import Stack
from controller.operator_ui import OperatorUI, human_size
from controller.runtime import webui_data


def restore_backup(stack: Stack, path: Path, *, catalog: Path | None, ui: OperatorUI) -> dict:
    started = time.monotonic()
    manifest = read_manifest(path)
    settings = read_settings(stack.site).settings
    target = stack.target(settings)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=path.parent) as tmp:
        staging = Path(tmp)
        total = sum(member.size for member in manifest.members.values())
        with ui.progress(f"verify {path.name} (size and sha256 of every member)", total) as advance:
            members = verify_and_extract(path, manifest, staging, advance)
        running = target.services()["webui"]["state"] == "running"
        image = webui_data.image_facts(target.project, running=running)
        if manifest.schema_revision not in image["revisions"]:
            raise InputError(
                f"{path}: Open WebUI's schema in the backup ({manifest.schema_revision}, written by Open WebUI "
                f"{manifest.webui.version or 'unknown'}) is newer than {settings.webui_image} "
                f"(Open WebUI {image['version'] or 'unknown'}) can read; nothing was changed",
                hint=f"set WEBUI_IMAGE to Open WebUI {manifest.webui.version or 'as new as the one that wrote it'} "
                "or newer, then restore it",
            )
        question = (
            f"Replace Open WebUI's users, chats and files with the backup of {manifest.created} "
            f"({manifest.users} users, {manifest.chats} chats, {human_size(total)})? "
            "A safety backup of the current data is taken first."
        )
        if not ui.confirm(question):
            raise InputError("restore not confirmed; nothing was changed", hint="add --yes to restore without asking")
        data = staging / "data"
        unpack_folder(members[WEBUI_DATA], data)
        with stack.locked("restore"):
            safety = _safety_backup(stack, catalog, ui) if running else None
            try:
                proof = _put_back(stack, target, settings, data, manifest, ui)
            except ControllerError as exc:
                raise _rolled_back(stack, target, settings, safety, exc, ui) from None
    return {
        "restored": str(path),
        "created": manifest.created,
        "users": manifest.users,
        "chats": manifest.chats,
        "safety_backup": str(safety) if safety else None,
        "proof": proof,
        "seconds": round(time.monotonic() - started, 1),
    }


def _safety_backup(stack: Stack, catalog: Path | None, ui: OperatorUI) -> Path:
    out = backup_dir(stack.site.root) / ("pre-restore-" + backup_name(time.time()))
    create_backup(stack, out, catalog=catalog, keep=None, ui=ui)
    return out


def _put_back(stack: Stack, target, settings, data: Path, manifest: Manifest | None, ui: OperatorUI) -> dict:
    """Stop Open WebUI, replace its data folder, start it, and prove what a person would check."""
    runner = stack.runner()
    ui.say("stopping Open WebUI, replacing its data folder")
    target.project.stop("webui")
    webui_data.copy_in(target.project, data)
    target.project.up("webui", no_deps=True)
    target.wait_webui(runner)
    with target.webui() as client, tempfile.TemporaryDirectory(prefix=".restore-check-", dir=data.parent) as tmp:
        setup = stack.webui_setup(settings, target, client)
        setup.admin(runner)
        copied = webui_data.copy_out(target.project, Path(tmp))
        facts = webui_data.database_facts(copied / webui_data.DATABASES[0])
        if manifest is not None and (facts["users"], facts["chats"]) != (manifest.users, manifest.chats):
            raise RestoreFailed(
                f"after the restore Open WebUI has {facts['users']} users and {facts['chats']} chats; "
                f"the backup holds {manifest.users} and {manifest.chats}"
            )
        active = stack.store.load().active
        if active is not None and target.services()["vllm"]["state"] == "running":
            setup.serve(runner, active)  # the default model again, and a browser-shaped chat answers
    return {
        "admin_signs_in": True,
        "users": facts["users"],
        "chats": facts["chats"],
        "chat_answers": active is not None,
    }


def _rolled_back(stack: Stack, target, settings, safety: Path | None, cause: ControllerError, ui: OperatorUI):
    if safety is None:
        return RestoreFailed(f"the restore failed: {cause.message}", hint=cause.hint, details=list(cause.details))
    ui.say(f"the restore failed ({cause.message}); putting the safety backup {safety} back")
    try:
        manifest = read_manifest(safety)
        with tempfile.TemporaryDirectory(prefix=".rollback-", dir=safety.parent) as tmp:
            members = verify_and_extract(safety, manifest, Path(tmp))
            unpack_folder(members[WEBUI_DATA], Path(tmp) / "data")
            _put_back(stack, target, settings, Path(tmp) / "data", manifest, ui)
    except ControllerError as again:
        return RestoreFailed(
            f"the restore failed ({cause.message}) and putting the safety backup back failed too ({again.message})",
            hint=f"put it back by hand: `controller restore {safety} --yes`",
        )
    return RestoreFailed(
        f"the restore failed: {cause.message}; the data from before it is back ({safety})",
        hint=cause.hint,
        details=list(cause.details),
    )

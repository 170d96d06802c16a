"""`controller restore FILE`: check the whole file, refuse a schema the image cannot read, take a
safety backup, put the data back, and prove it (the admin signs in, the counts match the manifest,
a browser-shaped chat answers). A restore that fails or is interrupted puts the safety backup back.

Open WebUI must be running: the safety backup copies it as it serves, and without one nothing is
replaced. Staging lives in the site's state folder (the controller's own), not beside the file,
which may be on read-only media."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from controller.backup.archive import read_manifest, unpack_folder, verify_and_extract
from controller.backup.create import create_backup
from controller.backup.crypto import decrypt_to, is_encrypted, require_passphrase
from controller.backup.manifest import WEBUI_DATA, Manifest, newer_than_image
from controller.config.backups import backup_dir, backup_name
from controller.config.settings import read_settings
from controller.errors import ControllerError, InputError, RestoreFailed, RuntimeFailure
from controller.files import write_failed
from controller.lifecycle.stack import Stack
from controller.operator_ui import OperatorUI, human_size
from controller.runtime import webui_data
from controller.runtime.host import require_room, same_file_system


def restore_backup(stack: Stack, path: Path, *, catalog: Path | None, ui: OperatorUI,
                   passphrase: str | None = None) -> dict:  # fmt: skip
    started = time.monotonic()
    # A missing or foreign file, or an encrypted one without its passphrase, is refused before the
    # lock or the staging folder touch the site.
    encrypted = is_encrypted(path)
    if encrypted:
        require_passphrase(path, passphrase)
    else:
        read_manifest(path)
    _require_room(stack, path, encrypted)
    settings = read_settings(stack.site).settings
    target = stack.target(settings)
    with stack.locked("restore"), _staging(stack, ".restore-") as tmp:
        staging = Path(tmp)
        if target.services()["webui"]["state"] != "running":
            raise RuntimeFailure(
                "Open WebUI is not running: a restore first takes a safety backup of it; nothing was changed",
                hint="start the stack with `controller up MODEL`, then restore",
            )
        manifest, members = _verified(path, staging, passphrase, ui)
        total = sum(member.size for member in manifest.members.values())
        image = webui_data.image_facts(target.project, running=True)
        if newer_than_image(manifest.schema_revision, image["revisions"]):
            raise InputError(
                f"{path}: Open WebUI's schema in the backup ({manifest.schema_revision}, written by Open WebUI "
                f"{manifest.webui.version or 'unknown'}) is newer than {settings.webui_image} "
                f"(Open WebUI {image['version'] or 'unknown'}) can read; nothing was changed",
                hint=f"set WEBUI_IMAGE to Open WebUI {manifest.webui.version or 'as new as the one that wrote it'} "
                "or newer, then restore it",
            )
        question = (f"Replace Open WebUI's users, chats and files with the backup of {manifest.created} "
                    f"({manifest.users} users, {manifest.chats} chats, {human_size(total)})? "
                    "A safety backup of the current data is taken first.")  # fmt: skip
        if not ui.confirm(question):
            raise InputError("restore not confirmed; nothing was changed", hint="add --yes to restore without asking")
        data = staging / "data"
        try:
            unpack_folder(members[WEBUI_DATA], data)
        except OSError as exc:  # nothing was changed yet
            raise write_failed(data, exc) from None
        safety = backup_dir(stack.site.root) / (
            "pre-restore-" + backup_name(time.time()) + (".age" if passphrase else "")
        )
        create_backup(stack, safety, catalog=catalog, keep=None, ui=ui, passphrase=passphrase)
        try:
            proof = _put_back(stack, target, settings, data, manifest, ui)
        except BaseException as exc:  # Ctrl-C too: Open WebUI may be stopped or half-restored
            raise _rolled_back(stack, target, settings, safety, exc, ui, passphrase) from None
    return {"restored": str(path), "created": manifest.created, "users": manifest.users, "chats": manifest.chats,
            "safety_backup": str(safety), "proof": proof, "seconds": round(time.monotonic() - started, 1)}  # fmt: skip


def _require_room(stack: Stack, path: Path, encrypted: bool) -> None:
    """Staging holds the members and the unpacked data folder (and the decrypted file), and the safety
    backup about as much as the backup again: refused before anything is written when it cannot fit
    (added up when both folders are on one file system, as they are by default)."""
    size = path.stat().st_size
    hint = "free some space there and restore again; nothing was changed"
    staging, safety = stack.site.state_dir, backup_dir(stack.site.root)
    needs = {staging: size * (3 if encrypted else 2), safety: size}
    if same_file_system(staging, safety):
        needs = {staging: sum(needs.values())}
    for where, need in needs.items():
        require_room(where, need, doing=f"restoring {path.name} (staging in {staging}, and the safety backup)",
                     hint=hint)  # fmt: skip


def _verified(path: Path, staging: Path, passphrase: str | None, ui: OperatorUI):
    """The manifest and the members, decrypted and checked, in `staging` (the state folder, so a full
    disk there is named as such; nothing was changed yet)."""
    try:
        source = path
        if is_encrypted(path):
            source = staging / "decrypted.tar"
            decrypt_to(path, source, passphrase)
        manifest = read_manifest(source)
        total = sum(member.size for member in manifest.members.values())
        with ui.progress(f"verify {path.name} (size and sha256 of every member)", total) as advance:
            return manifest, verify_and_extract(source, manifest, staging, advance)
    except OSError as exc:
        raise write_failed(staging, exc) from None


def _staging(stack: Stack, prefix: str) -> tempfile.TemporaryDirectory:
    stack.site.state_dir.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=prefix, dir=stack.site.state_dir)


def _put_back(stack: Stack, target, settings, data: Path, manifest: Manifest, ui: OperatorUI) -> dict:
    """Stop Open WebUI, replace its data folder, start it, and prove what a person would check."""
    runner = stack.runner()
    ui.say("stopping Open WebUI, replacing its data folder")
    target.project.stop("webui")
    webui_data.copy_in(target.project, data)
    target.project.up("webui", no_deps=True)
    target.wait_webui(runner)
    with target.webui() as client:
        setup = stack.webui_setup(settings, target, client)
        setup.admin(runner)
        counts = webui_data.live_counts(target.project)
        # Users may chat again as soon as Open WebUI is up: more chats than the backup is not a failure.
        if counts["users"] != manifest.users or counts["chats"] < manifest.chats:
            raise RestoreFailed(f"after the restore Open WebUI has {counts['users']} users and {counts['chats']} "
                                f"chats; the backup holds {manifest.users} and {manifest.chats}")  # fmt: skip
        active = stack.store.load().active
        answers = active is not None and target.services()["vllm"]["state"] == "running"
        if answers:
            setup.serve(runner, active)  # the default model again, and a browser-shaped chat answers
    return {"admin_signs_in": True, **counts, "chat_answers": answers}


def put_back_file(stack: Stack, target, settings, backup: Path, ui: OperatorUI, passphrase: str | None) -> dict:
    """Open WebUI's data from a backup this controller took (a safety or pre-upgrade one) back in
    place, proved; the compose file on disk says which Open WebUI image starts on it."""
    with _staging(stack, ".rollback-") as tmp:
        source = backup
        try:  # a full disk or an unreadable file is named; Open WebUI is not touched yet
            if is_encrypted(backup):
                source = Path(tmp) / "decrypted.tar"
                decrypt_to(backup, source, require_passphrase(backup, passphrase))
            manifest = read_manifest(source)
            members = verify_and_extract(source, manifest, Path(tmp))
            unpack_folder(members[WEBUI_DATA], Path(tmp) / "data")
        except OSError as exc:
            raise write_failed(Path(tmp), exc) from None
        return _put_back(stack, target, settings, Path(tmp) / "data", manifest, ui)


def _rolled_back(stack: Stack, target, settings, safety: Path, cause: BaseException, ui: OperatorUI,
                 passphrase: str | None) -> RestoreFailed:  # fmt: skip
    message = cause.message if isinstance(cause, ControllerError) else (
        "interrupted" if isinstance(cause, KeyboardInterrupt) else f"{type(cause).__name__}: {cause}")  # fmt: skip
    ui.say(f"the restore failed ({message}); putting the safety backup {safety} back")
    try:
        put_back_file(stack, target, settings, safety, ui, passphrase)
    except Exception as again:
        detail = again.message if isinstance(again, ControllerError) else f"{type(again).__name__}: {again}"
        return RestoreFailed(
            f"the restore failed ({message}) and putting the safety backup back failed too ({detail})",
            hint=f"put it back by hand: `controller restore {safety} --yes`",
        )
    hint = cause.hint if isinstance(cause, ControllerError) else None
    return RestoreFailed(f"the restore failed: {message}; the data from before it is back ({safety})", hint=hint)

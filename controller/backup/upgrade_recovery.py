"""The rollback of an upgrade whose controller was killed (SIGKILL, a lost session): the next
`upgrade`, `up` or `switch` finds it pending in the journal and runs this before the usual rollback
of a pending change (controller.lifecycle.stack registers it through the CLI)."""

from __future__ import annotations

import time
from pathlib import Path

from controller.backup.create import create_backup
from controller.backup.crypto import is_encrypted, read_passphrase, require_passphrase
from controller.backup.restore import put_back_file
from controller.backup.upgrade import WEBUI_IMAGE, write_images
from controller.config.backups import backup_dir, backup_name
from controller.config.settings import read_settings
from controller.errors import ControllerError, InputError, RestoreFailed
from controller.journal import Pending
from controller.lifecycle.stack import Stack
from controller.lifecycle.transaction import SwitchContext
from controller.operator_ui import OperatorUI


def roll_back_interrupted(stack: Stack, pending: Pending, ctx: SwitchContext) -> None:
    """A controller killed mid-upgrade: the old image settings back in .env and, when the new Open
    WebUI was started, its data from the pre-upgrade backup on the old image; the usual rollback of a
    pending change then serves the old deployment (vLLM) and records it.

    Open WebUI's data is replaced only when the upgrade got as far as starting the new Open WebUI; if
    that one answers (it may have served for a while) a safety backup of it is taken first. Anything
    that stops this names the backup and leaves the upgrade pending, so the next run tries again."""
    backup = Path(pending.backup) if pending.backup else None
    old_webui = (pending.images or {}).get(WEBUI_IMAGE)
    webui = ctx.target.services()["webui"]
    started_new = backup is not None and old_webui is not None and webui["image"] != old_webui
    passphrase = read_passphrase(None)
    try:
        if started_new:  # checked before anything is written
            if not backup.is_file():
                raise InputError(f"the pre-upgrade backup {backup} is gone")
            if is_encrypted(backup):
                require_passphrase(backup, passphrase)
        if pending.images:
            write_images(stack, pending.images)
        if not started_new:
            return
        settings = read_settings(stack.site).settings
        with ctx.target.webui() as client:
            if webui["state"] == "running" and client.healthy():
                safety = backup_dir(stack.site.root) / ("pre-rollback-" + backup_name(time.time())
                                                        + (".age" if passphrase else ""))  # fmt: skip
                create_backup(stack, safety, catalog=None, keep=None, ui=OperatorUI(say=stack.reporter.warn),
                              passphrase=passphrase)  # fmt: skip
        ctx.target.write(pending.restore.text)
        put_back_file(stack, ctx.target, settings, backup, OperatorUI(say=stack.reporter.warn), passphrase)
    except (ControllerError, OSError) as exc:
        cause = exc.message if isinstance(exc, ControllerError) else f"{type(exc).__name__}: {exc}"
        raise RestoreFailed(
            f"an interrupted upgrade could not be rolled back: {cause}",
            hint=(f"Open WebUI's data from before it is in {backup}. " if backup else "")
            + "If the backup is encrypted, set CONTROLLER_BACKUP_PASSPHRASE. The upgrade stays pending: "
            "the next `controller upgrade`, `up` or `switch` tries again",
        ) from None

"""`controller backup`, `restore` and `upgrade`: Open WebUI's users, chats and files kept safe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller.cli.console import err
from controller.cli.context import JsonOption, context, make_stack, run_on
from controller.cli.operator import operator_ui
from controller.cli.output import emit

PassphraseOption = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="Encrypt (backup) or decrypt (restore) with the passphrase in this file "
        "(else CONTROLLER_BACKUP_PASSPHRASE, if set).",
        show_default=False,
    ),
]


def backup(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="File to write (default: PROJECT_DIR/backups/webui-<UTC time>.backup.tar).",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option(
            "--keep", min=1, help="Then remove all but the newest N backups in that folder.", show_default=False
        ),
    ] = None,
    passphrase_file: PassphraseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy Open WebUI's data (users, chats, uploads, settings) while it serves, with .env, the catalog
    and the journal, into one file (mode 0600). The database is copied with SQLite's online backup.

    The file holds .env, so the site's secrets: keep it where .env may go, or
    encrypt it with a passphrase (--passphrase-file, or CONTROLLER_BACKUP_PASSPHRASE
    in the environment; age format).

    Nightly, from cron: 15 2 * * * cd /srv/llm && controller backup --keep 14 --json"""
    from controller.backup.create import check_output, create_backup, default_path
    from controller.backup.crypto import read_passphrase

    c = context(ctx)
    passphrase = read_passphrase(passphrase_file)
    stack = make_stack(ctx, quiet=as_json)
    path = (out or default_path(stack, encrypted=passphrase is not None)).absolute()
    check_output(path)
    with stack.locked("backup"):
        result = create_backup(stack, path, catalog=c.catalog_path, keep=keep, ui=operator_ui(quiet=as_json),
                               passphrase=passphrase)  # fmt: skip
    emit(result, as_json=as_json, text=_backup_text)


def _backup_text(result: dict) -> None:
    err.print(f"backup: {result['users']} users, {result['chats']} chats, Open WebUI schema "
              f"{result['schema_revision']}, in {result['seconds']} s", markup=False, highlight=False)  # fmt: skip
    for path in result["removed"]:
        err.print(f"removed the older backup {path} (--keep)", markup=False, highlight=False)


def restore(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A file that `controller backup` wrote.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", help="Restore without asking.")] = False,
    passphrase_file: PassphraseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put a backup's Open WebUI data back: checks the whole file first (manifest, sizes, sha256,
    format), refuses a schema newer than the Open WebUI image (exit 2, nothing changed), takes a
    safety backup, restores, and proves it (the admin signs in, the user and chat counts match, a chat
    answers). A failed restore puts the safety backup back (exit 1)."""
    from controller.backup.crypto import read_passphrase
    from controller.backup.restore import restore_backup

    c = context(ctx)
    passphrase = read_passphrase(passphrase_file)
    stack = make_stack(ctx, quiet=as_json)
    result = restore_backup(stack, file.absolute(), catalog=c.catalog_path, ui=operator_ui(quiet=as_json, yes=yes),
                            passphrase=passphrase)  # fmt: skip
    emit(result, as_json=as_json, text=_restore_text)


def _restore_text(result: dict) -> None:
    proof = result["proof"]
    err.print(f"restored {result['restored']} (of {result['created']}): the admin signs in, "
              f"{proof['users']} users and {proof['chats']} chats as in the backup"
              + (", and a chat answers" if proof["chat_answers"] else ""), markup=False, highlight=False)  # fmt: skip
    if result["safety_backup"]:
        err.print(f"the data from before the restore: {result['safety_backup']}", markup=False, highlight=False)


def upgrade(
    ctx: typer.Context,
    webui_image: Annotated[
        str | None,
        typer.Option("--webui-image", help="New Open WebUI image (default: WEBUI_IMAGE in .env).", show_default=False),
    ] = None,
    vllm_image: Annotated[
        str | None,
        typer.Option(
            "--vllm-image",
            help="New vLLM image (default: VLLM_IMAGE, or VLLM_CPU_IMAGE for a CPU model, in .env).",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Upgrade without asking.")] = False,
    passphrase_file: PassphraseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the running stack to new Open WebUI and/or vLLM images; roll back if anything fails.

    Shows what changes, and pulls the new images while the old ones serve.

    Open WebUI: a backup first, then the new container and its migrations (phase
    `migrations`); proved when the admin signs in, the user and chat counts are
    unchanged, the admin's latest chat opens and a new chat answers.

    vLLM: the same model on the new image, recreated as a `switch` does (data
    untouched); it goes first, so its failure never costs Open WebUI's data.

    A failure, Ctrl-C, or a controller killed outright (the next command finds it)
    puts back the old images, the old .env values and the pre-upgrade data.

    Exit 0: done, or nothing to do; 1: rolled back; 2: bad input, nothing changed."""
    from controller.backup.crypto import read_passphrase
    from controller.backup.upgrade import upgrade as run_upgrade

    c = context(ctx)
    passphrase = read_passphrase(passphrase_file)
    stack = make_stack(ctx, quiet=as_json)
    ui = operator_ui(quiet=as_json, yes=yes)
    result = run_on(stack, lambda: run_upgrade(stack, webui_image=webui_image, vllm_image=vllm_image,
                                               catalog=c.catalog_path, ui=ui, passphrase=passphrase))  # fmt: skip
    emit(result, as_json=as_json, text=_upgrade_text)


def _upgrade_text(result: dict) -> None:
    if result["noop"]:
        err.print("nothing to upgrade: the running images are the ones in .env", markup=False, highlight=False)
        return
    for change in result["changes"]:
        err.print(f"upgraded {change['key']}: {change['old']} -> {change['new']}", markup=False, highlight=False)
    webui = result.get("webui")
    if webui:
        opened = "the latest chat opens, " if webui["old_chat_opens"] else ""
        err.print(f"Open WebUI {webui['from']} -> {webui['to']} (schema {webui['schema']['from']} -> "
                  f"{webui['schema']['to']}): the admin signs in, {webui['users']} users and {webui['chats']} chats, "
                  f"{opened}a new chat answers; Open WebUI was down {webui['downtime_s']} s",
                  markup=False, highlight=False)  # fmt: skip
    vllm = result.get("vllm")
    if vllm:
        err.print(f"vLLM replaced by {vllm['strategy']} ({vllm['strategy_reason']}); downtime {vllm['downtime_s']} s",
                  markup=False, highlight=False)  # fmt: skip
    if result["backup"]:
        err.print(f"the data from before the upgrade: {result['backup']}", markup=False, highlight=False)


def add_commands(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)
    app.command("upgrade")(upgrade)

"""`controller upgrade`: new Open WebUI and vLLM images, with users and chats never at risk.

The whole upgrade is one transaction (controller.lifecycle.transaction): the journal records the
pre-upgrade backup and the old image settings before anything changes, so any failure, Ctrl-C, or a
controller killed outright (the next command finds the pending change) puts back the old images, the
old .env values and, when Open WebUI changed, its data from the backup; then proves the result.

- Open WebUI: pulled first (the old one still serves), backed up, recreated on the new image, waited
  through its migrations (their own phase and deadline: the database must reach the image's schema
  head, so a migration that failed quietly is caught), and proved: the admin signs in, the user and
  chat counts are unchanged, the admin's latest chat opens, and a browser-shaped chat answers.
- vLLM: the switch machinery with the same model on the new image (blue-green when the pair fits);
  Open WebUI's data is not touched, so no backup is taken.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from controller.backup.create import create_backup
from controller.backup.manifest import newer_than_image
from controller.backup.restore import put_back_file
from controller.config.backups import backup_dir, backup_name
from controller.config.env_values import collect_values
from controller.config.envfile import write_env_values
from controller.config.monitoring_settings import load_monitoring_settings
from controller.config.settings import Settings, parse_settings, read_settings
from controller.errors import InputError, NotReady, PreflightError, SettingsError, StartupFailed
from controller.journal import elapsed
from controller.lifecycle.metric_files import planned_work
from controller.lifecycle.stack import Stack
from controller.lifecycle.switch_command import choose_strategy, strategy_for
from controller.lifecycle.transaction import RESTORE_SERVING, SwitchContext, transaction
from controller.operator_ui import OperatorUI, human_size
from controller.phases import IMAGE_PULL, MIGRATIONS, WEBUI_START
from controller.runtime import webui_data
from controller.runtime.docker import pull_image

WEBUI_IMAGE = "WEBUI_IMAGE"
PRE_UPGRADE_PREFIX = "pre-upgrade-"


@dataclass(frozen=True)
class Change:
    key: str  # the .env setting
    service: str  # "webui" or "vllm"
    old: str
    new: str


def vllm_key(accelerator: str) -> str:
    """The setting that names the vLLM image of a profile on this accelerator."""
    return "VLLM_CPU_IMAGE" if accelerator == "cpu" else "VLLM_IMAGE"


def requested_changes(stack: Stack, *, webui_image: str | None, vllm_image: str | None) -> tuple[Settings, list]:
    """Validate the new references (nothing is written): the options, else the values already in
    .env; returns the settings with them and the (key, service, new) triples asked for."""
    active = stack.store.load().active
    if active is None:
        raise PreflightError("no running stack to upgrade", hint="start one with `controller up MODEL`")
    accelerator = stack.catalog.get(active.profile).accelerator
    collected = collect_values(stack.site.env_file)
    given = {key: value for key, value in ((WEBUI_IMAGE, webui_image), (vllm_key(accelerator), vllm_image))
             if value is not None}  # fmt: skip
    for key in given:
        if collected.sources.get(key, "").startswith("the environment"):
            raise SettingsError(
                f"{key} is set in the environment, so the upgrade cannot change it in {stack.site.env_file}",
                hint=f"unset {key} in the environment (or set it to the new reference and run "
                "`controller upgrade` without the option)",
            )
    option = {WEBUI_IMAGE: "--webui-image", vllm_key(accelerator): "--vllm-image"}
    sources = {**collected.sources, **{key: option[key] for key in given}}
    settings = parse_settings({**collected.values, **given}, str(stack.site.env_file), sources)
    vllm = settings.vllm_cpu_image if accelerator == "cpu" else settings.vllm_image
    # vLLM first: its rollback touches no data, so a failed vLLM never costs what users wrote on a
    # new Open WebUI meanwhile (the rollback of an Open WebUI upgrade restores the pre-upgrade data).
    return settings, [(vllm_key(accelerator), "vllm", vllm), (WEBUI_IMAGE, "webui", settings.webui_image)]


def upgrade(stack: Stack, *, webui_image: str | None, vllm_image: str | None, catalog: Path | None,
            ui: OperatorUI, passphrase: str | None = None) -> dict:  # fmt: skip
    started = time.monotonic()
    requested_changes(stack, webui_image=webui_image, vllm_image=vllm_image)  # bad input stops here
    with stack.locked("upgrade"):
        settings = read_settings(stack.site).settings
        target = stack.target(settings)
        stack.resolve_pending(settings)
        _, wanted = requested_changes(stack, webui_image=webui_image, vllm_image=vllm_image)  # after a rollback
        services = target.services()
        if services["webui"]["state"] != "running" or services["vllm"]["state"] != "running":
            raise PreflightError(
                "the stack is not running: an upgrade starts from a serving stack, so that it can prove "
                "it still serves and roll back to it; nothing was changed",
                hint="start it with `controller up MODEL`, then upgrade",
            )
        changes = [Change(key, service, services[service]["image"], new) for key, service, new in wanted
                   if services[service]["image"] != new]  # fmt: skip
        if not changes:
            return {"changes": [], "noop": True, "seconds": round(time.monotonic() - started, 1)}
        runner = stack.runner()
        _pull(target, runner, changes, ui)
        webui_change = next((c for c in changes if c.service == "webui"), None)
        facts = _webui_facts(target, webui_change) if webui_change else None
        versions = (f" (Open WebUI {facts['old']['version'] or '?'} -> {facts['new']['version'] or '?'}; its data "
                    "is backed up first)") if facts else ""  # fmt: skip
        question = "Upgrade " + "; ".join(f"{c.key} {c.old} -> {c.new}" for c in changes) + versions + "?"
        if not ui.confirm(question):
            raise InputError("upgrade not confirmed; nothing was changed", hint="add --yes to upgrade without asking")
        backup = None
        if webui_change:
            backup = backup_dir(stack.site.root) / (PRE_UPGRADE_PREFIX + backup_name(time.time())
                                                    + (".age" if passphrase else ""))  # fmt: skip
            create_backup(stack, backup, catalog=catalog, keep=None, ui=ui, passphrase=passphrase)
        result = _run(stack, target, settings, changes, backup, facts, ui, passphrase, runner)
    return {"changes": [vars(c) for c in changes], "noop": False, "backup": str(backup) if backup else None,
            **result, "phases": runner.timings, "seconds": round(time.monotonic() - started, 1)}  # fmt: skip


def _pull(target, runner, changes: list[Change], ui: OperatorUI) -> None:
    """The new images are pulled while the old ones still serve (not part of any outage)."""
    missing = target.missing_images([c.new for c in changes])
    for change in changes:
        where = "to pull" if change.new in missing else "on this machine"
        ui.say(f"{change.key}: {change.old} -> {change.new} ({where})")
    if missing:
        runner.run(IMAGE_PULL, lambda: [pull_image(ref, timeout=runner.deadlines[IMAGE_PULL]) for ref in missing])
    for change in changes:
        size = target.engine.image_size(change.new)
        if size:
            ui.say(f"{change.new}: {human_size(size)} on disk")


def _webui_facts(target, change: Change) -> dict:
    """Both versions, and the schema check: the new image must know the database's revision (an
    older Open WebUI cannot read a newer schema: refused, nothing changed)."""
    old = webui_data.image_facts(target.project, running=True)
    new = webui_data.image_facts_of(change.new)
    live = webui_data.live_counts(target.project)
    if newer_than_image(live["revision"], new["revisions"]):
        raise InputError(
            f"Open WebUI's database is at schema {live['revision']} (Open WebUI {old['version'] or 'unknown'}); "
            f"{change.new} (Open WebUI {new['version'] or 'unknown'}) does not know it: it is older. "
            "Nothing was changed",
            hint="Open WebUI's migrations run forward only: upgrade to a newer image, or restore a backup "
            "taken with that version (`controller restore`)",
        )
    return {"old": old, "new": new}


def _run(stack: Stack, target, settings: Settings, changes: list[Change], backup: Path | None, facts: dict | None,
         ui: OperatorUI, passphrase: str | None, runner) -> dict:  # fmt: skip
    active = stack.store.load().active
    old_images = {c.key: c.old for c in changes}
    summary = {c.key: f"{c.old} -> {c.new}" for c in changes}
    result: dict = {}
    with target.webui() as client:
        setup = stack.webui_setup(settings, target, client)
        ctx = SwitchContext(target, setup, runner)
        monitoring = load_monitoring_settings(stack.site.env_file)
        with planned_work(stack.site, monitoring, "upgrade", stack.options.deadlines), transaction(
            stack.store, "upgrade", active.profile, active, stack.reporter.warn,
            backup=str(backup) if backup else None, images=old_images) as txn:  # fmt: skip
            txn.phases = runner.timings
            txn.label = "the upgrade of " + ", ".join(c.key for c in changes)
            txn.restored_note = "the old images" + (f" and Open WebUI's data from {backup} are back" if backup
                                                    else " are back")  # fmt: skip
            txn.event_extra = {"backup": str(backup) if backup else None, "changes": summary}
            if backup:
                old_webui = old_images.get(WEBUI_IMAGE)
                txn.failed_rollback_hint = (f"Open WebUI's data from before the upgrade is in {backup}: set "
                                            f"WEBUI_IMAGE={old_webui} in .env, then `controller restore {backup} "
                                            "--yes` puts it back")  # fmt: skip
            txn.on_failure(".env", lambda: write_images(stack, old_images))
            session = setup.admin(runner)
            before_chat = client.latest_chat(session.token) if backup else None
            prepared = None
            for change in changes:
                write_images(stack, {change.key: change.new})
                prepared = stack.prepare(active.profile)
                if change.service == "webui":
                    result["webui"] = _upgrade_webui(stack, ctx, txn, prepared, active, backup, facts, before_chat,
                                                     old_images, ui, passphrase)  # fmt: skip
                else:
                    result["vllm"] = _upgrade_vllm(stack, ctx, txn, prepared, active)
            txn.commit = stack.activation("upgrade", prepared, runner, txn.started, previous=active.profile,
                                          downtime_s=result.get("webui", {}).get("downtime_s"),
                                          backup=str(backup) if backup else None, changes=summary)  # fmt: skip
    return result


def _upgrade_webui(stack: Stack, ctx: SwitchContext, txn, prepared, active, backup: Path, facts: dict,
                   before_chat: tuple[str, str] | None, old_images: dict[str, str], ui: OperatorUI,
                   passphrase: str | None) -> dict:  # fmt: skip
    target, runner, setup = ctx.target, ctx.runner, ctx.webui

    def put_back() -> None:
        """The old image settings and compose file, then the pre-upgrade data on the old image."""
        write_images(stack, old_images)
        target.write(active.text)
        put_back_file(stack, target, read_settings(stack.site).settings, backup, ui, passphrase)

    # Counted now, not before the question and the backup: someone may have signed up meanwhile.
    before = webui_data.live_counts(target.project)
    target.write(prepared.compose_text)
    txn.on_failure(RESTORE_SERVING, put_back)
    outage = time.monotonic()
    runner.run(WEBUI_START, lambda: target.project.up("webui", no_deps=True, timeout=runner.deadlines[WEBUI_START]))
    heads = facts["new"]["heads"]
    restarts = _restart_count(target)
    runner.wait(MIGRATIONS, lambda: _migrated(target, heads, restarts))
    setup.admin(runner)
    downtime = elapsed(outage)
    after = webui_data.live_counts(target.project)
    # People may chat again as soon as it is up: more chats than before is not a loss.
    if after["users"] != before["users"] or after["chats"] < before["chats"]:
        raise StartupFailed(
            f"after the upgrade Open WebUI has {after['users']} users and {after['chats']} chats; "
            f"before it had {before['users']} and {before['chats']}",
            phase=MIGRATIONS.name,
        )
    opened = None
    if before_chat is not None:
        title = setup.webui.chat_title(setup.session.token, before_chat[0])
        if title != before_chat[1]:
            raise StartupFailed(f"after the upgrade the admin's chat {before_chat[0]} ('{before_chat[1]}') does not "
                                "open", phase=MIGRATIONS.name)  # fmt: skip
        opened = before_chat[0]
    setup.serve(runner, active)  # the default model, and a new browser-shaped chat answers
    return {"from": facts["old"]["version"], "to": facts["new"]["version"],
            "schema": {"from": before["revision"], "to": after["revision"]}, "users": after["users"],
            "chats": after["chats"], "old_chat_opens": opened, "new_chat_answers": True,
            "downtime_s": downtime}  # fmt: skip


def _upgrade_vllm(stack: Stack, ctx: SwitchContext, txn, prepared, active) -> dict:
    # "auto", not SWITCH_STRATEGY: the same model on both instances is one name Open WebUI cannot
    # route apart, so the planner picks recreate (and says why); blue-green would be refused.
    decision, prepared = choose_strategy(stack, "auto", prepared, active, ctx.target)
    chosen = strategy_for(stack, decision, prepared, ctx)
    result = chosen.run(txn, prepared.compose_text, prepared.profile)
    stack.check_kv(prepared, result["vllm"])
    return {"strategy": chosen.name, "strategy_reason": decision.reason, "downtime_s": result["downtime_s"]}


def _restart_count(target) -> int:
    container = target.engine.container(target.settings.compose_project_name, webui_data.SERVICE)
    return container.attrs.get("RestartCount", 0) if container is not None else 0


def _migrated(target, heads: set[str], restarts_before: int) -> None:
    """Open WebUI answers and its database is at the image's schema head. A process that exits
    during its migrations is restarted by Docker (restart: unless-stopped): a restart here is a
    failure, not a wait to the deadline."""
    container = target.engine.container(target.settings.compose_project_name, webui_data.SERVICE)
    if (
        container is None
        or container.status in ("exited", "dead")
        or (container.attrs.get("RestartCount", 0) > restarts_before)
    ):
        tail = target.engine.logs_since(container).strip().splitlines()[-12:] if container is not None else []
        raise StartupFailed("the new Open WebUI stopped during its start-up (its migrations?)",
                            phase=MIGRATIONS.name, details=tail)  # fmt: skip
    with target.webui() as client:
        if not client.healthy():
            raise NotReady("Open WebUI /health is not answering yet (migrating?)")
    revision = webui_data.live_counts(target.project)["revision"]
    if revision not in heads:
        raise NotReady(f"Open WebUI's database is at schema {revision}, not yet at {', '.join(sorted(heads))}")


def write_images(stack: Stack, images: dict[str, str]) -> None:
    """Image settings into .env (also the rollback's and the recovery's way back)."""
    write_env_values(stack.site.env_file, images, overwrite=True)

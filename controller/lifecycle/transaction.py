"""Changing the served model as a transaction, in the shape of pipx's: the journal records what is
being done and what to restore before anything is touched; any failure (Ctrl-C and a failed pull
included) runs the registered undo steps newest first and records the outcome.

`RecreateStrategy` is today's switch: recreate only vLLM with the new model. A strategy is a
small object with a name and a `run`, so the blue-green switch can be a second one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from controller.config.profile import Profile
from controller.deploy.spec import SLOTS
from controller.errors import ControllerError, StartupFailed, SwitchFailed
from controller.journal import Deployment, Event, Journal, JournalStore, Pending, elapsed, now_iso
from controller.lifecycle.webui_setup import WebUISetup
from controller.phases import PhaseRunner
from controller.runtime.target import Target


@dataclass
class Transaction:
    store: JournalStore
    action: str
    target: str
    restore: Deployment | None
    started: str = field(default_factory=now_iso)
    undo: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    commit: Callable[[Journal], None] | None = None
    # For messages and records other than a switch's (an upgrade's): what is being done, what a
    # rollback brought back, and fields every event of it carries.
    label: str | None = None
    restored_note: str | None = None
    failed_rollback_hint: str | None = None
    event_extra: dict = field(default_factory=dict)

    def on_failure(self, what: str, step: Callable[[], None]) -> None:
        """Register an undo step; `what` says what it restores (used in messages)."""
        self.undo.append((what, step))

    def event(self, outcome: str, **extra: object) -> Event:
        previous = self.restore.profile if self.restore else None
        return Event(self.action, self.target, outcome, self.started, now_iso(), previous=previous,
                     phases=dict(self.phases), **{**self.event_extra, **extra})  # fmt: skip


def describe(cause: BaseException) -> tuple[str, str | None, list[str]]:
    """(reason, hint, details) of a failure, Ctrl-C included."""
    if isinstance(cause, ControllerError):
        phase = getattr(cause, "phase", None)
        return cause.message + (f" (phase: {phase})" if phase else ""), cause.hint, list(cause.details)
    if isinstance(cause, KeyboardInterrupt):
        return "interrupted", None, []
    return f"{type(cause).__name__}: {cause}", None, []


@contextmanager
def transaction(store: JournalStore, action: str, target: str, restore: Deployment | None,
                warn: Callable[[str], None], **pending_extra: object) -> Iterator[Transaction]:  # fmt: skip
    """`target` names what is being changed to (a model, or an upgrade's new images);
    `pending_extra` is what the next run needs to roll back a controller killed mid-change."""
    txn = Transaction(store, action, target, restore)
    pending = Pending(action, target, txn.started, os.getpid(), restore, **pending_extra)
    store.update(lambda journal: setattr(journal, "pending", pending))
    try:
        yield txn
    except GeneratorExit:  # the generator itself is being discarded: no outcome to record
        raise
    except BaseException as cause:
        _unwind(txn, cause, warn)
        raise

    def close(journal: Journal) -> None:
        journal.pending = None
        if txn.commit is not None:
            txn.commit(journal)

    # One write: a controller killed after it sees either the pending change or its outcome.
    store.update(close)


def _unwind(txn: Transaction, cause: BaseException, warn: Callable[[str], None]) -> None:
    """Run the undo steps newest first; record the outcome; turn a failure after a change into
    SwitchFailed (raised from here), and leave a failure before any change as it is."""
    reason, hint, details = describe(cause)
    what = (txn.label or f"the {txn.action} to '{txn.target}'") + (
        " was interrupted" if reason == "interrupted" else " failed"
    )
    restored = txn.restore.profile if txn.restore else None
    if txn.undo:
        warn(f"{what}: {reason}; rolling back" + (f" to '{restored}'" if restored else ""))
    first_failure: tuple[str, ControllerError] | None = None
    for label, step in reversed(txn.undo):
        try:
            step()
        except ControllerError as second:
            # The other steps still run: a file put back is better than one left changed.
            first_failure = first_failure or (label, second)
    if first_failure is not None:
        label, second = first_failure
        failed = txn.event("rollback_failed", error=f"{reason}; rollback: {second.message}")
        txn.store.update(lambda journal, event=failed: _close(journal, event, active=None))
        raise SwitchFailed(
            f"{what}: {reason}; and the rollback "
            + (f"to '{restored}'" if label == RESTORE_SERVING else f"of {label}")
            + f" failed too: {second.message}",
            hint=txn.failed_rollback_hint or DEFAULT_ROLLBACK_HINT,
            details=details + second.details,
        ) from None
    rolled_back = any(label == RESTORE_SERVING for label, _ in txn.undo)
    outcome = "rolled_back" if rolled_back else ("interrupted" if reason == "interrupted" else "failed")
    txn.store.update(lambda j: _close(j, txn.event(outcome, error=reason), active=j.active))
    if rolled_back:
        note = txn.restored_note or f"'{restored}' is serving again"
        raise SwitchFailed(f"{what}: {reason}; rolled back, {note}", hint=hint, details=details) from None


def _close(journal: Journal, event: Event, *, active: Deployment | None) -> None:
    journal.record(event)
    journal.pending = None
    journal.active = active


RESTORE_SERVING = "serving the previous model again"
DEFAULT_ROLLBACK_HINT = "see `controller logs vllm`; `controller up MODEL` starts a known-good model"


class SwitchStrategy(Protocol):
    name: str

    def run(self, txn: Transaction, new_text: str, profile: Profile) -> dict: ...


@dataclass
class SwitchContext:
    target: Target
    webui: WebUISetup
    runner: PhaseRunner


class RecreateStrategy:
    """Recreate vLLM with the new model; the outage is one model load. Open WebUI and its data stay."""

    name = "recreate"

    def __init__(self, ctx: SwitchContext):
        self.ctx = ctx

    def run(self, txn: Transaction, new_text: str, profile: Profile) -> dict:
        target, runner = self.ctx.target, self.ctx.runner
        txn.phases = runner.timings
        restore = txn.restore
        target.write(new_text)
        if restore is not None:
            txn.on_failure("the compose file", lambda: target.write(restore.text))
        # Pulled while the old model still serves: not part of the outage.
        target.pull(runner, target.slot)
        outage_start = time.monotonic()
        if restore is not None:
            txn.on_failure(RESTORE_SERVING, lambda: restore_deployment(self.ctx, restore))
        target.recreate_vllm(runner)
        facts = target.wait_vllm(runner, profile.served_model_name)
        self.ctx.webui.activate(runner, profile)
        return {"vllm": facts, "downtime_s": elapsed(outage_start)}


def restore_deployment(ctx: SwitchContext, deployment: Deployment) -> None:
    """Serve `deployment` again: its file, its vLLM (recreated only if it changed: an old instance
    still running beside a new one is kept as it is), Open WebUI's default model, and any other
    vLLM instance removed."""
    runner = ctx.runner.child("rollback: ")
    target = ctx.target
    target.write(deployment.text)
    target.use_slot(deployment.service)
    target.recreate_vllm(runner)
    try:
        target.wait_vllm(runner, deployment.served_model_name)
    except StartupFailed:
        _stop_quietly(target)  # a crash-looping vLLM burns CPU and floods logs
        raise
    finally:
        ctx.runner.timings.update(runner.timings)
    ctx.webui.activate(runner, deployment)
    for slot in SLOTS:
        if slot != deployment.service:
            target.remove_vllm(slot)
    ctx.runner.timings.update(runner.timings)


def _stop_quietly(target: Target) -> None:
    try:
        target.stop_vllm()
    except ControllerError:
        pass  # the rollback's own failure is what the operator needs to read


def roll_back_pending(store: JournalStore, pending: Pending, ctx: SwitchContext) -> None:
    """Resolve what a controller killed mid-change left: serve `pending.restore` again and record it."""
    restore = pending.restore

    def record(outcome: str, active: Deployment | None, error: str) -> None:
        previous = restore.profile if restore else None
        event = Event(pending.action, pending.target, outcome, pending.started, now_iso(),
                      previous=previous, error=error, phases=ctx.runner.timings, backup=pending.backup)  # fmt: skip
        store.update(lambda journal: _close(journal, event, active=active))

    if restore is None:
        record("interrupted", None, "the controller stopped mid-change; nothing to roll back to")
        return
    try:
        ctx.webui.admin(ctx.runner)
        restore_deployment(ctx, restore)
    except ControllerError as exc:
        record("rollback_failed", None, f"the controller stopped mid-change; rollback: {exc.message}")
        raise SwitchFailed(
            f"an interrupted `{pending.action} {pending.target}` could not be rolled back: {exc.message}",
            hint="`controller up MODEL` starts a known-good model",
            details=exc.details,
        ) from None
    record("rolled_back", restore, "the controller stopped mid-change (killed?)")

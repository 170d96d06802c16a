"""The blue-green switch: start the new model beside the old one, move Open WebUI over, drain the
old one, then remove it. Users see no outage; the old model serves until the new one answers.

Before the cut-over (the moment Open WebUI's default becomes the new model) any failure removes the
new instance and the old one never stopped. After it, the old instance is still running until the
drain ends, so a rollback only points Open WebUI back at it.

Open WebUI's connections never change here (one per slot, see controller.lifecycle.webui_setup): the cut-over
moves only the default model. A browser tab that still has the old model selected is served by the
old instance until the drain ends; the drain waits for a quiet spell (DRAIN_QUIET_S) with no running,
waiting or newly finished request.
"""

from __future__ import annotations

import time

from controller.config.profile import Profile
from controller.errors import ControllerError, NotReady, SwitchFailed
from controller.journal import Deployment, elapsed
from controller.lifecycle.pair_fit import pair_text
from controller.lifecycle.transaction import RESTORE_SERVING, SwitchContext, Transaction, restore_deployment
from controller.phases import DRAIN

# The drain ends only when the old instance has been idle this long, its finished-request count
# unchanged: Open WebUI takes a moment between taking a chat and forwarding it, so a chat sent just
# before the cut-over can reach the old instance after it first looked idle. (Measured: ending at
# the first idle sample cut 1 chat and 2 streams over 10 switches, vLLM's "EngineCore encountered
# an issue" as its container stopped.)
DRAIN_QUIET_S = 2.0


class BlueGreenStrategy:
    name = "blue-green"

    def __init__(self, ctx: SwitchContext, new_service: str, *, quiet_s: float = DRAIN_QUIET_S):
        self.ctx = ctx
        self.new_service = new_service
        self.quiet_s = quiet_s

    def run(self, txn: Transaction, new_text: str, profile: Profile) -> dict:
        restore = txn.restore
        assert restore is not None  # a switch needs a running deployment
        txn.phases = self.ctx.runner.timings
        try:
            facts = self._start_beside(txn, restore, new_text, profile)
        except ControllerError as exc:
            raise SwitchFailed(
                f"'{profile.name}' did not start beside '{restore.profile}', which kept serving throughout: "
                + exc.message,
                hint=exc.hint or f"see `docker compose logs {self.new_service}` above; nothing else changed",
                details=list(exc.details),
            ) from None
        cut_over = self._cut_over(txn, restore, profile)
        drain_s = self._drain_and_remove(restore)
        self.ctx.target.write(new_text)
        return {"vllm": facts, "downtime_s": 0.0, "cut_over_s": cut_over, "drain_s": drain_s,
                "instance": self.new_service}  # fmt: skip

    def _start_beside(self, txn: Transaction, restore: Deployment, new_text: str, profile: Profile) -> dict:
        """The new instance runs and Open WebUI lists its model; the old one is still the default."""
        target, runner, webui = self.ctx.target, self.ctx.runner, self.ctx.webui
        new = self.new_service
        target.write(pair_text(new_text, restore.text))
        txn.on_failure("the compose file", lambda: target.write(restore.text))
        txn.on_failure("the new instance", lambda: target.remove_vllm(new))
        target.pull(runner, new)
        target.recreate_vllm(runner, new)
        facts = target.wait_vllm(runner, profile.served_model_name, new)
        # Open WebUI already holds a connection to every slot: it lists the new model once it answers.
        webui.listed(runner, profile)
        return facts

    def _cut_over(self, txn: Transaction, restore: Deployment, profile: Profile) -> float:
        """New chats go to the new model (Open WebUI's default); a browser-shaped chat proves it."""
        started = time.monotonic()
        txn.on_failure(RESTORE_SERVING, lambda: restore_deployment(self.ctx, restore))
        self.ctx.webui.serve(self.ctx.runner, profile)
        return elapsed(started)

    def _drain_and_remove(self, restore: Deployment) -> float:
        target, started = self.ctx.target, time.monotonic()

        idle: dict[str, float] = {}  # since when the old instance is idle, and its finished count then

        def drained() -> None:
            busy, finished = target.request_counts(restore.service)
            if busy:
                idle.clear()
                raise NotReady(f"'{restore.profile}' still has {busy} running or waiting requests")
            if idle.get("finished") != finished:
                idle.update(finished=finished, since=time.monotonic())
            if time.monotonic() - idle["since"] < self.quiet_s:
                raise NotReady(f"'{restore.profile}' is idle; waiting {self.quiet_s:g} s for chats on their way")

        try:
            self.ctx.runner.wait(DRAIN, drained)
        except ControllerError as exc:  # the drain deadline: streams still open are cut, not rolled back
            self.ctx.webui.warn(f"the drain of '{restore.profile}' did not finish ({exc.message}); removing it anyway")
        target.remove_vllm(restore.service)
        target.use_slot(self.new_service)
        try:
            self.ctx.webui.unlisted(self.ctx.runner, restore.served_model_name)
        except ControllerError as exc:  # the new model serves: worth a warning, not a rollback
            self.ctx.webui.warn(f"Open WebUI still lists '{restore.served_model_name}': {exc.message}")
        return elapsed(started)

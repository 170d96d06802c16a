"""`switch` and the recovery of a switch a killed controller left: the Stack's commands that
choose a strategy (controller.lifecycle.pair_fit), run it as a transaction (controller.lifecycle.transaction) and record it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.config.settings import Settings
from controller.deploy.spec import other_slot
from controller.errors import ControllerError, PreflightError
from controller.journal import Deployment
from controller.lifecycle.blue_green import BlueGreenStrategy
from controller.lifecycle.pair_fit import Decision, decide
from controller.lifecycle.transaction import RecreateStrategy, SwitchContext, roll_back_pending, transaction
from controller.runtime.target import Target

if TYPE_CHECKING:
    from controller.lifecycle.stack import Prepared


class SwitchCommands:
    """Mixed into controller.lifecycle.stack.Stack, whose helpers (prepare, preflight, target, ...) it uses."""

    def switch(self, model: str, strategy: str | None = None) -> dict:
        requested = strategy or self.options.switch_strategy
        with self._locked(f"switch {model}"):
            prepared = self.prepare(model)
            self.preflight(prepared, switching=True)
            settings, profile = prepared.settings, prepared.profile
            target = self.target(settings)
            self._resolve_pending(settings)
            current = target.running_profile()
            if current is None:
                raise PreflightError(
                    "no running stack to switch", hint=f"start one with `controller up {profile.name}`"
                )
            active = self.store.load().active or self._adopt(current)
            if current == profile.name and active.text == prepared.compose_text and target.healthy():
                return self._summary(prepared, {}, noop=True, previous=current)
            decision = self._decide(requested, prepared, active, target)
            if decision.strategy == "blue-green":
                prepared = self.prepare(model, slot=other_slot(target.slot),
                                        gpu_memory_utilization=decision.gpu_memory_utilization)  # fmt: skip
                prepared.capacity = decision.capacity
            self._store_secrets(prepared)
            runner = self._runner()
            with target.webui() as webui:
                setup = self._webui_setup(settings, target, webui)
                ctx = SwitchContext(target, setup, runner)
                blue_green = decision.strategy == "blue-green"
                strategy = (BlueGreenStrategy(ctx, prepared.spec.vllm_service, quiet_s=self.options.drain_quiet_s)
                            if blue_green else RecreateStrategy(ctx))  # fmt: skip
                with transaction(self.store, "switch", profile, active, self.reporter.warn) as txn:
                    # Signing in first proves the admin works before anything is stopped.
                    setup.admin(runner)
                    result = strategy.run(txn, prepared.compose_text, profile)
                    self._check_kv(prepared, result["vllm"])
                    txn.commit = self._activation("switch", prepared, runner, txn.started, previous=current,
                                                  downtime_s=result["downtime_s"])  # fmt: skip
            return self._summary(prepared, runner.timings, noop=False, previous=current, strategy=strategy.name,
                                 strategy_reason=decision.reason, capacity=decision.capacity,
                                 kv_tokens=prepared.kv_tokens, **result)  # fmt: skip

    def _decide(self, requested: str, prepared: Prepared, active: Deployment, target: Target) -> Decision:
        try:
            old = self.catalog.get(active.profile)
        except ControllerError:
            old = None
        cpu = prepared.profile.accelerator == "cpu" and requested != "recreate"
        return decide(requested, prepared.profile, old, host_memory_bytes=target.host_memory_bytes() if cpu else None,
                      gpu_memory_gib=prepared.gpu_memory_gib, reserve_gib=self.options.reserve_gib)  # fmt: skip

    def _resolve_pending(self, settings: Settings) -> None:
        """A controller killed mid-switch left a pending change: roll it back before anything else."""
        pending = self.store.load().pending
        if pending is None:
            return
        self.reporter.warn(
            f"an earlier `{pending.action} {pending.target}` (pid {pending.pid}, started {pending.started}) "
            "did not finish; rolling it back"
        )
        target, runner = self.target(settings), self._runner()
        with target.webui() as webui:
            ctx = SwitchContext(target, self._webui_setup(settings, target, webui), runner)
            roll_back_pending(self.store, pending, ctx)

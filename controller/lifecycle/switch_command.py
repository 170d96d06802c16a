"""`controller switch MODEL`, top to bottom: check, recover an unfinished switch, decide the
strategy (controller.lifecycle.pair_fit), run it as a transaction (controller.lifecycle.transaction)
and record it. Blue-green lives in controller.lifecycle.blue_green, recreate in the transaction
module."""

from __future__ import annotations

from controller.config.catalog import Catalog
from controller.deploy.spec import other_slot
from controller.errors import ControllerError, PreflightError
from controller.journal import Deployment
from controller.lifecycle.blue_green import BlueGreenStrategy
from controller.lifecycle.metric_files import planned_work
from controller.lifecycle.pair_fit import Decision, decide
from controller.lifecycle.prepare import Options, Prepared, respec
from controller.lifecycle.stack import Stack
from controller.lifecycle.transaction import RecreateStrategy, SwitchContext, transaction
from controller.runtime.target import Target


def switch(stack: Stack, model: str, strategy: str | None = None) -> dict:
    requested = strategy or stack.options.switch_strategy
    with stack.locked(f"switch {model}"):
        prepared = stack.prepare(model)
        stack.preflight(prepared, switching=True)
        target = stack.target(prepared.settings)
        if stack.resolve_pending(prepared.settings):  # an interrupted upgrade may have put old images back
            prepared = stack.prepare(model)
        settings, profile = prepared.settings, prepared.profile
        current = target.running_profile()
        if current is None:
            raise PreflightError("no running stack to switch", hint=f"start one with `controller up {profile.name}`")
        active = stack.store.load().active or stack.adopt(current)
        if current == profile.name and active.text == prepared.compose_text and target.healthy():
            return stack.summary(prepared, {}, noop=True, previous=current)

        decision, prepared = choose_strategy(stack, requested, prepared, active, target)
        stack.store_secrets(prepared)

        runner = stack.runner()
        with target.webui() as webui:
            setup = stack.webui_setup(settings, target, webui)
            ctx = SwitchContext(target, setup, runner)
            chosen = strategy_for(stack, decision, prepared, ctx)
            with (
                planned_work(stack.site, prepared.loaded.monitoring, "switch", stack.options.deadlines),
                transaction(stack.store, "switch", profile.name, active, stack.reporter.warn) as txn,
            ):
                # Signing in first proves the admin works before anything is stopped.
                setup.admin(runner)
                result = chosen.run(txn, prepared.compose_text, profile)
                stack.check_kv(prepared, result["vllm"])
                txn.commit = stack.activation("switch", prepared, runner, txn.started, previous=current,
                                              downtime_s=result["downtime_s"])  # fmt: skip
    return stack.summary(prepared, runner.timings, noop=False, previous=current, strategy=chosen.name,
                         strategy_reason=decision.reason, capacity=decision.capacity,
                         kv_tokens=prepared.kv_tokens, **result)  # fmt: skip


def choose_strategy(stack: Stack, requested: str, prepared: Prepared, active: Deployment,
                    target: Target) -> tuple[Decision, Prepared]:  # fmt: skip
    """Recreate or blue-green, and the deployment to start: for blue-green, in the other slot with
    the GPU share the pair leaves it."""
    decision = _decide(requested, prepared, active, target, stack.catalog, stack.options)
    if decision.strategy == "blue-green":
        prepared = respec(stack.catalog, prepared, slot=other_slot(target.slot),
                          gpu_memory_utilization=decision.gpu_memory_utilization)  # fmt: skip
        prepared.capacity = decision.capacity
    return decision, prepared


def strategy_for(stack: Stack, decision: Decision, prepared: Prepared, ctx: SwitchContext):
    if decision.strategy == "blue-green":
        return BlueGreenStrategy(ctx, prepared.spec.vllm_service, quiet_s=stack.options.drain_quiet_s)
    return RecreateStrategy(ctx)


def _decide(requested: str, prepared: Prepared, active: Deployment, target: Target, catalog: Catalog,
            options: Options) -> Decision:  # fmt: skip
    try:
        old = catalog.get(active.profile)
    except ControllerError:
        old = None
    cpu = prepared.profile.accelerator == "cpu" and requested != "recreate"
    return decide(requested, prepared.profile, old, host_memory_bytes=target.host_memory_bytes() if cpu else None,
                  gpu_memory_gib=prepared.gpu_memory_gib, reserve_gib=options.reserve_gib)  # fmt: skip

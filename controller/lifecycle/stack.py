"""The commands' sequencing: prepare and check, then up, switch (through a strategy), down, status.

Every side effect goes through a target (controller.runtime.target) and the journal; this module only
decides the order. Nothing is written before validation and preflight pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from controller.bench.run import BenchCommands
from controller.config.catalog import Catalog
from controller.config.local_model import check_local_model, local_weights_bytes
from controller.config.lora import check_adapters
from controller.config.profile import Profile
from controller.config.settings import LoadedSettings, Settings, SiteConfig, read_settings, store_generated_secrets
from controller.deploy.compose_file import render_spec
from controller.deploy.spec import SLOTS, ServingSpec, build_spec
from controller.errors import ControllerError, PreflightError, StartupFailed
from controller.journal import Deployment, Event, Journal, JournalStore, now_iso
from controller.lifecycle.blue_green import DRAIN_QUIET_S
from controller.lifecycle.switch_command import SwitchCommands
from controller.lifecycle.webui_setup import WebUISetup
from controller.phases import VLLM_PHASES, Deadlines, PhaseRunner, Reporter
from controller.planner.fit import Plan, plan, planned_kv_tokens
from controller.planner.gpu_memory import resolve_gpu_memory
from controller.planner.kv_check import kv_check, kv_check_warning
from controller.planner.model_memory import weight_bytes
from controller.runtime.target import Target

# The no-op `up` only re-checks what is already running: a short deadline, not a start-up one.
NOOP_DEADLINE_S = 10.0

__all__ = ["Options", "Reporter", "Stack"]


@dataclass(frozen=True)
class Options:
    deadlines: Deadlines = field(default_factory=Deadlines)
    lock_timeout_s: float = 600.0
    force: bool = False
    switch_strategy: str = "auto"
    # Host memory a blue-green switch on CPU leaves free beyond both instances (SWITCH_RESERVE_GIB).
    reserve_gib: float = 2.0
    # How long the old instance must stay idle before the drain ends (controller.lifecycle.blue_green).
    drain_quiet_s: float = DRAIN_QUIET_S


@dataclass
class Prepared:
    profile: Profile
    loaded: LoadedSettings
    spec: ServingSpec
    compose_text: str
    plan: Plan | None = None
    free_gpu_gib: float | None = None
    gpu_memory_gib: float | None = None
    capacity: str | None = None
    # The KV cache tokens vLLM should log for this deployment, and the check against what it did.
    planned_kv_tokens: int | None = None
    kv_tokens: dict | None = None

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    def deployment(self) -> Deployment:
        spec = self.spec
        return Deployment(
            spec.profile_name,
            spec.served_model_name,
            now_iso(),
            self.compose_text,
            spec.function_calling,
            spec.vllm_service,
            self.capacity,
            self.kv_tokens,
        )


def compose_target(site: SiteConfig, settings: Settings) -> Target:
    from controller.runtime.compose_target import ComposeTarget

    return ComposeTarget(site, settings)


class Stack(SwitchCommands, BenchCommands):
    def __init__(
        self,
        site: SiteConfig,
        catalog: Catalog | Callable[[], Catalog],
        reporter: Reporter | None = None,
        options: Options | None = None,
        target_factory: Callable[[SiteConfig, Settings], Target] = compose_target,
    ):
        self.site = site
        # Loaded on first use, so that a broken catalog does not block `down`, `status` or `logs`.
        self._catalog = catalog
        self.reporter = reporter or Reporter()
        self.options = options or Options()
        self.store = JournalStore(site.state_dir)
        self._target_factory = target_factory
        self._targets: dict[str, Target] = {}

    @property
    def catalog(self) -> Catalog:
        if callable(self._catalog):
            self._catalog = self._catalog()
        return self._catalog

    def target(self, settings: Settings) -> Target:
        key = settings.compose_project_name
        if key not in self._targets:
            self._targets[key] = self._target_factory(self.site, settings)
            active = self.store.load().active
            self._targets[key].slot = active.service if active else SLOTS[0]
        return self._targets[key]

    def _runner(self) -> PhaseRunner:
        return PhaseRunner(self.reporter, self.options.deadlines)

    def _webui_setup(self, settings: Settings, target: Target, webui) -> WebUISetup:
        return WebUISetup(webui, settings, self.site.env_file, self.reporter.warn, ensure_running=target.ensure_webui)

    # ----- validation and checks: nothing is written here -----------------------------------

    def prepare(self, model: str, *, slot: str | None = None, gpu_memory_utilization: float | None = None) -> Prepared:
        """Validate the profile and settings and render in memory (for the active vLLM slot, unless
        `slot` says another, with the profile's GPU share unless given). Writes nothing."""
        from controller.runtime.gpu import detect_gpus

        profile = self.catalog.get(model)
        if gpu_memory_utilization is not None:
            profile = profile.model_copy(update={"gpu_memory_utilization": gpu_memory_utilization})
        check_local_model(profile)
        profile = check_adapters(profile)
        loaded = read_settings(self.site)
        settings = loaded.settings
        gpus = detect_gpus() if profile.accelerator == "gpu" else []
        slot = slot or self.target(settings).slot
        spec = build_spec(profile, settings, gpus[0].capability if gpus else None, service=slot)
        prepared = Prepared(profile, loaded, spec, render_spec(spec))
        memory, _source = resolve_gpu_memory(None, gpus, settings.gpu_memory_gib)
        prepared.gpu_memory_gib = memory
        if profile.accelerator == "cpu" or memory:
            prepared.planned_kv_tokens = planned_kv_tokens(
                profile, gpu_memory_gib=memory, capability=gpus[0].capability if gpus else None,
                weights_bytes_override=local_weights_bytes(profile),
            )  # fmt: skip
        if profile.accelerator == "gpu" and memory:
            prepared.plan = plan(
                profile, gpu_memory_gib=memory, weights_bytes_override=local_weights_bytes(profile),
                alternatives=self.catalog.profiles(),
            )  # fmt: skip
            prepared.free_gpu_gib = gpus[0].free_gib if gpus else None
        return prepared

    def preflight(self, prepared: Prepared, *, switching: bool = False) -> None:
        """Every check that can fail before a container is touched: input first, then the machine."""
        from controller.lifecycle.preflight import check_fit, check_gated

        settings, profile = prepared.settings, prepared.profile
        if not settings.offline:  # offline, the weights must be cached already: no token needed
            check_gated(profile, settings, self.site.env_file)
        if prepared.plan is not None:
            check_fit(prepared.plan, prepared.free_gpu_gib, force=self.options.force, warn=self.reporter.warn)
        needs = None if profile.local_path or settings.offline else weight_bytes(profile)
        target = self.target(settings)
        if settings.offline:
            from controller.lifecycle.offline import check_offline_ready

            spec = prepared.spec
            check_offline_ready(profile, settings, target.missing_images([spec.vllm_image, spec.webui_image]))
        for warning in target.preflight(switching=switching, needs_download_bytes=needs):
            self.reporter.warn(warning)
        if profile.accelerator == "gpu" and not target.gpu_runtime():
            cpu_profiles = [p.name for p in self.catalog.profiles() if p.accelerator == "cpu"]
            raise PreflightError(
                f"'{profile.name}' needs an NVIDIA GPU, but this Docker engine has no NVIDIA runtime",
                hint="install the NVIDIA driver and nvidia-container-toolkit, run "
                "`nvidia-ctk runtime configure --runtime=docker` and restart Docker"
                + (f"; or use a cpu profile: {', '.join(cpu_profiles)}" if cpu_profiles else ""),
            )

    def _store_secrets(self, prepared: Prepared) -> list[str]:
        return store_generated_secrets(self.site, prepared.loaded)

    def _locked(self, command: str):
        return self.store.locked(command, timeout=self.options.lock_timeout_s, on_wait=self.reporter.waiting_for_lock)

    def _summary(self, prepared: Prepared, timings: dict[str, float], **extra: object) -> dict:
        settings = prepared.settings
        return {
            "model": prepared.profile.name,
            "served_model_name": prepared.profile.served_model_name,
            "url": settings.webui_url,
            "admin_email": settings.webui_admin_email,
            "admin_password_in": str(self.site.env_file),
            "phases": timings,
            "total_s": round(sum(timings.values()), 2),
            **extra,
        }

    # ----- commands ------------------------------------------------------------------------

    def render(self, model: str) -> dict:
        self.prepare(model)  # bad input is refused before the lock creates anything
        # Locked like `up`: secrets are generated once, and no file changes under a running switch.
        with self._locked(f"render {model}"):
            prepared = self.prepare(model)
            generated = self._store_secrets(prepared)
            changed = self.target(prepared.settings).write(prepared.compose_text)
        return {
            "model": prepared.profile.name,
            "served_model_name": prepared.profile.served_model_name,
            "compose_file": str(self.site.compose_file),
            "env_file": str(self.site.env_file),
            "changed": changed,
            "generated_secrets": generated,
        }

    def up(self, model: str) -> dict:
        # The lock comes first: two first runs must not each generate different secrets.
        with self._locked(f"up {model}"):
            prepared = self.prepare(model)
            self.preflight(prepared)
            settings, profile = prepared.settings, prepared.profile
            target = self.target(settings)
            self._resolve_pending(settings)
            running = target.running_profile()
            # Only a model the journal knows as good is protected; without one (a first `up` that
            # failed half-way) `up` may start another model.
            if running and running != profile.name and self.store.load().active is not None:
                raise PreflightError(
                    f"the stack is serving '{running}'; `up` does not change the model",
                    hint=f"run `controller switch {profile.name}` (it rolls back if the new model fails)",
                )
            self._store_secrets(prepared)
            return self._up(prepared, target, running=running)

    def _up(self, prepared: Prepared, target: Target, *, running: str | None) -> dict:
        settings, profile = prepared.settings, prepared.profile
        runner, started = self._runner(), now_iso()
        before = target.running_ids()
        target.write(prepared.compose_text)
        try:
            target.pull(runner)
            target.apply(runner)
            if running and target.running_ids() == before and target.healthy():
                with target.webui() as webui:
                    setup = self._webui_setup(settings, target, webui)
                    setup.admin(runner, deadline_s=NOOP_DEADLINE_S)
                    setup.activate(runner, profile, deadline_s=NOOP_DEADLINE_S)
                self._record_ok("up", prepared, runner, started, record=False)
                return self._summary(prepared, runner.timings, noop=True)
            facts = target.wait_vllm(runner, profile.served_model_name)
            self._check_kv(prepared, facts)
            target.wait_webui(runner)
            with target.webui() as webui:
                setup = self._webui_setup(settings, target, webui)
                setup.admin(runner)
                setup.activate(runner, profile)
        except ControllerError as exc:
            if isinstance(exc, StartupFailed) and exc.phase in VLLM_PHASES:
                self._stop_failed_vllm(target, exc)
            failed = Event("up", profile.name, "failed", started, now_iso(), error=exc.message, phases=runner.timings)
            self.store.update(lambda journal: journal.record(failed))
            raise
        self._record_ok("up", prepared, runner, started)
        return self._summary(prepared, runner.timings, noop=False, vllm=facts, kv_tokens=prepared.kv_tokens)

    def _check_kv(self, prepared: Prepared, vllm_facts: dict) -> None:
        """Plan, then verify: vLLM's own KV cache figure against the plan, kept in the journal."""
        prepared.kv_tokens = kv_check(prepared.planned_kv_tokens, vllm_facts.get("kv_cache_tokens"))
        warning = kv_check_warning(prepared.kv_tokens)
        if warning:
            self.reporter.warn(warning)

    def _record_ok(self, action: str, prepared: Prepared, runner: PhaseRunner, started: str, *,
                   record: bool = True) -> None:  # fmt: skip
        self.store.update(self._activation(action, prepared, runner, started, record=record))

    @staticmethod
    def _activation(action: str, prepared: Prepared, runner: PhaseRunner, started: str, *, record: bool = True,
                    **extra: object) -> Callable[[Journal], None]:  # fmt: skip
        """The journal change of a successful up or switch: the new active deployment and its event."""

        def change(journal: Journal) -> None:
            deployment = prepared.deployment()
            if journal.active and journal.active.profile == deployment.profile:
                deployment.since = journal.active.since
                # A no-op `up` saw no start-up log: the check from the start that is still serving.
                deployment.kv_tokens = deployment.kv_tokens or journal.active.kv_tokens
            journal.active = deployment
            if record:
                journal.record(Event(action, prepared.profile.name, "ok", started, now_iso(),
                                     phases=runner.timings, **extra))  # fmt: skip

        return change

    def _stop_failed_vllm(self, target: Target, failure: StartupFailed) -> None:
        """A crash-looping vLLM burns CPU and floods logs: stop it; Open WebUI and the data stay."""
        try:
            target.stop_vllm()
            failure.details.append("(vLLM was stopped to end its restart loop; Open WebUI and its data are untouched)")
        except ControllerError as exc:
            failure.details.append(f"(stopping the failed vLLM failed too: {exc.message})")

    def _adopt(self, running: str) -> Deployment:
        """A model runs that the journal does not know as good (state from before the journal, or a
        first `up` that failed late): what `up RUNNING` would deploy is the point to roll back to."""
        try:
            return self.prepare(running).deployment()
        except ControllerError:
            raise PreflightError(
                f"'{running}' is running, but the controller has no record of it and cannot render it again",
                hint=f"run `controller up {running}` to take it over, or `controller down`",
            ) from None

    def down(self, *, volumes: bool = False) -> dict:
        settings = read_settings(self.site).settings
        with self._locked("down"):
            if not self.site.compose_file.exists():
                raise PreflightError(
                    f"{self.site.compose_file} does not exist, so there is no stack to take down",
                    hint="start one with `controller up MODEL`",
                )
            previous = self.store.load().active_profile  # a journal it cannot read stops here, before any change
            started = now_iso()
            self.target(settings).down(volumes=volumes)

            def change(journal: Journal) -> None:
                if journal.pending is not None:  # a killed switch's outcome, before `down` ends it
                    p = journal.pending
                    journal.record(Event(p.action, p.target, "interrupted", p.started, started,
                                         error="the controller stopped mid-change; ended by down"))  # fmt: skip
                journal.record(Event("down" + (" --volumes" if volumes else ""), previous or "-", "ok", started,
                                     now_iso()))  # fmt: skip
                journal.active = journal.pending = None

            self.store.update(change)
            return {"project": settings.compose_project_name, "volumes_removed": volumes, "previous_model": previous}

    def status(self) -> dict:
        from controller.errors import DockerUnavailable

        settings = read_settings(self.site).settings
        journal = self.store.load()
        target = self.target(settings)
        try:
            services = target.services()
            active = target.running_profile()
            metrics = target.metrics() if services["vllm"]["state"] == "running" else {}
        except DockerUnavailable as exc:  # the journal still tells what was running and what is unfinished
            unknown = {"state": "unknown", "health": None, "uptime_s": None, "image": None, "error": exc.message}
            services, active, metrics = {name: dict(unknown) for name in ("vllm", "webui")}, None, {}
        deployment = journal.active
        served = deployment.served_model_name if deployment and deployment.profile == active else None
        return {
            "project": settings.compose_project_name,
            "offline": settings.offline,
            "model": active,
            "served_model_name": served,
            "url": settings.webui_url,
            "services": services,
            "metrics": metrics,
            "capacity": deployment.capacity if deployment and served else None,
            "kv_tokens": deployment.kv_tokens if deployment and served else None,
            "pending": _pending_status(journal.pending),
            "history": [vars(event) for event in journal.history[-10:]],
        }

    def logs(self, service: str | None, *, follow: bool) -> None:
        settings = read_settings(self.site).settings
        self.target(settings).logs(service, follow=follow)


def _pending_status(pending) -> dict | None:
    if pending is None:
        return None
    alive = _process_alive(pending.pid)
    return {
        "action": pending.action, "target": pending.target, "started": pending.started, "pid": pending.pid,
        "in_progress": alive,
        "resolve": "in progress" if alive else "the next `controller up` or `controller switch` rolls it back",
    }  # fmt: skip


def _process_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True

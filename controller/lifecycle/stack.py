"""The stack: what every command shares (the catalog, the target, the journal and its lock, the
phase runner, the checks), and the commands that start and stop it: render, up, down, logs.

`switch` (controller.lifecycle.switch_command), `status` (controller.lifecycle.status) and `bench`
(controller.bench.run) are functions over a Stack in their own modules. Every side effect goes
through a target (controller.runtime.target) and the journal; this module only decides the order.
Nothing is written before validation and preflight pass.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.config.catalog import Catalog
from controller.config.directory_settings import load_directory_settings
from controller.config.profile import Profile
from controller.config.settings import Settings, read_settings, store_generated_secrets
from controller.config.site import SiteConfig
from controller.deploy.spec import SLOTS
from controller.errors import ControllerError, PreflightError, StartupFailed
from controller.journal import Deployment, Event, Journal, JournalStore, Pending, now_iso
from controller.lifecycle import prepare as checks
from controller.lifecycle.metric_files import planned_work, publish_kv_check
from controller.lifecycle.prepare import Options, Prepared
from controller.lifecycle.transaction import SwitchContext, roll_back_pending
from controller.lifecycle.webui_setup import WebUISetup, saved_admin_token
from controller.phases import VLLM_PHASES, PhaseRunner, Reporter
from controller.planner.kv_check import kv_check, kv_check_warning
from controller.runtime.target import Target

# The no-op `up` only re-checks what is already running: a short deadline, not a start-up one.
NOOP_DEADLINE_S = 10.0

__all__ = ["Options", "Prepared", "Reporter", "Stack"]


def compose_target(site: SiteConfig, settings: Settings) -> Target:
    from controller.runtime.compose_target import ComposeTarget

    return ComposeTarget(site, settings)


class Stack:
    """One command's view of the stack. It lives for one command, so what it detects (GPUs) is
    read once."""

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
        self._gpus: list | None = None
        # Steps that run before the usual rollback of a pending change, by its action (the CLI
        # registers the upgrade's: Open WebUI's data and .env back).
        self.pending_steps: dict[str, Callable[[Stack, Pending, SwitchContext], None]] = {}

    @property
    def catalog(self) -> Catalog:
        if callable(self._catalog):
            self._catalog = self._catalog()
        return self._catalog

    def target(self, settings: Settings) -> Target:
        key = settings.compose_project_name
        if key not in self._targets:
            target = self._target_factory(self.site, settings)
            active = self.store.load().active
            target.use_slot(active.service if active else SLOTS[0])
            self._targets[key] = target
        return self._targets[key]

    def runner(self) -> PhaseRunner:
        return PhaseRunner(self.reporter, self.options.deadlines)

    def webui_setup(self, settings: Settings, target: Target, webui) -> WebUISetup:
        return WebUISetup(webui, settings, self.site.env_file, self.reporter.warn, ensure_running=target.ensure_webui,
                          saved_token=saved_admin_token(self.site.state_dir),
                          directory=load_directory_settings(self.site.env_file))  # fmt: skip

    def locked(self, command: str):
        return self.store.locked(command, timeout=self.options.lock_timeout_s, on_wait=self.reporter.waiting_for_lock)

    # ----- validation and checks: nothing is written here -----------------------------------

    def prepare(self, model: str) -> Prepared:
        """Validate the profile and settings and render in memory, for the active vLLM slot."""
        return checks.prepare(self.catalog, self.site, model, slot=lambda settings: self.target(settings).slot,
                              gpus=self._detect_gpus)  # fmt: skip

    def _detect_gpus(self, profile: Profile) -> list:
        if profile.accelerator != "gpu":
            return []
        if self._gpus is None:  # NVML and nvidia-smi are slow: once per command
            from controller.runtime.gpu import detect_gpus

            self._gpus = detect_gpus()
        return self._gpus

    def preflight(self, prepared: Prepared, *, switching: bool = False) -> None:
        checks.preflight(prepared, self.target(prepared.settings), self.catalog, self.site, force=self.options.force,
                         warn=self.reporter.warn, switching=switching)  # fmt: skip

    def store_secrets(self, prepared: Prepared) -> list[str]:
        return store_generated_secrets(self.site, prepared.loaded)

    def summary(self, prepared: Prepared, timings: dict[str, float], **extra: object) -> dict:
        settings = prepared.settings
        return {
            "model": prepared.profile.name,
            "served_model_name": prepared.profile.served_model_name,
            "url": prepared.loaded.public_url,
            "admin_email": settings.webui_admin_email,
            "admin_password_in": str(self.site.env_file),
            "phases": timings,
            "total_s": round(sum(timings.values()), 2),
            **extra,
        }

    def check_kv(self, prepared: Prepared, vllm_facts: dict) -> None:
        """Plan, then verify: vLLM's own KV cache figure against the plan, kept in the journal."""
        prepared.kv_tokens = kv_check(prepared.planned_kv_tokens, vllm_facts.get("kv_cache_tokens"))
        warning = kv_check_warning(prepared.kv_tokens)
        if warning:
            self.reporter.warn(warning)
        publish_kv_check(self.site, prepared.loaded.monitoring, prepared.profile.name, prepared.kv_tokens,
                         self.reporter.warn)  # fmt: skip

    @staticmethod
    def activation(action: str, prepared: Prepared, runner: PhaseRunner, started: str, *, record: bool = True,
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

    def adopt(self, running: str) -> Deployment:
        """A model runs that the journal does not know as good (state from before the journal, or a
        first `up` that failed late): what `up RUNNING` would deploy is the point to roll back to."""
        try:
            return self.prepare(running).deployment()
        except ControllerError:
            raise PreflightError(
                f"'{running}' is running, but the controller has no record of it and cannot render it again",
                hint=f"run `controller up {running}` to take it over, or `controller down`",
            ) from None

    def resolve_pending(self, settings: Settings) -> bool:
        """A controller killed mid-change left a pending change: roll it back before anything else.
        True when it did: .env may have changed (an upgrade's image settings), so the caller renders again."""
        pending = self.store.load().pending
        if pending is None:
            return False
        self.reporter.warn(
            f"an earlier `{pending.action} {pending.target}` (pid {pending.pid}, started {pending.started}) "
            "did not finish; rolling it back"
        )
        target, runner = self.target(settings), self.runner()
        with target.webui() as webui:
            ctx = SwitchContext(target, self.webui_setup(settings, target, webui), runner)
            # An upgrade also puts Open WebUI's data and .env back first (controller.backup.upgrade
            # registers that step: it reads backups, a layer above this one).
            if pending.backup or pending.images:
                before = self.pending_steps.get(pending.action)
                if before is None:
                    raise PreflightError(
                        f"an earlier `{pending.action}` did not finish, and this command cannot roll it back",
                        hint=f"run `controller {pending.action}` to roll it back",
                    )
                before(self, pending, ctx)
            roll_back_pending(self.store, pending, ctx)
        return True

    # ----- commands ------------------------------------------------------------------------

    def render(self, model: str) -> dict:
        self.prepare(model)  # bad input is refused before the lock creates anything
        # Locked like `up`: secrets are generated once, and no file changes under a running switch.
        with self.locked(f"render {model}"):
            prepared = self.prepare(model)
            generated = self.store_secrets(prepared)
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
        with self.locked(f"up {model}"):
            prepared = self.prepare(model)
            self.preflight(prepared)
            target = self.target(prepared.settings)
            if self.resolve_pending(prepared.settings):
                prepared = self.prepare(model)
            running = target.running_profile()
            # Only a model the journal knows as good is protected; without one (a first `up` that
            # failed half-way) `up` may start another model.
            if running and running != prepared.profile.name and self.store.load().active is not None:
                raise PreflightError(
                    f"the stack is serving '{running}'; `up` does not change the model",
                    hint=f"run `controller switch {prepared.profile.name}` (it rolls back if the new model fails)",
                )
            self.store_secrets(prepared)
            with planned_work(self.site, prepared.loaded.monitoring, "up", self.options.deadlines):
                return self._start(prepared, target, running=running)

    def _start(self, prepared: Prepared, target: Target, *, running: str | None) -> dict:
        settings, profile = prepared.settings, prepared.profile
        runner, started = self.runner(), now_iso()
        before = target.running_ids()
        target.write(prepared.compose_text)
        try:
            target.pull(runner)
            target.apply(runner)
            if running and target.running_ids() == before and target.healthy():
                with target.webui() as webui:
                    setup = self.webui_setup(settings, target, webui)
                    setup.admin(runner, deadline_s=NOOP_DEADLINE_S)
                    setup.activate(runner, profile, deadline_s=NOOP_DEADLINE_S)
                self.store.update(self.activation("up", prepared, runner, started, record=False))
                return self.summary(prepared, runner.timings, noop=True)
            facts = target.wait_vllm(runner, profile.served_model_name)
            self.check_kv(prepared, facts)
            target.wait_webui(runner)
            with target.webui() as webui:
                setup = self.webui_setup(settings, target, webui)
                setup.admin(runner)
                setup.activate(runner, profile)
        except ControllerError as exc:
            if isinstance(exc, StartupFailed) and exc.phase in VLLM_PHASES:
                _stop_failed_vllm(target, exc)
            failed = Event("up", profile.name, "failed", started, now_iso(), error=exc.message, phases=runner.timings)
            self.store.update(lambda journal: journal.record(failed))
            raise
        self.store.update(self.activation("up", prepared, runner, started))
        return self.summary(prepared, runner.timings, noop=False, vllm=facts, kv_tokens=prepared.kv_tokens)

    def down(self, *, volumes: bool = False) -> dict:
        settings = read_settings(self.site).settings
        with self.locked("down"):
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

    def logs(self, service: str | None, *, follow: bool) -> None:
        settings = read_settings(self.site).settings
        self.target(settings).logs(service, follow=follow)


def _stop_failed_vllm(target: Target, failure: StartupFailed) -> None:
    """A crash-looping vLLM burns CPU and floods logs: stop it; Open WebUI and the data stay."""
    try:
        target.stop_vllm()
        failure.details.append("(vLLM was stopped to end its restart loop; Open WebUI and its data are untouched)")
    except ControllerError as exc:
        failure.details.append(f"(stopping the failed vLLM failed too: {exc.message})")

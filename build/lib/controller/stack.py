"""Sequences every side effect: render, up, down, switch with rollback, status.

The only module that calls Docker, the services and the state file in a particular order.
"""

from __future__ import annotations

import errno
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from controller import vllm_text
from controller.catalog import Catalog, Profile, check_local_model, local_weights_bytes
from controller.compose import PROJECT_LABEL, ComposeProject, Engine, compose_v2_version, docker_timestamp
from controller.errors import (
    AdminError,
    CommandError,
    ControllerError,
    NotReady,
    PreflightError,
    RuntimeFailure,
    StartupFailed,
    SwitchFailed,
)
from controller.files import write_atomic
from controller.gpu import detect_gpus, docker_has_nvidia_runtime
from controller.health import VllmProbe, wait_for
from controller.plan import GIB, Plan, plan, weight_bytes
from controller.render import VLLM_BASE_URL, render_compose
from controller.settings import Settings, SiteConfig, load_settings, read_env_file
from controller.state import Event, StateStore, elapsed, now_iso
from controller.webui import Session, WebUI

T = TypeVar("T")
PROFILE_LABEL = "io.llmstack.profile"
VLLM_PHASES = {"vllm started", "weights load", "engine ready", "model listed"}
SERVICES = ("vllm", "webui")
CHAT_PROBE_PROMPT = "Reply with one word: ready?"


class Reporter:
    """Receives progress; the CLI shows it. The default one stays silent (for tests and --json)."""

    def phase_start(self, name: str) -> None: ...
    def phase_progress(self, detail: str) -> None: ...
    def phase_done(self, name: str, seconds: float) -> None: ...
    def warn(self, message: str) -> None: ...
    def waiting_for_lock(self, owner: str) -> None: ...


@dataclass(frozen=True)
class Options:
    load_timeout_s: float = 1800.0
    webui_timeout_s: float = 300.0
    lock_timeout_s: float = 600.0
    force: bool = False


@dataclass
class Prepared:
    profile: Profile
    settings: Settings
    compose_text: str
    plan: Plan | None = None
    free_gpu_gib: float | None = None


class Stack:
    def __init__(
        self,
        site: SiteConfig,
        catalog: Catalog | Callable[[], Catalog],
        reporter: Reporter | None = None,
        options: Options | None = None,
    ):
        self.site = site
        # Loaded on first use, so that a broken catalog does not block `down`, `status` or `logs`.
        self._catalog = catalog
        self.reporter = reporter or Reporter()
        self.options = options or Options()
        self.store = StateStore(site.state_dir)
        self._engine: Engine | None = None
        self._phase_prefix = ""

    # ----- shared pieces -------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        if callable(self._catalog):
            self._catalog = self._catalog()
        return self._catalog

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine()
        return self._engine

    def project(self, settings: Settings) -> ComposeProject:
        return ComposeProject(settings.compose_project_name, self.site.compose_file, self.site.env_file)

    def prepare(self, model: str) -> Prepared:
        """Validate the profile and settings and render in memory. Writes only missing secrets to .env."""
        profile = self.catalog.get(model)
        check_local_model(profile)
        settings = load_settings(self.site)
        gpus = detect_gpus() if profile.accelerator == "gpu" else []
        capability = gpus[0].capability if gpus else None
        prepared = Prepared(profile, settings, render_compose(profile, settings, capability))
        memory = gpus[0].total_gib if gpus else settings.gpu_memory_gib
        if profile.accelerator == "gpu" and memory:
            prepared.plan = plan(
                profile, gpu_memory_gib=memory, weights_bytes_override=local_weights_bytes(profile),
                alternatives=self.catalog.profiles(),
            )  # fmt: skip
            prepared.free_gpu_gib = gpus[0].free_gib if gpus else None
        return prepared

    def preflight(self, prepared: Prepared, *, switching: bool = False) -> None:
        """Every check that can fail before a container is touched: input first, then the machine."""
        profile, settings = prepared.profile, prepared.settings
        if profile.gated and not settings.hf_token:
            raise PreflightError(
                f"'{profile.name}' ({profile.model}) is a gated Hugging Face repository and HF_TOKEN is not set",
                hint="accept the licence on huggingface.co, create a read token and set "
                f"HF_TOKEN=... in {self.site.env_file}",
            )
        if prepared.plan is not None:
            self._check_fit(prepared)
        self.engine  # noqa: B018 - connects, or raises DockerUnavailable with a hint
        compose_v2_version()
        if profile.accelerator == "gpu" and not docker_has_nvidia_runtime(self.engine.info()):
            cpu_profiles = [p.name for p in self.catalog.profiles() if p.accelerator == "cpu"]
            raise PreflightError(
                f"'{profile.name}' needs an NVIDIA GPU, but this Docker engine has no NVIDIA runtime",
                hint="install the NVIDIA driver and nvidia-container-toolkit, run "
                "`nvidia-ctk runtime configure --runtime=docker` and restart Docker"
                + (f"; or use a cpu profile: {', '.join(cpu_profiles)}" if cpu_profiles else ""),
            )
        if not switching:
            self._check_port(settings)
        self._check_disk(prepared)

    def _check_port(self, settings: Settings) -> None:
        port = settings.webui_port
        holders = self.engine.port_holders(port)
        foreign = [c.name for c in holders if c.labels.get(PROJECT_LABEL) != settings.compose_project_name]
        if foreign:
            raise PreflightError(
                f"port {port} (WEBUI_PORT) is already published by container {', '.join(foreign)}",
                hint="stop that container, or set WEBUI_PORT in .env to a free port",
            )
        if holders:
            return
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # Without SO_REUSEADDR, connections in TIME_WAIT after a `down` look like a squatter.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.webui_bind_address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PreflightError(
                        f"port {port} (WEBUI_PORT) on {settings.webui_bind_address} is in use by another program",
                        hint="find it with `ss -ltnp`, or set WEBUI_PORT in .env to a free port",
                    ) from None
                raise

    def _check_fit(self, prepared: Prepared) -> None:
        result = prepared.plan
        assert result is not None
        if not result.fits:
            message = (
                f"'{result.profile}' does not fit {result.gpu_memory_gib:.1f} GiB of GPU memory: "
                f"{result.weights_gib:.1f} GiB of weights leave {result.kv_budget_gib:.2f} GiB for the KV cache, "
                f"one {result.max_model_len}-token sequence needs {result.kv_bytes_per_sequence / GIB:.2f} GiB"
            )
            if not self.options.force:
                raise PreflightError(message, hint="; ".join(result.recommendations) + " (or --force to try anyway)")
            self.reporter.warn(message + " (--force: starting anyway)")
        for note in result.notes:
            self.reporter.warn(note)
        wanted = result.gpu_memory_gib * result.gpu_memory_utilization
        if prepared.free_gpu_gib is not None and prepared.free_gpu_gib < wanted:
            self.reporter.warn(
                f"only {prepared.free_gpu_gib:.1f} GiB of the GPU is free and vLLM wants {wanted:.1f} GiB: "
                "another process holds GPU memory (see nvidia-smi)"
            )

    def _check_disk(self, prepared: Prepared) -> None:
        if prepared.profile.local_path is not None:
            return
        cache = prepared.settings.hf_cache_path
        existing = next((p for p in [cache, *cache.parents] if p.exists()), Path("/"))
        free = shutil.disk_usage(existing).free
        need = weight_bytes(prepared.profile)
        if free < need * 1.1:
            self.reporter.warn(
                f"{existing} has {free / GIB:.1f} GiB free; the weights of '{prepared.profile.name}' "
                f"need about {need / GIB:.1f} GiB (unless already in the cache)"
            )

    def _timed(self, timings: dict[str, float], name: str, action: Callable[[], T]) -> T:
        shown = self._phase_prefix + name
        self.reporter.phase_start(shown)
        start = time.monotonic()
        result = action()
        timings[name] = elapsed(start)
        self.reporter.phase_done(shown, timings[name])
        return result

    def _ensure_images(self, project: ComposeProject, timings: dict[str, float]) -> None:
        def pull_missing() -> None:
            missing = [image for image in project.images() if not self.engine.has_image(image)]
            if not missing:
                return
            self.reporter.phase_progress(f"pulling {', '.join(missing)}")
            try:
                project.pull()
            except CommandError as exc:
                raise RuntimeFailure(
                    f"image {', '.join(missing)} is not on this machine and could not be pulled",
                    hint="check the registry is reachable, or set VLLM_IMAGE / VLLM_CPU_IMAGE / WEBUI_IMAGE in "
                    ".env to images in your registry or loaded locally (docker load)",
                    details=exc.details,
                ) from None

        self._timed(timings, "image pull", pull_missing)

    def _wait_vllm(self, probe: VllmProbe, profile: Profile, timings: dict[str, float]) -> dict:
        opts = self.options
        self._timed(timings, "vllm started", lambda: wait_for("vllm started", probe.check_running, deadline_s=120))
        log = self._timed(
            timings,
            "weights load",
            lambda: wait_for(
                "weights load",
                lambda: probe.check_loaded(self.reporter.phase_progress),
                deadline_s=opts.load_timeout_s,
                hint="a large download can take longer: raise --timeout; `controller logs vllm` shows progress",
            ),
        )
        self._timed(timings, "engine ready", lambda: wait_for("engine ready", probe.check_healthy, deadline_s=180))
        healthy_at = time.time()
        listed_len = self._timed(
            timings,
            "model listed",
            lambda: wait_for(
                "model listed", lambda: probe.check_model_listed(profile.served_model_name), deadline_s=60
            ),
        )
        started = docker_timestamp(probe.container().attrs["State"]["StartedAt"])
        return {
            "load_time_s": round(healthy_at - started, 2),
            "max_model_len": listed_len,
            "kv_cache_tokens": vllm_text.kv_cache_tokens(log) or vllm_text.kv_cache_tokens(probe.logs()),
            "max_concurrency": vllm_text.max_concurrency(probe.logs()),
        }

    def _wait_webui(self, settings: Settings, webui: WebUI, profile: Profile, timings: dict[str, float]) -> Session:
        def healthy() -> None:
            container = self.engine.container(settings.compose_project_name, "webui")
            if container is not None and container.status in ("exited", "dead"):
                tail = self.engine.logs_since(container).strip().splitlines()[-12:]
                raise StartupFailed("the Open WebUI container stopped", phase="webui health", details=tail)
            if not webui.healthy():
                raise NotReady("Open WebUI /health is not answering yet")

        self._timed(
            timings, "webui health", lambda: wait_for("webui health", healthy, deadline_s=self.options.webui_timeout_s)
        )
        session = self._verify_serving(settings, webui, profile, timings, deadline_s=120)
        # The data volume may hold another model as default from before a `down`.
        self._serve_in_webui(webui, session, profile, timings)
        return session

    def _ensure_admin(self, settings: Settings, webui: WebUI) -> Session:
        """Sign in as the configured admin; create it by first sign-up where the image did not."""
        email, password = settings.webui_admin_email, settings.webui_admin_password.get_secret_value()
        session = webui.signin(email, password)
        if session is None:
            session = webui.signup_first_admin(settings.webui_admin_name, email, password)
        if session is None:
            raise AdminError(
                f"Open WebUI already has an admin, and {email} with the password in {self.site.env_file} "
                "does not sign in",
                hint="set WEBUI_ADMIN_EMAIL and WEBUI_ADMIN_PASSWORD in .env to the existing admin's; "
                "nothing was reset or changed",
            )
        if session.role != "admin":
            raise AdminError(
                f"{email} signs in to Open WebUI but has role '{session.role}', not admin",
                hint="promote it in Admin Panel > Users, or set WEBUI_ADMIN_EMAIL to the admin's address",
            )
        return session

    def _sync_vllm_key(self, settings: Settings, webui: WebUI, session: Session) -> None:
        key = settings.vllm_api_key.get_secret_value()
        if webui.ensure_openai_backend(session.token, VLLM_BASE_URL, key):
            self.reporter.warn("Open WebUI held another vLLM API key in its database; updated it to VLLM_API_KEY")

    def running_profile(self, settings: Settings) -> str | None:
        container = self.engine.container(settings.compose_project_name, "vllm")
        if container is None or container.status not in ("running", "restarting"):
            return None
        return container.labels.get(PROFILE_LABEL)

    def _healthy(self, settings: Settings) -> bool:
        """Both services answer their health endpoints now (Docker's health status lags by an interval)."""
        for service in SERVICES:
            container = self.engine.container(settings.compose_project_name, service)
            if container is None or container.status != "running":
                return False
        probe = VllmProbe(self.engine, settings.compose_project_name, settings.vllm_api_key.get_secret_value())
        try:
            if probe.http("/health")[0] != 200:
                return False
        except NotReady:
            return False
        with WebUI(settings.webui_url) as webui:
            return webui.healthy()

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
        before = set(read_env_file(self.site.env_file))
        prepared = self.prepare(model)
        changed = write_atomic(self.site.compose_file, prepared.compose_text)
        return {
            "model": prepared.profile.name,
            "served_model_name": prepared.profile.served_model_name,
            "compose_file": str(self.site.compose_file),
            "env_file": str(self.site.env_file),
            "changed": changed,
            "generated_secrets": sorted(set(read_env_file(self.site.env_file)) - before),
        }

    def _locked(self, command: str):
        return self.store.locked(command, timeout=self.options.lock_timeout_s, on_wait=self.reporter.waiting_for_lock)

    def up(self, model: str) -> dict:
        # The lock comes first: two first runs must not each generate different secrets.
        with self._locked(f"up {model}"):
            prepared = self.prepare(model)
            settings, profile = prepared.settings, prepared.profile
            self.preflight(prepared)
            running = self.running_profile(settings)
            if running and running != profile.name:
                raise PreflightError(
                    f"the stack is serving '{running}'; `up` does not change the model",
                    hint=f"run `controller switch {profile.name}` (it rolls back if the new model fails)",
                )
            project = self.project(settings)
            timings: dict[str, float] = {}
            started = now_iso()
            before = self._container_ids(settings)
            write_atomic(self.site.compose_file, prepared.compose_text)
            settings.hf_cache_path.mkdir(parents=True, exist_ok=True)
            probe = VllmProbe(self.engine, settings.compose_project_name, settings.vllm_api_key.get_secret_value())
            try:
                self._ensure_images(project, timings)
                probe.begin_attempt()
                # Compose itself knows whether anything changed, .env values included.
                self._timed(timings, "compose up", lambda: project.up())
                if running and self._container_ids(settings) == before and self._healthy(settings):
                    with WebUI(settings.webui_url) as webui:
                        session = self._verify_serving(settings, webui, profile, timings, deadline_s=10)
                        self._serve_in_webui(webui, session, profile, timings, deadline_s=10)
                    return self._summary(prepared, timings, noop=True)
                vllm_facts = self._wait_vllm(probe, profile, timings)
                with WebUI(settings.webui_url) as webui:
                    self._wait_webui(settings, webui, profile, timings)
            except ControllerError as exc:
                if isinstance(exc, StartupFailed) and exc.phase in VLLM_PHASES:
                    self._stop_failed_vllm(project, exc)
                self._record(Event("up", profile.name, "failed", started, now_iso(), error=exc.message, phases=timings))
                raise
            self._record(Event("up", profile.name, "ok", started, now_iso(), phases=timings), active=profile)
            write_atomic(self.store.active_compose, prepared.compose_text)
            return self._summary(prepared, timings, noop=False, vllm=vllm_facts)

    def _container_ids(self, settings: Settings) -> dict[str, str | None]:
        containers = {s: self.engine.container(settings.compose_project_name, s) for s in SERVICES}
        return {service: c.id if c is not None and c.status == "running" else None for service, c in containers.items()}

    def _verify_serving(
        self, settings: Settings, webui: WebUI, profile: Profile, timings: dict[str, float], *, deadline_s: float
    ) -> Session:
        """The admin signs in, Open WebUI holds the current vLLM key, and it lists the model."""
        session = self._timed(
            timings, "admin",
            lambda: wait_for("admin", lambda: self._ensure_admin(settings, webui), deadline_s=deadline_s),
        )  # fmt: skip
        self._sync_vllm_key(settings, webui, session)
        self._timed(
            timings, "model in webui",
            lambda: wait_for("model in webui", lambda: _listed(webui, session, profile.served_model_name),
                             deadline_s=deadline_s),
        )  # fmt: skip
        return session

    def _stop_failed_vllm(self, project: ComposeProject, failure: StartupFailed) -> None:
        """A crash-looping vLLM burns CPU and floods logs: stop it; Open WebUI and the data stay."""
        try:
            project.stop("vllm")
            failure.details.append("(vLLM was stopped to end its restart loop; Open WebUI and its data are untouched)")
        except ControllerError as exc:
            failure.details.append(f"(stopping the failed vLLM failed too: {exc.message})")

    def down(self, *, volumes: bool = False) -> dict:
        settings = load_settings(self.site, generate=False)
        self.engine  # noqa: B018
        with self._locked("down"):
            started = now_iso()
            project = self.project(settings)
            if not self.site.compose_file.exists():
                raise PreflightError(
                    f"{self.site.compose_file} does not exist, so there is no stack to take down",
                    hint="start one with `controller up MODEL`",
                )
            project.down(volumes=volumes)
            state = self.store.load()
            previous = state.active
            self._record(
                Event("down" + (" --volumes" if volumes else ""), previous or "-", "ok", started, now_iso()),
                active=None,
                clear_active=True,
            )
            return {"project": settings.compose_project_name, "volumes_removed": volumes, "previous_model": previous}

    def switch(self, model: str) -> dict:
        with self._locked(f"switch {model}"):
            prepared = self.prepare(model)
            settings, profile = prepared.settings, prepared.profile
            self.preflight(prepared, switching=True)
            current = self.running_profile(settings)
            # Roll back to what last ran, not to whatever `render` may have written since.
            previous_text = self._active_compose()
            if current is None or previous_text is None:
                raise PreflightError(
                    "no running stack to switch", hint=f"start one with `controller up {profile.name}`"
                )
            if current == profile.name and self._current_compose() == prepared.compose_text and self._healthy(settings):
                return self._summary(prepared, {}, noop=True, previous=current)
            previous_profile = self.catalog.get(current)
            project = self.project(settings)
            probe = VllmProbe(self.engine, settings.compose_project_name, settings.vllm_api_key.get_secret_value())
            timings: dict[str, float] = {}
            started = now_iso()
            with WebUI(settings.webui_url) as webui:
                # Signing in first proves the admin works before anything is stopped, and keeps
                # the sign-in out of the outage.
                session = self._timed(
                    timings,
                    "admin",
                    lambda: wait_for("admin", lambda: self._ensure_admin(settings, webui), deadline_s=30),
                )
                self._sync_vllm_key(settings, webui, session)
                write_atomic(self.site.compose_file, prepared.compose_text)
                try:
                    # Pulled while the old model still serves: not part of the outage.
                    self._ensure_images(project, timings)
                except ControllerError:
                    write_atomic(self.site.compose_file, previous_text)
                    raise
                try:
                    settings.hf_cache_path.mkdir(parents=True, exist_ok=True)
                    outage_start = time.monotonic()
                    probe.begin_attempt()
                    self._timed(timings, "recreate vllm", lambda: project.up("vllm", no_deps=True))
                    vllm_facts = self._wait_vllm(probe, profile, timings)
                    self._activate_in_webui(webui, session, profile, timings)
                    downtime = elapsed(outage_start)
                except (ControllerError, KeyboardInterrupt) as cause:
                    self._rollback(
                        project, probe, webui, session, profile, previous_profile, previous_text, cause, started,
                        timings,
                    )  # fmt: skip
            self._record(
                Event("switch", profile.name, "ok", started, now_iso(), previous=current, phases=timings,
                      downtime_s=downtime),
                active=profile,
            )  # fmt: skip
            write_atomic(self.store.active_compose, prepared.compose_text)
            return self._summary(prepared, timings, noop=False, previous=current, downtime_s=downtime, vllm=vllm_facts)

    def _activate_in_webui(self, webui: WebUI, session: Session, profile: Profile, timings: dict[str, float]) -> None:
        """Open WebUI lists the model, takes it as default, and a chat through it works."""
        served = profile.served_model_name
        self._timed(
            timings, "model in webui",
            lambda: wait_for("model in webui", lambda: _listed(webui, session, served), deadline_s=120),
        )  # fmt: skip
        self._serve_in_webui(webui, session, profile, timings)

    def _serve_in_webui(
        self, webui: WebUI, session: Session, profile: Profile, timings: dict[str, float], *, deadline_s: float = 60
    ) -> None:
        """The model is Open WebUI's default with the right function calling, and a chat shaped like
        the browser's gets an answer: success is never reported for a stack a person cannot use."""
        self._timed(timings, "default model", lambda: _set_serving_config(webui, session, profile))
        served = profile.served_model_name
        self._timed(
            timings, "chat path",
            lambda: wait_for("chat path",
                             lambda: webui.chat(session.token, served, CHAT_PROBE_PROMPT, max_tokens=1, as_ui=True),
                             deadline_s=deadline_s),
        )  # fmt: skip

    def _rollback(
        self,
        project: ComposeProject,
        probe: VllmProbe,
        webui: WebUI,
        session: Session,
        target: Profile,
        previous: Profile,
        previous_text: str,
        cause: ControllerError | KeyboardInterrupt,
        started: str,
        timings: dict[str, float],
    ) -> None:
        """Bring the previous profile back after a failed switch; always raises SwitchFailed."""
        what = f"the switch to '{target.name}' failed"
        if isinstance(cause, ControllerError):
            phase = getattr(cause, "phase", None)
            reason = cause.message + (f" (phase: {phase})" if phase else "")
            hint, details = cause.hint, list(cause.details)
        else:
            what, reason, hint, details = f"the switch to '{target.name}' was interrupted", "interrupted", None, []
        self.reporter.warn(f"{what}: {reason}; rolling back to '{previous.name}'")
        rollback_timings: dict[str, float] = {}
        try:
            with self._phases_prefixed("rollback: "):
                write_atomic(self.site.compose_file, previous_text)
                probe.begin_attempt()
                self._timed(rollback_timings, "recreate vllm", lambda: project.up("vllm", no_deps=True))
                self._wait_vllm(probe, previous, rollback_timings)
                self._activate_in_webui(webui, session, previous, rollback_timings)
        except ControllerError as second:
            self._record(
                Event("switch", target.name, "rollback_failed", started, now_iso(), previous=previous.name,
                      error=f"{reason}; rollback: {second.message}", phases={**timings, **_prefixed(rollback_timings)}),
                active=None, clear_active=True,
            )  # fmt: skip
            raise SwitchFailed(
                f"{what}: {reason}; and the rollback to '{previous.name}' failed too: {second.message}",
                hint="see `controller logs vllm`; `controller up MODEL` starts a known-good model",
                details=details + second.details,
            ) from None
        self._record(
            Event("switch", target.name, "rolled_back", started, now_iso(), previous=previous.name, error=reason,
                  phases={**timings, **_prefixed(rollback_timings)}),
            active=previous,
        )  # fmt: skip
        raise SwitchFailed(
            f"{what}: {reason}; rolled back, '{previous.name}' is serving again", hint=hint, details=details
        ) from None

    @contextmanager
    def _phases_prefixed(self, prefix: str) -> Iterator[None]:
        self._phase_prefix = prefix
        try:
            yield
        finally:
            self._phase_prefix = ""

    def status(self) -> dict:
        settings = load_settings(self.site, generate=False)
        project = settings.compose_project_name
        services = {}
        for service in SERVICES:
            container = self.engine.container(project, service)
            if container is None:
                services[service] = {"state": "absent", "health": None, "uptime_s": None, "image": None}
                continue
            state = container.attrs.get("State", {})
            running = container.status == "running"
            started = docker_timestamp(state["StartedAt"]) if running else None
            services[service] = {
                "state": container.status,
                "health": (state.get("Health") or {}).get("Status"),
                "uptime_s": round(time.time() - started) if started else None,
                "image": container.attrs.get("Config", {}).get("Image"),
            }
        history = self.store.load()
        active = self.running_profile(settings)
        metrics = {}
        if services["vllm"]["state"] == "running":
            probe = VllmProbe(self.engine, project, settings.vllm_api_key.get_secret_value())
            code, body = probe.http("/metrics")
            if code == 200:
                metrics = vllm_text.parse_metrics(body)
        try:
            profile = self.catalog.get(active) if active else None
        except ControllerError:  # a broken or changed catalog must not hide the status
            profile = None
        return {
            "project": project,
            "model": active,
            "served_model_name": profile.served_model_name if profile else history.served_model_name,
            "url": settings.webui_url,
            "services": services,
            "metrics": metrics,
            "history": [vars(event) for event in history.history[-10:]],
        }

    def logs(self, service: str | None, *, follow: bool) -> None:
        settings = load_settings(self.site, generate=False)
        self.project(settings).logs(*([service] if service else []), follow=follow)

    def _current_compose(self) -> str | None:
        path = self.site.compose_file
        return path.read_text(encoding="utf-8") if path.exists() else None

    def _active_compose(self) -> str | None:
        path = self.store.active_compose
        return path.read_text(encoding="utf-8") if path.exists() else self._current_compose()

    def _record(self, event: Event, *, active: Profile | None = None, clear_active: bool = False) -> None:
        state = self.store.load()
        state.record(event)
        if active is not None:
            if state.active != active.name:
                state.since = event.finished
            state.active, state.served_model_name = active.name, active.served_model_name
        elif clear_active:
            state.active = state.served_model_name = state.since = None
        self.store.save(state)


def _prefixed(timings: dict[str, float]) -> dict[str, float]:
    return {f"rollback: {name}": seconds for name, seconds in timings.items()}


def _listed(webui: WebUI, session: Session, served_name: str) -> None:
    try:
        ids = webui.model_ids(session.token)
    except Exception as exc:  # the model list fetch fails while Open WebUI reconnects to vLLM
        raise NotReady(f"Open WebUI's model list failed: {exc}") from None
    if served_name not in ids:
        raise NotReady(f"Open WebUI does not list '{served_name}' yet (it lists {ids or 'nothing'})")


def _set_serving_config(webui: WebUI, session: Session, profile: Profile) -> None:
    """Idempotent: writes only when Open WebUI holds something else, then checks it was kept."""
    wanted = (profile.served_model_name, profile.function_calling)
    if webui.serving_config(session.token) == wanted:
        return
    webui.set_serving_config(session.token, *wanted)
    if webui.serving_config(session.token) != wanted:
        raise AdminError(
            f"Open WebUI did not keep '{wanted[0]}' as its default model with {wanted[1]} function calling"
        )

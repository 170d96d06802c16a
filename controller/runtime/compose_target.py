"""The Compose target: the stack as one `docker compose` project on this Docker host.

Everything that knows about Compose files, containers, labels and the vLLM container's probe is
here; the sequencing that uses it is not. What it asks of the host itself (a port held outside
Docker, free disk) is in controller.runtime.host; the benchmark it runs inside the vLLM container
is in controller.runtime.bench_exec.
"""

from __future__ import annotations

import time
from functools import cached_property

from controller.config.settings import Settings
from controller.config.site import SiteConfig
from controller.deploy.spec import PROFILE_LABEL, SLOTS, VLLM_PORT
from controller.errors import CommandError, NotReady, PreflightError, RuntimeFailure, StartupFailed
from controller.files import write_atomic, write_failed
from controller.phases import (
    COMPOSE_UP,
    ENGINE_READY,
    IMAGE_PULL,
    MODEL_LISTED,
    RECREATE_VLLM,
    VLLM_STARTED,
    WEBUI_HEALTH,
    WEBUI_START,
    WEIGHTS_LOAD,
    PhaseRunner,
)
from controller.runtime import bench_exec
from controller.runtime import vllm_log as vllm_text
from controller.runtime.docker import PROJECT_LABEL, ComposeProject, Engine, compose_v2_version, docker_timestamp
from controller.runtime.host import disk_warning, host_port_in_use


class ComposeTarget:
    def __init__(self, site: SiteConfig, settings: Settings):
        self.site = site
        self.settings = settings
        self.project = ComposeProject(settings.compose_project_name, site.compose_file, site.env_file)
        # The slot (service) of the active vLLM: changed only through use_slot.
        self.slot = SLOTS[0]
        self._probes: dict = {}

    def use_slot(self, service: str) -> None:
        self.slot = service

    @cached_property
    def engine(self) -> Engine:
        return Engine()  # connects, or raises DockerUnavailable with a hint

    def probe_for(self, service: str):
        from controller.runtime.vllm_probe import VllmProbe

        if service not in self._probes:
            api_key = self.settings.vllm_api_key.get_secret_value()
            self._probes[service] = VllmProbe(
                self.engine, self.settings.compose_project_name, api_key, port=VLLM_PORT, service=service
            )
        return self._probes[service]

    @property
    def probe(self):
        return self.probe_for(self.slot)

    def webui(self):
        from controller.runtime.webui_client import WebUI

        return WebUI(self.settings.webui_url)

    # ----- before anything is touched ------------------------------------------------------

    def preflight(self, *, switching: bool, needs_download_bytes: int | None) -> list[str]:
        """Raise PreflightError for what stops a start; return warnings for what may slow it."""
        self.engine  # noqa: B018
        compose_v2_version()
        if not switching:
            self._check_port()
        if needs_download_bytes and (warning := disk_warning(self.settings.hf_cache_path, needs_download_bytes)):
            return [warning]
        return []

    def gpu_runtime(self) -> bool:
        from controller.runtime.gpu import docker_has_nvidia_runtime

        return docker_has_nvidia_runtime(self.engine.info())

    def missing_images(self, images: list[str]) -> list[str]:
        """The images of `images` that this engine does not hold (nothing is pulled)."""
        return [image for image in dict.fromkeys(images) if self.engine.image_size(image) is None]

    def _check_port(self) -> None:
        port, address = self.settings.webui_port, self.settings.webui_bind_address
        holders = self.engine.port_holders(port)
        foreign = [c.name for c in holders if c.labels.get(PROJECT_LABEL) != self.settings.compose_project_name]
        if foreign:
            raise PreflightError(
                f"port {port} (WEBUI_PORT) is already published by container {', '.join(foreign)}",
                hint="stop that container, or set WEBUI_PORT in .env to a free port",
            )
        if not holders and host_port_in_use(str(address), port):
            raise PreflightError(
                f"port {port} (WEBUI_PORT) on {address} is in use by another program",
                hint="find it with `ss -ltnp`, or set WEBUI_PORT in .env to a free port",
            )

    # ----- the deployment ------------------------------------------------------------------

    def current_text(self) -> str | None:
        path = self.site.compose_file
        return path.read_text(encoding="utf-8") if path.exists() else None

    def write(self, text: str) -> bool:
        # Created here, not by Docker: a bind source Docker creates belongs to root, and the
        # controller writes its metric files there (MONITORING=on).
        try:
            self.site.metrics_dir.mkdir(parents=True, exist_ok=True)
            # node-exporter reads it as `nobody`: whatever the umask, it may list the folder.
            self.site.metrics_dir.chmod(0o755)
        except OSError as exc:
            raise write_failed(self.site.metrics_dir, exc) from None
        return write_atomic(self.site.compose_file, text)

    def pull(self, runner: PhaseRunner, *services: str) -> None:
        def pull_missing() -> None:
            if self.settings.offline:
                return  # preflight checked that every image is here; offline never reaches a registry
            try:
                self.project.pull(*services, policy="missing", timeout=runner.deadlines[IMAGE_PULL])
            except CommandError as exc:
                raise RuntimeFailure(
                    "an image is not on this machine and could not be pulled",
                    hint="check the registry is reachable, or set VLLM_IMAGE / VLLM_CPU_IMAGE / WEBUI_IMAGE in "
                    ".env to images in your registry or loaded locally (docker load)",
                    details=exc.details,
                ) from None

        runner.run(IMAGE_PULL, pull_missing)

    def apply(self, runner: PhaseRunner) -> None:
        self.settings.hf_cache_path.mkdir(parents=True, exist_ok=True)
        self.probe.begin_attempt()
        # Compose itself knows whether anything changed, .env values included.
        runner.run(COMPOSE_UP, lambda: self.project.up(timeout=runner.deadlines[COMPOSE_UP]))

    def recreate_vllm(self, runner: PhaseRunner, service: str | None = None) -> None:
        """Create (or recreate, when its definition changed) the vLLM of `service` (default: the
        active slot) and nothing else."""
        service = service or self.slot
        self.settings.hf_cache_path.mkdir(parents=True, exist_ok=True)
        self.probe_for(service).begin_attempt()
        runner.run(
            RECREATE_VLLM, lambda: self.project.up(service, no_deps=True, timeout=runner.deadlines[RECREATE_VLLM])
        )

    def wait_vllm(self, runner: PhaseRunner, served_model_name: str, service: str | None = None) -> dict:
        probe = self.probe_for(service or self.slot)
        runner.wait(VLLM_STARTED, probe.check_running)
        log = runner.wait(
            WEIGHTS_LOAD,
            lambda: probe.check_loaded(runner.reporter.phase_progress),
            hint="a large download can take longer: raise --timeout; `controller logs vllm` shows progress",
        )
        runner.wait(ENGINE_READY, probe.check_healthy)
        healthy_at = time.time()
        listed_len = runner.wait(MODEL_LISTED, lambda: probe.check_model_listed(served_model_name))
        started = docker_timestamp(probe.container().attrs["State"]["StartedAt"])
        logs = probe.logs()
        return {
            "load_time_s": round(healthy_at - started, 2),
            "max_model_len": listed_len,
            "kv_cache_tokens": vllm_text.kv_cache_tokens(log) or vllm_text.kv_cache_tokens(logs),
            "max_concurrency": vllm_text.max_concurrency(logs),
        }

    def stop_vllm(self) -> None:
        self.project.stop(self.slot)

    def remove_vllm(self, service: str) -> None:
        """Stop and remove the vLLM container of `service`, whether or not the file still names it."""
        from docker.errors import APIError, NotFound

        for container in self.engine.containers(self.settings.compose_project_name, service):
            try:
                container.stop(timeout=30)
                container.remove(force=True)
            except NotFound:
                continue
            except APIError as exc:
                raise RuntimeFailure(f"could not remove the vLLM instance '{service}': {exc}") from None

    def request_counts(self, service: str) -> tuple[int, int]:
        """(running plus waiting, finished so far) of the vLLM in `service`; (0, 0) when it no
        longer answers."""
        try:
            code, body = self.probe_for(service).http("/metrics")
        except NotReady:
            return 0, 0
        values = vllm_text.parse_metrics(body) if code == 200 else {}
        busy = values.get("requests_running", 0) + values.get("requests_waiting", 0)
        return int(busy), int(values.get("requests_finished", 0))

    def host_memory_bytes(self) -> int | None:
        return self.engine.info().get("MemTotal")

    def wait_webui(self, runner: PhaseRunner) -> None:
        def healthy() -> None:
            container = self.engine.container(self.settings.compose_project_name, "webui")
            if container is not None and container.status in ("exited", "dead"):
                tail = self.engine.logs_since(container).strip().splitlines()[-12:]
                raise StartupFailed("the Open WebUI container stopped", phase=WEBUI_HEALTH.name, details=tail)
            with self.webui() as webui:
                if not webui.healthy():
                    raise NotReady("Open WebUI /health is not answering yet")

        runner.wait(WEBUI_HEALTH, healthy)

    def ensure_webui(self, runner: PhaseRunner) -> str | None:
        """Start Open WebUI again when it is not running: `docker kill` (or a crash past its restart
        policy) leaves it stopped, and no switch or rollback can finish without it. Its users and
        chats are on its volume. Returns what was found, or None when it was running."""
        container = self.engine.container(self.settings.compose_project_name, "webui")
        if container is not None and container.status in ("running", "restarting"):
            return None  # Docker brings a restarting one back itself; the waits cover that
        code = container.attrs["State"]["ExitCode"] if container is not None else None
        found = "absent" if container is None else f"{container.status}, exit code {code}"
        timeout = runner.deadlines[WEBUI_START]
        runner.run(WEBUI_START, lambda: self.project.up("webui", no_deps=True, timeout=timeout))
        self.wait_webui(runner)
        return found

    # ----- what runs now -------------------------------------------------------------------

    def running_profile(self) -> str | None:
        container = self.engine.container(self.settings.compose_project_name, self.slot)
        if container is None or container.status not in ("running", "restarting"):
            return None
        return container.labels.get(PROFILE_LABEL)

    def running_ids(self) -> dict[str, str | None]:
        containers = {s: self.engine.container(self.settings.compose_project_name, s) for s in (self.slot, "webui")}
        ids = {service: c.id if c is not None and c.status == "running" else None for service, c in containers.items()}
        return {"vllm": ids[self.slot], "webui": ids["webui"]}

    def healthy(self) -> bool:
        """Both services answer their health endpoints now (Docker's health status lags by an interval)."""
        if not all(self.running_ids().values()):
            return False
        try:
            if self.probe.http("/health")[0] != 200:
                return False
        except NotReady:
            return False
        with self.webui() as webui:
            return webui.healthy()

    def down(self, *, volumes: bool) -> None:
        self.project.down(volumes=volumes)

    def services(self) -> dict[str, dict]:
        """`vllm` is the active instance (in slot `service`); another vLLM instance that exists
        (during a blue-green switch) is listed under its own service name."""
        services = {}
        project = self.settings.compose_project_name
        standby = [s for s in SLOTS if s != self.slot and self.engine.container(project, s) is not None]
        for name, service in [("vllm", self.slot), ("webui", "webui"), *[(s, s) for s in standby]]:
            container = self.engine.container(project, service)
            if container is None:
                services[name] = {"state": "absent", "health": None, "uptime_s": None, "image": None}
                continue
            state = container.attrs.get("State", {})
            running = container.status == "running"
            started = docker_timestamp(state["StartedAt"]) if running else None
            services[name] = {
                "service": service,
                "profile": container.labels.get(PROFILE_LABEL),
                "state": container.status,
                "health": (state.get("Health") or {}).get("Status"),
                "uptime_s": round(time.time() - started) if started else None,
                "image": container.attrs.get("Config", {}).get("Image"),
            }
        return services

    def metrics(self) -> dict:
        code, body = self.probe.http("/metrics")
        return vllm_text.parse_metrics(body) if code == 200 else {}

    def logs(self, service: str | None, *, follow: bool) -> None:
        # `logs vllm` means the active instance, whichever slot it runs in.
        service = self.slot if service == "vllm" else service
        self.project.logs(*([service] if service else []), follow=follow)

    # ----- `controller bench` ----------------------------------------------------------------

    def bench_facts(self) -> dict:
        return bench_exec.container_facts(self.project, self.slot, self.probe)

    def bench_serve(self, runs: list[list[str]], *, result_dir: str, timeout_s: float) -> list[str]:
        return bench_exec.run_bench_serve(self.project, self.slot, runs, result_dir=result_dir, timeout_s=timeout_s)

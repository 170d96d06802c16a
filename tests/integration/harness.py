"""Helpers for the real-stack tests: the images, a test site per test, cleanup, the controller CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker

from controller.config.settings import load_settings
from controller.config.site import SiteConfig

REPO = Path(__file__).resolve().parents[2]
TEST_CATALOG = REPO / "tests" / "catalog" / "tiny.yaml"
TEST_PROJECT_PREFIX = "ctest-"
PROJECT_LABEL = "com.docker.compose.project"
TIMINGS: dict[str, float] = {}


def build_images() -> dict:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_images.py")], capture_output=True, text=True, check=False
    )
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"building the local images failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    built = json.loads(done.stdout)
    for phase, info in built.get("timings", {}).items():
        TIMINGS[f"image build: {phase} ({info['status']})"] = info["seconds"]
    TIMINGS["image builds (all)"] = round(time.monotonic() - start, 1)
    return built


def build_tiny_model() -> Path:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_images.py"), "tiny-model"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"generating the tiny model failed:\n{done.stderr[-3000:]}")
    TIMINGS["tiny model"] = round(time.monotonic() - start, 1)
    return REPO / ".cache" / "tiny-model"


def images_and_tiny_model() -> dict:
    """Everything a real-stack run needs that takes a while the first time (cached afterwards)."""
    images = build_images()
    build_tiny_model()
    return images


def _port_block() -> range:
    """Ports of this process's own: below the kernel's ephemeral range (32768 and up), one block per
    pytest-xdist worker, so that two workers never pick the same free port before either binds it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker.startswith("gw") else 0
    return range(16000 + 2000 * index, 18000 + 2000 * index)


_CANDIDATE_PORTS = iter(_port_block())


def free_port() -> int:
    """A port no other process holds now and this process has not handed out before."""
    for port in _CANDIDATE_PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port left in {_port_block()}")


def container_processes(container) -> dict:
    """`docker top` with each process's whole command line. The engine runs `ps` itself, and plain
    `ps -ef` cuts the line at COLUMNS when dockerd was started with it set (measured: 80 columns,
    which hides e.g. `python3 -c <script>` past its first line)."""
    return container.top(ps_args="-ww -ef")


def remove_project(client: docker.DockerClient, project: str) -> None:
    """Remove a compose project's containers, networks and volumes, whatever state it is in."""
    labels = {"label": f"{PROJECT_LABEL}={project}"}
    for container in client.containers.list(all=True, filters=labels):
        container.remove(force=True, v=True)
    for network in client.networks.list(filters=labels):
        network.remove()
    for volume in client.volumes.list(filters=labels):
        volume.remove(force=True)


def remove_leftover_test_projects(client: docker.DockerClient) -> list[str]:
    """Projects from an earlier run come back with dockerd (restart policy); they hold ports and RAM."""
    projects = set()
    for container in client.containers.list(all=True, filters={"label": PROJECT_LABEL}):
        name = container.labels.get(PROJECT_LABEL, "")
        if name.startswith(TEST_PROJECT_PREFIX):
            projects.add(name)
    for volume in client.volumes.list(filters={"label": PROJECT_LABEL}):
        name = (volume.attrs.get("Labels") or {}).get(PROJECT_LABEL, "")
        if name.startswith(TEST_PROJECT_PREFIX):
            projects.add(name)
    for project in sorted(projects):
        remove_project(client, project)
    return sorted(projects)


def write_site_env(env_file: Path, *, project: str, port: int, images: dict, hf_cache: Path) -> None:
    env_file.write_text(
        "\n".join(
            [
                f"COMPOSE_PROJECT_NAME={project}",
                f"WEBUI_PORT={port}",
                "WEBUI_BIND_ADDRESS=127.0.0.1",
                "WEBUI_ADMIN_EMAIL=ops@example.com",
                f"VLLM_CPU_IMAGE={images['vllm']}",
                f"WEBUI_IMAGE={images['webui']}",
                f"CONTROLLER_CATALOG={TEST_CATALOG}",
                f"HF_CACHE_DIR={hf_cache}",
            ]
        )
        + "\n"
    )
    env_file.chmod(0o600)


def host_for_containers(client: docker.DockerClient) -> str:
    """The host as containers reach it: the default bridge's address on this host (the bridge's
    gateway). Read from the bridge itself, not from `docker network inspect`: Docker lists the
    gateway there only if the bridge had an address when the network was first made, so on a machine
    where dockerd starts for the first time IPAM's config holds the subnet alone (the last CI
    rehearsal failed on that)."""
    bridge = client.networks.get("bridge").attrs["Options"]["com.docker.network.bridge.name"]
    shown = subprocess.run(
        ["ip", "-json", "-4", "address", "show", "dev", bridge], check=True, capture_output=True, text=True
    )
    return json.loads(shown.stdout)[0]["addr_info"][0]["local"]


def monitoring_env(images: dict, webhook_url: str, *, scrape_interval: str, down_after: str, group_wait: str) -> str:
    """The .env lines of MONITORING=on with the monitoring test image for its four services, free
    ports and alerts sent to `webhook_url`."""
    image_keys = ("PROMETHEUS_IMAGE", "ALERTMANAGER_IMAGE", "BLACKBOX_EXPORTER_IMAGE", "NODE_EXPORTER_IMAGE")
    return (
        "MONITORING=on\n"
        + "".join(f"{key}={images['monitoring']}\n" for key in image_keys)
        + f"PROMETHEUS_PORT={free_port()}\nALERTMANAGER_PORT={free_port()}\n"
        f"PROMETHEUS_SCRAPE_INTERVAL={scrape_interval}\nALERT_DOWN_AFTER={down_after}\n"
        f"ALERT_GROUP_WAIT={group_wait}\nALERT_WEBHOOK_URL={webhook_url}\n"
    )


@contextmanager
def scratch_site(client: docker.DockerClient, images: dict) -> Iterator[tuple[Path, str, int]]:
    """A throwaway site directory with its own project name and port; its project is removed after."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = f"{TEST_PROJECT_PREFIX}bench-{uuid.uuid4().hex[:6]}"
        port = free_port()
        write_site_env(root / ".env", project=project, port=port, images=images, hf_cache=root / "hf")
        try:
            yield root, project, port
        finally:
            remove_project(client, project)


@contextmanager
def serving_site(client: docker.DockerClient, root: Path, images: dict, label: str,
                 model: str = "tiny-a") -> Iterator[TestSite]:  # fmt: skip
    """A new test site whose stack serves `model` (a module's own stack); its project removed after."""
    site = new_test_site(root, images, label)
    try:
        up = site.controller("up", model)
        assert up.returncode == 0, up.stderr
        yield site
    finally:
        remove_project(client, site.project)


OPEN_WEBUI_MIGRATIONS = "/opt/venv/lib/python3.11/site-packages/open_webui/migrations/versions"


def webui_with_migration(client: docker.DockerClient, webui_image: str, context: Path, name: str, revision: str,
                         body: str) -> str:  # fmt: skip
    """`webui_image` with one more migration after its head, whose upgrade() runs `body` (a failing
    or hanging upgrade for the upgrade tests and benchmark). Returns its tag."""
    from controller.runtime.webui_data import image_facts_of

    (head,) = image_facts_of(webui_image)["heads"]
    context.mkdir(parents=True, exist_ok=True)
    (context / f"{revision}_test.py").write_text(
        f"revision = '{revision}'\ndown_revision = '{head}'\nbranch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade():\n    {body}\n\n\ndef downgrade():\n    pass\n"
    )
    (context / "Dockerfile").write_text(f"FROM {webui_image}\nCOPY {revision}_test.py {OPEN_WEBUI_MIGRATIONS}/\n")
    tag = f"{webui_image.rsplit(':', 1)[0]}-{name}:test"
    client.images.build(path=str(context), tag=tag, rm=True)
    return tag


@contextmanager
def serving_scratch_site(model: str = "tiny-a") -> Iterator[tuple[Path, str, int]]:
    """For the benchmarks: a scratch site (see scratch_site) whose stack serves `model`."""
    client = docker.from_env()
    with scratch_site(client, images_and_tiny_model()) as site:
        up = controller(site[0], "up", model)
        if up.returncode != 0:
            raise SystemExit(up.stderr)
        yield site


def _as_from_a_terminal() -> None:
    # A test run started in the background by a script (`make test &`, a CI runner) inherits SIGINT
    # ignored, and Python then leaves it ignored: the Ctrl-C a test sends would never arrive. An
    # operator's command starts with SIGINT at its default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def controller_process(root: Path, *args: str) -> subprocess.Popen:
    """Start the real CLI in the background (for concurrency, Ctrl-C and kill tests)."""
    return subprocess.Popen(
        [sys.executable, "-m", "controller", "--project-dir", str(root), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal,
    )  # fmt: skip


def controller(root: Path, *args: str, timeout: float = 900, path: str | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI as an operator would, in the test site's directory (with another PATH if given)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONTROLLER_CATALOG", "CONTROLLER_HOME")}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "controller", "--project-dir", str(root), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=root, check=False,
    )  # fmt: skip


@dataclass
class TestSite:
    """A site of the real-stack tests: its directory and .env, Compose project and Open WebUI port."""

    __test__ = False  # not a test class, though pytest would collect it by its name

    site: SiteConfig
    project: str
    port: int

    @property
    def root(self) -> Path:
        return self.site.root

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self):
        return load_settings(self.site)

    def controller(self, *args: str, timeout: float = 900):
        return controller(self.root, *args, timeout=timeout)


def new_test_site(root: Path, images: dict, label: str = "") -> TestSite:
    """A site directory with its own Compose project and port. The HF cache directory is not
    created here: the rendered compose file must create it on a fresh machine."""
    project = f"{TEST_PROJECT_PREFIX}{label + '-' if label else ''}{uuid.uuid4().hex[:8]}"
    port = free_port()
    env_file = root / ".env"
    write_site_env(env_file, project=project, port=port, images=images, hf_cache=root / "hf-cache")
    return TestSite(SiteConfig(root=root, env_file=env_file), project, port)


@dataclass(frozen=True)
class HttpsSite:
    site: TestSite
    up: subprocess.CompletedProcess  # `up tiny-a --json`
    result: dict  # its JSON
    https_port: int
    http_port: int


@contextmanager
def https_site(
    root: Path, docker_client, images: dict, label: str, host: str, more_env: str = ""
) -> Iterator[HttpsSite]:
    """A site with TLS=internal (Caddy from the locally built front-door image) and `more_env`, up
    with tiny-a; its Compose project is removed afterwards."""
    site = new_test_site(root, images, label)
    https_port, http_port = free_port(), free_port()
    with site.site.env_file.open("a") as env:
        env.write(f"TLS=internal\nTLS_HOST={host}\nHTTPS_PORT={https_port}\nHTTP_PORT={http_port}\n"
                  f"CADDY_IMAGE={images['front-door']}\n{more_env}")  # fmt: skip
    try:
        up = site.controller("up", "tiny-a", "--json")
        assert up.returncode == 0, up.stderr
        yield HttpsSite(site, up, json.loads(up.stdout), https_port, http_port)
    finally:
        remove_project(docker_client, site.project)

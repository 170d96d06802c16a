"""Real-stack fixtures: a real Docker engine and Compose v2, locally built images, a tiny model.

Nothing here skips: when Docker or Compose v2 is missing the tests fail and say what to run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from controller.errors import ControllerError
from tests.integration import harness

# Ryuk, testcontainers' reaper, is an image from a registry this machine cannot reach; every
# test removes its own containers instead.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    from controller.runtime.docker import compose_v2_version, run_command

    try:
        run_command(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
        compose_v2_version()
    except ControllerError as exc:
        pytest.fail(
            f"integration tests need a running Docker engine and Compose v2: {exc.message} "
            f"{' '.join(exc.details)}. Run `make engine` (scripts/ensure-docker.sh) as root first.",
            pytrace=False,
        )
    client = docker.from_env()
    removed = harness.remove_leftover_test_projects(client)
    if removed:
        print(f"removed left-over test projects: {', '.join(removed)}")
    return client


@pytest.fixture(scope="session")
def images(docker_client) -> dict:
    return harness.build_images()


@pytest.fixture(scope="session")
def tiny_model(images) -> Path:
    return harness.build_tiny_model()


@pytest.fixture
def test_site(tmp_path, docker_client, images, tiny_model) -> Iterator[harness.TestSite]:
    """A stack of the test's own: for tests that break it, or need a fresh one."""
    site = harness.new_test_site(tmp_path, images)
    yield site
    harness.remove_project(docker_client, site.project)


@pytest.fixture(scope="module")
def module_site(request, tmp_path_factory, docker_client, images, tiny_model) -> Iterator[harness.TestSite]:
    """One stack for the tests of a module (CI time: a stack's first start is the slowest step).
    Each test starts from a stack it checks with an idempotent `up` and leaves it serving."""
    label = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    site = harness.new_test_site(tmp_path_factory.mktemp(label), images, label)
    yield site
    harness.remove_project(docker_client, site.project)


def pytest_terminal_summary(terminalreporter) -> None:
    if harness.TIMINGS:
        terminalreporter.section("per-phase timings (s)")
        for name, seconds in harness.TIMINGS.items():
            terminalreporter.write_line(f"{name:<45} {seconds:8.1f}")

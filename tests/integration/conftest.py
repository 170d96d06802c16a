"""Real-stack fixtures: a real Docker engine and Compose v2, locally built images, a tiny model.

Nothing here skips: when Docker or Compose v2 is missing the tests fail and say what to run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
from filelock import FileLock

from controller.errors import ControllerError
from tests.integration import harness

# Ryuk, testcontainers' reaper, is an image from a registry this machine cannot reach; every
# test removes its own containers instead.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


@pytest.fixture(scope="session")
def docker_client(tmp_path_factory) -> docker.DockerClient:
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
    with _once_per_run(tmp_path_factory, "leftover-test-projects") as first:
        if first:
            removed = harness.remove_leftover_test_projects(client)
            if removed:
                print(f"removed left-over test projects: {', '.join(removed)}")
    return client


@contextmanager
def _once_per_run(tmp_path_factory, name: str) -> Iterator[bool]:
    """True for the first process of this run to get here. Under pytest-xdist each worker runs the
    session fixtures: the left-over cleanup must run once, before any worker starts a stack, or it
    would remove the other worker's. The workers share their parent's temporary directory."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield True
        return
    shared = tmp_path_factory.getbasetemp().parent
    with FileLock(shared / f"{name}.lock"):
        marker = shared / f"{name}.done"
        yield not marker.exists()
        marker.touch()


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


# ----- one stack shared by the tests that only need "tiny-a serving" -------------------------------
# A stack's first start (Open WebUI's first boot and migrations, vLLM's import and load) is the
# slowest step of the suite. The tests that take `shared_site` run first of the real-stack tests, in
# file order, on one stack; each finds tiny-a serving and .env as after the first `up`, and the
# stack is removed when the last of them ends (test_bundle removes the images, which a live stack
# would hold).

SHARED_MODEL = "tiny-a"
_LAST_SHARED = pytest.StashKey[pytest.Item | None]()


def pytest_collection_modifyitems(config, items) -> None:
    """While `make test` builds the images: the unit tests, then the integration tests that need no
    image (kubectl, compose config, the wheel). Then the shared stack's tests, then the other
    real-stack tests; file order within each group.

    `make test` runs two pytest-xdist workers with `--dist loadscope --no-loadscope-reorder`: each
    module is one unit of work, handed out in this order, so a module's fixtures (a stack) are made
    once. Each worker that runs a shared-stack test has a shared stack of its own. (xdist_group
    marks cannot gather them on one worker: pytest-xdist 3.8 renames the nodeid in a way pytest 9.2
    no longer reads.)"""
    here = Path(__file__).parent

    def group(item) -> int:
        needs = getattr(item, "fixturenames", ())  # every fixture the test needs, directly or not
        if here not in Path(item.fspath).parents:
            return 0
        if "images" not in needs:
            return 1
        return 2 if "shared_site" in needs else 3

    items.sort(key=group)  # stable: file order is kept within a group
    users = [item for item in items if group(item) == 2]
    config.stash[_LAST_SHARED] = users[-1] if users else None


@pytest.fixture(scope="session")
def _shared_stack(tmp_path_factory, docker_client, images, tiny_model) -> Iterator[dict]:
    site = harness.new_test_site(tmp_path_factory.mktemp("shared"), images, "shared")
    state = {"site": site, "env": None}
    yield state
    harness.remove_project(docker_client, site.project)


@pytest.fixture
def shared_site(request, _shared_stack, docker_client) -> Iterator[harness.TestSite]:
    """The shared stack, serving tiny-a, with .env as the first `up` left it (a test that failed
    half-way is repaired here, so one failure does not fail the tests after it)."""
    site = _shared_stack["site"]
    if request.node is request.config.stash[_LAST_SHARED]:
        # Registered first, so that the stack goes even when this repair fails: the images it holds
        # must be free for test_bundle.
        request.addfinalizer(lambda: harness.remove_project(docker_client, site.project))
    if _shared_stack["env"] is not None:
        site.site.env_file.write_bytes(_shared_stack["env"])
    up = site.controller("up", SHARED_MODEL)
    if up.returncode != 0 and "does not change the model" in up.stderr:  # another model serves: go back
        up = site.controller("switch", SHARED_MODEL)
    assert up.returncode == 0, f"the shared stack does not serve {SHARED_MODEL}:\n{up.stderr}"
    if _shared_stack["env"] is None:  # after the first `up`, which generated the secrets
        _shared_stack["env"] = site.site.env_file.read_bytes()
    yield site


def pytest_terminal_summary(terminalreporter) -> None:
    if harness.TIMINGS:
        terminalreporter.section("per-phase timings (s)")
        for name, seconds in harness.TIMINGS.items():
            terminalreporter.write_line(f"{name:<45} {seconds:8.1f}")

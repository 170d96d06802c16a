"""Air-gapped sites on the real engine: `bundle create` on a "connected" site (the tiny model in a real
Hugging Face hub cache layout under a made-up repo id), then the images and the cache are removed,
`bundle load` brings them back on an "offline" site, and the stack comes up with OFFLINE=true on an
internal network, chats, and switches to the second model, all without an image pull.

The images removed here are the ones every other test uses: a finalizer loads them back from the
bundle (or rebuilds them) however the test ends. Run it under the engine lock like every Docker test.
"""

from __future__ import annotations

import json
import time

import docker.errors
import pytest

from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration.bundle_sites import HF_ID, REVISION, OfflineSite, connected_site, restore_images
from tests.integration.webui_api import admin_session

pytestmark = [pytest.mark.integration, pytest.mark.stack, pytest.mark.serial]


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, docker_client, images, tiny_model):
    """Create the bundle, remove images and cache, load it on the offline site: one expensive run shared
    by the checks below."""
    tmp = tmp_path_factory.mktemp("bundle")  # on the same disk as the engine's data
    ids = {key: docker_client.images.get(images[key]).id for key in ("vllm", "webui")}
    bundle = tmp / "site.bundle"
    connected, catalog = connected_site(tmp / "connected", images, tiny_model)
    offline = OfflineSite(tmp / "offline", images)
    try:
        start = time.monotonic()
        created = harness.controller(connected, "--catalog", str(catalog), "bundle", "create", "tiny-a-hf",
                                     "tiny-b-hf", "-o", str(bundle), "--json", timeout=1800)  # fmt: skip
        create_s = time.monotonic() - start
        assert created.returncode == 0, created.stderr
        harness.TIMINGS["bundle create (2 images, 2 profiles, 1 model)"] = round(create_s, 1)
        harness.TIMINGS["bundle size (GB)"] = round(bundle.stat().st_size / 1e9, 2)

        for key in ("vllm", "webui"):
            docker_client.images.remove(images[key])
        for key in ("vllm", "webui"):
            with pytest.raises(docker.errors.ImageNotFound):
                docker_client.images.get(images[key])
        assert not (offline.root / "hf-cache").exists()

        loaded_at = time.monotonic()
        loaded = offline.controller("bundle", "load", str(bundle), "--yes", "--json", timeout=1800)
        harness.TIMINGS["bundle load"] = round(time.monotonic() - loaded_at, 1)
        assert loaded.returncode == 0, loaded.stderr
        yield {
            "site": offline, "created": json.loads(created.stdout), "loaded": json.loads(loaded.stdout),
            "bundle": bundle, "ids": ids, "loaded_at": loaded_at, "pull_check_since": int(time.time()) - 1,
        }  # fmt: skip
    finally:
        harness.remove_project(docker_client, offline.project)
        restore_images(docker_client, images, ids, bundle)
        for leftover in (bundle, bundle.with_name(bundle.name + ".partial")):
            leftover.unlink(missing_ok=True)


def _model_files(tiny_model) -> int:
    """The files the hub-layout cache holds for HF_ID (bundle_sites.connected_site: the top level)."""
    return sum(1 for path in tiny_model.iterdir() if path.is_file())


def test_bundle_holds_images_model_revision_and_catalog(offline_run, images, tiny_model):
    created = offline_run["created"]
    assert {i["reference"]: i["id"] for i in created["images"]} == {
        images["vllm"]: offline_run["ids"]["vllm"], images["webui"]: offline_run["ids"]["webui"],
    }  # fmt: skip
    assert created["models"] == [{"model": HF_ID, "revision": REVISION, "files": _model_files(tiny_model)}]
    assert created["catalog"] is True and created["profiles"] == ["tiny-a-hf", "tiny-b-hf"]


def test_load_restores_images_cache_and_catalog_and_sets_offline(offline_run, docker_client, images, tiny_model):
    loaded, site = offline_run["loaded"], offline_run["site"]
    assert sorted(loaded["images_loaded"]) == sorted([images["vllm"], images["webui"]])
    assert loaded["model_files_written"] == _model_files(tiny_model)
    assert loaded["env_written"] == ["CONTROLLER_CATALOG", "OFFLINE"]
    for key in ("vllm", "webui"):
        assert docker_client.images.get(images[key]).id == offline_run["ids"][key]
    snapshot = site.root / "hf-cache" / "hub" / "models--ctest-org--tiny-llama" / "snapshots" / REVISION
    assert (snapshot / "config.json").is_symlink() and (snapshot / "model.safetensors").is_file()
    assert site.settings().offline is True


def test_offline_stack_chats_and_switches_without_a_pull_on_internal_networks(offline_run, docker_client):
    site = offline_run["site"]
    up = site.controller("up", "tiny-a-hf", "--json")
    assert up.returncode == 0, up.stderr
    harness.TIMINGS["bundle load start to working chat (load + up)"] = round(
        time.monotonic() - offline_run["loaded_at"], 1
    )
    with WebUI(site.url) as webui:
        session = admin_session(site, webui)
        assert "tiny-a-hf" in webui.model_ids(session.token)
        assert webui.chat(session.token, "tiny-a-hf", "hello", max_tokens=3)

    vllm = docker_client.containers.list(filters={"label": [f"{harness.PROJECT_LABEL}={site.project}",
                                                            "com.docker.compose.service=vllm"]})[0]  # fmt: skip
    assert list(vllm.attrs["NetworkSettings"]["Networks"]) == [f"{site.project}_backend"]
    assert docker_client.networks.get(f"{site.project}_backend").attrs["Internal"] is True
    # vLLM cannot reach out: a name outside the stack does not resolve (in about 1 s, see dns_opt), and
    # a direct connection gets no answer (the engine drops it: it fails at the client's own timeout).
    probe = (
        "import socket,time\nfor target in ('huggingface.co', '1.1.1.1'):\n t=time.time()\n try:\n"
        "  socket.create_connection((target, 443), timeout=5); print(target, 'reached')\n"
        " except OSError as e: print(target, type(e).__name__, round(time.time()-t, 2))"
    )
    lines = vllm.exec_run(["python3", "-c", probe]).output.decode().splitlines()
    name, address = (line.split() for line in lines)
    assert name[1] == "gaierror" and float(name[2]) < 3, lines
    assert address[1] == "TimeoutError", lines
    harness.TIMINGS["offline: outside name lookup fails after (s)"] = float(name[2])

    switched = site.controller("switch", "tiny-b-hf", "--json")
    assert switched.returncode == 0, switched.stderr
    with WebUI(site.url) as webui:
        session = admin_session(site, webui)
        assert webui.chat(session.token, "tiny-b-hf", "hello", max_tokens=3)
    status = json.loads(site.controller("status", "--json").stdout)
    assert status["offline"] is True and status["model"] == "tiny-b-hf"

    pulls = docker_client.events(since=offline_run["pull_check_since"], until=int(time.time()) + 1,
                                 filters={"type": "image", "event": "pull"}, decode=True)  # fmt: skip
    assert list(pulls) == []


def test_second_load_changes_nothing(offline_run):
    site = offline_run["site"]
    env = (site.root / ".env").read_text()
    again = site.controller("bundle", "load", str(offline_run["bundle"]), "--json", timeout=1800)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["changed"] is False and result["images_loaded"] == [] and result["model_files_written"] == 0
    assert (site.root / ".env").read_text() == env

"""`controller doctor` against the real engine: Docker and Compose versions, the locally built images,
the Web UI port held by another container, by this stack and by a program, a missing image whose
registry does not answer, a loose `.env`, no GPU on this machine, and the `--gpus` container
refused. The conclusions from recorded GPU outputs are unit-tested (tests/unit/test_doctor.py).
One site serves every check; doctor writes nothing, which the first test verifies.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from controller.config.settings import load_settings
from controller.config.site import SiteConfig
from controller.doctor.facts import gpu_container_facts
from controller.doctor.gpu_checks import check_gpu_container
from controller.doctor.records import ImageFacts
from controller.runtime.docker import PROJECT_LABEL, Engine, compose_v2_version
from tests.integration import harness

pytestmark = pytest.mark.integration

NO_GPU = shutil.which("nvidia-smi") is None


@pytest.fixture(scope="module")
def site(tmp_path_factory, docker_client, images, tiny_model):
    root = tmp_path_factory.mktemp("doctor")
    project = f"{harness.TEST_PROJECT_PREFIX}doctor-{uuid.uuid4().hex[:6]}"
    port = harness.free_port()
    harness.write_site_env(root / ".env", project=project, port=port, images=images, hf_cache=root / "hf")
    load_settings(SiteConfig(root=root, env_file=root / ".env"))  # the secrets, as after a first `up`
    yield root, project, port
    harness.remove_project(docker_client, project)


def doctor(root: Path, *args: str) -> tuple[int, dict]:
    done = harness.controller(root, "doctor", *args, "--json", timeout=120)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is (done.returncode == 0)
    return done.returncode, {c["name"]: c for c in report["checks"]}


def test_cpu_profile_passes_and_nothing_is_written(site, docker_client, images):
    root, _project, port = site
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    code, checks = doctor(root, "tiny-a")
    assert code == 0, checks
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert not (root / "compose").exists() and not (root / ".controller").exists()
    engine = checks["Docker engine"]
    assert engine["status"] == "ok" and docker_client.version()["Version"] in engine["finding"]
    assert checks["Compose v2"]["status"] == "ok" and compose_v2_version() in checks["Compose v2"]["finding"]
    assert checks["vLLM image"]["details"] == {
        "image": images["vllm"],
        "present": True,
        "pullable": None,
        "error": None,
    }
    assert checks["Open WebUI image"]["details"]["image"] == images["webui"]
    assert checks["Web UI port"]["finding"] == f"127.0.0.1:{port} (WEBUI_PORT) is free"
    assert checks[".env"]["details"] == {"mode": "0600"} and checks["secrets"]["status"] == "ok"
    assert (
        checks["disk for weights"]["status"] == "ok" and "nothing to download" in checks["disk for weights"]["finding"]
    )
    gpu = checks["NVIDIA driver"]
    assert gpu["status"] == "ok" and gpu["finding"].endswith(
        "'tiny-a' runs on the CPU" if NO_GPU else "does not use them"
    )


def test_gpu_profile_on_a_machine_without_gpu(site):
    """Without nvidia-smi on PATH (as on a machine with no NVIDIA driver, like this one)."""
    root, _project, _port = site
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "nvidia-smi").exists())
    done = harness.controller(root, "doctor", "llama3-8b-gptq", timeout=120, path=path)
    assert done.returncode == 1, done.stderr
    text = " ".join(done.stdout.split())
    assert "FAIL NVIDIA driver no NVIDIA GPU on this machine (nvidia-smi is not installed)" in text
    assert "fix: use a cpu profile: tiny-a, tiny-b" in text
    assert "`controller up llama3-8b-gptq` would stop here" in text


def test_web_ui_port_held_by_a_container_this_stack_or_a_program(site, docker_client, images):
    root, project, port = site
    published = {"8080/tcp": ("127.0.0.1", port)}
    name = f"{harness.TEST_PROJECT_PREFIX}squatter-{uuid.uuid4().hex[:6]}"
    squatter = docker_client.containers.run(images["base"], ["sleep", "120"], name=name, ports=published, detach=True)
    try:
        code, checks = doctor(root, "tiny-a")
        assert code == 1 and checks["Web UI port"]["finding"].endswith(f"is published by container {name}")
    finally:
        squatter.remove(force=True)
    ours = docker_client.containers.run(
        images["base"], ["sleep", "120"], ports=published, labels={PROJECT_LABEL: project}, detach=True
    )
    try:
        code, checks = doctor(root, "tiny-a")
        assert code == 0 and f"is held by this stack ({ours.name})" in checks["Web UI port"]["finding"]
    finally:
        ours.remove(force=True)
    with socket.socket() as program:
        program.bind(("127.0.0.1", port))
        program.listen()
        code, checks = doctor(root, "tiny-a")
    assert code == 1 and checks["Web UI port"]["finding"].endswith("is in use by a program outside Docker")


def test_missing_image_and_a_loose_env_file(site):
    root, _project, _port = site
    env = root / ".env"
    original = env.read_text()
    try:
        env.write_text(original.replace("WEBUI_IMAGE=", "WEBUI_IMAGE=controller-test/absent:none\n# was "))
        env.chmod(0o644)
        code, checks = doctor(root, "tiny-a")
    finally:
        env.write_text(original)
        env.chmod(0o600)
    assert code == 1
    image = checks["Open WebUI image"]
    assert image["status"] == "fail" and image["details"]["present"] is False and image["details"]["error"]
    assert "WEBUI_IMAGE" in image["fix"]
    assert checks[".env"]["status"] == "fail" and checks[".env"]["fix"] == f"chmod 600 {env}"


def test_gpus_container_refused_by_an_engine_without_nvidia_runtime_leaves_nothing(docker_client, images):
    """doctor starts it only where Docker has an NVIDIA runtime; on this engine the refusal to start
    it is the evidence that the create, start and remove steps work and clean up."""

    # Only doctor's own kind of container: another pytest-xdist worker's containers come and go meanwhile.
    def probes() -> set[str]:
        found = docker_client.containers.list(all=True, filters={"ancestor": images["base"]}, ignore_removed=True)
        return {c.id for c in found if (c.attrs["Config"].get("Entrypoint") or [None])[0] == "nvidia-smi"}

    before = probes()
    result = gpu_container_facts(Engine(), ImageFacts("vLLM", "VLLM_IMAGE", images["base"], present=True))
    check = check_gpu_container(result)
    assert check.status == "fail" and "could not select device driver" in check.finding, check
    assert probes() == before

"""`controller doctor`'s conclusions from recorded facts: nvidia-smi outputs of an RTX 3060, a T4 and
A100s (tests/unit/data/nvidia-smi/), Docker and Compose versions, images, port, disk and `.env`.
The same checks against the real engine: tests/integration/test_doctor.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from controller.cli.doctor import DEFAULT_MODEL, default_model
from controller.config.catalog import build_profile, load_catalog
from controller.config.site import SiteConfig
from controller.doctor.checks import as_dict, diagnose, failed
from controller.doctor.host_checks import offline_checks
from controller.doctor.records import (
    FAIL,
    OK,
    WARN,
    ContainerGpuFacts,
    DiskFacts,
    DockerFacts,
    EnvFacts,
    Facts,
    ImageFacts,
    NvidiaFacts,
    PortFacts,
)
from controller.journal import Deployment, Event, JournalStore
from controller.planner.engine import GIB
from controller.runtime.gpu import parse_nvidia_smi, parse_nvidia_smi_banner
from tests.unit._support import CPU_PROFILE, fields_of
from tests.unit.cli_support import nothing_written, run_cli

DATA = Path(__file__).parent / "data" / "nvidia-smi"
CATALOG = load_catalog()
CPU = build_profile("tiny-cpu", {**CPU_PROFILE, "model": "/srv/models/tiny"}, "test catalog")
# A profile in bfloat16, as a user catalog may set it: the one that changes on pre-Ampere cards.
BF16 = build_profile("deepseek-bf16", {**fields_of(CATALOG.get("deepseek-1.5b")),
                                       "dtype": "bfloat16"}, "test catalog")  # fmt: skip
PROFILES = [*CATALOG.profiles(), CPU, BF16]


def recorded(card: str) -> NvidiaFacts:
    gpus = parse_nvidia_smi((DATA / f"{card}.csv").read_text())
    driver, cuda = parse_nvidia_smi_banner((DATA / f"{card}.txt").read_text())
    return NvidiaFacts("/usr/bin/nvidia-smi", gpus, driver, cuda)


NO_GPU = NvidiaFacts(smi_path=None)
HEALTHY_DOCKER = DockerFacts("27.3.1", None, True, "v2.40.3", None)
ENV = EnvFacts(Path("/srv/stack/.env"), exists=True, mode=0o600, hf_token_set=True)


def machine(nvidia: NvidiaFacts = NO_GPU, **changes) -> Facts:
    """A machine where everything but the GPU is fine; `changes` spoils one part."""
    facts = Facts(
        nvidia=nvidia,
        docker=HEALTHY_DOCKER,
        env=ENV,
        images=[ImageFacts("vLLM", "VLLM_IMAGE", "vllm/vllm-openai:v0.32.0", present=True),
                ImageFacts("Open WebUI", "WEBUI_IMAGE", "ghcr.io/open-webui/open-webui:v0.12.4", present=True)],
        port=PortFacts(7860, "0.0.0.0"),
        disk=DiskFacts(Path("/srv/hf"), Path("/srv/hf"), 500 * GIB, model_cached=False, local_model_found=True),
        gpu_container=ContainerGpuFacts("vllm/vllm-openai:v0.32.0", ran=True,
                                        output="GPU 0: NVIDIA GeForce RTX 3060 (UUID: GPU-5f1c0d52)\n"),
    )  # fmt: skip
    return replace(facts, **changes)


def run(model: str, facts: Facts) -> dict:
    profile = next(p for p in PROFILES if p.name == model)
    return {c.name: c for c in diagnose(profile, facts, catalog_profiles=PROFILES)}


# ----- recorded nvidia-smi outputs --------------------------------------------------------


def test_banners_give_driver_and_cuda_versions():
    assert parse_nvidia_smi_banner((DATA / "rtx3060.txt").read_text()) == ("535.104.05", "12.2")
    assert parse_nvidia_smi_banner((DATA / "t4-driver470.txt").read_text()) == ("470.223.02", "11.4")
    assert parse_nvidia_smi_banner((DATA / "a100-80gb-x2.txt").read_text()) == ("550.54.15", "12.4")
    assert parse_nvidia_smi_banner("NVIDIA-SMI has failed because it couldn't communicate with the driver") == (
        None,
        None,
    )


@pytest.mark.parametrize(
    ("card", "model", "dtype", "quantization", "bf16_and_marlin"),
    [
        ("rtx3060", "llama3-8b-gptq", "half", "gptq_marlin", True),
        ("rtx3060", "llama3-8b-awq", "half", "awq_marlin", True),
        ("rtx3060", "deepseek-bf16", "bfloat16", None, True),
        # Compute 7.5: no bfloat16 (half instead) and no Marlin kernels (the plain ones instead).
        ("t4", "llama3-8b-gptq", "half", "gptq", False),
        ("t4", "llama3-8b-awq", "half", "awq", False),
        ("t4", "deepseek-bf16", "half", None, False),
        ("a100-40gb", "llama3-8b-gptq", "half", "gptq_marlin", True),
        ("a100-40gb", "deepseek-bf16", "bfloat16", None, True),
    ],
)
def test_gpu_conclusions_per_card_and_profile(card, model, dtype, quantization, bf16_and_marlin):
    check = run(model, machine(recorded(card)))["GPU 0"]
    assert check.status == OK
    assert (check.details["dtype"], check.details["quantization"]) == (dtype, quantization)
    assert check.details["bfloat16"] is check.details["marlin"] is bf16_and_marlin
    assert f"--dtype {dtype}" in check.finding
    assert ("no bfloat16, no Marlin kernels (need 8.0)" in check.finding) is not bf16_and_marlin


def test_t4_says_what_changes_for_a_bfloat16_profile():
    finding = run("deepseek-bf16", machine(recorded("t4")))["GPU 0"].finding
    assert finding.startswith("Tesla T4, 15.0 GiB (14.6 free), compute 7.5: no bfloat16, no Marlin kernels")
    assert "'deepseek-bf16' runs with --dtype half instead of bfloat16" in finding


@pytest.mark.parametrize(
    ("card", "model", "status"),
    [
        ("rtx3060", "deepseek-1.5b", OK),
        ("rtx3060", "llama3-8b-gptq", OK),
        ("rtx3060", "llama3-8b", FAIL),  # 16 GB of FP16 weights on a 12 GiB card
        ("t4", "llama3-8b-gptq", OK),
        ("t4", "llama3-8b", FAIL),  # 15 GiB
        ("a100-40gb", "llama3-8b", OK),
        ("a100-80gb-x2", "llama3-8b", OK),
    ],
)
def test_memory_fit_per_card_and_profile(card, model, status):
    checks = run(model, machine(recorded(card)))
    assert checks["GPU memory"].status == status
    assert checks["NVIDIA driver"].status == OK
    assert failed(list(checks.values())) is (status == FAIL)
    if status == FAIL:
        assert "does not fit" in checks["GPU memory"].finding and checks["GPU memory"].fix


def test_every_gpu_is_listed_and_the_first_is_planned_for():
    checks = run("llama3-8b", machine(recorded("a100-80gb-x2")))
    assert checks["NVIDIA driver"].finding == "driver 550.54.15, CUDA 12.4, 2 GPU(s)"
    assert [checks["GPU 0"].details["memory_gib"], checks["GPU 1"].details["memory_gib"]] == [80.0, 80.0]
    assert checks["GPU memory"].details["gpu_memory_gib"] == 80.0


def test_gpu_memory_held_by_another_process_is_a_warning():
    busy = recorded("rtx3060")
    busy = replace(busy, gpus=[replace(busy.gpus[0], free_bytes=4 * GIB)])
    check = run("llama3-8b-gptq", machine(busy))["GPU memory"]
    assert check.status == WARN and "only 4.0 GiB is free" in check.finding


def test_a_driver_without_cuda_12_fails_for_a_gpu_profile():
    check = run("llama3-8b-gptq", machine(recorded("t4-driver470")))["NVIDIA driver"]
    assert check.status == FAIL
    assert "CUDA 11.4" in check.finding and "525.60.13" in check.fix


# ----- no GPU -----------------------------------------------------------------------------


def test_no_gpu_is_fine_for_a_cpu_profile():
    checks = run("tiny-cpu", machine(NO_GPU, gpu_container=None))
    gpu = checks["NVIDIA driver"]
    assert gpu.status == OK
    assert gpu.finding == "no NVIDIA GPU on this machine (nvidia-smi is not installed); 'tiny-cpu' runs on the CPU"
    # The runtime and the --gpus container are not checked for a cpu profile.
    assert "NVIDIA runtime" not in checks and "GPU in a container" not in checks
    assert not failed(list(checks.values()))


def test_no_gpu_fails_a_gpu_profile_and_names_the_cpu_profiles():
    checks = run("deepseek-1.5b", machine(NO_GPU, docker=replace(HEALTHY_DOCKER, nvidia_runtime=False),
                                          gpu_container=None))  # fmt: skip
    gpu = checks["NVIDIA driver"]
    assert gpu.status == FAIL
    assert gpu.finding.startswith("no NVIDIA GPU on this machine")
    assert gpu.fix == "use a cpu profile: tiny-cpu (e.g. `controller doctor tiny-cpu`)"
    assert checks["NVIDIA runtime"].status == FAIL and "nvidia-ctk runtime configure" in checks["NVIDIA runtime"].fix
    assert "GPU 0" not in checks and "GPU memory" not in checks


def test_no_gpu_and_no_cpu_profile_says_how_to_add_one():
    profile = CATALOG.get("deepseek-1.5b")
    (gpu, *_) = diagnose(profile, machine(NO_GPU), catalog_profiles=CATALOG.profiles())
    assert gpu.status == FAIL and "accelerator: cpu" in gpu.fix


def test_nvidia_smi_that_fails_points_at_the_driver():
    broken = NvidiaFacts("/usr/bin/nvidia-smi", error="NVIDIA-SMI has failed because it couldn't communicate")
    check = run("llama3-8b-gptq", machine(broken))["NVIDIA driver"]
    assert check.status == FAIL and check.fix.startswith("load the NVIDIA driver")
    assert run("tiny-cpu", machine(broken))["NVIDIA driver"].status == OK


# ----- Docker, Compose, images, the --gpus container ---------------------------------------


@pytest.mark.parametrize(
    ("docker", "name", "status"),
    [
        (replace(HEALTHY_DOCKER, engine_version="20.10.24+dfsg1"), "Docker engine", OK),
        (replace(HEALTHY_DOCKER, engine_version="19.03.15"), "Docker engine", FAIL),
        (DockerFacts(engine_error="cannot reach the Docker engine", compose_version="v2.40.3"), "Docker engine", FAIL),
        (replace(HEALTHY_DOCKER, compose_version="v2.21.0"), "Compose v2", FAIL),
        (replace(HEALTHY_DOCKER, compose_version="2.22.0"), "Compose v2", OK),
        (replace(HEALTHY_DOCKER, compose_version=None, compose_error="not installed"), "Compose v2", FAIL),
    ],
)
def test_engine_and_compose_against_the_minimums(docker, name, status):
    check = run("tiny-cpu", machine(docker=docker))[name]
    assert check.status == status
    assert (check.fix is not None) is (status == FAIL)


def test_an_engine_that_does_not_answer_skips_the_runtime_check():
    checks = run("llama3-8b-gptq", machine(recorded("rtx3060"), docker=DockerFacts(engine_error="refused")))
    assert checks["Docker engine"].status == FAIL and "NVIDIA runtime" not in checks


@pytest.mark.parametrize(
    ("image", "status"),
    [
        (ImageFacts("vLLM", "VLLM_IMAGE", "vllm/vllm-openai:v0.32.0", present=False, pullable=True), WARN),
        (
            ImageFacts(
                "vLLM",
                "VLLM_IMAGE",
                "vllm/vllm-openai:v0.32.0",
                present=False,
                pullable=False,
                error='Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host',
            ),
            FAIL,
        ),
    ],
)
def test_a_missing_image(image, status):
    check = run("tiny-cpu", machine(images=[image]))["vLLM image"]
    assert check.status == status
    if status == FAIL:
        assert check.finding.endswith("its registry does not answer (no such host)") and "VLLM_IMAGE" in check.fix
        assert check.details["error"].startswith('Get "https://registry-1.docker.io/v2/"')


def test_gpu_container_results():
    rtx = recorded("rtx3060")
    seen = run("llama3-8b-gptq", machine(rtx))["GPU in a container"]
    assert seen.status == OK and "sees 1 GPU(s): GPU 0: NVIDIA GeForce RTX 3060" in seen.finding
    blind = ContainerGpuFacts("vllm/vllm-openai:v0.32.0", ran=True, error="could not select device driver")
    assert run("llama3-8b-gptq", machine(rtx, gpu_container=blind))["GPU in a container"].status == FAIL
    absent = ContainerGpuFacts("vllm/vllm-openai:v0.32.0", ran=False)
    assert run("llama3-8b-gptq", machine(rtx, gpu_container=absent))["GPU in a container"].status == WARN


# ----- port, disk, .env ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "status", "words"),
    [
        (PortFacts(7860, "0.0.0.0"), OK, "is free"),
        (PortFacts(7860, "0.0.0.0", ours=["llmstack-webui-1"]), OK, "held by this stack (llmstack-webui-1)"),
        (PortFacts(7860, "0.0.0.0", foreign=["grafana"]), FAIL, "published by container grafana"),
        (PortFacts(7860, "0.0.0.0", program=True), FAIL, "in use by a program outside Docker"),
    ],
)
def test_web_ui_port(port, status, words):
    check = run("tiny-cpu", machine(port=port))["Web UI port"]
    assert check.status == status and words in check.finding


def test_disk_for_weights():
    need = 3.55e9  # deepseek-1.5b in half
    short = DiskFacts(Path("/srv/hf"), Path("/srv"), int(need), model_cached=False)
    check = run("deepseek-1.5b", machine(recorded("rtx3060"), disk=short))["disk for weights"]
    assert check.status == FAIL and "HF_CACHE_DIR" in check.fix
    cached = replace(short, model_cached=True)
    assert run("deepseek-1.5b", machine(recorded("rtx3060"), disk=cached))["disk for weights"].status == OK
    roomy = replace(short, free_bytes=int(need * 1.2))
    assert run("deepseek-1.5b", machine(recorded("rtx3060"), disk=roomy))["disk for weights"].status == OK


def test_disk_for_a_local_model():
    found = run("tiny-cpu", machine())["disk for weights"]
    assert found.status == OK and "serves the local directory /srv/models/tiny; nothing to download" in found.finding
    gone = replace(machine().disk, local_model_found=False)
    missing = run("tiny-cpu", machine(disk=gone))["disk for weights"]
    assert missing.status == FAIL and "/srv/models/tiny does not exist" in missing.finding


def test_env_file_readable_by_others_fails():
    check = run("tiny-cpu", machine(env=replace(ENV, mode=0o644)))[".env"]
    assert check.status == FAIL and check.fix == "chmod 600 /srv/stack/.env"


def test_missing_secrets_warn_and_no_env_file_is_fine():
    checks = run("tiny-cpu", machine(env=replace(ENV, missing_secrets=["VLLM_API_KEY"])))
    assert checks["secrets"].status == WARN and "VLLM_API_KEY" in checks["secrets"].finding
    fresh = run("tiny-cpu", machine(env=EnvFacts(Path("/srv/stack/.env"), exists=False)))
    assert fresh[".env"].status == OK and "secrets" not in fresh


def test_invalid_settings_fail_with_their_message():
    env = replace(ENV, settings_error="/srv/stack/.env line 3: WEBUI_PORT='http': is not a port",
                  settings_hint=None)  # fmt: skip
    check = run("tiny-cpu", machine(env=env, images=[], port=None, disk=None))["settings"]
    assert check.status == FAIL and "WEBUI_PORT" in check.finding and check.fix == "correct /srv/stack/.env"


def test_gated_model_needs_hf_token():
    checks = run("llama3-8b", machine(recorded("a100-40gb"), env=replace(ENV, hf_token_set=False)))
    assert checks["HF_TOKEN"].status == FAIL and "HF_TOKEN=" in checks["HF_TOKEN"].fix
    assert "HF_TOKEN" not in run("llama3-8b-gptq", machine(recorded("a100-40gb")))


# ----- offline, the summary, the model to check ---------------------------------------------


def test_offline_checks_need_images_and_cached_weights():
    profile = CATALOG.get("deepseek-1.5b")
    assert offline_checks(profile, machine(), offline=False) == []
    checks = {c.name: c for c in offline_checks(profile, machine(), offline=True)}
    assert checks["offline: images"].status == OK and checks["offline: weights"].status == FAIL
    gone = machine(images=[ImageFacts("vLLM", "VLLM_IMAGE", "vllm/vllm-openai:v0.32.0", present=False)],
                   disk=DiskFacts(Path("/srv/hf"), Path("/srv/hf"), GIB, model_cached=True))  # fmt: skip
    checks = {c.name: c for c in offline_checks(profile, gone, offline=True)}
    assert checks["offline: images"].status == FAIL and checks["offline: weights"].status == OK
    assert "controller bundle create deepseek-1.5b" in checks["offline: images"].fix


def test_offline_setting_reaches_the_checks(tmp_path):
    from controller.config.site import SiteConfig
    from controller.doctor.facts import env_facts, model_in_cache

    env = tmp_path / ".env"
    env.write_text("OFFLINE=true\nHF_CACHE_DIR=" + str(tmp_path / "hf") + "\n")
    facts, settings = env_facts(SiteConfig(root=tmp_path, env_file=env))
    assert facts.offline and settings.offline
    env.write_text("OFFLINE=false\n")
    assert not env_facts(SiteConfig(root=tmp_path, env_file=env))[0].offline
    # A snapshot directory without config.json is not a model `up` could serve offline.
    snapshot = tmp_path / "hf" / "hub" / "models--org--m" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    assert not model_in_cache(tmp_path / "hf", "org/m")
    (snapshot / "config.json").write_text("{}")
    assert model_in_cache(tmp_path / "hf", "org/m")


def test_summary_counts_and_verdict():
    checks = diagnose(CATALOG.get("llama3-8b"), machine(recorded("rtx3060")), catalog_profiles=PROFILES)
    data = as_dict(CATALOG.get("llama3-8b"), checks, "named")
    assert data["ok"] is False and data["counts"]["fail"] == 1
    assert sum(data["counts"].values()) == len(data["checks"])
    assert {c["status"] for c in data["checks"]} <= {OK, WARN, FAIL}


def test_model_to_check_defaults_to_running_then_last_started_then_default(tmp_path):
    site = SiteConfig(root=tmp_path, env_file=tmp_path / ".env")
    assert default_model(site) == (DEFAULT_MODEL, "the default")
    store = JournalStore(site.state_dir)
    started = Event("up", "llama3-8b-gptq", "ok", "t0", "t1")
    store.update(lambda j: j.record(started))
    store.update(lambda j: j.record(Event("switch", "llama3-8b", "failed", "t2", "t3")))
    assert default_model(site) == ("llama3-8b-gptq", "the last model started")
    store.update(lambda j: setattr(j, "active", Deployment("deepseek-1.5b", "deepseek", "t4", "services: {}")))
    assert default_model(site) == ("deepseek-1.5b", "the running model")


def test_unknown_model_is_bad_input_and_nothing_is_read_or_written(tmp_path):
    done = run_cli(tmp_path, "doctor", "nope", "--json")
    assert done.returncode == 2 and done.stdout == ""
    assert "unknown model 'nope'" in done.stderr and "deepseek-1.5b" in done.stderr
    assert nothing_written(tmp_path) and not (tmp_path / ".controller").exists()


@pytest.mark.parametrize(
    ("mode", "days_left", "status", "said"),
    [("off", None, "warn", "plain HTTP"), ("files", 12, "warn", "expires in 12 days"),
     ("files", 200, "ok", "https://llm.example.lan"), ("internal", None, "ok", "TLS=internal")],
)  # fmt: skip
def test_https_check_warns_on_plain_http_and_a_certificate_near_expiry(tmp_path, mode, days_left, status, said):
    from controller.doctor.host_checks import check_tls

    env = EnvFacts(tmp_path / ".env", True, tls_mode=mode, tls_host="llm.example.lan", tls_days_left=days_left)
    check = check_tls(env)
    assert check.status == status and said in check.finding

"""The Kubernetes target: one serving spec, rendered as a kustomize directory (no cluster needed).

Schema validation with the real kubectl and kubernetes-validate is in
tests/integration/test_k8s_manifests.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.config.catalog import load_catalog
from controller.config.site import SiteConfig
from controller.config.tls_settings import TlsSettings
from controller.deploy.compose_file import render_compose
from controller.deploy.k8s_manifests import SECRET_ENV_FILE, gpu_count, render_manifests
from controller.deploy.k8s_settings import K8sSettings, load_k8s_settings, parse_k8s_settings
from controller.deploy.k8s_tls import ingress_tls
from controller.deploy.spec import build_spec
from controller.errors import PreflightError, SettingsError
from controller.lifecycle.render_k8s import GITIGNORE, render_k8s, write_k8s_dir
from controller.output_dir import MARKER
from tests.unit._support import BUILTIN_NAMES, DUMMY_SECRETS, TINY_ARCH, fixed_settings, write_catalog

GOLDEN = Path(__file__).parent / "golden" / "k8s"
GOLDEN_FILES = ["kustomization.yaml", "namespace.yaml", "vllm.yaml", "webui.yaml"]
HF_TOKEN = "hf_dummyTokenValue0004"


def manifests(name: str, catalog=None, load_timeout_s: float = 1800, settings=None, **k8s: str) -> dict[str, str]:
    profile = (catalog or load_catalog()).get(name)
    spec = build_spec(profile, settings or fixed_settings(), None)
    settings = parse_k8s_settings(k8s, {}, "test")
    return render_manifests(spec, settings, load_timeout_s=load_timeout_s,
                            gpus=gpu_count(spec, profile.tensor_parallel_size),
                            tls=ingress_tls(TlsSettings(), settings))  # fmt: skip


def objects(files: dict[str, str]) -> dict[tuple[str, str], dict]:
    """Every object of the directory by (kind, name)."""
    found = {}
    for name, text in files.items():
        for doc in yaml.safe_load_all(text):
            if doc and name != "kustomization.yaml":
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def pod(files: dict[str, str], component: str = "vllm") -> dict:
    return objects(files)[("Deployment", component)]["spec"]["template"]["spec"]


def container(files: dict[str, str], component: str = "vllm") -> dict:
    return pod(files, component)["containers"][0]


def project(tmp_path: Path, env: str = "") -> SiteConfig:
    (tmp_path / ".env").write_text(env, encoding="utf-8")
    return SiteConfig(root=tmp_path, env_file=tmp_path / ".env")


@pytest.fixture(autouse=True)
def _no_k8s_environment(monkeypatch):
    for key in [*K8sSettings.model_fields, *(f.alias for f in K8sSettings.model_fields.values())]:
        monkeypatch.delenv(str(key), raising=False)
    for key in ("HF_TOKEN", "GPU_MEMORY_GIB", "DEADLINE_WEIGHTS_LOAD_S", *DUMMY_SECRETS):
        monkeypatch.delenv(key, raising=False)


# ----- one spec, two renderers ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["deepseek-1.5b", "llama3-8b-gptq"])
def test_manifests_match_reviewed_golden_files(name):
    files = manifests(name)
    if os.environ.get("UPDATE_GOLDEN"):
        (GOLDEN / name).mkdir(parents=True, exist_ok=True)
        for file, text in files.items():
            (GOLDEN / name / file).write_text(text, encoding="utf-8")
    assert sorted(files) == sorted(p.name for p in (GOLDEN / name).iterdir())
    for file, text in files.items():
        assert text == (GOLDEN / name / file).read_text(encoding="utf-8"), f"{name}/{file} differs from the golden file"


@pytest.mark.parametrize("capability", [None, (7, 5), (9, 0)])
@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_deployment_args_equal_the_compose_command_for_the_same_profile(name, capability):
    profile = load_catalog().get(name)
    compose = yaml.safe_load(render_compose(profile, fixed_settings(), capability))
    spec = build_spec(profile, fixed_settings(), capability)
    files = render_manifests(spec, K8sSettings(), load_timeout_s=1800, gpus=1)
    assert container(files)["args"] == compose["services"]["vllm"]["command"]


@pytest.mark.parametrize("offline", ["false", "true"])
def test_webui_gets_the_compose_environment_with_secrets_as_secret_references(offline):
    settings = fixed_settings(OFFLINE=offline)
    compose_env = yaml.safe_load(render_compose(load_catalog().get("deepseek-1.5b"), settings))["services"]["webui"][
        "environment"
    ]
    env = {e["name"]: e for e in container(manifests("deepseek-1.5b", settings=settings), "webui")["env"]}
    assert ("OFFLINE_MODE" in env) == (offline == "true")
    # Neither sets DEFAULT_MODELS: the default model goes through the admin API, so a switch leaves webui alone.
    # Compose lists both blue-green slots; a cluster runs one vLLM Service.
    key = "${VLLM_API_KEY:?set VLLM_API_KEY in .env}"
    urls = "http://vllm:8000/v1;http://vllm-b:8000/v1"
    # A Service's address outlives its pods, so only Compose turns off Open WebUI's DNS cache.
    compose_slots = {"OPENAI_API_BASE_URLS": urls, "OPENAI_API_KEYS": f"{key};{key}", "AIOHTTP_POOL_DNS_TTL": "0"}
    assert {name: compose_env.pop(name) for name in compose_slots} == compose_slots
    assert set(env) == set(compose_env) | {"OPENAI_API_BASE_URL", "OPENAI_API_KEY"}
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "VLLM_API_KEY"
    for key, value in compose_env.items():
        if value.startswith("${"):
            secret_key = value[2:].split(":")[0]
            assert env[key]["valueFrom"]["secretKeyRef"]["key"] == secret_key
        else:
            assert env[key]["value"] == value
    assert env["OPENAI_API_BASE_URL"]["value"] == "http://vllm:8000/v1"
    assert ("Service", "vllm") in objects(manifests("deepseek-1.5b"))  # the name that makes the URL right


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_no_secret_value_appears_in_any_rendered_file(tmp_path, name):
    site = project(tmp_path, "".join(f"{k}='{v}'\n" for k, v in {**DUMMY_SECRETS, "HF_TOKEN": HF_TOKEN}.items()))
    result = render_k8s(site, load_catalog(), name)
    out = Path(result["out_dir"])
    for path in out.iterdir():
        if path.name != SECRET_ENV_FILE:
            text = path.read_text(encoding="utf-8")
            for secret in [*DUMMY_SECRETS.values(), HF_TOKEN]:
                assert secret not in text, f"{path.name} holds a secret"
    secrets = (out / SECRET_ENV_FILE).read_text(encoding="utf-8")
    assert all(f"{k}={v}\n" in secrets for k, v in DUMMY_SECRETS.items()) and f"HF_TOKEN={HF_TOKEN}\n" in secrets
    assert stat.S_IMODE((out / SECRET_ENV_FILE).stat().st_mode) == 0o600
    assert f"/{SECRET_ENV_FILE}" in (out / GITIGNORE).read_text(encoding="utf-8").splitlines()


def test_a_switch_changes_only_vllm_yaml():
    before, after = manifests("deepseek-1.5b"), manifests("llama3-8b-gptq")
    assert sorted(before) == sorted(after)
    assert [name for name in before if before[name] != after[name]] == ["vllm.yaml"]


# ----- vLLM on the cluster ------------------------------------------------------------------------


def test_gpu_request_and_limit_follow_tensor_parallel_size(tmp_path):
    catalog = load_catalog(
        write_catalog(tmp_path / "c.yaml", {"llama3-8b": {"tensor_parallel_size": 2}}),
    )
    resources = container(manifests("llama3-8b", catalog))["resources"]
    assert resources == {"requests": {"nvidia.com/gpu": 2}, "limits": {"nvidia.com/gpu": 2}}
    assert container(manifests("deepseek-1.5b"))["resources"]["limits"] == {"nvidia.com/gpu": 1}


def test_one_replica_recreates_and_more_replicas_never_surge_and_share_the_cache():
    one = objects(manifests("deepseek-1.5b"))
    assert one[("Deployment", "vllm")]["spec"]["strategy"] == {"type": "Recreate"}
    assert one[("PersistentVolumeClaim", "vllm-model-cache")]["spec"]["accessModes"] == ["ReadWriteOnce"]
    three = objects(manifests("deepseek-1.5b", VLLM_REPLICAS="3"))
    deployment = three[("Deployment", "vllm")]["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert three[("PersistentVolumeClaim", "vllm-model-cache")]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert three[("Deployment", "webui")]["spec"]["replicas"] == 1
    assert three[("Deployment", "webui")]["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(("deadline", "failures"), [(1800, 180), (3600, 360), (95, 10)])
def test_startup_probe_window_comes_from_the_load_deadline(deadline, failures):
    vllm = container(manifests("deepseek-1.5b", load_timeout_s=deadline))
    assert vllm["startupProbe"]["failureThreshold"] == failures
    assert vllm["startupProbe"]["periodSeconds"] * failures >= deadline
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"] == {"path": "/health", "port": "http"}  # /health is not behind the key


def test_deadline_setting_reaches_the_startup_probe(tmp_path):
    render_k8s(project(tmp_path, "DEADLINE_WEIGHTS_LOAD_S=7200\n"), load_catalog(), "deepseek-1.5b")
    deployment = yaml.safe_load_all((tmp_path / "deploy/k8s/vllm.yaml").read_text(encoding="utf-8"))
    vllm = next(d for d in deployment if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert vllm["startupProbe"]["failureThreshold"] == 720


def test_shm_cache_service_links_and_security_context():
    spec = pod(manifests("deepseek-1.5b"))
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "vllm-model-cache"
    assert spec["enableServiceLinks"] is False  # else the Service `vllm` injects VLLM_PORT=tcp://...
    assert spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


def test_node_selector_tolerations_runtime_class_and_storage_class():
    files = manifests(
        "deepseek-1.5b",
        K8S_NODE_SELECTOR="nvidia.com/gpu.present=true,pool=gpu",
        K8S_TOLERATIONS="nvidia.com/gpu:NoSchedule,dedicated=llm:NoExecute",
        K8S_RUNTIME_CLASS="nvidia",
        K8S_STORAGE_CLASS="fast-ssd",
        K8S_MODEL_CACHE_SIZE="200Gi",
    )
    spec = pod(files)
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true", "pool": "gpu"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoExecute"},
    ]
    assert spec["runtimeClassName"] == "nvidia"
    cache = objects(files)[("PersistentVolumeClaim", "vllm-model-cache")]["spec"]
    assert cache["storageClassName"] == "fast-ssd" and cache["resources"]["requests"]["storage"] == "200Gi"
    assert "nodeSelector" not in pod(files, "webui")


def test_only_webui_pods_reach_vllm():
    policy = objects(manifests("deepseek-1.5b"))[("NetworkPolicy", "vllm-from-webui-only")]["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "vllm"
    assert policy["ingress"] == [
        {
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {"app.kubernetes.io/name": "webui", "app.kubernetes.io/instance": "llmstack"}
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": 8000}],
        }
    ]
    assert "Egress" not in policy["policyTypes"]  # downloads from Hugging Face


def _local_catalog(tmp_path: Path):
    profile = {
        "model": "/srv/models/tiny",
        "served_model_name": "tiny",
        "max_model_len": 2048,
        "architecture": TINY_ARCH,
    }
    return load_catalog(write_catalog(tmp_path / "c.yaml", {"tiny-local": profile}))


def test_local_model_is_a_read_only_host_path_or_claim_offline_without_egress(tmp_path):
    catalog = _local_catalog(tmp_path)
    host = manifests("tiny-local", catalog)
    volumes = {v["name"]: v for v in pod(host)["volumes"]}
    assert volumes["local-model"]["hostPath"] == {"path": "/srv/models/tiny", "type": "Directory"}
    vllm = container(host)
    assert {"name": "local-model", "mountPath": "/models/tiny-local", "readOnly": True} in vllm["volumeMounts"]
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in vllm["env"]
    assert objects(host)[("NetworkPolicy", "vllm-from-webui-only")]["spec"]["egress"] == []
    claim = {v["name"]: v for v in pod(manifests("tiny-local", catalog, K8S_LOCAL_MODEL_CLAIM="models"))["volumes"]}
    assert claim["local-model"] == {
        "name": "local-model",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    }


def test_offline_tells_vllm_never_to_reach_out_and_gives_it_no_egress():
    online = manifests("deepseek-1.5b")
    assert "HF_HUB_OFFLINE" not in {e["name"] for e in container(online)["env"]}
    assert "egress" not in objects(online)[("NetworkPolicy", "vllm-from-webui-only")]["spec"]
    offline = manifests("deepseek-1.5b", settings=fixed_settings(OFFLINE="true"))
    env = {e["name"]: e.get("value") for e in container(offline)["env"]}
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    policy = objects(offline)[("NetworkPolicy", "vllm-from-webui-only")]["spec"]
    assert policy["egress"] == [] and policy["policyTypes"] == ["Ingress", "Egress"]


def _adapter(directory: Path, r: int = 8) -> None:
    directory.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": r, "base_model_name_or_path": "tiny", "target_modules": ["q_proj"]}
    (directory / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")


def test_local_lora_adapters_are_read_only_host_paths_where_vllm_looks_for_them(tmp_path):
    _adapter(tmp_path / "adapters" / "zh")
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    local = {"model": "./models/tiny", "served_model_name": "tiny", "max_model_len": 2048, "architecture": TINY_ARCH}
    profiles = {
        "tiny-zh": {**local, "lora_adapters": {"zh": "./adapters/zh"}},
        "tiny-hub": {**local, "lora_adapters": {"zh": "someone/tiny-zh-lora"}, "max_lora_rank": 8},
    }
    catalog = load_catalog(write_catalog(tmp_path / "c.yaml", profiles))
    files = manifests("tiny-zh", catalog)
    vllm = container(files)
    modules = vllm["args"][vllm["args"].index("--lora-modules") + 1 :]
    assert modules == ["zh=/adapters/zh"]
    mounts = {m["mountPath"]: m for m in vllm["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(files)["volumes"]}
    mount = mounts["/adapters/zh"]
    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["hostPath"] == {"path": str(tmp_path / "adapters" / "zh"), "type": "Directory"}
    # a local model and local adapters: vLLM needs no way out; an adapter from the Hub keeps egress
    assert objects(files)[("NetworkPolicy", "vllm-from-webui-only")]["spec"]["egress"] == []
    hub = objects(manifests("tiny-hub", catalog))[("NetworkPolicy", "vllm-from-webui-only")]["spec"]
    assert "egress" not in hub


def test_cpu_profile_requests_no_gpu_and_sets_kv_space(tmp_path):
    profile = {"model": "org/tiny", "served_model_name": "tiny", "max_model_len": 2048, "accelerator": "cpu",
               "dtype": "float32", "cpu_kv_cache_gib": 2, "architecture": TINY_ARCH}  # fmt: skip
    catalog = load_catalog(write_catalog(tmp_path / "c.yaml", {"tiny-cpu": profile}))
    vllm = container(manifests("tiny-cpu", catalog))
    assert "resources" not in vllm
    assert {"name": "VLLM_CPU_KVCACHE_SPACE", "value": "2"} in vllm["env"]


# ----- Open WebUI, ingress, secrets -----------------------------------------------------------------


def test_ingress_only_with_a_host_and_tls_when_given():
    assert "ingress.yaml" not in manifests("deepseek-1.5b")
    files = manifests("deepseek-1.5b", K8S_INGRESS_HOST="chat.example.com", K8S_INGRESS_TLS_SECRET="chat-tls",
                      K8S_INGRESS_CLASS="nginx")  # fmt: skip
    ingress = objects(files)[("Ingress", "webui")]["spec"]
    assert ingress["rules"][0]["host"] == "chat.example.com"
    assert ingress["tls"] == [{"hosts": ["chat.example.com"], "secretName": "chat-tls"}]
    assert ingress["ingressClassName"] == "nginx"
    assert "ingress.yaml" in yaml.safe_load(files["kustomization.yaml"])["resources"]


def test_a_cert_manager_issuer_annotates_the_ingress_and_names_the_secret_it_writes():
    files = manifests("deepseek-1.5b", K8S_INGRESS_HOST="chat.example.com", K8S_CERT_ISSUER="letsencrypt")
    ingress = objects(files)[("Ingress", "webui")]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert ingress["spec"]["tls"] == [{"hosts": ["chat.example.com"], "secretName": "llmstack-tls"}]


def test_existing_secret_replaces_the_generator_and_the_env_file(tmp_path):
    files = manifests("deepseek-1.5b", K8S_EXISTING_SECRET="team-llm-secrets")
    assert "secretGenerator" not in yaml.safe_load(files["kustomization.yaml"])
    refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in container(files, "webui")["env"] if "valueFrom" in e]
    assert set(refs) == {"team-llm-secrets"}
    out = tmp_path / "out"
    write_k8s_dir(out, manifests("deepseek-1.5b"), "VLLM_API_KEY=x\n")
    write_k8s_dir(out, files, None)
    assert not (out / SECRET_ENV_FILE).exists()  # the secrets now live in the cluster's Secret only


def test_a_file_no_longer_rendered_is_removed(tmp_path):
    # A directory with a file the controller did not write is refused: test_k8s_output_dir.py.
    out = tmp_path / "out"
    write_k8s_dir(out, manifests("deepseek-1.5b", K8S_INGRESS_HOST="chat.example.com"), "A=b\n")
    changed = write_k8s_dir(out, manifests("deepseek-1.5b"), "A=b\n")
    assert changed == ["ingress.yaml", "kustomization.yaml"] and not (out / "ingress.yaml").exists()
    assert write_k8s_dir(out, manifests("deepseek-1.5b"), "A=b\n") == []  # unchanged: nothing written


# ----- settings and validation before any write -------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("VLLM_REPLICAS", "0", "greater than or equal to 1"),
        ("VLLM_REPLICAS", "two", "whole number"),
        ("VLLM_REPLICAS", "65", "less than or equal to 64"),
        ("K8S_NAMESPACE", "LLM_Stack", "invalid format"),
        ("K8S_MODEL_CACHE_SIZE", "50GB", "invalid format"),
        ("K8S_WEBUI_DATA_SIZE", "-5Gi", "invalid format"),
        ("K8S_NODE_SELECTOR", "gpu", "key=value"),
        ("K8S_NODE_SELECTOR", "a=b c", "key=value"),
        ("K8S_TOLERATIONS", "nvidia.com/gpu:Never", "Effect one of"),
        ("K8S_RUNTIME_CLASS", "Nvidia Runtime", "invalid format"),
        ("K8S_INGRESS_HOST", "chat.example.com/path", "invalid format"),
        ("K8S_EXISTING_SECRET", "a\nb", "invalid format"),
    ],
)
def test_bad_k8s_setting_is_refused_naming_key_and_line_and_nothing_is_written(tmp_path, key, value, expected):
    site = project(tmp_path, f"COMPOSE_PROJECT_NAME=llmstack\n{key}={value!r}\n")
    with pytest.raises(SettingsError) as caught:
        render_k8s(site, load_catalog(), "deepseek-1.5b")
    assert f"line 2: {key}=" in caught.value.message and expected in caught.value.message
    assert caught.value.exit_code == 2
    assert (tmp_path / ".env").read_text(encoding="utf-8") == f"COMPOSE_PROJECT_NAME=llmstack\n{key}={value!r}\n"
    assert not (tmp_path / "deploy").exists()


def test_tls_secret_without_host_is_refused():
    with pytest.raises(SettingsError, match="need K8S_INGRESS_HOST"):
        parse_k8s_settings({"K8S_INGRESS_TLS_SECRET": "tls"}, {}, "test")


def test_environment_overrides_env_file(tmp_path):
    site = project(tmp_path, "K8S_NAMESPACE=from-file\n")
    assert load_k8s_settings(site.env_file, {}).namespace == "from-file"
    assert load_k8s_settings(site.env_file, {"K8S_NAMESPACE": "from-env"}).namespace == "from-env"


def test_render_generates_missing_secrets_once_and_prints_next_steps(tmp_path):
    site = project(tmp_path)
    first = render_k8s(site, load_catalog(), "llama3-8b-gptq", tmp_path / "k8s")
    assert sorted(first["generated_secrets"]) == sorted(DUMMY_SECRETS)
    env_text = (tmp_path / ".env").read_text(encoding="utf-8")
    secrets = (tmp_path / "k8s" / SECRET_ENV_FILE).read_text(encoding="utf-8")
    for line in secrets.splitlines()[1:]:
        key, _, value = line.partition("=")
        assert f"{key}='{value}'" in env_text  # the Secret holds exactly what .env holds
    again = render_k8s(site, load_catalog(), "llama3-8b-gptq", tmp_path / "k8s")
    assert again["generated_secrets"] == [] and again["changed"] == []
    assert again["next"][0] == f"kubectl apply -k {tmp_path / 'k8s'}"
    assert again["next"][1].startswith("kubectl -n llmstack rollout status deployment/vllm --timeout=")


def test_gated_model_without_token_is_refused_before_writing(tmp_path):
    with pytest.raises(PreflightError, match="gated"):
        render_k8s(project(tmp_path), load_catalog(), "llama3-8b")
    assert (tmp_path / ".env").read_text(encoding="utf-8") == "" and not (tmp_path / "deploy").exists()


def test_planner_applies_per_replica_when_gpu_memory_is_set(tmp_path):
    with pytest.raises(PreflightError, match="does not fit"):
        render_k8s(project(tmp_path, "GPU_MEMORY_GIB=12GiB\nHF_TOKEN=hf_x0000000000\n"), load_catalog(), "llama3-8b")
    assert not (tmp_path / "deploy").exists()
    result = render_k8s(project(tmp_path, "GPU_MEMORY_GIB=12GiB\nVLLM_REPLICAS=2\n"), load_catalog(), "llama3-8b-gptq")
    assert result["plan_per_replica"]["fits"] is True and result["replicas"] == 2


# ----- through the command line -------------------------------------------------------------------


def _cli(project_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("K8S_", "VLLM_", "WEBUI_", "CONTROLLER_"))}
    return subprocess.run(
        [sys.executable, "-m", "controller", "--project-dir", str(project_dir), "render", *args],
        cwd=project_dir, env={**keep, **env}, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_cli_render_target_k8s_writes_the_directory_and_prints_the_next_commands(tmp_path):
    done = _cli(tmp_path, "llama3-8b-gptq", "--target", "k8s")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "deploy" / "k8s"
    assert sorted(p.name for p in out.iterdir()) == sorted([*GOLDEN_FILES, SECRET_ENV_FILE, GITIGNORE, MARKER])
    flat = " ".join(done.stderr.split())
    assert f"kubectl apply -k {out}" in flat and "kubectl -n llmstack rollout status deployment/vllm" in flat
    result = json.loads(_cli(tmp_path, "deepseek-1.5b", "--target", "k8s", "--out", "elsewhere", "--json").stdout)
    assert result["out_dir"] == str(tmp_path / "elsewhere") and result["changed"]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--target", "k8s"], {"VLLM_REPLICAS": "many"}, "VLLM_REPLICAS='many'"),
        (["--target", "swarm"], {}, "'swarm' is not one of"),
        (["--out", "x"], {}, "--out is only for --target k8s"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, args, env, message):
    done = _cli(tmp_path, "deepseek-1.5b", *args, **env)
    assert done.returncode == 2 and message in " ".join(done.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_monitoring_on_annotates_the_vllm_pods_for_a_clusters_prometheus(tmp_path):
    env = "".join(f"{key}={value}\n" for key, value in DUMMY_SECRETS.items())
    for monitoring, scraped in (("off", False), ("on", True)):
        root = tmp_path / monitoring
        root.mkdir()
        render_k8s(project(root, env + f"MONITORING={monitoring}\n"), load_catalog(), "deepseek-1.5b", root / "k8s")
        found = objects({path.name: path.read_text() for path in (root / "k8s").glob("*.yaml")})
        vllm, webui = (found[("Deployment", name)]["spec"]["template"]["metadata"] for name in ("vllm", "webui"))
        assert ("prometheus.io/scrape" in vllm["annotations"]) == scraped
        if scraped:
            assert (vllm["annotations"]["prometheus.io/port"], vllm["annotations"]["prometheus.io/path"]) == (
                "8000", "/metrics")  # fmt: skip
        assert "prometheus.io/scrape" not in webui.get("annotations", {})


def test_the_oidc_callback_uses_https_only_when_the_ingress_serves_it():
    from controller.config.directory_settings import DirectorySettings
    from controller.deploy.k8s_env import webui_env
    from controller.deploy.k8s_manifests import public_url

    oidc = DirectorySettings.model_validate({"OIDC": "on", "OAUTH_CLIENT_ID": "c", "OAUTH_CLIENT_SECRET": "s",
        "OPENID_PROVIDER_URL": "https://sso.example.com/.well-known/openid-configuration"})  # fmt: skip
    for tls_secret, scheme in ((None, "http"), ("chat-tls", "https")):
        k8s = {"K8S_INGRESS_HOST": "chat.example.com", **({"K8S_INGRESS_TLS_SECRET": tls_secret} if tls_secret else {})}
        settings = parse_k8s_settings(k8s, {}, "test")
        url = public_url(settings, ingress_tls(TlsSettings(), settings))
        assert url == f"{scheme}://chat.example.com"
        spec = build_spec(load_catalog().get("deepseek-1.5b"), fixed_settings(), None)
        env = {e["name"]: e for e in webui_env(spec, settings, oidc, url)}
        assert env["OPENID_REDIRECT_URI"]["value"] == f"{scheme}://chat.example.com/oauth/oidc/login/callback"

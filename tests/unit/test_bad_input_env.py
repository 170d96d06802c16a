"""Bad input, class ".env": hostile or careless settings, in the file or in the process environment.

Each case: exit 2, the message names the key and its source (`.env line N` or "the environment
variable X") or the file, no traceback, no secret in the output, and `.env` and `compose/`
byte-identical afterwards (see bad_input_harness.py). GOOD_ENV has 4 lines, so a line
added by a case is line 5.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import files
from tests.unit.bad_input_harness import Project


def _render(project: Project, *names: str, model: str = "deepseek-1.5b", env: dict[str, str] | None = None):
    return project.refused("render", model, names=list(names), env=env)


# ----- the file itself --------------------------------------------------------------------------


def test_env_not_utf8(project):
    project.add_env(b"WEBUI_ADMIN_NAME=caf\xe9\n")
    _render(project, str(project.env_file), "line 5", "UTF-8")


def test_env_is_a_directory(project):
    project.env_file.unlink()
    project.env_file.mkdir()
    _render(project, str(project.env_file), "directory")


def test_env_permission_denied(project, monkeypatch):
    real_open = open

    def denied(path, *args, **kwargs):
        if Path(path) == project.env_file:
            raise PermissionError(13, "Permission denied")  # as for a mode-000 file (the tests may run as root)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files, "open", denied, raising=False)
    _render(project, str(project.env_file), "permission denied")


def test_env_unparsable_line(project):
    project.add_env("WEBUI_PORT=8081\nthis is not a setting\n")
    _render(project, str(project.env_file), "line 6", "cannot parse")


def test_env_unterminated_quote(project):
    project.add_env("WEBUI_ADMIN_NAME='Ops\n")
    _render(project, str(project.env_file), "line 5", "cannot parse")


def test_env_duplicate_key(project):
    project.add_env("WEBUI_PORT=8081\nWEBUI_PORT=8082\n")
    _render(project, str(project.env_file), "line 6", "WEBUI_PORT", "line 5")


def test_env_explicit_env_file_is_named(project):
    other = project.root / "site.env"
    other.write_bytes(b"\xff")
    project.refused("--env-file", str(other), "render", "deepseek-1.5b", names=[str(other), "UTF-8"])


# ----- one key at a time ------------------------------------------------------------------------

BAD_VALUES = {
    "bind_injection": ("WEBUI_BIND_ADDRESS", '"0.0.0.0\\"\\n    privileged: true\\n#"'),
    "bind_hostname": ("WEBUI_BIND_ADDRESS", "localhost"),
    "bind_with_port": ("WEBUI_BIND_ADDRESS", "0.0.0.0:80"),
    "bind_secret_reference": ("WEBUI_BIND_ADDRESS", "'${VLLM_API_KEY}'"),
    "port_zero": ("WEBUI_PORT", "0"),
    "port_too_big": ("WEBUI_PORT", "70000"),
    "port_word": ("WEBUI_PORT", "http"),
    "port_fraction": ("WEBUI_PORT", "80.5"),
    "port_injection": ("WEBUI_PORT", '"8080\\"\\n    privileged: true"'),
    "vllm_port_negative": ("VLLM_HOST_PORT", "-1"),
    "admin_name_newline": ("WEBUI_ADMIN_NAME", '"Ops\\n    privileged: true"'),
    "admin_name_escape_character": ("WEBUI_ADMIN_NAME", "'Ops\x1b[31m'"),
    "admin_name_too_long": ("WEBUI_ADMIN_NAME", "x" * 101),
    "admin_name_empty": ("WEBUI_ADMIN_NAME", "''"),
    "admin_email_no_at": ("WEBUI_ADMIN_EMAIL", "admin"),
    "admin_email_quote": ("WEBUI_ADMIN_EMAIL", "'a\"b@example.com'"),
    "password_short": ("WEBUI_ADMIN_PASSWORD", "'short-pw'"),
    "password_common": ("WEBUI_ADMIN_PASSWORD", "'password123456'"),
    "password_demo": ("WEBUI_ADMIN_PASSWORD", "'changeme1234'"),
    "password_stack_name": ("WEBUI_ADMIN_PASSWORD", "'openwebui123456'"),
    "password_control_char": ("WEBUI_ADMIN_PASSWORD", '"correct horse\\nbattery staple"'),
    "api_key_short": ("VLLM_API_KEY", "'abc'"),
    "api_key_dollar_unquoted": ("VLLM_API_KEY", "abcdefghijklmnop$HOME"),
    "secret_key_space": ("WEBUI_SECRET_KEY", "'abcdefgh ijklmnopqrstuvwxyz'"),
    "hf_token_newline": ("HF_TOKEN", '"hf_abc\\ndef"'),
    "image_space": ("VLLM_IMAGE", "'vllm/vllm-openai:v0.32.0 --privileged'"),
    "image_uppercase": ("VLLM_IMAGE", "Vllm/vllm-openai:v0.32.0"),
    "image_latest": ("VLLM_IMAGE", "vllm/vllm-openai:latest"),
    "image_untagged": ("WEBUI_IMAGE", "ghcr.io/open-webui/open-webui"),
    "image_injection": ("WEBUI_IMAGE", '"ghcr.io/x:v1\\"\\n    privileged: true\\n#"'),
    "cpu_image_bad_digest": ("VLLM_CPU_IMAGE", "vllm/cpu@sha256:xyz"),
    "hf_cache_root": ("HF_CACHE_DIR", "/"),
    "hf_cache_etc": ("HF_CACHE_DIR", "/etc"),
    "hf_cache_inside_proc": ("HF_CACHE_DIR", "/proc/1"),
    "hf_cache_relative": ("HF_CACHE_DIR", "hf-cache"),
    "hf_cache_newline": ("HF_CACHE_DIR", '"/srv/hf\\n      privileged: true"'),
    # Found by the property test: "~0" is the home of a user "0", which expanduser cannot find.
    "hf_cache_home_of_unknown_user": ("HF_CACHE_DIR", "~0"),
    "gpu_devices_word": ("GPU_DEVICES", "some"),
    "gpu_devices_injection": ("GPU_DEVICES", '"all\\n    privileged: true"'),
    "gpu_memory_inf": ("GPU_MEMORY_GIB", "inf"),
    "gpu_memory_negative": ("GPU_MEMORY_GIB", "-12"),
    "project_uppercase": ("COMPOSE_PROJECT_NAME", "LLM"),
    "project_newline": ("COMPOSE_PROJECT_NAME", '"llm\\nservices: {}"'),
}


@pytest.mark.parametrize(("key", "value"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_env_bad_value_names_key_and_line(project, key, value):
    project.add_env(f"{key}={value}\n")
    result = _render(project, key, f"{project.env_file} line 5")
    if key in ("WEBUI_ADMIN_PASSWORD", "VLLM_API_KEY", "WEBUI_SECRET_KEY", "HF_TOKEN"):
        assert value.strip("'\"") not in result.stderr


def test_env_hf_cache_dir_is_a_file(project):
    (project.root / "hf-file").write_text("not a directory")
    project.add_env(f"HF_CACHE_DIR={project.root / 'hf-file'}\n")
    _render(project, "HF_CACHE_DIR", "line 5", "not a directory")


def test_env_hf_cache_dir_is_a_file_refused_by_up_before_docker(project):
    (project.root / "hf-file").write_text("not a directory")
    project.add_env(f"HF_CACHE_DIR={project.root / 'hf-file'}\n")
    project.refused("up", "deepseek-1.5b", names=["HF_CACHE_DIR", "not a directory"])


def test_env_catalog_setting_points_nowhere(project):
    project.add_env("CONTROLLER_CATALOG=missing.yaml\n")
    _render(project, "missing.yaml", "not found")


def test_env_weak_password_refused_for_plan_too(project):
    # plan reads GPU_MEMORY_GIB from the same file; a broken file is named there as well.
    project.add_env("GPU_MEMORY_GIB=lots\n")
    project.refused("plan", "deepseek-1.5b", names=["GPU_MEMORY_GIB", "line 5"])


# ----- the process environment is named as the source ------------------------------------------

FROM_ENVIRONMENT = {
    "bind": ("WEBUI_BIND_ADDRESS", "0.0.0.0\n    privileged: true"),
    "port": ("WEBUI_PORT", "99999"),
    "password": ("WEBUI_ADMIN_PASSWORD", "password123456"),
    "image": ("VLLM_IMAGE", "vllm/vllm-openai"),
}


@pytest.mark.parametrize(("key", "value"), FROM_ENVIRONMENT.values(), ids=FROM_ENVIRONMENT.keys())
def test_env_bad_value_from_the_environment_is_blamed_on_it(project, key, value):
    result = _render(project, key, f"the environment variable {key}", env={key: value})
    assert str(project.env_file) not in result.stderr


def test_env_refused_on_a_first_run_creates_no_env(project):
    project.env_file.unlink()
    _render(project, "WEBUI_PORT", "the environment variable WEBUI_PORT", env={"WEBUI_PORT": "0"})
    assert not project.env_file.exists()


@pytest.mark.parametrize(
    ("line", "names"),
    [
        (b"SWITCH_STRATEGY=rolling\n", ["SWITCH_STRATEGY", "'rolling'", "auto, blue-green, recreate"]),
        (b"SWITCH_RESERVE_GIB=nan\n", ["SWITCH_RESERVE_GIB", "'nan'"]),
        (b"SWITCH_RESERVE_GIB=-1\n", ["SWITCH_RESERVE_GIB", "'-1'"]),
    ],
)
def test_switch_settings_refused_before_anything(project, line, names):
    project.add_env(line)
    project.refused("switch", "deepseek-1.5b", names=names)


# ----- keys the controller does not read (issue 24: a typo was silently ignored) -----------------

MISSPELLED = {
    "offline": ("OFFLNE=true\n", "OFFLNE", "OFFLINE"),
    "offline_lowercase": ("offline=true\n", "offline", "OFFLINE"),
    "k8s_namespace": ("K8S_NAMESPACES=prod\n", "K8S_NAMESPACES", "K8S_NAMESPACE"),
    "deadline": ("DEADLINE_WEIGHT_LOAD_S=3600\n", "DEADLINE_WEIGHT_LOAD_S", "DEADLINE_WEIGHTS_LOAD_S"),
    "switch_strategy": ("SWITCH_STRATEGIE=recreate\n", "SWITCH_STRATEGIE", "SWITCH_STRATEGY"),
    "catalog": ("CONTROLER_CATALOG=cat.yaml\n", "CONTROLER_CATALOG", "CONTROLLER_CATALOG"),
    "hf_token": ("HF_TOKN=hf_abc\n", "HF_TOKN", "HF_TOKEN"),
    "port_transposed": ("WEBUI_PROT=8081\n", "WEBUI_PROT", "WEBUI_PORT"),
}


@pytest.mark.parametrize(("line", "typo", "known"), MISSPELLED.values(), ids=MISSPELLED.keys())
def test_env_misspelled_key_is_refused_naming_both(project, line, typo, known):
    project.add_env(line)
    _render(project, str(project.env_file), "line 5", f"{typo}: did you mean {known}?")


@pytest.mark.parametrize("command", [["models"], ["plan", "deepseek-1.5b", "--gpu-memory", "12GiB"],
                                     ["render", "deepseek-1.5b", "--target", "k8s"], ["status"]])  # fmt: skip
def test_env_misspelled_key_is_refused_by_every_command(project, command):
    project.add_env("K8S_NAMESPACES=prod\n")
    project.refused(*command, names=["K8S_NAMESPACES: did you mean K8S_NAMESPACE?", str(project.env_file)])


def test_env_unknown_key_is_a_warning_and_the_command_runs(project):
    project.add_env("SITE_OWNER=ops-team\n")
    result = project.run("render", "deepseek-1.5b")
    assert result.code == 0, result.stderr
    assert "warning:" in result.stderr and "SITE_OWNER" in result.flat and "line 5" in result.flat


def test_env_unknown_key_warning_for_models_too(project):
    project.add_env("SITE_OWNER=ops-team\n")
    result = project.run("models")
    assert result.code == 0, result.stderr
    assert "warning:" in result.stderr and "SITE_OWNER" in result.flat


def test_env_misspelled_key_only_in_the_environment_is_not_checked(project):
    result = project.run("render", "deepseek-1.5b", env={"OFFLNE": "true"})
    assert result.code == 0, result.stderr
    assert "OFFLNE" not in result.flat


def test_env_hf_cache_dir_in_a_container_runtime_directory(project):
    project.add_env("HF_CACHE_DIR=/var/lib/containerd/hf\n")
    _render(project, "HF_CACHE_DIR", "line 5", "/var/lib/containerd")

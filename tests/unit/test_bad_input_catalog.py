"""Bad input, class "catalog": hostile or careless user catalog files.

Each case: exit 2, the message names the file and the profile or field, no traceback, and
`.env` and `compose/` byte-identical afterwards (see bad_input_harness.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import files, yaml_in
from tests.unit._support import TINY_ARCH
from tests.unit.bad_input_harness import Project

BOMB = """\
a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
profiles:
  mine:
    model: org/model
    served_model_name: mine
    max_model_len: 1024
    rope_scaling: {type: *h}
    architecture: {params_billion: 0.1, layers: 4, hidden_size: 256, attention_heads: 4, kv_heads: 2,
                   head_dim: 64, vocab_size: 32000, max_context: 2048}
"""
GOOD_YAML_PROFILE = """\
    model: org/model
    served_model_name: mine
    max_model_len: 1024
    architecture: {params_billion: 0.1, layers: 4, hidden_size: 256, attention_heads: 4, kv_heads: 2,
                   head_dim: 64, vocab_size: 32000, max_context: 2048}
"""


def _render(project: Project, catalog, model: str = "mine", *names: str):
    return project.refused("--catalog", str(catalog), "render", model, names=[str(catalog), *names])


# ----- the file itself --------------------------------------------------------------------------


def test_catalog_not_utf8(project):
    catalog = project.catalog(text=b"profiles:\n  mine:\n    description: caf\xe9\n")
    _render(project, catalog, "mine", "line 3", "UTF-8")


def test_catalog_is_a_directory(project):
    catalog = project.root / "catalog.d"
    catalog.mkdir()
    _render(project, catalog, "mine", "directory")


def test_catalog_not_found(project):
    _render(project, project.root / "missing.yaml", "mine", "not found")


def test_catalog_permission_denied(project, monkeypatch):
    catalog = project.profile()

    def denied(path, *args, **kwargs):
        if Path(path) == catalog:
            raise PermissionError(13, "Permission denied")  # as for a mode-000 file (the tests may run as root)
        return open(path, *args, **kwargs)

    monkeypatch.setattr(files, "open", denied, raising=False)
    _render(project, catalog, "mine", "permission denied")


def test_catalog_larger_than_the_cap(project):
    catalog = project.catalog(text="# " + "x" * files.MAX_INPUT_BYTES + "\nprofiles: {}\n")
    _render(project, catalog, "mine", "larger than")


def test_catalog_not_yaml(project):
    _render(project, project.catalog(text="profiles: [unclosed\n"), "mine", "not valid YAML", "line 2")


def test_catalog_alias_bomb_fails_fast(project):
    _render(project, project.catalog(text=BOMB), "mine", "expands to more than")


def test_catalog_too_many_aliases(project):
    text = "x: &x 1\nl: [" + ", ".join(["*x"] * (yaml_in.MAX_YAML_ALIASES + 1)) + "]\nprofiles: {}\n"
    _render(project, project.catalog(text=text), "mine", "aliases")


def test_catalog_recursive_alias(project):
    _render(project, project.catalog(text="a: &a [*a]\nprofiles: {}\n"), "mine", "refers to its own anchor")


def test_catalog_nested_too_deeply(project):
    _render(project, project.catalog(text="profiles: " + "[" * 5000 + "]" * 5000 + "\n"), "mine")


def test_catalog_top_level_is_a_list(project):
    _render(project, project.catalog(text="- mine\n"), "mine", "profiles")


def test_catalog_include_key_is_refused(project):
    _render(project, project.catalog(text="include: [other.yml]\nprofiles: {}\n"), "mine", "profiles")


# ----- duplicates -------------------------------------------------------------------------------


def test_catalog_duplicate_profile_names(project):
    text = f"profiles:\n  mine:\n{GOOD_YAML_PROFILE}  mine:\n{GOOD_YAML_PROFILE}"
    _render(project, project.catalog(text=text), "mine", "duplicate key 'mine'", "line 8")


def test_catalog_duplicate_field(project):
    text = f"profiles:\n  mine:\n{GOOD_YAML_PROFILE}    max_model_len: 2048\n"
    _render(
        project, project.catalog(text=text), "mine", "duplicate key 'max_model_len'", "line 8", "first set on line 5"
    )


def test_catalog_duplicate_nested_field(project):
    text = "profiles:\n  mine:\n" + GOOD_YAML_PROFILE.replace("layers: 4,", "layers: 4, layers: 8,")
    _render(project, project.catalog(text=text), "mine", "duplicate key 'layers'")


def test_catalog_duplicate_top_level_key(project):
    _render(project, project.catalog(text="profiles: {}\nprofiles: {}\n"), "mine", "duplicate key 'profiles'")


# ----- profile names ----------------------------------------------------------------------------

BAD_NAMES = {
    "newline_include": "m\ninclude:\n  - /tmp/evil.yml\n#",
    "rich_markup": "m1[/]",
    "uppercase": "Mine",
    "space": "my model",
    "leading_dash": "-mine",
    "dollar": "m${VLLM_API_KEY}",
    "quote": 'm"x',
    "empty": "",
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_catalog_bad_profile_name(project, name):
    catalog = project.catalog({name: {"model": "org/model", "served_model_name": "m", "max_model_len": 1024}})
    _render(project, catalog, "mine", "profile name")


def test_catalog_profile_name_not_a_string(project):
    _render(project, project.catalog(text=f"profiles:\n  123:\n{GOOD_YAML_PROFILE}"), "123", "profile name 123")


# ----- typed fields -----------------------------------------------------------------------------

BAD_FIELDS = {
    "max_model_len_true": ({"max_model_len": True}, "max_model_len"),
    "max_model_len_string": ({"max_model_len": "1024"}, "max_model_len"),
    "max_model_len_zero": ({"max_model_len": 0}, "max_model_len"),
    "params_billion_inf": (
        {"architecture": {**TINY_ARCH, "params_billion": float("inf")}},
        "architecture.params_billion",
    ),
    "params_billion_nan": (
        {"architecture": {**TINY_ARCH, "params_billion": float("nan")}},
        "architecture.params_billion",
    ),
    "layers_float": ({"architecture": {**TINY_ARCH, "layers": 4.5}}, "architecture.layers"),
    "utilization_above_1": ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
    "utilization_inf": ({"gpu_memory_utilization": float("inf")}, "gpu_memory_utilization"),
    "gated_string": ({"gated": "yes"}, "gated"),
    "tensor_parallel_true": ({"tensor_parallel_size": True}, "tensor_parallel_size"),
    "dtype_unknown": ({"dtype": "fp16"}, "dtype"),
    "unknown_field": ({"max_modle_len": 9}, "max_modle_len"),
    "served_name_newline": ({"served_model_name": "m\n  privileged: true"}, "served_model_name"),
    "served_name_quote": ({"served_model_name": 'm"'}, "served_model_name"),
    "tool_parser_shell": ({"tool_call_parser": "x; rm -rf /"}, "tool_call_parser"),
    "chat_template_without_parser": ({"chat_template": "t.jinja"}, "chat_template"),
    "cpu_kv_on_gpu": ({"cpu_kv_cache_gib": 2}, "cpu_kv_cache_gib"),
    "above_context": ({"max_model_len": 4096}, "max_model_len"),
    "extra_args_api_key": ({"extra_args": ["--api-key", "x"]}, "extra_args"),
    "extra_args_port_equals": ({"extra_args": ["--port=9000"]}, "extra_args"),
    "extra_args_newline": ({"extra_args": ["--x\n  privileged: true"]}, "extra_args"),
    "extra_args_int": ({"extra_args": ["--max-num-seqs", 8]}, "extra_args"),
    "extra_args_not_list": ({"extra_args": "--enforce-eager"}, "extra_args"),
    "rope_scaling_nested": ({"rope_scaling": {"type": {"deep": [1]}}}, "rope_scaling"),
    "rope_scaling_bad_key": ({"rope_scaling": {"a b": 1}}, "rope_scaling"),
    "description_too_long": ({"description": "x" * 5000}, "description"),
}


@pytest.mark.parametrize(("fields", "field"), BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_catalog_bad_field(project, fields, field):
    result = _render(project, project.profile(**fields), "mine", "profile 'mine'", f"field '{field}")
    assert "'dtype '" not in result.stderr


def test_catalog_cross_field_message_names_the_field_once(project):
    result = _render(project, project.profile(dtype="bfloat16", quantization="gptq"), "mine", "field 'dtype'")
    assert "field 'dtype': 'bfloat16' does not work with quantization 'gptq'; set dtype: half" in result.flat


def test_catalog_rope_scaling_date_value(project):
    text = f"profiles:\n  mine:\n{GOOD_YAML_PROFILE}    rope_scaling: {{type: 2024-01-01}}\n"
    _render(project, project.catalog(text=text), "mine", "rope_scaling")


# ----- model: a Hugging Face id or a local directory -------------------------------------------

BAD_MODELS = {
    "root": "/",
    "etc": "/etc",
    "etc_file": "/etc/ssl",
    "proc": "/proc/self/root",
    "usr": "/usr",
    "dotdot_to_root": "/srv/../",
    "docker_socket_dir": "/var/run",
    "shell_metacharacters": "org/model; rm -rf /",
    "command_substitution": "org/$(reboot)",
    "secret_reference": "${VLLM_API_KEY}",
    "space": "org/my model",
    "three_parts": "a/b/c",
    "double_dash": "org/mo--del",
    "newline": "org/model\n  privileged: true",
    "local_with_brackets": "/srv/models/m[/]",
    "local_with_newline": "/srv/models/m\nx",
    # Found by the property test: "~0" is the home of a user "0", which expanduser cannot find.
    "home_of_unknown_user": "~0",
}


@pytest.mark.parametrize("model", BAD_MODELS.values(), ids=BAD_MODELS.keys())
def test_catalog_bad_model(project, model):
    _render(project, project.profile(model=model), "mine", "field 'model'")


def test_catalog_relative_model_resolving_to_root(project):
    depth = len(project.root.parts)
    _render(project, project.profile(model="./" + "../" * depth), "mine", "field 'model'", "system directory")


def test_catalog_local_model_directory_missing(project):
    _render(project, project.profile(model="./no-such-dir"), "mine", "field 'model'", "does not exist")


def test_catalog_bad_override_of_a_builtin(project):
    catalog = project.catalog({"deepseek-1.5b": {"max_model_len": True}})
    _render(project, catalog, "deepseek-1.5b", "profile 'deepseek-1.5b'", "field 'max_model_len'")


# ----- other commands read the catalog the same way ---------------------------------------------


def test_catalog_bad_for_models_command(project):
    catalog = project.profile(max_model_len=True)
    project.refused("--catalog", str(catalog), "models", names=[str(catalog), "max_model_len"])


def test_catalog_bad_for_plan_command(project):
    catalog = project.profile(model="/")
    project.refused(
        "--catalog", str(catalog), "plan", "mine", "--gpu-memory", "12GiB", names=[str(catalog), "field 'model'"]
    )


def test_catalog_bad_for_up_before_docker_is_touched(project):
    catalog = project.catalog(text="profiles: {}\nprofiles: {}\n")
    project.refused("--catalog", str(catalog), "up", "mine", names=[str(catalog), "duplicate key"])


def test_catalog_from_env_setting_is_named(project):
    project.catalog(text=b"\xff\xfe", name="from-env.yaml")
    project.add_env("CONTROLLER_CATALOG=from-env.yaml\n")
    project.refused("render", "mine", names=["from-env.yaml", "UTF-8"])


def test_catalog_refused_on_a_first_run_creates_no_env(project):
    project.env_file.unlink()
    catalog = project.profile(model="/")
    project.refused("--catalog", str(catalog), "render", "mine", names=["field 'model'"])
    assert not project.env_file.exists()


# ----- extra_args: every spelling vLLM's parser reads as a controlled flag (issue 24) ------------

FLAG_ALIASES = {
    "api_key_underscore": (["--api_key=secret"], "--api-key"),
    "served_name_underscore": (["--served_model_name=x"], "--served-model-name"),
    "max_model_len_underscore": (["--max_model_len=99999"], "--max-model-len"),
    "served_name_abbreviated": (["--served-model", "x"], "--served-model-name"),
    "max_model_len_abbreviated_equals": (["--max-model=9"], "--max-model-len"),
    "api_key_abbreviated_underscore": (["--api_k", "x"], "--api-key"),
    "port_abbreviated": (["--por", "9000"], "--port"),
    "tensor_parallel_short": (["-tp", "2"], "--tensor-parallel-size"),
    "tensor_parallel_short_equals": (["-tp=2"], "--tensor-parallel-size"),
    "quantization_short": (["-q", "awq"], "--quantization"),
    "quantization_short_attached": (["-qawq"], "--quantization"),
    "boolean_negated": (["--no-enable-lora"], "--enable-lora"),
    "boolean_negated_underscore": (["--no_enable_auto_tool_choice"], "--enable-auto-tool-choice"),
    "dotted_json": (["--hf_overrides.rope_scaling.factor=4"], "--hf-overrides"),
    "dotted_list": (["--lora-modules.x+", "a"], "--lora-modules"),
    "config_file": (["--config", "/models/mine/serve.yaml"], "--config"),
}


@pytest.mark.parametrize(("args", "flag"), FLAG_ALIASES.values(), ids=FLAG_ALIASES.keys())
def test_catalog_extra_args_alias_of_a_controlled_flag(project, args, flag):
    result = _render(project, project.profile(extra_args=args), "mine", "profile 'mine'", "field 'extra_args", flag)
    assert "secret" not in result.stderr or args != ["--api_key=secret"]


# ----- local model and adapter directories: never a node's system directory (issue 24) ----------

NODE_SYSTEM_DIRS = {
    "containerd": "/var/lib/containerd",
    "containerd_inside": "/var/lib/containerd/io.containerd.content.v1.content",
    "kubelet": "/var/lib/kubelet",
    "kubelet_pods": "/var/lib/kubelet/pods",
    "docker": "/var/lib/docker/volumes",
    "run_inside": "/run/secrets",
    "var_run": "/var/run",
    "usr_lib_inside": "/usr/lib/x86_64-linux-gnu",
    "bin_inside": "/bin/x",
    "sbin": "/sbin",
    "lib_inside": "/lib/modules",
    "root_home": "/root",
    "pod_logs": "/var/log/pods",
}


@pytest.mark.parametrize("path", NODE_SYSTEM_DIRS.values(), ids=NODE_SYSTEM_DIRS.keys())
def test_catalog_model_in_a_node_system_directory(project, path):
    _render(project, project.profile(model=path), "mine", "field 'model'", "system directory")


@pytest.mark.parametrize("path", ["/var/lib/kubelet", "/var/lib/containerd/x", "/etc/kubernetes"])
def test_catalog_adapter_in_a_node_system_directory(project, path):
    _render(project, project.profile(lora_adapters={"x": path}), "mine", "field 'lora_adapters", "system directory")


@pytest.mark.parametrize("field", ["model", "lora_adapters"])
def test_catalog_symlink_to_a_node_system_directory(project, field):
    link = project.root / "innocent"
    link.symlink_to("/var/lib/kubelet")
    value = {"x": str(link)} if field == "lora_adapters" else str(link)
    _render(project, project.profile(**{field: value}), "mine", f"field '{field}", "/var/lib/kubelet")


def test_catalog_node_system_directory_refused_for_k8s_too(project):
    catalog = project.profile(model="/var/lib/kubelet")
    project.refused("--catalog", str(catalog), "render", "mine", "--target", "k8s",
                    names=[str(catalog), "field 'model'", "/var/lib/kubelet"])  # fmt: skip
    assert not (project.root / "deploy").exists()

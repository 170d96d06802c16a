"""How each profile lets a person's chat use tools: vLLM's tool-call flags, or Open WebUI's legacy
function calling. A browser chat fails outright when neither is right (issue: tool choice "auto")."""

from __future__ import annotations

import pytest
import yaml

from controller.config.catalog import load_catalog
from controller.deploy.compose_file import render_compose
from controller.deploy.spec import vllm_args
from controller.errors import CatalogError
from tests.unit._support import BUILTIN_NAMES, fixed_settings, make_profile, write_catalog

TOOL_FLAGS = {"--enable-auto-tool-choice", "--tool-call-parser", "--chat-template"}


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_renders_no_tool_flags_and_uses_legacy_function_calling(name):
    profile = load_catalog().get(name)
    command = yaml.safe_load(render_compose(profile, fixed_settings()))["services"]["vllm"]["command"]
    assert not TOOL_FLAGS & set(command)
    # Without a parser, vLLM refuses the tools Open WebUI's native mode adds: legacy is the only way.
    assert profile.function_calling == "legacy"


def test_profile_with_a_parser_renders_auto_tool_choice_and_native_function_calling():
    template = "examples/tool_chat_template_llama3.1_json.jinja"
    profile = make_profile(tool_call_parser="llama3_json", chat_template=template)
    args = vllm_args(profile)
    at = args.index("--enable-auto-tool-choice")
    assert args[at + 1 : at + 3] == ["--tool-call-parser", "llama3_json"]
    assert args[args.index("--chat-template") + 1] == template
    assert profile.function_calling == "native"


def test_user_catalog_can_give_a_builtin_a_parser(tmp_path):
    path = write_catalog(tmp_path / "c.yaml", {"llama3-8b-awq": {"tool_call_parser": "llama3_json"}})
    profile = load_catalog(path).get("llama3-8b-awq")
    assert "--enable-auto-tool-choice" in vllm_args(profile)
    assert profile.function_calling == "native"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tool_call_parser": "llama3 json"}, "tool_call_parser"),
        ({"tool_call_parser": "--enable-x"}, "tool_call_parser"),
        ({"tool_call_parser": "hermes", "chat_template": "a b.jinja"}, "chat_template"),
        ({"chat_template": "examples/t.jinja"}, "chat_template"),
    ],
)
def test_bad_tool_calling_fields_are_refused_naming_the_field(tmp_path, fields, field):
    path = write_catalog(tmp_path / "c.yaml", {"llama3-8b": fields})
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert f"field '{field}'" in caught.value.message

"""controller.yaml_out: every string it writes reads back as the same string under YAML 1.1
(PyYAML's resolver) and YAML 1.2 (the core schema's resolver, as go-yaml in kubectl reads it).
The real kustomize and Compose readers are in test_k8s_literal.py."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controller.yaml_out import double_quoted, dump_all, plain_is_safe


class Core12Loader(yaml.SafeLoader):
    """PyYAML with the YAML 1.2 core schema's implicit resolvers instead of 1.1's."""


Core12Loader.yaml_implicit_resolvers = {}
_CORE = {
    "tag:yaml.org,2002:null": r"null|Null|NULL|~|",
    "tag:yaml.org,2002:bool": r"true|True|TRUE|false|False|FALSE",
    "tag:yaml.org,2002:int": r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+",
    "tag:yaml.org,2002:float": r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN",
}
for _tag, _pattern in _CORE.items():
    Core12Loader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), list("-+0123456789.~ntfNTF") + [""])


def _read_back(text: str) -> list:
    return [yaml.safe_load(text), yaml.load(text, Loader=Core12Loader)]  # noqa: S506 - a SafeLoader subclass


READ_AS_OTHER = ["1e3", "0o17", "0x1F", "08", "1_000", "12:30", "+inf", ".nan", "true", "yes", "Off", "y", "~",
                 "null", "", "2024-01-02", "=", "-1", "0b101", "1.", ".5", "Infinity"]  # fmt: skip


@pytest.mark.parametrize("value", READ_AS_OTHER)
def test_a_string_a_reader_takes_for_something_else_is_quoted(value):
    assert not plain_is_safe(value)
    text = dump_all([{"k": value}])
    assert text == f'k: "{value}"\n'
    assert _read_back(text) == [{"k": value}, {"k": value}]


def test_ordinary_names_stay_plain():
    assert dump_all([{"apiVersion": "apps/v1", "path": "/health", "name": "vllm-model-cache"}]) == (
        "apiVersion: apps/v1\npath: /health\nname: vllm-model-cache\n"
    )


@given(st.text(max_size=40))
def test_any_string_reads_back_unchanged_in_yaml_1_1_and_1_2(value):
    text = dump_all([{"k": [value], value: 1}])
    assert _read_back(text) == [{"k": [value], value: 1}] * 2
    assert yaml.safe_load(double_quoted(value)) == value
    assert yaml.load(double_quoted(value), Loader=Core12Loader) == value  # noqa: S506

"""The one YAML emitter for rendered files: every string reads back as the same string, in YAML 1.1
(PyYAML) and in YAML 1.2 (go-yaml in kubectl, kustomize and Compose).

PyYAML leaves a string unquoted when its own YAML 1.1 resolver would read it as a string; a 1.2
reader may not (`1e3` is 1000.0, `0o17` is 15, and go-yaml also reads `08`, `+inf` or `1_000` as
numbers). Here a string stays plain only when it is made of letters, digits and `_./-`, starts with
a letter, `_` or `/`, and is none of the words a resolver reads as a bool or null (`yes`, `off`,
`null`...); every other string is double-quoted, which every YAML reader takes as a string.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")
# Bools and nulls of YAML 1.1 and 1.2 (any case), and the float words some readers accept unprefixed.
_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf", "infinity"})
STR_TAG = "tag:yaml.org,2002:str"


def plain_is_safe(value: str) -> bool:
    """Whether `value` unquoted reads back as the same string under YAML 1.1 and 1.2."""
    return _PLAIN.fullmatch(value) is not None and value.lower() not in _WORDS


class LiteralDumper(yaml.SafeDumper):
    """yaml.SafeDumper, with strings quoted unless plain_is_safe."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(STR_TAG, value, style=None if plain_is_safe(value) else '"')


LiteralDumper.add_representer(str, _represent_str)


def dump_all(documents: list[Any]) -> str:
    """Documents as YAML text, in the order given, one line per scalar (no folding)."""
    return yaml.dump_all(
        documents, Dumper=LiteralDumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=2**31 - 1
    )


def double_quoted(value: str) -> str:
    """`value` as one YAML double-quoted scalar on one line (quotes, line breaks and non-printable
    characters escaped), for templates that place single values."""
    return yaml.dump(value, Dumper=LiteralDumper, default_style='"', allow_unicode=True, width=2**31 - 1).rstrip("\n")

"""The profile is declared twice: as a plain dataclass (what the controller passes around, no
pydantic at start-up) and as its pydantic schema (what each field may hold). They must agree."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Literal, Union, get_args, get_origin

import pytest
from pydantic_core import PydanticUndefined

from controller.config.profile import Architecture, Profile
from controller.config.profile_schema import ArchitectureSchema, ProfileSchema, validate_profile
from tests.unit._support import CPU_PROFILE, fields_of


def _dataclass_defaults(cls) -> dict:
    def default(f: dataclasses.Field):
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return "required"

    return {f.name: default(f) for f in dataclasses.fields(cls)}


def _schema_defaults(schema) -> dict:
    def default(info):
        value = info.get_default(call_default_factory=True)
        return "required" if value is PydanticUndefined else value

    return {name: default(info) for name, info in schema.model_fields.items()}


@pytest.mark.parametrize(("plain", "schema"), [(Profile, ProfileSchema), (Architecture, ArchitectureSchema)])
def test_the_schema_and_the_dataclass_have_the_same_fields_in_order_with_the_same_defaults(plain, schema):
    assert list(_dataclass_defaults(plain).items()) == list(_schema_defaults(schema).items())


def _bare(annotation):
    """A type without its pydantic checks (Annotated metadata), unions as sets, the schema's nested
    model as the dataclass it makes."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _bare(args[0])
    if origin in (Union, types.UnionType):
        return frozenset(_bare(arg) for arg in args)
    if origin is Literal:
        return annotation
    if origin is not None:
        return (origin, tuple(_bare(arg) for arg in args))
    return Architecture if annotation is ArchitectureSchema else annotation


# Where the schema says more than the dataclass: the values a JSON scalar may take, and vLLM's ranks.
NARROWED = {"rope_scaling", "max_lora_rank"}


@pytest.mark.parametrize(("plain", "schema"), [(Profile, ProfileSchema), (Architecture, ArchitectureSchema)])
def test_the_schema_and_the_dataclass_declare_the_same_types(plain, schema):
    hints = typing.get_type_hints(plain)
    declared = {name: _bare(hints[name]) for name in hints if name not in NARROWED}
    checked = {
        name: _bare(info.rebuild_annotation()) for name, info in schema.model_fields.items() if name not in NARROWED
    }
    assert declared == checked


def test_a_validated_profile_is_the_plain_dataclass_with_every_field():
    profile = validate_profile({**CPU_PROFILE, "name": "tiny-cpu", "extra_args": ["--enforce-eager"]})
    assert type(profile) is Profile and type(profile.architecture) is Architecture
    assert profile.extra_args == ["--enforce-eager"] and profile.architecture.max_context == 2048
    assert validate_profile({**fields_of(profile), "name": "tiny-cpu"}) == profile


def test_replace_changes_the_named_field_only():
    profile = validate_profile({**CPU_PROFILE, "name": "tiny-cpu"})
    changed = profile.replace(kv_cache_dtype="fp8")
    assert changed.kv_cache_dtype == "fp8" and profile.kv_cache_dtype == "auto"
    assert fields_of(changed) == {**fields_of(profile), "kv_cache_dtype": "fp8"}

"""What each profile field may hold, as pydantic checks, and how a catalog's entry becomes a
Profile. Only a catalog the user wrote, and the built-in YAML when `make catalog-snapshot` turns
it into the package's snapshot, are read through it (and so import pydantic)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from controller.config.profile import (
    BUILTIN_CATALOG_NAME,
    MAX_BATCH,
    VLLM_LORA_RANKS,
    Accelerator,
    Architecture,
    Dtype,
    KvCacheDtype,
    Profile,
    Quantization,
    WeightBits,
)
from controller.config.profile_fields import (
    PROFILE_NAME_PATTERN,
    check_model_reference,
    check_vllm_arg,
)
from controller.config.values import printable

ModelReference = Annotated[str, AfterValidator(check_model_reference)]
LoraName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
ArgText = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(check_vllm_arg)]
JsonScalar = bool | int | float | str


class _Strict(BaseModel):
    # strict: YAML's `true` is not 1 and "8" is not 8; no inf/nan anywhere.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ArchitectureSchema(_Strict):
    """controller.config.profile.Architecture's fields, with what each may hold."""

    # The name pydantic's messages use ("... instance of Architecture"), as the catalog says it.
    model_config = ConfigDict(title="Architecture")

    params_billion: float = Field(gt=0)
    layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_context: int = Field(gt=0)
    rope_theta: float | None = Field(default=None, gt=0)
    intermediate_size: int | None = Field(default=None, gt=0)
    weight_bits: WeightBits = 16
    quant_group_size: int | None = Field(default=None, gt=0)
    tied_embeddings: bool = False


class ProfileSchema(_Strict):
    """controller.config.profile.Profile's fields, with what each may hold (the comments there say
    what each is for)."""

    model_config = ConfigDict(title="Profile")

    name: str = Field(min_length=1, max_length=64, pattern=PROFILE_NAME_PATTERN)
    description: str = Field("", max_length=1000)
    model: ModelReference = Field(min_length=1, max_length=1024)
    served_model_name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    dtype: Dtype = "auto"
    max_model_len: int = Field(gt=0)
    quantization: Quantization | None = None
    kv_cache_dtype: KvCacheDtype = "auto"
    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1, le=MAX_BATCH)
    max_num_seqs: int | None = Field(default=None, ge=1, le=MAX_BATCH)
    tensor_parallel_size: int = Field(default=1, ge=1)
    extra_args: list[ArgText] = Field(default_factory=list, max_length=64)
    accelerator: Accelerator = "gpu"
    gated: bool = False
    rope_scaling: dict[str, JsonScalar | list[int | float]] | None = Field(default=None, max_length=32)
    tool_call_parser: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    chat_template: str | None = Field(default=None, pattern=r"^/?[A-Za-z0-9_][A-Za-z0-9_./-]*$")
    cpu_kv_cache_gib: int | None = Field(default=None, ge=1)
    reasoning_parser: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    lora_adapters: dict[LoraName, ModelReference] = Field(default_factory=dict, max_length=64)
    max_lora_rank: Literal[VLLM_LORA_RANKS] | None = None  # type: ignore[valid-type]
    max_loras: int | None = Field(default=None, ge=1)
    architecture: ArchitectureSchema
    source: str = BUILTIN_CATALOG_NAME

    @field_validator("rope_scaling")
    @classmethod
    def _rope_keys(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, item in (value or {}).items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key, re.ASCII):
                raise ValueError(f"key {ascii(key)} is not a config.json field name")
            if isinstance(item, str):
                printable(item)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ProfileSchema:
        problem = self.profile().consistency_problem()
        if problem:
            # The field it blames is kept apart from the message (catalog.build_profile names it).
            field, message = problem
            raise PydanticCustomError("consistency", "{message}", {"field": field, "message": message})
        return self

    def profile(self) -> Profile:
        return Profile(**{**dict(self), "architecture": Architecture(**dict(self.architecture))})


def validate_profile(fields: dict[str, Any]) -> Profile:
    """The Profile `fields` describe; raises pydantic's ValidationError (catalog.build_profile turns
    it into a CatalogError naming the catalog, the profile and the field)."""
    return ProfileSchema.model_validate(fields).profile()

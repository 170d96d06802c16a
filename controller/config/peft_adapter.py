"""A PEFT adapter's adapter_config.json, read and checked (pydantic; imported only when a profile
has local adapters)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.config.profile import Profile
from controller.errors import CatalogError

ADAPTER_CONFIG = "adapter_config.json"


class AdapterConfig(BaseModel):
    """The fields of a PEFT adapter_config.json that serving depends on (peft writes many more)."""

    model_config = ConfigDict(extra="ignore")

    peft_type: str = "LORA"
    r: int = Field(gt=0)
    base_model_name_or_path: str | None = None


def read_adapter_config(profile: Profile, name: str, directory: Path) -> AdapterConfig:
    where = f"catalog {profile.source}: profile '{profile.name}': adapter '{name}'"
    path = directory / ADAPTER_CONFIG
    if not path.is_file():
        raise CatalogError(
            f"{where}: {path} does not exist",
            hint="point lora_adapters at a directory written by peft or Llama-Factory (adapter_config.json "
            "next to adapter_model.safetensors)",
        )
    try:
        config = AdapterConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        reason = f"field '{first['loc'][0]}': {first['msg']}" if first else str(exc).splitlines()[0]
        raise CatalogError(f"{where}: {path} is not a PEFT adapter config ({reason})") from None
    if config.peft_type.upper() != "LORA":
        raise CatalogError(f"{where}: peft_type is {config.peft_type!r}; vLLM serves LORA adapters only")
    return config

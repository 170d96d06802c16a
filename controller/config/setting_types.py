"""Field types of the settings (pydantic): each operator-settable value checked at the edge with a
precise type, from the checks in controller.config.values."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr

from controller.config.values import check_image_reference, check_key_text, printable


def _key_text(value: SecretStr) -> SecretStr:
    check_key_text(value.get_secret_value())
    return value


Port = Annotated[int, Field(ge=1, le=65535)]
Text = Annotated[str, AfterValidator(printable)]
ImageReference = Annotated[str, AfterValidator(check_image_reference)]
Key = Annotated[SecretStr, AfterValidator(_key_text)]

"""Field types of the settings (pydantic): each operator-settable value checked at the edge with a
precise type, from the checks in controller.config.values."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr

from controller.config.values import MIN_KEY_LENGTH, check_image_reference, printable


def _key_text(value: SecretStr) -> SecretStr:
    plain = value.get_secret_value()
    if len(plain) < MIN_KEY_LENGTH:
        raise ValueError(f"is shorter than {MIN_KEY_LENGTH} characters; delete the line to have a strong one generated")
    if not re.fullmatch(r"[\x21-\x7e]+", plain):
        raise ValueError("may hold only printable ASCII characters without spaces")
    return value


Port = Annotated[int, Field(ge=1, le=65535)]
Text = Annotated[str, AfterValidator(printable)]
ImageReference = Annotated[str, AfterValidator(check_image_reference)]
Key = Annotated[SecretStr, AfterValidator(_key_text)]

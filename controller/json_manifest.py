"""A manifest read from a file someone handed over (a bundle, a backup): JSON whose nesting is
checked before `json` recurses into it, and a pydantic model whose first bad field is named."""

from __future__ import annotations

import json
import re
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from controller.errors import InputError

M = TypeVar("M", bound=BaseModel)

_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_exceeds(text: bytes, limit: int) -> bool:
    """Whether [ and { nest deeper than `limit` in JSON text (strings skipped), before json recurses."""
    depth = 0
    for byte in _JSON_STRING.sub(b"", text).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        if depth > limit:
            return True
    return False


def load_json(text: bytes, origin: str, *, max_depth: int, hint: str | None = None) -> object:
    """The parsed document, or an InputError that starts with `origin`."""
    if nesting_exceeds(text, max_depth):
        raise InputError(f"{origin} is nested more than {max_depth} levels deep", hint=hint)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, an integer of 5000 digits
        raise InputError(f"{origin} is not JSON ({exc})", hint=hint) from None


def validated(model: type[M], data: object, origin: str, *, hint: str | None = None) -> M:
    """`data` as `model`, or an InputError that names the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        message = first["msg"].removeprefix("Value error, ")
        raise InputError(f"{origin}: field '{where}': {message}", hint=hint) from None

"""Checks of the settings' values, as plain functions (no pydantic, so that `models` and `plan` can
use them and start without it): IP address, pinned image reference, host directory, printable
text, memory size, key. controller.config.setting_types makes pydantic field types of them."""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from pathlib import Path

from controller.files import system_dir_problem

MIN_KEY_LENGTH = 16
UNPINNED_TAGS = {"latest", "main", "dev", "nightly"}

# The image reference grammar of distribution/reference (the OCI distribution spec's names).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII)
MAX_IMAGE_NAME_LENGTH = 255


_MEMORY_UNITS = {"gib": 1.0, "g": 1.0, "": 1.0, "gb": 1000**3 / 1024**3, "mib": 1 / 1024, "mb": 1000**2 / 1024**3}


def parse_memory_gib(text: str | float) -> float:
    """'12GiB', '16GB', '24g' or '12' (GiB) -> GiB. Raises ValueError on anything else."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _MEMORY_UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"'{text}' is not a memory size; write it like 12GiB, 16GB or 24")
    value = float(match.group(1)) * _MEMORY_UNITS[unit]
    if not math.isfinite(value) or value > 1024 * 1024:
        raise ValueError(f"'{text}' is not a plausible memory size")
    return value


def control_characters(text: str) -> list[str]:
    """Characters that have no business in a name or path: control, format, private-use, line breaks."""
    return [ch for ch in text if unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")]


def printable(value: str) -> str:
    bad = control_characters(value)
    if bad:
        raise ValueError(f"contains a control character or line break ({ascii(bad[0])}); remove it")
    return value


def ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        raise ValueError("is not an IP address; use e.g. 0.0.0.0 (every interface) or 127.0.0.1") from None


def check_image_reference(value: str) -> str:
    match = IMAGE_REFERENCE.fullmatch(value)
    first, _, rest = match.group("name").partition("/") if match else ("", "", "")
    # Like Docker's normalisation: the first part is a registry only when it looks like a host.
    registry = rest and ("." in first or ":" in first or first == "localhost")
    if not registry and match and not re.fullmatch(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", match.group("name")):
        match = None
    if not match or len(match.group("name")) > MAX_IMAGE_NAME_LENGTH:
        raise ValueError(
            "is not an image reference (registry/name:tag or name@sha256:digest, lowercase name, no spaces)"
        )
    if not match.group("digest") and (match.group("tag") is None or match.group("tag") in UNPINNED_TAGS):
        raise ValueError(f"'{value}' is not pinned; use a release tag such as :v0.12.4 or a digest")
    return value


def host_directory(value: Path) -> Path:
    printable(str(value))
    try:
        path = value.expanduser()
    except RuntimeError:  # "~name" of a user this machine does not have
        raise ValueError(f"'{value}' names the home of an unknown user; write an absolute path or ~/path") from None
    if not path.is_absolute():
        raise ValueError(f"'{value}' is relative; write an absolute path (or one starting with ~/)")
    problem = system_dir_problem(path)
    if problem:
        raise ValueError(problem)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    return value


def check_key_text(plain: str) -> str:
    """A key the operator set (a secret: the message never shows it)."""
    if len(plain) < MIN_KEY_LENGTH:
        raise ValueError(f"is shorter than {MIN_KEY_LENGTH} characters; delete the line to have a strong one generated")
    if not re.fullmatch(r"[\x21-\x7e]+", plain):
        raise ValueError("may hold only printable ASCII characters without spaces")
    return plain

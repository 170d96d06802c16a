"""What one profile field may hold, checked on its own: a model reference (a Hugging Face repo id
or a local directory), an extra vLLM argument, an adapter name. Checks across fields live with
the profile (controller.config.profile)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from controller.config.values import printable
from controller.files import system_dir_problem

PROFILE_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
# Hugging Face's repo id rules: [namespace/]name, letters, digits, '-', '_', '.', at most 96 each.
_HF_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?"
HF_REPO_ID = re.compile(rf"(?:{_HF_PART}/)?{_HF_PART}", re.ASCII)
LOCAL_MODEL_PREFIXES = ("/", "./", "../", "~")
# Flags the controller derives from profile fields (or must own, like the key): not in extra_args.
CONTROLLED_FLAGS = frozenset(
    {
        "--model", "--host", "--port", "--api-key", "--served-model-name", "--dtype", "--max-model-len",
        "--quantization", "--kv-cache-dtype", "--gpu-memory-utilization", "--tensor-parallel-size",
        "--enable-auto-tool-choice", "--tool-call-parser", "--chat-template", "--hf-overrides",
        "--max-num-batched-tokens", "--max-num-seqs", "--reasoning-parser",
        "--enable-lora", "--lora-modules", "--max-lora-rank", "--max-loras",
    }
)  # fmt: skip


def is_local(reference: str) -> bool:
    """A model or adapter reference that names a host directory rather than a Hugging Face repo."""
    return reference.startswith(LOCAL_MODEL_PREFIXES)


def _model_reference(value: str) -> str:
    if is_local(value):
        printable(value)
        if any(ch in value for ch in "[]\\"):
            raise ValueError(f"local model path {value!r} may not contain [, ] or \\")
        problem = system_dir_problem(Path(value))
        if problem:
            raise ValueError(f"local model directory: {problem}")
        return value
    if not _is_repo_id(value):
        raise ValueError(
            f"{ascii(value)} is neither a Hugging Face repo id (org/name: letters, digits, '-', '_', '.') "
            "nor a local directory (/absolute/path, ./relative or ~/path)"
        )
    return value


def _is_repo_id(value: str) -> bool:
    return bool(HF_REPO_ID.fullmatch(value)) and "--" not in value and ".." not in value


def _hf_repo_id(value: str) -> str:
    if not _is_repo_id(value):
        raise ValueError(f"{ascii(value)} is not a Hugging Face repo id (org/name: letters, digits, '-', '_', '.')")
    return value


def _vllm_arg(value: str) -> str:
    printable(value)
    flag = value.split("=", 1)[0]
    if flag in CONTROLLED_FLAGS:
        raise ValueError(f"{flag} is set by the controller (from the profile's fields); remove it")
    return value


ModelReference = Annotated[str, AfterValidator(_model_reference)]
# A Hugging Face repo id only, checked as a profile's model is (a bundle's models, for one).
HfRepoId = Annotated[str, Field(max_length=193), AfterValidator(_hf_repo_id)]
LoraName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
ArgText = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_vllm_arg)]
JsonScalar = bool | int | float | str

"""What one profile field may hold, checked on its own: a model reference (a Hugging Face repo id
or a local directory), an extra vLLM argument. Plain functions, no pydantic: the profile schema
(controller.config.profile_schema) runs them; checks across fields live with the profile
(controller.config.profile)."""

from __future__ import annotations

import re
from pathlib import Path

from controller.config.values import printable
from controller.files import system_dir_problem

PROFILE_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
# Hugging Face's repo id rules: [namespace/]name, letters, digits, '-', '_', '.', at most 96 each.
_HF_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?"
HF_REPO_ID = re.compile(rf"(?:{_HF_PART}/)?{_HF_PART}", re.ASCII)
LOCAL_MODEL_PREFIXES = ("/", "./", "../", "~")
# Flags the controller derives from profile fields (or must own, like the key): not in extra_args,
# in any spelling vLLM reads as them (controlled_flag).
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


def check_model_reference(value: str) -> str:
    if is_local(value):
        printable(value)
        if any(ch in value for ch in "[]\\"):
            raise ValueError(f"local model path {value!r} may not contain [, ] or \\")
        problem = system_dir_problem(Path(value))
        if problem:
            raise ValueError(f"local directory: {problem}")
        return value
    if not _is_repo_id(value):
        raise ValueError(
            f"{ascii(value)} is neither a Hugging Face repo id (org/name: letters, digits, '-', '_', '.') "
            "nor a local directory (/absolute/path, ./relative or ~/path)"
        )
    return value


def _is_repo_id(value: str) -> bool:
    return bool(HF_REPO_ID.fullmatch(value)) and "--" not in value and ".." not in value


def check_hf_repo_id(value: str) -> str:
    if not _is_repo_id(value):
        raise ValueError(f"{ascii(value)} is not a Hugging Face repo id (org/name: letters, digits, '-', '_', '.')")
    return value


# vLLM's short options for controlled flags (vLLM 0.32 engine/arg_utils.py).
SHORT_FLAGS = {"-tp": "--tensor-parallel-size", "-q": "--quantization"}
# `--config FILE` reads any flag, the controlled ones too, from a YAML file in the container.
FILE_FLAGS = frozenset({"--config"})


def controlled_flag(arg: str) -> str | None:
    """The controlled flag vLLM would read `arg` as, or None.

    vLLM's FlexibleArgumentParser (vLLM 0.32 utils/argparse_utils.py) turns `_` into `-` in a
    flag's name up to the first `.`, reads `--flag.key=value` (and `--flag.key+`) as JSON for
    `--flag`, and is an argparse parser with allow_abbrev left on, so an unambiguous prefix
    (`--served-model`) is the whole flag; booleans also take `--no-flag`.
    """
    if arg.startswith("--"):
        name = arg.split("=", 1)[0].split(".", 1)[0].removesuffix("+")
        name = "--" + name[2:].replace("_", "-")
        if name == "--":
            return None
        for flag in sorted(CONTROLLED_FLAGS | FILE_FLAGS):
            if flag.startswith(name) or f"--no-{flag[2:]}".startswith(name):
                return flag
        return None
    if arg.startswith("-"):
        # A short option takes its value attached too: -tp=2, -qawq.
        return next((flag for short, flag in SHORT_FLAGS.items() if arg.startswith(short)), None)
    return None


def check_vllm_arg(value: str) -> str:
    printable(value)
    flag = controlled_flag(value)
    if flag in FILE_FLAGS:
        raise ValueError(f"{value!r}: {flag} reads vLLM flags from a file, the controller's own too; remove it")
    if flag is not None:
        shown = flag if value.split("=", 1)[0] == flag else f"{value.split('=', 1)[0]!r}, which vLLM reads as {flag},"
        raise ValueError(f"{shown} is set by the controller (from the profile's fields); remove it")
    return value

""".env files as the controller reads and writes them: literally (no `${...}` expansion), with
the line of every key for messages, and written atomically with mode 0600, comments kept."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from controller.errors import SettingsError
from controller.files import read_text_file, write_atomic


@dataclass(frozen=True)
class EnvEntry:
    value: str
    line: int
    single_quoted: bool


def _read_env_text(path: Path) -> str | None:
    if not path.exists() and not path.is_symlink():
        return None
    return read_text_file(path, SettingsError, what="settings file")


def read_env_entries(path: Path) -> dict[str, EnvEntry]:
    """Every `KEY=value` of an env file with its line, read literally (no `${...}` expansion).

    A missing file is empty; an unreadable one, a line that does not parse, or a key set twice
    is a SettingsError naming the file and line.
    """
    text = _read_env_text(path)
    if text is None:
        return {}
    entries: dict[str, EnvEntry] = {}
    for binding in parse_stream(io.StringIO(text)):
        raw = binding.original.string
        # A binding's text starts with the blank lines before it; its own line comes after them.
        line = binding.original.line + raw[: len(raw) - len(raw.lstrip())].count("\n")
        if binding.error:
            raise SettingsError(
                f"settings file {path} line {line}: cannot parse this line",
                hint="write KEY=value, one per line; quote a value with spaces or # in single quotes",
            )
        if binding.key is None or binding.value is None:
            continue
        if binding.key in entries:
            raise SettingsError(
                f"settings file {path} line {line}: {binding.key} is already set on line {entries[binding.key].line}",
                hint="keep one of the two lines",
            )
        quoted = re.match(rf"\s*(?:export\s+)?{re.escape(binding.key)}\s*=\s*'", raw.lstrip()) is not None
        entries[binding.key] = EnvEntry(binding.value, line, quoted)
    # python-dotenv's own reading, without interpolation, must agree with what was checked above.
    literal = {k: v for k, v in dotenv_values(stream=io.StringIO(text), interpolate=False).items() if v is not None}
    return {key: EnvEntry(literal[key], e.line, e.single_quoted) for key, e in entries.items() if key in literal}


def read_env_file(path: Path) -> dict[str, str]:
    """The env file's values, literally (`$` and `${...}` stay as written)."""
    return {key: entry.value for key, entry in read_env_entries(path).items()}


def _env_line(key: str, value: str) -> str:
    # Values are written single-quoted so that '$' and '#' in a secret stay literal for
    # both python-dotenv and docker compose.
    if "'" in value or "\n" in value:
        raise SettingsError(f"cannot store {key}: the value contains a quote or newline")
    return f"{key}='{value}'"


def write_env_values(path: Path, values: dict[str, str], *, overwrite: bool) -> list[str]:
    """Set keys in the env file atomically with mode 0600; returns the keys actually written.

    Existing lines and comments are kept. With overwrite=False a key already present keeps its value.
    """
    existing_text = _read_env_text(path) or ""
    current = read_env_file(path)
    lines = existing_text.splitlines()
    written = []
    for key, value in values.items():
        if current.get(key) and not overwrite:
            continue
        pattern = re.compile(rf"^\s*(export\s+)?{re.escape(key)}\s*=")
        replaced = False
        for i, line in enumerate(lines):
            if pattern.match(line):
                lines[i] = _env_line(key, value)
                replaced = True
        if not replaced:
            lines.append(_env_line(key, value))
        written.append(key)
    if written or path.exists():
        # Rewriting also tightens a hand-made .env that others could read.
        write_atomic(path, "\n".join(lines) + "\n" if lines else "", mode=0o600)
    return written

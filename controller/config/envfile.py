""".env files as the controller reads and writes them: literally (no `${...}` expansion), with
the line of every key for messages, and written atomically with mode 0600, comments kept."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

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
    return {} if text is None else _entries(text, path)


def _entries(text: str, path: Path) -> dict[str, EnvEntry]:
    # Imported here: a site with no .env (settings from the environment) never parses one, and the
    # quick commands' start-up budget is tight.
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

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


# In double quotes python-dotenv and Docker Compose both read these specially (escapes, `$`).
_DOUBLE_QUOTE_SPECIAL = frozenset('"\\$`\n\r')


def _env_line(path: Path, key: str, value: str) -> str:
    """`KEY='value'`: single quotes keep '$' and '#' literal for python-dotenv and Docker Compose
    alike. A value holding a single quote (a directory named `it's`) is double-quoted instead,
    which is literal too as long as it holds none of _DOUBLE_QUOTE_SPECIAL."""
    if "'" not in value and "\n" not in value and "\r" not in value:
        return f"{key}='{value}'"
    if not _DOUBLE_QUOTE_SPECIAL & set(value):
        return f'{key}="{value}"'
    raise SettingsError(
        f"cannot store {key} in {path}: the value holds a single quote together with a double quote, "
        "backslash, '$', '`' or line break, which no quoting keeps literal for both python-dotenv and Docker Compose",
        hint="rename the directory (or file) it names so that its path holds no quote",
    )


@dataclass(frozen=True)
class EnvUpdate:
    """The new text of an env file, staged and checked; `commit_env_update` writes it."""

    path: Path
    text: str
    written: tuple[str, ...]
    changed: bool


def _check_directory(path: Path) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise SettingsError(
                    f"settings file {path}: {parent} is not a directory, so the file cannot be written there",
                    hint="pass --env-file (or --project-dir) with a path inside a directory",
                )
            return


def stage_env_values(path: Path, values: dict[str, str], *, overwrite: bool) -> EnvUpdate:
    """Everything `write_env_values` would write, checked, without writing: every value storable,
    the file's directory usable, and the new text reading back to exactly the intended values.

    Existing lines and comments are kept. With overwrite=False a key already present keeps its value.
    """
    _check_directory(path)
    existing_text = _read_env_text(path)
    current = {} if existing_text is None else {k: e.value for k, e in _entries(existing_text, path).items()}
    # Lines end at "\n" only, as python-dotenv and Compose read them (str.splitlines would also
    # split at "\x85" or "\u2028" inside a value).
    lines = (existing_text or "").split("\n")
    if lines[-1] == "":
        lines.pop()
    written = []
    for key, value in values.items():
        if current.get(key) and not overwrite:
            continue
        new_line = _env_line(path, key, value)
        pattern = re.compile(rf"^\s*(export\s+)?{re.escape(key)}\s*=")
        replaced = False
        for i, line in enumerate(lines):
            if pattern.match(line):
                lines[i] = new_line
                replaced = True
        if not replaced:
            lines.append(new_line)
        written.append(key)
    text = "\n".join(lines) + "\n" if lines else ""
    wanted = {**current, **{key: values[key] for key in written}}
    back = {key: entry.value for key, entry in _entries(text, path).items()}
    if back != wanted:
        bad = next(key for key in wanted if back.get(key) != wanted[key])
        raise SettingsError(f"cannot store {bad} in {path}: the value would not read back as written")
    # Rewriting also tightens a hand-made .env that others could read.
    return EnvUpdate(path, text, tuple(written), changed=bool(written) or existing_text is not None)


def commit_env_update(update: EnvUpdate) -> list[str]:
    """Write a staged update atomically with mode 0600; returns the keys written."""
    if update.changed:
        write_atomic(update.path, update.text, mode=0o600)
    return list(update.written)


def write_env_values(path: Path, values: dict[str, str], *, overwrite: bool) -> list[str]:
    """Set keys in the env file atomically with mode 0600; returns the keys actually written.

    Staged and checked first (`stage_env_values`), so a value that cannot be stored leaves the file as it was.
    """
    return commit_env_update(stage_env_values(path, values, overwrite=overwrite))

"""Encrypted backups: age's format with a passphrase, read back only with the same passphrase, and
every wrong or missing passphrase refused by name with nothing written."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from controller.backup.crypto import (
    AGE_HEADER,
    MIN_PASSPHRASE_CHARS,
    PASSPHRASE_ENV,
    decrypt_to,
    encrypt_to,
    is_encrypted,
    read_passphrase,
)
from controller.errors import InputError
from tests.unit.cli_support import collapse_whitespace, run_cli

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def plain(tmp_path) -> Path:
    path = tmp_path / "plain.tar"
    with tarfile.open(path, "w") as tar:
        source = tmp_path / "env"
        source.write_text("WEBUI_ADMIN_PASSWORD=secret-value\n")
        tar.add(source, arcname="env")
    return path


def test_an_encrypted_file_is_age_0600_holds_no_plain_text_and_decrypts_to_the_same_bytes(plain, tmp_path):
    out = tmp_path / "site.backup.tar.age"
    encrypt_to(plain, out, PASSPHRASE)
    data = out.read_bytes()
    assert data.startswith(AGE_HEADER) and is_encrypted(out) and not is_encrypted(plain)
    assert b"secret-value" not in data and os.stat(out).st_mode & 0o777 == 0o600
    decrypt_to(out, tmp_path / "back.tar", PASSPHRASE)
    assert (tmp_path / "back.tar").read_bytes() == plain.read_bytes()


def test_a_wrong_or_missing_passphrase_is_refused_and_writes_nothing(plain, tmp_path):
    out = tmp_path / "site.backup.tar.age"
    encrypt_to(plain, out, PASSPHRASE)
    with pytest.raises(InputError, match="cannot decrypt it: the passphrase is wrong"):
        decrypt_to(out, tmp_path / "back.tar", PASSPHRASE + "!")
    with pytest.raises(InputError, match="is encrypted") as caught:
        decrypt_to(out, tmp_path / "back.tar", None)
    assert "--passphrase-file" in caught.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env", "plain.tar", "site.backup.tar.age"]


def test_the_passphrase_comes_from_the_file_else_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    assert read_passphrase(None) is None
    monkeypatch.setenv(PASSPHRASE_ENV, "from the environment")
    assert read_passphrase(None) == "from the environment"
    file = tmp_path / "passphrase"
    file.write_text(PASSPHRASE + "\n")  # one trailing newline, as an editor leaves it
    assert read_passphrase(file) == PASSPHRASE


@pytest.mark.parametrize(("content", "complaint"), [
    ("short\n", f"the passphrase has 5 characters; at least {MIN_PASSPHRASE_CHARS} are needed"),
    (None, "cannot read it"),
    (b"\xff\xfe not utf-8 at all", "cannot read it"),
], ids=["too-short", "missing", "not-utf8"])  # fmt: skip
def test_a_bad_passphrase_file_is_named(tmp_path, content, complaint):
    file = tmp_path / "passphrase"
    if isinstance(content, bytes):
        file.write_bytes(content)
    elif content is not None:
        file.write_text(content)
    with pytest.raises(InputError) as caught:
        read_passphrase(file)
    assert complaint in caught.value.message and str(file) in caught.value.message


def test_cli_restore_of_an_encrypted_file_without_its_passphrase_is_exit_2_and_touches_nothing(plain, tmp_path):
    project = tmp_path / "site"
    project.mkdir()
    encrypted = project / "site.backup.tar.age"
    encrypt_to(plain, encrypted, PASSPHRASE)
    result = run_cli(project, "restore", str(encrypted), "--yes")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is encrypted" in collapse_whitespace(result.stderr) and "--passphrase-file" in result.stderr
    short = project / "pass"
    short.write_text("short")
    result = run_cli(project, "backup", "--passphrase-file", str(short))
    assert result.returncode == 2 and "at least 12 are needed" in collapse_whitespace(result.stderr)
    assert sorted(p.name for p in project.iterdir()) == ["pass", "site.backup.tar.age"]
    assert PASSPHRASE not in result.stdout + result.stderr

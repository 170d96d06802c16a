"""A backup encrypted with a passphrase, in age's format (pyrage, the Rust `age`): the whole file
is encrypted, so the secrets in it (.env, password hashes, API keys) and every chat are unreadable
without the passphrase. `age -d FILE` decrypts it by hand too.

pyrage encrypts a passphrase file in memory: it needs about the file's size in RAM, twice."""

from __future__ import annotations

import os
from pathlib import Path

from controller.backup.archive import partial_file
from controller.errors import InputError

AGE_HEADER = b"age-encryption.org/v1"
SUFFIX = ".age"
PASSPHRASE_ENV = "CONTROLLER_BACKUP_PASSPHRASE"
MIN_PASSPHRASE_CHARS = 12


def read_passphrase(path: Path | None) -> str | None:
    """From --passphrase-file, else CONTROLLER_BACKUP_PASSPHRASE, else None (no encryption);
    its one trailing newline is not part of it."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--passphrase-file {path}: cannot read it ({exc})",
                             hint="give a readable UTF-8 file that holds the passphrase") from None  # fmt: skip
        origin = f"--passphrase-file {path}"
    elif os.environ.get(PASSPHRASE_ENV):
        text, origin = os.environ[PASSPHRASE_ENV], PASSPHRASE_ENV
    else:
        return None
    passphrase = text.removesuffix("\n").removesuffix("\r")
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise InputError(f"{origin}: the passphrase has {len(passphrase)} characters; at least "
                         f"{MIN_PASSPHRASE_CHARS} are needed", hint="use a longer one; nothing was done")  # fmt: skip
    return passphrase


def is_encrypted(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(AGE_HEADER)) == AGE_HEADER
    except OSError:
        return False  # the reader says what is wrong with the file


def encrypt_to(plain: Path, out: Path, passphrase: str) -> None:
    import pyrage

    with partial_file(out) as partial:
        partial.write_bytes(pyrage.passphrase.encrypt(plain.read_bytes(), passphrase))


def require_passphrase(encrypted: Path, passphrase: str | None) -> str:
    if passphrase is None:
        raise InputError(f"{encrypted} is encrypted",
                         hint=f"give its passphrase with --passphrase-file FILE or {PASSPHRASE_ENV}")  # fmt: skip
    return passphrase


def decrypt_to(encrypted: Path, plain: Path, passphrase: str | None) -> None:
    import pyrage

    passphrase = require_passphrase(encrypted, passphrase)
    try:
        data = pyrage.passphrase.decrypt(encrypted.read_bytes(), passphrase)
    except pyrage.DecryptError:
        raise InputError(f"{encrypted}: cannot decrypt it: the passphrase is wrong or the file is damaged",
                         hint="nothing was changed") from None  # fmt: skip
    with partial_file(plain) as partial:
        partial.write_bytes(data)

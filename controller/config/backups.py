"""Where a site's backups live and how they are named: `backup` writes and rotates them, `status`
shows the newest one's age, and `doctor` warns when it is missing or old."""

from __future__ import annotations

import re
import time
from pathlib import Path

SUFFIX = ".backup.tar"
# Encrypted ones (`backup --passphrase-file`) end in .backup.tar.age.
SUFFIXES = (SUFFIX, SUFFIX + ".age")
AUTOMATIC = re.compile(r"^webui-\d{8}T\d{6}Z\.backup\.tar(\.age)?$")
# `doctor` warns when the newest backup is older than this.
STALE_AFTER_S = 24 * 3600


def backup_dir(root: Path) -> Path:
    """The default folder: PROJECT_DIR/backups."""
    return root / "backups"


def backup_name(now: float) -> str:
    """webui-20261203T101500Z.backup.tar: names sort by time."""
    return "webui-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + SUFFIX


def backups_in(directory: Path) -> list[Path]:
    """The finished backups in `directory`, oldest first (a `.partial` is not one)."""
    if not directory.is_dir():
        return []
    found = [path for path in directory.iterdir() if path.name.endswith(SUFFIXES) and path.is_file()]
    return sorted(found, key=lambda path: (path.stat().st_mtime, path.name))


def newest_backup(directory: Path) -> tuple[Path, float] | None:
    """The newest backup and its age in seconds, or None."""
    found = backups_in(directory)
    if not found:
        return None
    return found[-1], max(0.0, time.time() - found[-1].stat().st_mtime)


def beyond_keep(directory: Path, keep: int) -> list[Path]:
    """The backups that `--keep N` removes: all but the newest N of the ones `backup` names itself
    (never a `pre-restore-` safety copy or a file named by hand with -o)."""
    found = [path for path in backups_in(directory) if AUTOMATIC.match(path.name)]
    return found[: max(0, len(found) - keep)]

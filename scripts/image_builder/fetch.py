"""The one download -> verify -> stamp -> publish sequence behind every wheel cache directory.

A cache directory is either absent or complete: the download goes to a fresh temp dir beside it, is
checked there, gets its stamp there and only then replaces the old directory with one rename. A failed or
interrupted download leaves the old directory as it was and no temp dir behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .hashing import sha256_hex

STAMP = ".complete.json"

T = TypeVar("T")


def wheel_stamp(lock_bytes: bytes, python: str) -> dict[str, str]:
    """What a wheel set is stamped with: the exact lock it matches and the Python it was fetched for."""
    return {"lock_sha256": sha256_hex(lock_bytes), "python_version": python}


def read_stamp(directory: Path) -> dict | None:
    try:
        return json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return None


def stamp_matches(directory: Path, want: dict) -> bool:
    """Whether directory carries exactly this stamp (a set stamped for another lock or Python does not count)."""
    return read_stamp(directory) == want


def write_stamp(directory: Path, stamp: dict) -> None:
    (directory / STAMP).write_text(json.dumps(stamp) + "\n")


def publish(tmp: Path, dest: Path) -> None:
    """Put a finished tmp dir in dest's place (same parent, so the rename is atomic)."""
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def fetch(
    dest: Path,
    *,
    prefix: str,
    download: Callable[[Path], object],
    verify: Callable[[Path], T],
    stamp: Callable[[T], dict] | None = None,
) -> T:
    """download(tmp), then verify(tmp) (it raises to refuse), stamp, publish as dest; verify's result is returned.

    The stamp is written before the rename so that a published directory always carries it; it may
    depend on what verify found (e.g. the lock written from the resolved set).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dest.parent))
    try:
        download(tmp)
        result = verify(tmp)
        if stamp is not None:
            write_stamp(tmp, stamp(result))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, dest)
    return result

"""The content hash behind every image tag.

Any change here moves every tag (and so rebuilds every image): the byte layout fed to sha256 below is
part of the tag contract, as are the 12 hex digits.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def hash_inputs(files_dir: Path, extra: dict[str, str]) -> str:
    """12 hex digits of sha256 over every file under files_dir (path, exec bit, bytes) and the pins in extra."""
    h = hashlib.sha256()
    for p in sorted(files_dir.rglob("*")):
        if p.is_file():
            rel = p.relative_to(files_dir).as_posix()
            # The exec bit is an input: a start script that loses it breaks the image.
            mode = "x" if os.access(p, os.X_OK) else "-"
            h.update(f"file {rel} {mode}\n".encode())
            h.update(p.read_bytes())
            h.update(b"\n")
    for key in sorted(extra):
        h.update(f"pin {key}={extra[key]}\n".encode())
    return h.hexdigest()[:12]


def file_hash(path: Path) -> str:
    """12 hex digits of one file's sha256 (the tiny-model generator's fingerprint)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

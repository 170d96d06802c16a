"""The Hugging Face hub cache as laid out on disk, read without huggingface_hub:

    HF_CACHE_DIR/hub/models--ORG--NAME/refs/main            the revision (commit id) `main` points at
    HF_CACHE_DIR/hub/models--ORG--NAME/snapshots/REV/FILE   a symlink to ../../blobs/BLOB
    HF_CACHE_DIR/hub/models--ORG--NAME/blobs/BLOB           the content (BLOB: its sha256 or git sha1)

vLLM reads this cache through the HF_CACHE_DIR mount (controller.deploy.spec.HF_CACHE_TARGET), so the
same paths work on the host and in the container.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# What the hub library accepts as a blob or revision name: no path separators.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DEFAULT_REF = "main"


def hub_dir(cache_dir: Path) -> Path:
    return cache_dir / "hub"


def repo_dir(cache_dir: Path, model_id: str) -> Path:
    return hub_dir(cache_dir) / ("models--" + model_id.replace("/", "--"))


@dataclass(frozen=True)
class SnapshotFile:
    path: str  # inside the snapshot, with '/' separators
    source: Path  # the file that holds the content (the blob, symlinks resolved)
    blob: str | None  # the blob's name when the snapshot file is a link into blobs/, else None


@dataclass(frozen=True)
class Snapshot:
    model_id: str
    revision: str
    directory: Path
    files: tuple[SnapshotFile, ...]

    @property
    def size(self) -> int:
        return sum(f.source.stat().st_size for f in self.files)


def revision(cache_dir: Path, model_id: str, ref: str = DEFAULT_REF) -> str | None:
    """The revision `ref` points at in the cache, or None when the model is not cached."""
    ref_file = repo_dir(cache_dir, model_id) / "refs" / ref
    try:
        rev = ref_file.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return rev if SAFE_NAME.match(rev) else None


def find_snapshot(cache_dir: Path, model_id: str, ref: str = DEFAULT_REF) -> Snapshot | None:
    """The files of the revision in use (only those: other revisions in the cache stay out), or None
    when the model is not in the cache or its snapshot lacks config.json."""
    rev = revision(cache_dir, model_id, ref)
    if rev is None:
        return None
    directory = repo_dir(cache_dir, model_id) / "snapshots" / rev
    if not (directory / "config.json").is_file():
        return None
    files = []
    for entry in sorted(directory.rglob("*")):
        if entry.is_dir():
            continue
        source = entry.resolve()
        blob = source.name if entry.is_symlink() and source.parent.name == "blobs" else None
        files.append(SnapshotFile(entry.relative_to(directory).as_posix(), source, blob))
    return Snapshot(model_id, rev, directory, tuple(files))

"""Reading a bundle: one uncompressed tar file or a directory (for media with file-size limits).

A cut-short tar file is still opened, so that verification can name the member it ends inside.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import IO

from controller.bundle.format import MANIFEST_NAME, MAX_MANIFEST_BYTES, BundleReader
from controller.errors import InputError


class DirectoryReader:
    def __init__(self, root: Path):
        self.root = root
        self.origin = str(root)

    def read_manifest(self) -> bytes:
        path = self.root / MANIFEST_NAME
        if not path.is_file():
            raise InputError(f"bundle {self.origin}: no {MANIFEST_NAME} (not a bundle, or an unfinished one)")
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise InputError(f"bundle {self.origin}: {MANIFEST_NAME} is too large to be a manifest")
        return path.read_bytes()

    def names(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()]

    def open(self, path: str) -> IO[bytes]:
        return (self.root / path).open("rb")

    def close(self) -> None:
        pass


class TarReader:
    def __init__(self, path: Path):
        self.origin = str(path)
        try:
            self.tar = tarfile.open(path, "r:")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InputError(f"bundle {self.origin}: not a readable tar file ({exc})") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        # The member the file ends inside, when it was cut short: named in the error.
        self.cut_in: tarfile.TarInfo | None = None
        while True:
            try:
                info = self.tar.next()
            except (tarfile.TarError, EOFError):
                self.cut_in = self.tar.members[-1] if self.tar.members else None
                break
            if info is None:
                break
            if info.isfile():
                self.members[info.name] = info
        if self.cut_in is None and self.tar.members:
            last = self.tar.members[-1]
            if last.offset_data + last.size > path.stat().st_size:
                self.cut_in = last

    def read_manifest(self) -> bytes:
        info = self.members.get(MANIFEST_NAME)
        if info is None:
            where = (
                f"the file ends inside member {self.cut_in.name} ({self.cut_in.size} bytes expected): it is truncated"
                if self.cut_in is not None
                else "the file is truncated or not a bundle"
            )
            raise InputError(f"bundle {self.origin}: no {MANIFEST_NAME}, which is written last; {where}")
        if info.size > MAX_MANIFEST_BYTES:
            raise InputError(f"bundle {self.origin}: {MANIFEST_NAME} is too large to be a manifest")
        with self.open(MANIFEST_NAME) as f:
            return f.read()

    def names(self) -> list[str]:
        return list(self.members)

    def open(self, path: str) -> IO[bytes]:
        extracted = self.tar.extractfile(self.members[path])
        assert extracted is not None  # only regular files are in self.members
        return extracted

    def close(self) -> None:
        self.tar.close()


def open_bundle(path: Path) -> BundleReader:
    if path.is_dir():
        return DirectoryReader(path)
    if not path.is_file():
        raise InputError(f"bundle {path}: no such file or directory")
    return TarReader(path)

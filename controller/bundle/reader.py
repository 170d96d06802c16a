"""Reading a bundle: one uncompressed tar file or a directory (for media with file-size limits).

A bundle holds regular files only: a symbolic or hard link, a device, an absolute name or one with '..'
is refused when the bundle is opened, naming the member, so nothing is read from outside the bundle.
A cut-short tar file is still opened, so that verification can name the member it ends inside.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

from controller.bundle.format import MANIFEST_NAME, MAX_MANIFEST_BYTES, BundleReader
from controller.errors import InputError


def _refuse(origin: str, name: str, problem: str) -> InputError:
    return InputError(
        f"bundle {origin}: member {ascii(name)[1:-1]} {problem}; a bundle holds regular files only",
        hint="create the bundle again with `controller bundle create`, or copy it without links",
    )


class DirectoryReader:
    def __init__(self, root: Path):
        self.root = root
        self.origin = str(root)
        self.files: list[str] = []
        for top, dirs, files in os.walk(root, onerror=self._unreadable):  # links are not followed
            for name in [*dirs, *files]:
                path = Path(top, name)
                mode = path.lstat().st_mode
                member = path.relative_to(root).as_posix()
                if stat.S_ISLNK(mode):
                    raise _refuse(self.origin, member, f"is a symbolic link (to {ascii(os.readlink(path))[1:-1]})")
                if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                    raise _refuse(self.origin, member, "is not a regular file")
                if stat.S_ISREG(mode):
                    self.files.append(member)

    def _unreadable(self, exc: OSError) -> None:
        raise InputError(f"bundle {self.origin}: cannot read {exc.filename} ({exc.strerror or exc})")

    def read_manifest(self) -> bytes:
        path = self.root / MANIFEST_NAME
        if MANIFEST_NAME not in self.files:
            raise InputError(f"bundle {self.origin}: no {MANIFEST_NAME} (not a bundle, or an unfinished one)")
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise InputError(f"bundle {self.origin}: {MANIFEST_NAME} is too large to be a manifest")
        return path.read_bytes()

    def names(self) -> list[str]:
        return list(self.files)

    def open(self, path: str) -> IO[bytes]:
        # O_NOFOLLOW: a member swapped for a link after the bundle was opened is not followed either.
        return os.fdopen(os.open(self.root / path, os.O_RDONLY | os.O_NOFOLLOW), "rb")

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
            self._check(info)
            if info.isfile():
                self.members[info.name] = info
        if self.cut_in is None and self.tar.members:
            last = self.tar.members[-1]
            if last.offset_data + last.size > path.stat().st_size:
                self.cut_in = last

    def _check(self, info: tarfile.TarInfo) -> None:
        name = info.name
        if info.issym():
            raise _refuse(self.origin, name, f"is a symbolic link (to {ascii(info.linkname)[1:-1]})")
        if info.islnk():
            raise _refuse(self.origin, name, f"is a hard link (to {ascii(info.linkname)[1:-1]})")
        if name.startswith("/"):
            raise _refuse(self.origin, name, "has an absolute path")
        if ".." in PurePosixPath(name).parts:
            raise _refuse(self.origin, name, "has a '..' in its path")
        if not (info.isfile() or info.isdir()):
            raise _refuse(self.origin, name, "is not a regular file (a device or a pipe)")
        if info.isfile() and name in self.members:
            raise _refuse(self.origin, name, "is in the tar file twice")

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

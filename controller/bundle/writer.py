"""Writing a bundle: one uncompressed tar file or a directory. Each member is hashed while it is
written (read once); the manifest goes last, so a bundle without one is known to be unfinished.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol

from controller.bundle.format import CHUNK, MANIFEST_NAME, Advance, Manifest, Member, manifest_bytes, sha256_of
from controller.files import write_atomic


class BundleWriter(Protocol):
    def add(self, path: str, source: Path, advance: Advance | None = None) -> Member: ...
    def finish(self, manifest: Manifest) -> None: ...
    def abort(self) -> None: ...


class _HashingReader:
    """A file that hashes what is read from it, so a member is read once while written."""

    def __init__(self, stream: IO[bytes], advance: Advance | None):
        self.stream, self.advance, self.digest = stream, advance, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.digest.update(chunk)
        if self.advance:
            self.advance(len(chunk))
        return chunk


class TarWriter:
    """Writes OUT.partial, renamed to OUT once the manifest (the last member) is in."""

    def __init__(self, out: Path):
        self.out, self.partial = out, out.with_name(out.name + ".partial")
        self.tar = tarfile.open(self.partial, "w:", format=tarfile.PAX_FORMAT)

    def add(self, path: str, source: Path, advance: Advance | None = None) -> Member:
        info = tarfile.TarInfo(path)
        info.size, info.mode = source.stat().st_size, 0o644
        with source.open("rb") as stream:
            hashing = _HashingReader(stream, advance)
            self.tar.addfile(info, hashing)
        return Member(path=path, size=info.size, sha256=hashing.digest.hexdigest())

    def finish(self, manifest: Manifest) -> None:
        data = manifest_bytes(manifest)
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size, info.mode = len(data), 0o644
        self.tar.addfile(info, io.BytesIO(data))
        self.tar.close()
        self.partial.replace(self.out)

    def abort(self) -> None:
        self.tar.close()
        self.partial.unlink(missing_ok=True)


class DirectoryWriter:
    """Copies members into a new directory; manifest.json, written last, marks it complete."""

    def __init__(self, out: Path):
        self.out = out
        out.mkdir(parents=True)

    def add(self, path: str, source: Path, advance: Advance | None = None) -> Member:
        target = self.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.parent == self.out and source.name == path:  # already written in place (docker save)
            with source.open("rb") as stream:
                digest, size = sha256_of(stream, advance)
            return Member(path=path, size=size, sha256=digest)
        with source.open("rb") as stream, target.open("wb") as sink:
            hashing = _HashingReader(stream, advance)
            while chunk := hashing.read(CHUNK):
                sink.write(chunk)
        return Member(path=path, size=target.stat().st_size, sha256=hashing.digest.hexdigest())

    def finish(self, manifest: Manifest) -> None:
        write_atomic(self.out / MANIFEST_NAME, manifest_bytes(manifest).decode("utf-8"))

    def abort(self) -> None:
        shutil.rmtree(self.out, ignore_errors=True)


@contextmanager
def writer_for(out: Path, *, directory: bool) -> Iterator[BundleWriter]:
    """A writer that removes its partial output unless the bundle was finished."""
    writer: BundleWriter = DirectoryWriter(out) if directory else TarWriter(out)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise

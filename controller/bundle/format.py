"""The bundle format for air-gapped sites: a manifest, its members, and their verification.

A bundle is one uncompressed tar file or a directory (for media with file-size limits) holding:

    manifest.json                         this module's Manifest
    images.tar                            `docker save` of every image the profiles need
    models/ORG--NAME/REV/FILE             the files of the revision in use of each model
    catalog.yaml                          the user catalog, when there is one

No Docker here: controller.bundle.transfer runs `docker save` and `docker load` around it.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.errors import InputError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
IMAGES_MEMBER = "images.tar"
CATALOG_MEMBER = "catalog.yaml"
CHUNK = 1 << 20
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
# Relative paths of plain names: no '..', no absolute path, nothing a tar could use to escape.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._+=-]*"
MEMBER_PATH = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")

MemberPath = Annotated[str, Field(pattern=MEMBER_PATH.pattern, max_length=1024)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Advance = Callable[[int], None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Member(_Strict):
    path: MemberPath
    size: int = Field(ge=0)
    sha256: Sha256


class ImageEntry(_Strict):
    reference: str = Field(min_length=1, max_length=512)
    id: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")


class ModelFile(_Strict):
    path: MemberPath  # inside the snapshot
    member: MemberPath
    blob: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ModelEntry(_Strict):
    model: str = Field(min_length=1, max_length=256)
    revision: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    profiles: list[str]
    files: list[ModelFile]


class Manifest(_Strict):
    format_version: int = Field(ge=1)
    controller_version: str
    created: str
    profiles: list[str]
    images: list[ImageEntry]
    models: list[ModelEntry]
    catalog: MemberPath | None = None
    members: list[Member]

    def member(self, path: str) -> Member:
        return next(m for m in self.members if m.path == path)

    @property
    def total_bytes(self) -> int:
        return sum(m.size for m in self.members)


def model_member(model: str, revision: str, path: str) -> str:
    return f"models/{model.replace('/', '--')}/{revision}/{path}"


def parse_manifest(text: bytes, origin: str) -> Manifest:
    """The manifest, checked: a newer format version is refused before its fields are read."""
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"bundle {origin}: {MANIFEST_NAME} is not JSON ({exc})") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise InputError(
            f"bundle {origin}: format version {version} is newer than this controller reads ({FORMAT_VERSION})",
            hint="install the controller version that created the bundle (see controller_version in its manifest)",
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise InputError(f"bundle {origin}: {MANIFEST_NAME}: field '{where}': {first['msg']}") from None
    paths = [m.path for m in manifest.members]
    if len(set(paths)) != len(paths) or MANIFEST_NAME in paths:
        raise InputError(f"bundle {origin}: {MANIFEST_NAME} lists a member twice")
    named = {f.member for model in manifest.models for f in model.files}
    named |= {IMAGES_MEMBER} if manifest.images else set()
    named |= {manifest.catalog} if manifest.catalog else set()
    unlisted = sorted(named - set(paths))
    if unlisted:
        raise InputError(f"bundle {origin}: {MANIFEST_NAME} refers to member {unlisted[0]} without its checksum")
    return manifest


# ----- reading a bundle: one tar file or a directory ---------------------------------------------


class BundleReader(Protocol):
    origin: str

    def read_manifest(self) -> bytes: ...
    def names(self) -> list[str]: ...
    def open(self, path: str) -> IO[bytes]: ...
    def close(self) -> None: ...


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


def read_chunks(stream: IO[bytes], advance: Advance | None = None) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        if advance:
            advance(len(chunk))
        yield chunk


def sha256_of(stream: IO[bytes], advance: Advance | None = None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in read_chunks(stream, advance):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def verify_bundle(reader: BundleReader, advance: Advance | None = None) -> Manifest:
    """Read the manifest and check every member's presence, size and sha256. Raises InputError naming
    the first member that is missing, short, altered or unexpected; reads nothing else."""
    manifest = parse_manifest(reader.read_manifest(), reader.origin)
    present = set(reader.names())
    unexpected = sorted(present - {m.path for m in manifest.members} - {MANIFEST_NAME})
    if unexpected:
        raise InputError(f"bundle {reader.origin}: member {unexpected[0]} is not in the manifest")
    for member in manifest.members:
        where = f"bundle {reader.origin}: member {member.path}"
        if member.path not in present:
            raise InputError(f"{where} is missing (the bundle is truncated or incomplete)")
        try:
            with reader.open(member.path) as stream:
                digest, size = sha256_of(stream, advance)
        except (tarfile.TarError, EOFError) as exc:
            raise InputError(f"{where} cannot be read to its end ({exc}): the bundle is truncated") from None
        if size != member.size:
            raise InputError(f"{where} is {size} bytes, the manifest says {member.size}: truncated or altered")
        if digest != member.sha256:
            raise InputError(f"{where}: sha256 {digest[:16]}... differs from the manifest's: the member was altered")
    return manifest


# ----- writing a bundle ------------------------------------------------------------------------


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
        import io

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
        from controller.files import write_atomic

        write_atomic(self.out / MANIFEST_NAME, manifest_bytes(manifest).decode("utf-8"))

    def abort(self) -> None:
        import shutil

        shutil.rmtree(self.out, ignore_errors=True)


def manifest_bytes(manifest: Manifest) -> bytes:
    return (json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode("utf-8")


@contextmanager
def writer_for(out: Path, *, directory: bool) -> Iterator[BundleWriter]:
    """A writer that removes its partial output unless the bundle was finished."""
    writer: BundleWriter = DirectoryWriter(out) if directory else TarWriter(out)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise

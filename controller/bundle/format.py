"""The bundle format for air-gapped sites: a manifest, its members, and their verification.

A bundle is one uncompressed tar file or a directory (for media with file-size limits) holding:

    manifest.json                         this module's Manifest
    images.tar                            `docker save` of every image the profiles need
    models/ORG--NAME/REV/FILE             the files of the revision in use of each model
    catalog.yaml                          the user catalog, when there is one

Pure: the manifest, member names, hashing and verification. Reading and writing a tar file or a
directory is controller.bundle.reader and controller.bundle.writer; `docker save` and `docker load`
around them are controller.bundle.create and controller.bundle.load.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Callable, Iterator
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


def manifest_bytes(manifest: Manifest) -> bytes:
    return (json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode("utf-8")


class BundleReader(Protocol):
    """A bundle opened for reading, one tar file or a directory (controller.bundle.reader)."""

    origin: str

    def read_manifest(self) -> bytes: ...
    def names(self) -> list[str]: ...
    def open(self, path: str) -> IO[bytes]: ...
    def close(self) -> None: ...


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
        except (tarfile.TarError, EOFError) as exc:  # a tar file's reader: the file ends inside the member
            raise InputError(f"{where} cannot be read to its end ({exc}): the bundle is truncated") from None
        if size != member.size:
            raise InputError(f"{where} is {size} bytes, the manifest says {member.size}: truncated or altered")
        if digest != member.sha256:
            raise InputError(f"{where}: sha256 {digest[:16]}... differs from the manifest's: the member was altered")
    return manifest
